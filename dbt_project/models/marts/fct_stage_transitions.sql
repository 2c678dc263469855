{#
  One row per stay of a deal in a stage, rebuilt from the stage events known at as_of.
  Events are ordered per deal by entered_at, then stage_order (then event_key, for determinism);
  consecutive events into the same stage are one stay (a re-export or a history row plus a
  snapshot diff of the same move). Only deals that existed at as_of are included.
#}

with

stage_events as (select * from {{ ref('int_stage_events') }}),
pipeline_stages as (select * from {{ ref('stg_crm__pipeline_stages') }}),
deals as (select * from {{ ref('int_deals_restated_as_of') }}),

known_events as (
    select
        stage_events.event_key,
        stage_events.deal_key,
        stage_events.pipeline,
        stage_events.stage,
        stage_events.entered_at,
        pipeline_stages.stage_order,
        pipeline_stages.stage_kind
    from stage_events
    inner join deals
        on stage_events.deal_key = deals.deal_key
    left join pipeline_stages
        on stage_events.pipeline = pipeline_stages.pipeline
        and stage_events.stage = pipeline_stages.stage
    where stage_events.entered_at <= {{ as_of_ts() }}
),

ordered_events as (
    select
        *,
        lag(pipeline) over (partition by deal_key order by entered_at, stage_order, event_key) as previous_pipeline,
        lag(stage) over (partition by deal_key order by entered_at, stage_order, event_key) as previous_stage
    from known_events
),

stays as (
    select *
    from ordered_events
    where previous_stage is null
        or stage <> previous_stage
        or pipeline <> previous_pipeline
),

sequenced as (
    select
        deal_key,
        pipeline,
        stage,
        stage_order,
        stage_kind,
        entered_at,
        row_number() over (partition by deal_key order by entered_at, stage_order, event_key) as stay_number,
        lead(entered_at) over (partition by deal_key order by entered_at, stage_order, event_key) as exited_at,
        lead(pipeline) over (partition by deal_key order by entered_at, stage_order, event_key) as next_pipeline,
        lead(stage) over (partition by deal_key order by entered_at, stage_order, event_key) as next_stage,
        lead(stage_order) over (partition by deal_key order by entered_at, stage_order, event_key) as next_stage_order
    from stays
),

final as (
    select
        deal_key,
        pipeline,
        stage,
        stage_order,
        stage_kind,
        stay_number,
        entered_at,
        exited_at,
        next_stage,
        coalesce(
            next_pipeline = pipeline and next_stage_order < stage_order,
            false
        ) as is_backward,
        case
            when stage_kind in ('won', 'lost') then null
            else {{ days_between('entered_at', 'coalesce(exited_at, ' ~ as_of_ts() ~ ')') }}
        end as days_in_stage,
        coalesce(exited_at is null and stage_kind = 'open', false) as is_open
    from sequenced
)

select * from final
