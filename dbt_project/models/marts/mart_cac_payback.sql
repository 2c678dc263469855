{#
  Customer acquisition cost and payback per month and lead source, for the months with marketing
  spend loaded (raw.marketing_spend) up to as_of; 'all' = every source's spend over every deal
  won that month (blended CAC).

  CAC = spend / deals won in the month (by closed_at) from that lead source; null without a win.
  Spend converts at the rate of the month's first day (as mart_targets). Payback needs var
  gross_margin (a fraction, e.g. 0.7; unset = no payback): the monthly margin of a won deal =
  average won amount x gross_margin / var deal_amount_months (12: an amount is a year's
  contract), and payback_months = CAC / that monthly margin.
#}

{%- set gross_margin = var('gross_margin', none) -%}
{%- if gross_margin is not none and (gross_margin | string | trim) != '' -%}
    {%- if not (gross_margin | float > 0 and gross_margin | float <= 1) -%}
        {{ exceptions.raise_compiler_error("var gross_margin must be a fraction in (0, 1], got '" ~ gross_margin ~ "'") }}
    {%- endif -%}
    {%- set margin_sql = gross_margin | float -%}
{%- else -%}
    {%- set margin_sql = 'null' -%}
{%- endif -%}
{%- set amount_months = var('deal_amount_months', 12) | float -%}
{%- if amount_months <= 0 -%}
    {{ exceptions.raise_compiler_error("var deal_amount_months must be positive, got '" ~ var('deal_amount_months') ~ "'") }}
{%- endif %}

with

marketing_spend as (select * from {{ ref('stg_crm__marketing_spend') }}),
deals as (select * from {{ ref('fct_deals') }}),
fx_rates as (select * from {{ ref('int_fx_rates_triangulated') }}),

dated_spend as (
    select
        spend_month,
        lead_source,
        spend_amount,
        currency,
        {{ period_start_date('spend_month') }} as month_start_date
    from marketing_spend
),

converted_spend as (
    select
        dated_spend.*,
        {{ convert_to_reporting('dated_spend.spend_amount', 'fx_rates') }} as spend_reporting
    from dated_spend
    left join fx_rates
        on {{ fx_rate_on('fx_rates', 'dated_spend.currency', 'dated_spend.month_start_date') }}
    where dated_spend.month_start_date <= {{ as_of_date() }}
),

spend as (
    {%- for grouping in ['lead_source', "'all'"] %}
    select
        spend_month,
        {{ dbt.cast(grouping, dbt.type_string()) }} as lead_source,
        -- null when a currency has no rate, rather than a silently short sum
        case when count(*) = count(spend_reporting) then sum(spend_reporting) end as spend_reporting
    from converted_spend
    group by spend_month{% if grouping == 'lead_source' %}, lead_source{% endif %}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

won as (
    {%- for grouping in ["coalesce(lead_source, " ~ missing_label() ~ ")", "'all'"] %}
    select
        closed_month as spend_month,
        {{ dbt.cast(grouping, dbt.type_string()) }} as lead_source,
        count(*) as won_deals,
        avg(amount_reporting) as avg_won_amount_reporting
    from deals
    where status_as_of = 'won'
    group by closed_month{% if not loop.last %}, {{ grouping }}{% endif %}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

costed as (
    select
        spend.spend_month,
        spend.lead_source,
        spend.spend_reporting,
        coalesce(won.won_deals, 0) as won_deals,
        won.avg_won_amount_reporting,
        {{ safe_divide('spend.spend_reporting', 'won.won_deals') }} as cac_reporting,
        {{ dbt.cast(margin_sql, type_double()) }} as gross_margin,
        won.avg_won_amount_reporting * {{ dbt.cast(margin_sql, type_double()) }} / {{ amount_months }}
            as monthly_margin_per_deal_reporting
    from spend
    left join won
        on spend.spend_month = won.spend_month
        and spend.lead_source = won.lead_source
),

final as (
    select
        spend_month,
        lead_source,
        spend_reporting,
        won_deals,
        cac_reporting,
        avg_won_amount_reporting,
        gross_margin,
        monthly_margin_per_deal_reporting,
        {{ safe_divide('cac_reporting', 'monthly_margin_per_deal_reporting') }} as payback_months,
        {{ reporting_currency() }} as reporting_currency
    from costed
)

select * from final
