{#
  Each deal's expected close date over time: one row per deal and validity interval
  [valid_from, valid_to) (valid_to null = still valid at as_of), from
  stg_crm__close_date_history as known at as_of; see the historize_deal_values macro.
#}

with

deals as (select * from {{ ref('int_deals_restated_as_of') }}),
close_date_history as (select * from {{ ref('stg_crm__close_date_history') }}),

{{ historize_deal_values('close_date_history', ['expected_close_date']) }}

select * from final
