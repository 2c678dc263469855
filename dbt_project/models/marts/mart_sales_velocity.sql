{#
  Average won deal size and sales velocity per pipeline (plus 'all') and breakdown (no cohorts).

  Over the trailing window (var trailing_days, 365 days up to as_of): win rate = won / (won +
  lost) of the deals closed in the window; average won amount = mean amount (reporting currency,
  close-date rate) of the deals won in the window, deals without a converted amount left out.
  Sales cycle = the Kaplan–Meier median of mart_sales_cycles (all deals, open ones censored).
  Velocity = open deals x win rate x average won amount / sales cycle days: money per day.
#}

with

deals as (select * from {{ ref('fct_deals') }}),
sales_cycles as (select * from {{ ref('mart_sales_cycles') }}),

windowed_deals as (
    select
        deals.*,
        case
            when deals.closed_at_as_of > {{ dbt.dateadd('day', -1 * var('trailing_days', 365), as_of_ts()) }}
                then 1
            else 0
        end as is_closed_in_window
    from deals
),

aggregated as (
    {{ aggregate_by_breakdowns('windowed_deals', "
        sum(case when status_as_of = 'open' then 1 else 0 end) as open_deals,
        sum(case when status_as_of = 'open' then amount_reporting end) as open_amount_reporting,
        sum(case when is_closed_in_window = 1 and status_as_of = 'won' then 1 else 0 end) as won_deals_in_window,
        sum(case when is_closed_in_window = 1 and status_as_of = 'lost' then 1 else 0 end) as lost_deals_in_window,
        avg(case when is_closed_in_window = 1 and status_as_of = 'won' then amount_reporting end)
            as avg_won_amount_reporting,
        sum(case when is_closed_in_window = 1 and status_as_of = 'won' then amount_reporting end)
            as won_amount_reporting_in_window",
        cohorts=false, pooled=true) }}
),

rated as (
    select
        aggregated.*,
        {{ safe_divide('aggregated.won_deals_in_window',
                       'aggregated.won_deals_in_window + aggregated.lost_deals_in_window') }} as win_rate,
        sales_cycles.median_sales_cycle_days as sales_cycle_days
    from aggregated
    left join sales_cycles
        on aggregated.pipeline = sales_cycles.pipeline
        and aggregated.breakdown = sales_cycles.breakdown
        and aggregated.breakdown_value = sales_cycles.breakdown_value
),

final as (
    select
        pipeline,
        breakdown,
        breakdown_value,
        {{ dbt.cast('open_deals', dbt.type_bigint()) }} as open_deals,
        open_amount_reporting,
        {{ dbt.cast('won_deals_in_window', dbt.type_bigint()) }} as won_deals_in_window,
        {{ dbt.cast('lost_deals_in_window', dbt.type_bigint()) }} as lost_deals_in_window,
        win_rate,
        won_amount_reporting_in_window,
        avg_won_amount_reporting,
        sales_cycle_days,
        case
            when sales_cycle_days > 0
                then open_deals * win_rate * avg_won_amount_reporting / sales_cycle_days
        end as velocity_per_day_reporting,
        {{ var('trailing_days', 365) }} as trailing_days,
        {{ reporting_currency() }} as reporting_currency
    from rated
)

select * from final
