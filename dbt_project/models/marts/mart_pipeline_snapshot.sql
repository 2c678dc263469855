{#
  The open pipeline as it stood at as_of: every deal created by then and not closed by then, in
  the stage it was in at as_of (its last stay by then; the export's current_stage if it has no
  stage events). Amounts are converted at the as_of date's rate.
#}

with

deals as (select * from {{ ref('int_deals_restated_as_of') }}),
transitions as (select * from {{ ref('fct_stage_transitions') }}),
pipeline_stages as (select * from {{ ref('stg_crm__pipeline_stages') }}),
fx_rates as (select * from {{ ref('int_fx_rates_triangulated') }}),

open_deals as (
    select *
    from deals
    where status_as_of = 'open'
),

ranked_stays as (
    select
        deal_key,
        pipeline,
        stage,
        entered_at,
        row_number() over (partition by deal_key order by stay_number desc) as recency
    from transitions
),

last_stays as (
    select deal_key, pipeline, stage, entered_at
    from ranked_stays
    where recency = 1
),

positioned as (
    select
        open_deals.*,
        coalesce(last_stays.pipeline, open_deals.pipeline) as stage_pipeline,
        coalesce(last_stays.stage, open_deals.current_stage) as stage,
        last_stays.entered_at as entered_stage_at
    from open_deals
    left join last_stays
        on open_deals.deal_key = last_stays.deal_key
),

final as (
    select
        positioned.deal_key,
        positioned.pipeline,
        positioned.title,
        positioned.owner,
        positioned.lead_source,
        positioned.segment,
        positioned.region,
        positioned.product,
        positioned.stage,
        pipeline_stages.stage_order,
        pipeline_stages.crm_probability,
        positioned.entered_stage_at,
        {{ days_between('positioned.entered_stage_at', as_of_ts()) }} as days_in_stage,
        positioned.created_at,
        positioned.expected_close_date,
        positioned.amount,
        positioned.currency,
        {{ convert_to_reporting('positioned.amount', 'fx_rates') }} as amount_reporting,
        {{ reporting_currency() }} as reporting_currency,
        {{ as_of_ts() }} as as_of
    from positioned
    left join pipeline_stages
        on positioned.stage_pipeline = pipeline_stages.pipeline
        and positioned.stage = pipeline_stages.stage
    left join fx_rates
        on {{ fx_rate_on('fx_rates', 'positioned.currency', as_of_date()) }}
)

select * from final
