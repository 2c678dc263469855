{#
  The funnel per pipeline as of as_of: for each open stage and the won stage, how many deals
  reached it, step and cumulative conversion, and how many were lost there.

  A deal belongs to the funnel of its pipeline (deal.pipeline); only its stays in that pipeline
  count. It reached open stage s if it entered s or a later open stage, or ever entered a won
  stage, or is won at as_of (skipped stages count as passed; a move back does not undo "reached";
  each deal counts once). Reached(won) = deals won at as_of.
  Lost here = deals lost at as_of whose last open stay that began at or before the loss was in s.
#}

with

pipeline_stages as (select * from {{ ref('stg_crm__pipeline_stages') }}),
deals as (select * from {{ ref('int_deals_restated_as_of') }}),
transitions as (select * from {{ ref('fct_stage_transitions') }}),

funnel_stages as (
    select pipeline, stage, stage_order, stage_kind
    from pipeline_stages
    where stage_kind in ('open', 'won')
),

deal_stays as (
    select
        transitions.*,
        deals.status_as_of,
        deals.closed_at_as_of
    from transitions
    inner join deals
        on transitions.deal_key = deals.deal_key
        and transitions.pipeline = deals.pipeline
),

deal_progress as (
    select
        deals.deal_key,
        deals.pipeline,
        deals.status_as_of,
        max(case when deal_stays.stage_kind = 'open' then deal_stays.stage_order end) as max_open_stage_order,
        max(case when deal_stays.stage_kind = 'won' then 1 else 0 end) as has_entered_won
    from deals
    left join deal_stays
        on deals.deal_key = deal_stays.deal_key
    group by deals.deal_key, deals.pipeline, deals.status_as_of
),

created as (
    select pipeline, count(*) as created_deals
    from deals
    group by pipeline
),

reached as (
    select
        funnel_stages.pipeline,
        funnel_stages.stage,
        funnel_stages.stage_order,
        funnel_stages.stage_kind,
        count(distinct case
            when funnel_stages.stage_kind = 'won' and deal_progress.status_as_of = 'won'
                then deal_progress.deal_key
            when funnel_stages.stage_kind = 'open'
                and (
                    deal_progress.max_open_stage_order >= funnel_stages.stage_order
                    or deal_progress.has_entered_won = 1
                    or deal_progress.status_as_of = 'won'
                )
                then deal_progress.deal_key
        end) as reached
    from funnel_stages
    left join deal_progress
        on funnel_stages.pipeline = deal_progress.pipeline
    group by funnel_stages.pipeline, funnel_stages.stage, funnel_stages.stage_order, funnel_stages.stage_kind
),

open_stays_before_loss as (
    select
        deal_key,
        pipeline,
        stage,
        row_number() over (partition by deal_key order by stay_number desc) as recency
    from deal_stays
    where status_as_of = 'lost'
        and stage_kind = 'open'
        and entered_at <= closed_at_as_of
),

lost as (
    select pipeline, stage, count(*) as lost_here
    from open_stays_before_loss
    where recency = 1
    group by pipeline, stage
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

final as (
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
            when created.created_deals > 0
                then {{ dbt.cast('with_previous.reached', type_double()) }} / created.created_deals
        end as cumulative_conversion,
        coalesce(lost.lost_here, 0) as lost_here
    from with_previous
    left join created
        on with_previous.pipeline = created.pipeline
    left join lost
        on with_previous.pipeline = lost.pipeline
        and with_previous.stage = lost.stage
)

select * from final
