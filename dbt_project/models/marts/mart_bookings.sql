{#
  Won revenue per month and quarter, per pipeline and for all pipelines ('all'), for every period
  from the first win's period to the as_of period (periods without wins show 0). Only wins closed
  at or before as_of count; each is converted at the rate of its close date (a won deal without
  an amount counts as 0). A won deal whose currency has no rate counts in won_deals and
  won_deals_without_fx, not in the amount: the check amounts_convert_to_reporting_currency fails
  and names it, and the forecast and coverage read the same sum.
#}

with

deals as (select * from {{ ref('int_deals_restated_as_of') }}),
pipeline_stages as (select * from {{ ref('stg_crm__pipeline_stages') }}),
fx_rates as (select * from {{ ref('int_fx_rates_triangulated') }}),

won_deals as (
    select
        deals.deal_key,
        deals.pipeline,
        {{ dbt.cast('deals.closed_at_as_of', 'date') }} as closed_date,
        {{ convert_to_reporting('coalesce(deals.amount, 0)', 'fx_rates') }} as amount_reporting
    from deals
    left join fx_rates
        on {{ fx_rate_on('fx_rates', 'deals.currency', dbt.cast('deals.closed_at_as_of', 'date')) }}
    where deals.status_as_of = 'won'
),

won_in_periods as (
    {% for grain in ['month', 'quarter'] %}
    select
        '{{ grain }}' as period_grain,
        {{ period_label(grain, 'closed_date') }} as period,
        pipeline,
        deal_key,
        amount_reporting
    from won_deals
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

month_offsets as (
    {{ dbt.generate_series(1200) }}
),

first_month as (
    select {{ dbt.cast(dbt.date_trunc('month', 'min(closed_date)'), 'date') }} as first_month_start
    from won_deals
),

months as (
    select {{ dbt.cast(dbt.dateadd('month', 'month_offsets.generated_number - 1', 'first_month.first_month_start'), 'date') }} as month_start
    from first_month
    cross join month_offsets
    where first_month.first_month_start is not null
),

periods as (
    {% for grain in ['month', 'quarter'] %}
    select distinct
        '{{ grain }}' as period_grain,
        {{ period_label(grain, 'month_start') }} as period,
        {{ dbt.cast(dbt.date_trunc(grain, 'month_start'), 'date') }} as period_start_date
    from months
    where month_start <= {{ as_of_date() }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

pipelines as (
    select distinct pipeline from pipeline_stages
    union all
    select 'all' as pipeline
),

per_pipeline as (
    {% for grouping in ['pipeline', "'all'"] %}
    select
        period_grain,
        period,
        {{ grouping }} as pipeline,
        count(*) as won_deals,
        count(*) - count(amount_reporting) as won_deals_without_fx,
        coalesce(sum(amount_reporting), 0) as won_amount_reporting
    from won_in_periods
    group by period_grain, period{% if grouping == 'pipeline' %}, pipeline{% endif %}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

final as (
    select
        periods.period_grain,
        periods.period,
        periods.period_start_date,
        pipelines.pipeline,
        coalesce(per_pipeline.won_deals, 0) as won_deals,
        coalesce(per_pipeline.won_amount_reporting, 0) as won_amount_reporting,
        coalesce(per_pipeline.won_deals_without_fx, 0) as won_deals_without_fx,
        {{ reporting_currency() }} as reporting_currency
    from periods
    cross join pipelines
    left join per_pipeline
        on periods.period_grain = per_pipeline.period_grain
        and periods.period = per_pipeline.period
        and pipelines.pipeline = per_pipeline.pipeline
)

select * from final
