{#
  Win rate = won / (won + lost), per pipeline (plus 'all') and period, on two bases:
  - close_period: the deals closed (won or lost by as_of) in the month / quarter of closed_at;
  - creation_cohort: the deals created in the month / quarter, however far they got; a cohort
    is immature while more than var immature_open_share (0.5) of its deals are still open.
  Average deal size = the mean amount of the won deals (reporting currency, close-date rate).
#}

with

deals as (select * from {{ ref('fct_deals') }}),

dated as (
    {%- set parts = [] -%}
    {%- for basis, column in [('close_period', 'closed_at_as_of'), ('creation_cohort', 'created_at')] -%}
        {%- for grain in ['month', 'quarter'] -%}
            {%- for grouping in ['pipeline', "'all'"] -%}
                {%- do parts.append((basis, column, grain, grouping)) -%}
            {%- endfor -%}
        {%- endfor -%}
    {%- endfor %}
    {%- for basis, column, grain, grouping in parts %}
    select
        {{ dbt.cast(grouping, dbt.type_string()) }} as pipeline,
        '{{ basis }}' as basis,
        '{{ grain }}' as period_grain,
        {{ period_label(grain, column) }} as period,
        {{ dbt.cast(dbt.date_trunc(grain, column), 'date') }} as period_start_date,
        status_as_of,
        amount_reporting
    from deals
    {%- if basis == 'close_period' %}
    where status_as_of in ('won', 'lost')
    {%- endif %}
    {% if not loop.last %}
    union all
    {% endif %}
    {%- endfor %}
),

aggregated as (
    select
        pipeline,
        basis,
        period_grain,
        period,
        period_start_date,
        count(*) as deals,
        sum(case when status_as_of = 'open' then 1 else 0 end) as open_deals,
        sum(case when status_as_of = 'won' then 1 else 0 end) as won_deals,
        sum(case when status_as_of = 'lost' then 1 else 0 end) as lost_deals,
        sum(case when status_as_of = 'won' then amount_reporting end) as won_amount_reporting,
        avg(case when status_as_of = 'won' then amount_reporting end) as avg_won_amount_reporting
    from dated
    group by pipeline, basis, period_grain, period, period_start_date
),

final as (
    select
        pipeline,
        basis,
        period_grain,
        period,
        period_start_date,
        deals,
        open_deals,
        won_deals,
        lost_deals,
        {{ safe_divide('won_deals', 'won_deals + lost_deals') }} as win_rate,
        won_amount_reporting,
        avg_won_amount_reporting,
        {{ safe_divide('open_deals', 'deals') }} as share_open,
        case
            when basis = 'creation_cohort' then {{ safe_divide('open_deals', 'deals') }} > {{ var('immature_open_share', 0.5) }}
        end as is_immature,
        {{ reporting_currency() }} as reporting_currency
    from aggregated
)

select * from final
