{#
  The stage events the models and the forecast read (voronka.warehouse_reads.canonical_frames):
  every event of int_stage_events (creation events settled), of all time, for the deals of
  ml_deals only (events of deleted or merged deals are left out with their deals).
#}

with

stage_events as (select * from {{ ref('int_stage_events') }}),
deals as (select * from {{ ref('ml_deals') }}),

final as (
    select
        stage_events.event_key,
        stage_events.deal_key,
        stage_events.pipeline,
        stage_events.stage,
        stage_events.entered_at,
        stage_events.event_origin
    from stage_events
    inner join deals
        on stage_events.deal_key = deals.deal_key
)

select * from final
