{#
  Revenue targets per period and pipeline in the reporting currency. Only targets for all owners
  and segments (scope_owner and scope_segment null) for now.
  'all' = the explicit target without a pipeline scope if there is one, else the sum of the
  period's pipeline targets. A target converts at the rate of its period's first day (the latest
  rate on or before it; a period starting after as_of takes the as_of date's rate).
#}

with

targets as (select * from {{ ref('stg_crm__targets') }}),
fx_rates as (select * from {{ ref('int_fx_rates_triangulated') }}),

company_wide_targets as (
    select
        period,
        {{ period_grain_of('period') }} as period_grain,
        {{ period_start_date('period') }} as period_start_date,
        scope_pipeline,
        target_amount,
        currency
    from targets
    where scope_owner is null
        and scope_segment is null
),

converted as (
    select
        company_wide_targets.*,
        {{ convert_to_reporting('company_wide_targets.target_amount', 'fx_rates') }} as target_amount_reporting
    from company_wide_targets
    left join fx_rates
        on {{ fx_rate_on('fx_rates', 'company_wide_targets.currency', target_rate_date('company_wide_targets.period_start_date')) }}
),

pipeline_targets as (
    select
        period_grain,
        period,
        period_start_date,
        scope_pipeline as pipeline,
        -- null when a currency has no rate, rather than a silently short sum
        case when count(*) = count(target_amount_reporting) then sum(target_amount_reporting) end
            as target_amount_reporting
    from converted
    where scope_pipeline is not null
    group by period_grain, period, period_start_date, scope_pipeline
),

explicit_all_targets as (
    select
        period_grain,
        period,
        period_start_date,
        case when count(*) = count(target_amount_reporting) then sum(target_amount_reporting) end
            as target_amount_reporting
    from converted
    where scope_pipeline is null
    group by period_grain, period, period_start_date
),

summed_all_targets as (
    select
        period_grain,
        period,
        period_start_date,
        case when count(*) = count(target_amount_reporting) then sum(target_amount_reporting) end
            as target_amount_reporting
    from pipeline_targets
    group by period_grain, period, period_start_date
),

all_targets as (
    select period_grain, period, period_start_date, 'all' as pipeline, target_amount_reporting
    from explicit_all_targets

    union all

    select period_grain, period, period_start_date, 'all' as pipeline, target_amount_reporting
    from summed_all_targets
    where not exists (
        select 1
        from explicit_all_targets
        where explicit_all_targets.period = summed_all_targets.period
    )
),

unioned as (
    select * from pipeline_targets
    union all
    select * from all_targets
),

final as (
    select
        period_grain,
        period,
        period_start_date,
        pipeline,
        target_amount_reporting,
        {{ reporting_currency() }} as reporting_currency
    from unioned
)

select * from final
