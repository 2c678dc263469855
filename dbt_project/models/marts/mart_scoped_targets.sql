{#
  Revenue targets scoped to a segment and/or an owner (mart_targets holds the company-wide ones),
  one row per target, with what its scope booked: the deals won by as_of with their close in the
  target's period, in its pipeline (all when the target names none), segment and owner (when the
  target names them). Converted as mart_targets and mart_bookings: the target at the rate of its
  period's first day (the as_of date's for a period that starts after as_of), won deals at their
  close date's rate (fct_deals; a won deal without an amount counts 0).
#}

with

targets as (select * from {{ ref('stg_crm__targets') }}),
deals as (select * from {{ ref('fct_deals') }}),
fx_rates as (select * from {{ ref('int_fx_rates_triangulated') }}),

scoped_targets as (
    select
        period,
        {{ period_grain_of('period') }} as period_grain,
        {{ period_start_date('period') }} as period_start_date,
        scope_pipeline,
        scope_segment,
        scope_owner,
        target_amount,
        currency
    from targets
    where scope_owner is not null
        or scope_segment is not null
),

bounded as (
    select
        scoped_targets.*,
        {{ period_end_date('period_grain', 'period_start_date') }} as period_end_date
    from scoped_targets
),

converted as (
    select
        bounded.*,
        {{ convert_to_reporting('bounded.target_amount', 'fx_rates') }} as target_amount_reporting
    from bounded
    left join fx_rates
        on {{ fx_rate_on('fx_rates', 'bounded.currency', target_rate_date('bounded.period_start_date')) }}
),

booked as (
    select
        converted.period,
        converted.scope_pipeline,
        converted.scope_segment,
        converted.scope_owner,
        count(deals.deal_key) as won_deals,
        coalesce(sum(coalesce(deals.amount_reporting, 0)), 0) as won_amount_reporting
    from converted
    left join deals
        on deals.status_as_of = 'won'
        and deals.closed_at_as_of >= converted.period_start_date
        and deals.closed_at_as_of < converted.period_end_date
        and (converted.scope_pipeline is null or deals.pipeline = converted.scope_pipeline)
        and (converted.scope_segment is null or deals.segment = converted.scope_segment)
        and (converted.scope_owner is null or deals.owner = converted.scope_owner)
    group by converted.period, converted.scope_pipeline, converted.scope_segment, converted.scope_owner
),

final as (
    select
        converted.period_grain,
        converted.period,
        converted.period_start_date,
        coalesce(converted.scope_pipeline, 'all') as pipeline,
        converted.scope_segment as segment,
        converted.scope_owner as owner,
        converted.target_amount_reporting,
        {{ dbt.cast('booked.won_deals', dbt.type_bigint()) }} as won_deals,
        booked.won_amount_reporting,
        {{ reporting_currency() }} as reporting_currency
    from converted
    inner join booked
        on converted.period = booked.period
        and coalesce(converted.scope_pipeline, '') = coalesce(booked.scope_pipeline, '')
        and coalesce(converted.scope_segment, '') = coalesce(booked.scope_segment, '')
        and coalesce(converted.scope_owner, '') = coalesce(booked.scope_owner, '')
)

select * from final
