{#
  The funnel of mart_funnel_conversion, per breakdown (macro breakdown_values: 'all', owner,
  lead source, segment, region, product, creation week and month), with time in stage beside it.

  Same rule: a deal reached open stage s if it entered s or a later open stage of its pipeline,
  or entered the won stage, or is won at as_of; reached(won) = won at as_of. Step conversion =
  reached / reached of the previous stage, cumulative = reached / created. Drop-off = lost here
  / reached. Every deal reached at least the first open stage (fct_deals.reached_stage_order);
  the deals lost at no known stage get a '(stage unknown)' row per group when there are any.
  closed_unknown_deals: closed with an unknown outcome (not open, not won or lost). A creation cohort is immature while more than var immature_open_share (0.5) of its
  deals are still open: its conversions will still rise.
#}

with

deals as (select * from {{ ref('fct_deals') }}),
pipeline_stages as (select * from {{ ref('stg_crm__pipeline_stages') }}),
time_in_stage as (select * from {{ ref('mart_time_in_stage') }}),

deal_states as (
    select
        deals.*,
        coalesce(deals.reached_stage_order, 0) as reached_order,
        case when deals.has_entered_won or deals.status_as_of = 'won' then 1 else 0 end as has_passed_open_stages
    from deals
),

-- deals counted per breakdown and funnel state: everything below works on these counts
state_counts as (
    {{ aggregate_by_breakdowns('deal_states', 'count(*) as deals',
                               keys=['status_as_of', 'reached_order', 'has_passed_open_stages', 'lost_at_stage',
                                     'is_lost_stage_unknown']) }}
),

funnel_stages as (
    select
        pipeline,
        stage,
        stage_order,
        stage_kind,
        case when stage_kind = 'won' then 1 else 0 end as is_won_stage
    from pipeline_stages
    where stage_kind in ('open', 'won')
),

breakdown_groups as (
    select
        pipeline,
        breakdown,
        breakdown_value,
        sum(deals) as created_deals,
        sum(case when status_as_of = 'open' then deals else 0 end) as open_deals,
        sum(case when status_as_of = 'won' then deals else 0 end) as won_deals,
        sum(case when status_as_of = 'lost' then deals else 0 end) as lost_deals,
        sum(case when status_as_of = 'unknown' then deals else 0 end) as closed_unknown_deals,
        sum(case when is_lost_stage_unknown then deals else 0 end) as lost_at_unknown_stage
    from state_counts
    group by pipeline, breakdown, breakdown_value
),

reached as (
    select
        state_counts.pipeline,
        state_counts.breakdown,
        state_counts.breakdown_value,
        funnel_stages.stage,
        sum(state_counts.deals) as reached
    from state_counts
    inner join funnel_stages
        on state_counts.pipeline = funnel_stages.pipeline
    where (funnel_stages.stage_kind = 'won' and state_counts.status_as_of = 'won')
        or (
            funnel_stages.stage_kind = 'open'
            and (
                state_counts.reached_order >= funnel_stages.stage_order
                or state_counts.has_passed_open_stages = 1
            )
        )
    group by state_counts.pipeline, state_counts.breakdown, state_counts.breakdown_value, funnel_stages.stage
),

lost as (
    select
        pipeline,
        breakdown,
        breakdown_value,
        lost_at_stage as stage,
        sum(deals) as lost_here
    from state_counts
    where lost_at_stage is not null
    group by pipeline, breakdown, breakdown_value, lost_at_stage
),

grid as (
    select
        breakdown_groups.*,
        funnel_stages.stage,
        funnel_stages.stage_order,
        funnel_stages.stage_kind,
        funnel_stages.is_won_stage,
        coalesce(reached.reached, 0) as reached,
        coalesce(lost.lost_here, 0) as lost_here
    from breakdown_groups
    inner join funnel_stages
        on breakdown_groups.pipeline = funnel_stages.pipeline
    left join reached
        on breakdown_groups.pipeline = reached.pipeline
        and breakdown_groups.breakdown = reached.breakdown
        and breakdown_groups.breakdown_value = reached.breakdown_value
        and funnel_stages.stage = reached.stage
    left join lost
        on breakdown_groups.pipeline = lost.pipeline
        and breakdown_groups.breakdown = lost.breakdown
        and breakdown_groups.breakdown_value = lost.breakdown_value
        and funnel_stages.stage = lost.stage
),

with_previous as (
    select
        *,
        lag(reached) over (
            partition by pipeline, breakdown, breakdown_value
            order by is_won_stage, stage_order, stage
        ) as previous_reached
    from grid
),

stage_rows as (
    select
        with_previous.pipeline,
        with_previous.breakdown,
        with_previous.breakdown_value,
        with_previous.stage,
        with_previous.stage_order,
        with_previous.stage_kind,
        {{ dbt.cast('with_previous.created_deals', dbt.type_bigint()) }} as created_deals,
        {{ dbt.cast('with_previous.open_deals', dbt.type_bigint()) }} as open_deals,
        {{ dbt.cast('with_previous.won_deals', dbt.type_bigint()) }} as won_deals,
        {{ dbt.cast('with_previous.lost_deals', dbt.type_bigint()) }} as lost_deals,
        {{ dbt.cast('with_previous.closed_unknown_deals', dbt.type_bigint()) }} as closed_unknown_deals,
        {{ safe_divide('with_previous.open_deals', 'with_previous.created_deals') }} as share_open,
        case
            when with_previous.breakdown in ('created_week', 'created_month')
                then {{ safe_divide('with_previous.open_deals', 'with_previous.created_deals') }}
                    > {{ var('immature_open_share', 0.5) }}
        end as is_immature,
        {{ dbt.cast('with_previous.reached', dbt.type_bigint()) }} as reached,
        case
            when with_previous.previous_reached > 0
                then {{ safe_divide('with_previous.reached', 'with_previous.previous_reached') }}
        end as step_conversion,
        {{ safe_divide('with_previous.reached', 'with_previous.created_deals') }} as cumulative_conversion,
        {{ dbt.cast('with_previous.lost_here', dbt.type_bigint()) }} as lost_here,
        case
            when with_previous.stage_kind = 'open' then {{ safe_divide('with_previous.lost_here', 'with_previous.reached') }}
        end as drop_off_rate,
        time_in_stage.stays,
        time_in_stage.censored_stays,
        time_in_stage.median_days_in_stage,
        time_in_stage.p90_days_in_stage,
        time_in_stage.mean_days_in_stage_closed
    from with_previous
    left join time_in_stage
        on with_previous.pipeline = time_in_stage.pipeline
        and with_previous.breakdown = time_in_stage.breakdown
        and with_previous.breakdown_value = time_in_stage.breakdown_value
        and with_previous.stage = time_in_stage.stage
),

unknown_stage_rows as (
    select
        pipeline,
        breakdown,
        breakdown_value,
        {{ unknown_stage_label() }} as stage,
        {{ dbt.cast('null', 'integer') }} as stage_order,
        {{ dbt.cast('null', dbt.type_string()) }} as stage_kind,
        {{ dbt.cast('created_deals', dbt.type_bigint()) }} as created_deals,
        {{ dbt.cast('open_deals', dbt.type_bigint()) }} as open_deals,
        {{ dbt.cast('won_deals', dbt.type_bigint()) }} as won_deals,
        {{ dbt.cast('lost_deals', dbt.type_bigint()) }} as lost_deals,
        {{ dbt.cast('closed_unknown_deals', dbt.type_bigint()) }} as closed_unknown_deals,
        {{ safe_divide('open_deals', 'created_deals') }} as share_open,
        case
            when breakdown in ('created_week', 'created_month')
                then {{ safe_divide('open_deals', 'created_deals') }} > {{ var('immature_open_share', 0.5) }}
        end as is_immature,
        {{ dbt.cast('null', dbt.type_bigint()) }} as reached,
        {{ dbt.cast('null', type_double()) }} as step_conversion,
        {{ dbt.cast('null', type_double()) }} as cumulative_conversion,
        {{ dbt.cast('lost_at_unknown_stage', dbt.type_bigint()) }} as lost_here,
        {{ dbt.cast('null', type_double()) }} as drop_off_rate,
        {{ dbt.cast('null', dbt.type_bigint()) }} as stays,
        {{ dbt.cast('null', dbt.type_bigint()) }} as censored_stays,
        {{ dbt.cast('null', type_double()) }} as median_days_in_stage,
        {{ dbt.cast('null', type_double()) }} as p90_days_in_stage,
        {{ dbt.cast('null', type_double()) }} as mean_days_in_stage_closed
    from breakdown_groups
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
