{#
  Each deal's expected close date over time: one row per deal and validity interval
  [valid_from, valid_to) (valid_to null = still valid at as_of). From stg_crm__close_date_history,
  only changes known at as_of. The first recorded value also covers the time before it
  (valid_from 1900-01-01). A deal without history has one row: the newest export's date.
#}

with

deals as (select * from {{ ref('int_deals_restated_as_of') }}),
close_date_history as (select * from {{ ref('stg_crm__close_date_history') }}),

known_changes as (
    select
        close_date_history.deal_key,
        close_date_history.changed_at,
        close_date_history.expected_close_date
    from close_date_history
    inner join deals
        on close_date_history.deal_key = deals.deal_key
    where close_date_history.changed_at <= {{ as_of_ts() }}
),

sequenced as (
    select
        *,
        row_number() over (partition by deal_key order by changed_at) as change_number,
        lead(changed_at) over (partition by deal_key order by changed_at) as next_changed_at
    from known_changes
),

historized as (
    select
        deal_key,
        case
            when change_number = 1 then {{ dbt.cast(far_past_date(), dbt.type_timestamp()) }}
            else changed_at
        end as valid_from,
        next_changed_at as valid_to,
        expected_close_date,
        true as is_from_history
    from sequenced
),

without_history as (
    select
        deal_key,
        {{ dbt.cast(far_past_date(), dbt.type_timestamp()) }} as valid_from,
        {{ dbt.cast('null', dbt.type_timestamp()) }} as valid_to,
        expected_close_date,
        false as is_from_history
    from deals
    where not exists (
        select 1
        from known_changes
        where known_changes.deal_key = deals.deal_key
    )
),

final as (
    select * from historized
    union all
    select * from without_history
)

select * from final
