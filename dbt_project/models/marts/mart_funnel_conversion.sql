{#
  The funnel per pipeline as of as_of: for each open stage and the won stage, how many deals
  reached it, step and cumulative conversion, and how many were lost there.

  A deal belongs to the funnel of its pipeline (deal.pipeline); only its stays in that pipeline
  count (fct_deals). It reached open stage s if it got to s or a later open stage
  (reached_stage_order: its stays; without an open stay, the export's open stage or the first
  stage, so every deal reached the first stage), or ever entered a won stage, or is won at as_of
  (skipped stages count as passed; a move back does not undo "reached"; each deal counts once).
  Reached(won) = deals won at as_of. Lost here = deals lost at as_of at s (fct_deals.lost_at_stage);
  the deals lost at no known stage get a row of their own, stage '(stage unknown)', when there are
  any. created_deals and closed_unknown_deals (closed, outcome unknown) are per pipeline.
#}

with

pipeline_stages as (select * from {{ ref('stg_crm__pipeline_stages') }}),
deals as (select * from {{ ref('fct_deals') }}),

funnel_stages as (
    select pipeline, stage, stage_order, stage_kind
    from pipeline_stages
    where stage_kind in ('open', 'won')
),

pipeline_counts as (
    select
        pipeline,
        count(*) as created_deals,
        {{ dbt.cast("sum(case when status_as_of = 'unknown' then 1 else 0 end)", dbt.type_bigint()) }} as closed_unknown_deals,
        {{ dbt.cast('sum(case when is_lost_stage_unknown then 1 else 0 end)', dbt.type_bigint()) }} as lost_at_unknown_stage
    from deals
    group by pipeline
),

reached as (
    select
        funnel_stages.pipeline,
        funnel_stages.stage,
        funnel_stages.stage_order,
        funnel_stages.stage_kind,
        count(case
            when funnel_stages.stage_kind = 'won' and deals.status_as_of = 'won'
                then deals.deal_key
            when funnel_stages.stage_kind = 'open'
                and (
                    deals.reached_stage_order >= funnel_stages.stage_order
                    or deals.has_entered_won
                    or deals.status_as_of = 'won'
                )
                then deals.deal_key
        end) as reached
    from funnel_stages
    left join deals
        on funnel_stages.pipeline = deals.pipeline
    group by funnel_stages.pipeline, funnel_stages.stage, funnel_stages.stage_order, funnel_stages.stage_kind
),

lost as (
    select pipeline, lost_at_stage as stage, count(*) as lost_here
    from deals
    where lost_at_stage is not null
    group by pipeline, lost_at_stage
),

with_previous as (
    select
        reached.*,
        lag(reached.reached) over (
            partition by reached.pipeline
            order by case when reached.stage_kind = 'won' then 1 else 0 end, reached.stage_order, reached.stage
        ) as previous_reached
    from reached
),

stage_rows as (
    select
        with_previous.pipeline,
        with_previous.stage,
        with_previous.stage_order,
        with_previous.reached,
        case
            when with_previous.previous_reached > 0
                then {{ dbt.cast('with_previous.reached', type_double()) }} / with_previous.previous_reached
        end as step_conversion,
        case
            when pipeline_counts.created_deals > 0
                then {{ dbt.cast('with_previous.reached', type_double()) }} / pipeline_counts.created_deals
        end as cumulative_conversion,
        coalesce(lost.lost_here, 0) as lost_here,
        coalesce(pipeline_counts.created_deals, 0) as created_deals,
        coalesce(pipeline_counts.closed_unknown_deals, 0) as closed_unknown_deals
    from with_previous
    left join pipeline_counts
        on with_previous.pipeline = pipeline_counts.pipeline
    left join lost
        on with_previous.pipeline = lost.pipeline
        and with_previous.stage = lost.stage
),

unknown_stage_rows as (
    select
        pipeline,
        {{ unknown_stage_label() }} as stage,
        {{ dbt.cast('null', 'integer') }} as stage_order,
        {{ dbt.cast('null', dbt.type_bigint()) }} as reached,
        {{ dbt.cast('null', type_double()) }} as step_conversion,
        {{ dbt.cast('null', type_double()) }} as cumulative_conversion,
        lost_at_unknown_stage as lost_here,
        created_deals,
        closed_unknown_deals
    from pipeline_counts
    where lost_at_unknown_stage > 0
        -- a pipeline without known stages has no funnel at all
        and pipeline in (select pipeline from funnel_stages)
),

final as (
    select * from stage_rows
    union all
    select * from unknown_stage_rows
)

select * from final
