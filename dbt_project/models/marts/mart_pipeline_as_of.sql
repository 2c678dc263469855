{#
  The open pipeline as it stood at var pipeline_date (default as_of; a bare date is the end of
  that day; a time after as_of is taken as as_of): every deal open then, in the stage it was in
  then, with the amount and expected close date valid then (value histories; the newest export's
  without them), converted at that date's rate. Rebuilt by the macro deals_as_of().

  It differs from mart_pipeline_snapshot (which describes as_of with the newest export's values)
  in that values come from the histories, and a deal without stage events whose export stage is
  a won/lost stage is placed in its pipeline's first open stage.
#}

{%- set at_text = point_in_time_var('pipeline_date', as_of_value()) -%}
{%- set at = timestamp_literal(at_text) %}

with

fx_rates as (select * from {{ ref('int_fx_rates_triangulated') }}),

rates_then as (
    select currency, rate_to_reporting
    from fx_rates
    where {{ fx_rate_valid_on('fx_rates', dbt.cast(at, 'date')) }}
),

deals_then as (
    select *
    from ({{ deals_as_of(at) }}) as deals_at
),

open_deals as (
    select *
    from deals_then
    where status_at = 'open'
),

final as (
    select
        open_deals.deal_key,
        open_deals.pipeline,
        open_deals.title,
        open_deals.owner,
        open_deals.lead_source,
        open_deals.segment,
        open_deals.region,
        open_deals.product,
        open_deals.stage_at as stage,
        open_deals.stage_order_at as stage_order,
        open_deals.crm_probability,
        open_deals.entered_stage_at,
        {{ days_between('open_deals.entered_stage_at', at) }} as days_in_stage,
        open_deals.created_at,
        open_deals.expected_close_date_at as expected_close_date,
        open_deals.amount_at as amount,
        open_deals.currency_at as currency,
        {{ convert_to_reporting('open_deals.amount_at', 'rates_then') }} as amount_reporting,
        {{ reporting_currency() }} as reporting_currency,
        open_deals.has_amount_history,
        open_deals.has_close_date_history,
        {{ at }} as pipeline_at
    from open_deals
    left join rates_then
        on open_deals.currency_at = rates_then.currency
)

select * from final
