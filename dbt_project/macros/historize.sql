{#
  The CTEs (known_changes … final) that turn a deal attribute's change history into validity
  intervals [valid_from, valid_to), valid_to null = still valid at as_of. Expects import CTEs
  `deals` (int_deals_restated_as_of) and `history_cte` (deal_key, changed_at, the columns).
  Only changes known at as_of count. The first recorded value also covers the time before it
  (valid_from 1900-01-01): it is the earliest value known. A deal without history has one row
  with the newest export's values. `from_deal_when_null`: columns the deal's own value fills
  when the history row leaves them empty.
#}
{% macro historize_deal_values(history_cte, columns, from_deal_when_null=[]) %}
known_changes as (
    select
        {{ history_cte }}.deal_key,
        {{ history_cte }}.changed_at,
        {%- for column in columns %}
        {% if column in from_deal_when_null -%}
        coalesce({{ history_cte }}.{{ column }}, deals.{{ column }}) as {{ column }}
        {%- else -%}
        {{ history_cte }}.{{ column }}
        {%- endif %}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ history_cte }}
    inner join deals
        on {{ history_cte }}.deal_key = deals.deal_key
    where {{ history_cte }}.changed_at <= {{ as_of_ts() }}
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
        {%- for column in columns %}
        {{ column }},
        {%- endfor %}
        true as is_from_history
    from sequenced
),

without_history as (
    select
        deal_key,
        {{ dbt.cast(far_past_date(), dbt.type_timestamp()) }} as valid_from,
        {{ dbt.cast('null', dbt.type_timestamp()) }} as valid_to,
        {%- for column in columns %}
        {{ column }},
        {%- endfor %}
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
{% endmacro %}
