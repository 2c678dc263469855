{#
  Rates to the reporting currency R, one row per currency and validity interval.

  raw.fx_rates says 1 `currency` = `rate` `quote_currency` (Q). On each rate_date and for each Q:
      rate_to_reporting(c) = rate(c -> Q) / rate(R -> Q),  with rate(Q -> Q) = 1,
  so a source quoting everything in USD serves any reporting currency it also quotes. When a
  currency can be triangulated through several quote currencies on a day, a direct quote in R
  wins, then the alphabetically first Q. R itself is 1 at all times.

  A rate is valid from its rate_date until the next rate_date of the same currency (exclusive);
  the first rate also covers every earlier date. Rates after as_of are not seen.
#}

with

fx_rates as (select * from {{ ref('stg_crm__fx_rates') }}),

known_rates as (
    select rate_date, currency, quote_currency, rate
    from fx_rates
    where rate_date <= {{ as_of_date() }}
        and currency <> quote_currency
),

quoted as (
    select rate_date, quote_currency, currency, rate
    from known_rates

    union all

    select distinct rate_date, quote_currency, quote_currency as currency, 1.0 as rate
    from known_rates
),

reporting_anchors as (
    select rate_date, quote_currency, rate as reporting_rate
    from quoted
    where currency = {{ reporting_currency() }}
),

triangulated as (
    select
        quoted.rate_date,
        quoted.currency,
        quoted.quote_currency,
        {{ dbt.cast('quoted.rate', type_double()) }} / reporting_anchors.reporting_rate as rate_to_reporting,
        row_number() over (
            partition by quoted.currency, quoted.rate_date
            order by
                case when quoted.quote_currency = {{ reporting_currency() }} then 0 else 1 end,
                quoted.quote_currency
        ) as preference
    from quoted
    inner join reporting_anchors
        on quoted.rate_date = reporting_anchors.rate_date
        and quoted.quote_currency = reporting_anchors.quote_currency
    where quoted.currency <> {{ reporting_currency() }}
),

daily_rates as (
    select rate_date, currency, quote_currency, rate_to_reporting
    from triangulated
    where preference = 1
),

intervals as (
    select
        currency,
        rate_date,
        quote_currency,
        rate_to_reporting,
        case
            when row_number() over (partition by currency order by rate_date) = 1
                then {{ far_past_date() }}
            else rate_date
        end as valid_from,
        lead(rate_date) over (partition by currency order by rate_date) as valid_to
    from daily_rates
),

reporting_currency_itself as (
    select
        {{ reporting_currency() }} as currency,
        {{ dbt.cast('null', 'date') }} as rate_date,
        {{ reporting_currency() }} as quote_currency,
        {{ dbt.cast('1.0', type_double()) }} as rate_to_reporting,
        {{ far_past_date() }} as valid_from,
        {{ dbt.cast('null', 'date') }} as valid_to
),

unioned as (
    select * from intervals
    union all
    select * from reporting_currency_itself
),

final as (
    select
        currency,
        rate_date,
        quote_currency,
        rate_to_reporting,
        {{ reporting_currency() }} as reporting_currency,
        valid_from,
        valid_to
    from unioned
)

select * from final
