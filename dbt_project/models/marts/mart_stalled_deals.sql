{#
  Stalled deals: the deals open at as_of whose time in their current stage is above the p90 of
  that stage's stays (Kaplan–Meier over all stays of the pipeline, mart_time_in_stage, breakdown
  'all'). Deals without stage events (no entry time) and stages without a p90 are not judged.
#}

with

snapshot as (select * from {{ ref('mart_pipeline_snapshot') }}),
time_in_stage as (select * from {{ ref('mart_time_in_stage') }}),

stage_norms as (
    select pipeline, stage, median_days_in_stage, p90_days_in_stage
    from time_in_stage
    where breakdown = 'all'
),

final as (
    select
        snapshot.deal_key,
        snapshot.pipeline,
        snapshot.owner,
        snapshot.stage,
        snapshot.stage_order,
        snapshot.entered_stage_at,
        snapshot.days_in_stage,
        stage_norms.median_days_in_stage,
        stage_norms.p90_days_in_stage,
        snapshot.days_in_stage - stage_norms.p90_days_in_stage as days_over_p90,
        snapshot.expected_close_date,
        snapshot.amount,
        snapshot.currency,
        snapshot.amount_reporting,
        snapshot.reporting_currency,
        snapshot.as_of
    from snapshot
    inner join stage_norms
        on snapshot.pipeline = stage_norms.pipeline
        and snapshot.stage = stage_norms.stage
    where snapshot.days_in_stage > stage_norms.p90_days_in_stage
)

select * from final
