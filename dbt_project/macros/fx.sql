{#
  The one FX lookup: "the rate valid on this date". Every model that converts money joins
  int_fx_rates_triangulated (one row per currency and validity interval [valid_from, valid_to),
  valid_to null = still valid) through these macros, and Python reads the converted amounts from
  the marts (never the rates):

      left join fx_rates as fx
          on {{ fx_rate_on('fx', 'deals.currency', 'deals.closed_date') }}
      ...
      {{ convert_to_reporting('deals.amount', 'fx') }} as amount_reporting

  or, for the rates of every currency on one date (a join on currency follows):

      select currency, rate_to_reporting from fx_rates as fx where {{ fx_rate_valid_on('fx', some_date) }}

  A date before a currency's first rate takes that first rate; a date after its last rate takes
  the last one. A currency without any rate converts to null (the marts' data tests warn).
#}

{% macro fx_rate_valid_on(fx_alias, date_expr) -%}
    {{ date_expr }} >= {{ fx_alias }}.valid_from
    and ({{ fx_alias }}.valid_to is null or {{ date_expr }} < {{ fx_alias }}.valid_to)
{%- endmacro %}


{% macro fx_rate_on(fx_alias, currency_expr, date_expr) -%}
    {{ fx_alias }}.currency = {{ currency_expr }}
    and {{ voronka.fx_rate_valid_on(fx_alias, date_expr) }}
{%- endmacro %}


{% macro convert_to_reporting(amount_expr, fx_alias) -%}
    {{ dbt.cast(amount_expr, voronka.type_double()) }} * {{ fx_alias }}.rate_to_reporting
{%- endmacro %}


{#- The date a target converts at: its period's first day, or the as_of date for a period that
    starts after as_of (no rate is known for the future). -#}
{% macro target_rate_date(period_start_expr) -%}
    case when {{ period_start_expr }} <= {{ as_of_date() }} then {{ period_start_expr }} else {{ as_of_date() }} end
{%- endmacro %}
