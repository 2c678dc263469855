{#
  Attainment of owner targets: for every target scoped to an owner (raw.targets scope_owner; any
  segment scope is not supported yet and such targets are left out), the owner's deals won in
  the target's period (and pipeline, when the target names one; 'all' otherwise) against it.
  Targets convert at their period's first day's rate (the as_of date's for a period that starts
  after as_of), won deals at their close date's rate (as mart_bookings; no amount = 0).
#}

with

targets as (select * from {{ ref('stg_crm__targets') }}),
deals as (select * from {{ ref('fct_deals') }}),
fx_rates as (select * from {{ ref('int_fx_rates_triangulated') }}),

owner_targets as (
    select
        period,
        {{ period_grain_of('period') }} as period_grain,
        {{ period_start_date('period') }} as period_start_date,
        scope_owner as owner,
        scope_pipeline,
        target_amount,
        currency
    from targets
    where scope_owner is not null
        and scope_segment is null
),

bounded as (
    select
        owner_targets.*,
        {{ period_end_date('period_grain', 'period_start_date') }} as period_end_date
    from owner_targets
),

converted as (
    select
        bounded.*,
        {{ convert_to_reporting('bounded.target_amount', 'fx_rates') }} as target_amount_reporting
    from bounded
    left join fx_rates
        on {{ fx_rate_on('fx_rates', 'bounded.currency', target_rate_date('bounded.period_start_date')) }}
),

won as (
    select
        converted.owner,
        converted.scope_pipeline,
        converted.period,
        count(deals.deal_key) as won_deals,
        coalesce(sum(coalesce(deals.amount_reporting, 0)), 0) as won_amount_reporting
    from converted
    left join deals
        on deals.owner = converted.owner
        and (converted.scope_pipeline is null or deals.pipeline = converted.scope_pipeline)
        and deals.status_as_of = 'won'
        and deals.closed_at_as_of >= converted.period_start_date
        and deals.closed_at_as_of < converted.period_end_date
    group by converted.owner, converted.scope_pipeline, converted.period
),

final as (
    select
        converted.owner,
        coalesce(converted.scope_pipeline, 'all') as pipeline,
        converted.period_grain,
        converted.period,
        converted.period_start_date,
        converted.target_amount_reporting,
        {{ dbt.cast('won.won_deals', dbt.type_bigint()) }} as won_deals,
        won.won_amount_reporting,
        {{ safe_divide('won.won_amount_reporting', 'converted.target_amount_reporting') }} as attainment,
        case
            when {{ as_of_ts() }} < converted.period_start_date then 0.0
            when {{ as_of_ts() }} >= converted.period_end_date then 1.0
            else {{ days_between('converted.period_start_date', as_of_ts()) }}
                / ({{ days_between('converted.period_start_date', 'converted.period_end_date') }})
        end as period_elapsed_share,
        converted.period_start_date <= {{ as_of_date() }} and {{ as_of_date() }} < converted.period_end_date
            as is_current_period,
        {{ reporting_currency() }} as reporting_currency
    from converted
    inner join won
        on converted.owner = won.owner
        and converted.period = won.period
        and (converted.scope_pipeline = won.scope_pipeline
            or (converted.scope_pipeline is null and won.scope_pipeline is null))
)

select * from final
