{#
  How each deal changed between two points in time: var from_date and var to_date (defaults: 7
  days before to, and as_of; a bare date is the end of that day; nothing after as_of is seen).
  One row per deal that was open at from or at to, or was created in between. Both states come
  from the macro deals_as_of() (stage events, value histories, closes).

  Amounts at both points convert at the to date's rate, so a currency move is not a change.
  Pushes and pull-ins are judged against a close period (var changes_period, 'YYYY-MM' or
  'YYYY-Qn'; default the quarter holding to): pushed = expected to close in it at from, still
  open at to but expected outside it; pulled in = open at from expecting to close outside it,
  expected inside it at to. Without value histories (raw.close_date_history,
  raw.amount_history) the amount and expected close are the newest export's at both points, so
  no push, pull-in or amount change can be seen: has_amount_history / has_close_date_history
  say which deals had them.
#}

{%- set window = changes_window() -%}
{%- set from_at = timestamp_literal(window['from']) -%}
{%- set to_at = timestamp_literal(window['to']) -%}
{%- set period_start = dbt.cast("'" ~ window['period_start'] ~ "'", 'date') -%}
{%- set period_end = dbt.cast("'" ~ window['period_end'] ~ "'", 'date') %}

with

fx_rates as (select * from {{ ref('int_fx_rates_triangulated') }}),

rates_at_to as (
    select currency, rate_to_reporting
    from fx_rates
    where {{ fx_rate_valid_on('fx_rates', dbt.cast(to_at, 'date')) }}
),

deals_at_from as (
    select *
    from ({{ deals_as_of(from_at) }}) as deals_then
),

deals_at_to as (
    select *
    from ({{ deals_as_of(to_at) }}) as deals_now
),

paired as (
    select
        deals_at_to.deal_key,
        deals_at_to.pipeline,
        deals_at_to.owner,
        deals_at_to.created_at,
        coalesce(deals_at_from.status_at, 'not_created') as status_from,
        deals_at_to.status_at as status_to,
        deals_at_from.stage_at as stage_from,
        deals_at_from.stage_order_at as stage_order_from,
        deals_at_to.stage_at as stage_to,
        deals_at_to.stage_order_at as stage_order_to,
        deals_at_from.amount_at as amount_from,
        deals_at_from.currency_at as currency_from,
        deals_at_to.amount_at as amount_to,
        deals_at_to.currency_at as currency_to,
        deals_at_from.expected_close_date_at as expected_close_date_from,
        deals_at_to.expected_close_date_at as expected_close_date_to,
        deals_at_to.has_amount_history,
        deals_at_to.has_close_date_history
    from deals_at_to
    left join deals_at_from
        on deals_at_to.deal_key = deals_at_from.deal_key
    where deals_at_from.deal_key is null
        or deals_at_from.status_at = 'open'
        or deals_at_to.status_at = 'open'
),

converted as (
    select
        paired.*,
        {{ convert_to_reporting('paired.amount_from', 'fx_from') }} as amount_from_reporting,
        {{ convert_to_reporting('paired.amount_to', 'fx_to') }} as amount_to_reporting,
        paired.status_from = 'open' as is_open_from,
        paired.status_to = 'open' as is_open_to,
        coalesce(
            paired.status_from = 'open'
            and paired.expected_close_date_from >= {{ period_start }}
            and paired.expected_close_date_from < {{ period_end }},
            false
        ) as is_in_period_from,
        coalesce(
            paired.status_to = 'open'
            and paired.expected_close_date_to >= {{ period_start }}
            and paired.expected_close_date_to < {{ period_end }},
            false
        ) as is_in_period_to
    from paired
    left join rates_at_to as fx_from
        on paired.currency_from = fx_from.currency
    left join rates_at_to as fx_to
        on paired.currency_to = fx_to.currency
),

flagged as (
    select
        converted.*,
        status_from = 'not_created' as is_new,
        status_from <> 'won' and status_to = 'won' as is_won,
        status_from <> 'lost' and status_to = 'lost' as is_lost,
        status_from <> 'unknown' and status_to = 'unknown' as is_closed_unknown,
        status_from in ('won', 'lost', 'unknown') and status_to = 'open' as is_reopened,
        coalesce(is_open_from and is_open_to and stage_order_to > stage_order_from, false) as is_advanced,
        coalesce(is_open_from and is_open_to and stage_order_to < stage_order_from, false) as is_moved_back,
        is_in_period_from and is_open_to and not is_in_period_to as is_pushed,
        is_open_from and not is_in_period_from and is_in_period_to as is_pulled_in,
        coalesce(
            is_open_from and is_open_to
            and (
                coalesce(amount_from <> amount_to, amount_from is not null or amount_to is not null)
                or coalesce(currency_from <> currency_to, false)
            ),
            false
        ) as is_amount_changed
    from converted
),

final as (
    select
        deal_key,
        pipeline,
        owner,
        created_at,
        status_from,
        status_to,
        stage_from,
        stage_order_from,
        stage_to,
        stage_order_to,
        amount_from,
        currency_from,
        amount_to,
        currency_to,
        amount_from_reporting,
        amount_to_reporting,
        case
            when is_open_from and is_open_to then coalesce(amount_to_reporting, 0) - coalesce(amount_from_reporting, 0)
        end as amount_change_reporting,
        expected_close_date_from,
        expected_close_date_to,
        is_open_from,
        is_open_to,
        is_in_period_from,
        is_in_period_to,
        is_new,
        is_won,
        is_lost,
        is_closed_unknown,
        is_reopened,
        is_advanced,
        is_moved_back,
        is_pushed,
        is_pulled_in,
        is_amount_changed,
        case
            when is_new then 'new'
            when is_won then 'won'
            when is_lost then 'lost'
            when is_closed_unknown then 'closed_unknown'
            when is_reopened then 'reopened'
            when is_pushed then 'pushed'
            when is_pulled_in then 'pulled_in'
            when is_advanced then 'advanced'
            when is_moved_back then 'moved_back'
            when is_amount_changed then 'amount_changed'
            else 'unchanged'
        end as change_type,
        has_amount_history,
        has_close_date_history,
        {{ from_at }} as from_at,
        {{ to_at }} as to_at,
        '{{ window['period'] }}' as close_period,
        {{ reporting_currency() }} as reporting_currency
    from flagged
)

select * from final
