{#
  Every stage event (all of time), with the creation events that a history of moves implies
  settled: amoCRM's events and Pipedrive's flow name the stage a deal left on its first move,
  which the reader writes as a `created` event one second before that move (key prefix 'crt-').
  Here it moves to the deal's created_at (when the deal is known and was created earlier), and it
  is dropped when the deal has an earlier event: then the file that implied it did not hold the
  deal's whole history, and the stage it names is not the one the deal was created in.
#}

with

stage_events as (select * from {{ ref('stg_crm__stage_events') }}),
deals as (select * from {{ ref('stg_crm__deals') }}),

first_other_events as (
    select
        deal_key,
        min(entered_at) as first_entered_at
    from stage_events
    where event_key not like 'crt-%'
    group by deal_key
),

settled as (
    select
        stage_events.event_key,
        stage_events.deal_key,
        stage_events.pipeline,
        stage_events.stage,
        case
            when stage_events.event_key like 'crt-%' and deals.created_at < stage_events.entered_at
                then deals.created_at
            else stage_events.entered_at
        end as entered_at,
        stage_events.event_origin,
        stage_events.export_file
    from stage_events
    left join deals
        on stage_events.deal_key = deals.deal_key
    left join first_other_events
        on stage_events.deal_key = first_other_events.deal_key
    where stage_events.event_key not like 'crt-%'
        or first_other_events.first_entered_at is null
        or stage_events.entered_at < first_other_events.first_entered_at
),

final as (
    select * from settled
)

select * from final
