{#
  Time in stage per pipeline, open stage and breakdown (macro breakdown_values), with censoring.

  A stay of a deal in an open stage of its own pipeline lasts from entered_at to the next stay's
  start; a stay with no next stay ends when the deal closed (a close without a won/lost stage
  event); a stay still going at as_of is censored there. Median and p90 come from Kaplan–Meier
  over all stays (macro kaplan_meier_quantiles, durations on the km_duration clock: whole hours);
  the naive mean of the finished stays (exact durations) stands beside them, biased short: the
  long stays are the ones still open.
#}

with

deals as (select * from {{ ref('fct_deals') }}),
transitions as (select * from {{ ref('fct_stage_transitions') }}),
pipeline_stages as (select * from {{ ref('stg_crm__pipeline_stages') }}),

stays as (
    select
        deals.*,
        transitions.stage,
        transitions.entered_at,
        case
            when transitions.exited_at is not null then transitions.exited_at
            when deals.closed_at_as_of is not null and deals.closed_at_as_of < transitions.entered_at
                then transitions.entered_at
            else deals.closed_at_as_of
        end as ended_at
    from transitions
    inner join deals
        on transitions.deal_key = deals.deal_key
        and transitions.pipeline = deals.pipeline
    where transitions.stage_kind = 'open'
),

measured_stays as (
    select
        stays.*,
        {{ days_between('stays.entered_at', 'coalesce(stays.ended_at, ' ~ as_of_ts() ~ ')') }} as days,
        case when stays.ended_at is not null then 1 else 0 end as is_finished
    from stays
),

clocked_stays as (
    select
        measured_stays.*,
        {{ km_duration('measured_stays.days') }} as duration
    from measured_stays
),

stay_times as (
    {{ aggregate_by_breakdowns(
        'clocked_stays',
        'sum(is_finished) as events, count(*) as observations, '
            ~ 'sum(case when is_finished = 1 then days end) as finished_days',
        keys=['stage', 'duration']) }}
),

{{ kaplan_meier_quantiles('stay_times', ['pipeline', 'breakdown', 'breakdown_value', 'stage'],
                          {'median': 0.5, 'p90': 0.9}) }}

finished_stays as (
    select
        pipeline,
        breakdown,
        breakdown_value,
        stage,
        sum(finished_days) / nullif(sum(events), 0) as mean_days_in_stage_closed
    from stay_times
    group by pipeline, breakdown, breakdown_value, stage
),

final as (
    select
        stay_times_km.pipeline,
        stay_times_km.breakdown,
        stay_times_km.breakdown_value,
        stay_times_km.stage,
        pipeline_stages.stage_order,
        {{ dbt.cast('stay_times_km.observations', dbt.type_bigint()) }} as stays,
        {{ dbt.cast('stay_times_km.events', dbt.type_bigint()) }} as finished_stays,
        {{ dbt.cast('stay_times_km.observations - stay_times_km.events', dbt.type_bigint()) }} as censored_stays,
        stay_times_km.km_median as median_days_in_stage,
        stay_times_km.km_p90 as p90_days_in_stage,
        finished_stays.mean_days_in_stage_closed
    from stay_times_km
    left join finished_stays
        on stay_times_km.pipeline = finished_stays.pipeline
        and stay_times_km.breakdown = finished_stays.breakdown
        and stay_times_km.breakdown_value = finished_stays.breakdown_value
        and stay_times_km.stage = finished_stays.stage
    left join pipeline_stages
        on stay_times_km.pipeline = pipeline_stages.pipeline
        and stay_times_km.stage = pipeline_stages.stage
)

select * from final
