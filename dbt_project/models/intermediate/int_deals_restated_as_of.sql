{#
  The deals as they stood at as_of: only deals created at or before it; a deal counts as won,
  lost or closed with an unknown outcome only if it closed at or before as_of, otherwise it is
  open (its closed_at is hidden). Attributes (amount, stage, owner...) are the newest export's:
  raw.deals keeps no history of them. closed_at_as_of is the close as the source gave it (it may
  be before created_at, flagged is_closed_before_created); durations use
  greatest(closed_at_as_of, created_at).
#}

with

deals as (select * from {{ ref('stg_crm__deals') }}),

existing as (
    select *
    from deals
    where created_at <= {{ as_of_ts() }}
),

restated as (
    select
        *,
        case
            when outcome in ('won', 'lost', 'unknown') and closed_at <= {{ as_of_ts() }} then closed_at
        end as closed_at_as_of
    from existing
),

final as (
    select
        deal_key,
        source_system,
        native_id,
        pipeline,
        title,
        owner,
        lead_source,
        segment,
        region,
        product,
        amount,
        currency,
        created_at,
        expected_close_date,
        current_stage,
        case when closed_at_as_of is not null then outcome else 'open' end as status_as_of,
        closed_at_as_of,
        case when closed_at_as_of is not null and outcome = 'lost' then lost_reason end as lost_reason_as_of,
        is_close_date_only,
        is_closed_before_created,
        is_created_at_missing
    from restated
)

select * from final
