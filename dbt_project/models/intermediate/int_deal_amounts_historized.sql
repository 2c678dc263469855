{#
  Each deal's amount over time: one row per deal and validity interval [valid_from, valid_to)
  (valid_to null = still valid at as_of), from stg_crm__amount_history as known at as_of; see
  the historize_deal_values macro. A history row without a currency is in the deal's currency.
#}

with

deals as (select * from {{ ref('int_deals_restated_as_of') }}),
amount_history as (select * from {{ ref('stg_crm__amount_history') }}),

{{ historize_deal_values('amount_history', ['amount', 'currency'], from_deal_when_null=['currency']) }}

select * from final
