{#
  The open pipeline at the end of each day, for trend charts: deals and amount per day, pipeline
  and stage over the last var daily_snapshot_days (400) days up to the as_of date.

  A deal counts on day D if it was open in that stage at the end of D (the last moment before
  D + 1, or as_of on the as_of date): the same rules as mart_pipeline_as_of (open-stage stays of
  the deal, ending at the next stay or the close; a deal without stage events sits in its export
  stage if open, else the first open stage, from creation to close), with the amount valid at
  that moment (int_deal_amounts_historized). Amounts convert at each day's rate.

  Built from changes, not by re-running the snapshot per day: every piece of a deal's life with
  a constant (stage, amount) adds +1 / +amount on its first day and -1 / -amount on the day it
  ends; a running sum per pipeline, stage and currency gives every day.
#}

{%- set days = var('daily_snapshot_days', 400) | int -%}
{%- if days < 1 -%}
    {{ exceptions.raise_compiler_error("var daily_snapshot_days must be at least 1, got '" ~ days ~ "'") }}
{%- endif %}

with

deals as (select * from {{ ref('int_deals_restated_as_of') }}),
transitions as (select * from {{ ref('fct_stage_transitions') }}),
pipeline_stages as (select * from {{ ref('stg_crm__pipeline_stages') }}),
amounts as (select * from {{ ref('int_deal_amounts_historized') }}),
fx_rates as (select * from {{ ref('int_fx_rates_triangulated') }}),

window_bounds as (
    select
        {{ dbt.cast(dbt.dateadd('day', 1 - days, as_of_date()), 'date') }} as first_day,
        {{ as_of_date() }} as last_day
),

first_open_stages as (
    select pipeline, stage, stage_order
    from (
        select
            pipeline,
            stage,
            stage_order,
            row_number() over (partition by pipeline order by stage_order, stage) as position
        from pipeline_stages
        where stage_kind = 'open'
    ) as ordered_stages
    where position = 1
),

stay_spans as (
    select
        transitions.deal_key,
        deals.pipeline,
        transitions.stage,
        transitions.stage_order,
        transitions.entered_at as span_start,
        case
            when transitions.exited_at is null then deals.closed_at_as_of
            when deals.closed_at_as_of is null then transitions.exited_at
            when deals.closed_at_as_of < transitions.exited_at then deals.closed_at_as_of
            else transitions.exited_at
        end as span_end
    from transitions
    inner join deals
        on transitions.deal_key = deals.deal_key
    where transitions.stage_kind = 'open'
),

eventless_spans as (
    select
        deals.deal_key,
        deals.pipeline,
        coalesce(current_stages.stage, first_open_stages.stage) as stage,
        coalesce(current_stages.stage_order, first_open_stages.stage_order) as stage_order,
        deals.created_at as span_start,
        deals.closed_at_as_of as span_end
    from deals
    left join pipeline_stages as current_stages
        on deals.pipeline = current_stages.pipeline
        and deals.current_stage = current_stages.stage
        and current_stages.stage_kind = 'open'
    left join first_open_stages
        on deals.pipeline = first_open_stages.pipeline
    where not exists (
        select 1
        from transitions
        where transitions.deal_key = deals.deal_key
    )
),

spans as (
    select * from stay_spans
    union all
    select * from eventless_spans
),

pieces as (
    select
        spans.pipeline,
        spans.stage,
        spans.stage_order,
        amounts.currency,
        coalesce(amounts.amount, 0) as amount,
        {{ dbt.cast('case when amounts.valid_from > spans.span_start then amounts.valid_from else spans.span_start end', 'date') }}
            as first_day,
        {{ dbt.cast('case
            when spans.span_end is null then amounts.valid_to
            when amounts.valid_to is null or spans.span_end < amounts.valid_to then spans.span_end
            else amounts.valid_to
        end', 'date') }} as end_day
    from spans
    inner join amounts
        on spans.deal_key = amounts.deal_key
        and (amounts.valid_to is null or amounts.valid_to > spans.span_start)
        and (spans.span_end is null or amounts.valid_from < spans.span_end)
),

-- a piece counts from first_day through the day before end_day (end_day null = still open)
visible_pieces as (
    select
        pieces.*,
        case when pieces.first_day < window_bounds.first_day then window_bounds.first_day else pieces.first_day end
            as delta_day
    from pieces
    cross join window_bounds
    where pieces.first_day <= window_bounds.last_day
        and (pieces.end_day is null or (pieces.end_day > pieces.first_day and pieces.end_day > window_bounds.first_day))
),

deltas as (
    select pipeline, stage, stage_order, currency, delta_day, 1 as deal_delta, amount as amount_delta
    from visible_pieces

    union all

    select pipeline, stage, stage_order, currency, end_day as delta_day, -1 as deal_delta, -amount as amount_delta
    from visible_pieces
    cross join window_bounds
    where visible_pieces.end_day <= window_bounds.last_day
),

daily_deltas as (
    select
        pipeline,
        stage,
        stage_order,
        currency,
        delta_day,
        sum(deal_delta) as deal_delta,
        sum(amount_delta) as amount_delta
    from deltas
    group by pipeline, stage, stage_order, currency, delta_day
),

day_offsets as (
    {{ dbt.generate_series(days) }}
),

days as (
    select {{ dbt.cast(dbt.dateadd('day', 'day_offsets.generated_number - 1', 'window_bounds.first_day'), 'date') }}
        as snapshot_date
    from day_offsets
    cross join window_bounds
),

series as (
    select distinct pipeline, stage, stage_order, currency
    from daily_deltas
),

running as (
    select
        days.snapshot_date,
        series.pipeline,
        series.stage,
        series.stage_order,
        series.currency,
        sum(coalesce(daily_deltas.deal_delta, 0)) over (
            partition by series.pipeline, series.stage, series.currency
            order by days.snapshot_date
            rows between unbounded preceding and current row
        ) as open_deals,
        sum(coalesce(daily_deltas.amount_delta, 0)) over (
            partition by series.pipeline, series.stage, series.currency
            order by days.snapshot_date
            rows between unbounded preceding and current row
        ) as amount
    from days
    cross join series
    left join daily_deltas
        on series.pipeline = daily_deltas.pipeline
        and series.stage = daily_deltas.stage
        and series.currency is not distinct from daily_deltas.currency
        and days.snapshot_date = daily_deltas.delta_day
),

converted as (
    select
        running.*,
        {{ convert_to_reporting('running.amount', 'fx_rates') }} as amount_reporting
    from running
    left join fx_rates
        on {{ fx_rate_on('fx_rates', 'running.currency', 'running.snapshot_date') }}
),

final as (
    select
        snapshot_date,
        pipeline,
        stage,
        stage_order,
        {{ dbt.cast('sum(open_deals)', dbt.type_bigint()) }} as open_deals,
        -- null when a currency has no rate that day, rather than a silently short sum
        case
            when count(*) = count(case when open_deals = 0 or amount_reporting is not null then 1 end)
                then sum(case when open_deals = 0 then 0 else amount_reporting end)
        end as amount_reporting,
        {{ reporting_currency() }} as reporting_currency
    from converted
    group by snapshot_date, pipeline, stage, stage_order
)

select * from final
