{#
  The deals the models and the forecast read (voronka.warehouse_reads.canonical_frames): every
  deal in the warehouse, of all time (the models cut at their own as-of dates), without the deals
  the CRM marks deleted or merged (stg_crm__deals leaves them out, as for every mart), with the
  amount in the reporting currency at the as_of date's rate: one rate per currency, so that a
  currency move does not look like a change of deal size between the dates the models learn from.
#}

with

deals as (select * from {{ ref('stg_crm__deals') }}),
fx_rates as (select * from {{ ref('int_fx_rates_triangulated') }}),

final as (
    select
        deals.deal_key,
        deals.source_system,
        deals.native_id,
        deals.pipeline,
        deals.title,
        deals.owner,
        deals.lead_source,
        deals.segment,
        deals.region,
        deals.product,
        deals.amount,
        deals.currency,
        {{ convert_to_reporting('deals.amount', 'fx_rates') }} as amount_reporting,
        {{ reporting_currency() }} as reporting_currency,
        deals.created_at,
        deals.expected_close_date,
        deals.closed_at,
        deals.outcome,
        deals.lost_reason,
        deals.current_stage,
        deals.is_close_date_only,
        deals.is_closed_before_created,
        deals.is_created_at_missing,
        deals.attributes,
        deals.export_file,
        deals.exported_at,
        {{ as_of_ts() }} as as_of
    from deals
    left join fx_rates
        on {{ fx_rate_on('fx_rates', 'deals.currency', as_of_date()) }}
)

select * from final
