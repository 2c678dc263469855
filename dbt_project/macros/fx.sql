{#
  Currency conversion against int_fx_rates_triangulated (one row per currency and validity
  interval [valid_from, valid_to), valid_to null = still valid):

      left join fx_rates as fx
          on {{ fx_rate_on('fx', 'deals.currency', 'deals.closed_date') }}
      ...
      {{ convert_to_reporting('deals.amount', 'fx') }} as amount_reporting

  A date before a currency's first rate takes that first rate; a date after its last rate takes
  the last one. A currency without any rate converts to null (the marts' data tests warn).
#}

{% macro fx_rate_on(fx_alias, currency_expr, date_expr) -%}
    {{ fx_alias }}.currency = {{ currency_expr }}
    and {{ date_expr }} >= {{ fx_alias }}.valid_from
    and ({{ fx_alias }}.valid_to is null or {{ date_expr }} < {{ fx_alias }}.valid_to)
{%- endmacro %}


{% macro convert_to_reporting(amount_expr, fx_alias) -%}
    {{ dbt.cast(amount_expr, voronka.type_double()) }} * {{ fx_alias }}.rate_to_reporting
{%- endmacro %}
