{# A 64-bit float. dbt.type_float() is a 32-bit REAL on DuckDB, too coarse for rates and ratios. #}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'voronka')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
    double precision
{%- endmacro %}


{# Seconds between two timestamps as fractional days. #}
{% macro days_between(start_ts, end_ts) -%}
    {{ dbt.cast(dbt.datediff(start_ts, end_ts, 'second'), voronka.type_double()) }} / 86400.0
{%- endmacro %}


{# Start of the open-ended past: the first FX rate of a currency is valid from here. #}
{% macro far_past_date() -%}
    {{ dbt.cast("'1900-01-01'", 'date') }}
{%- endmacro %}


{#
  A timestamp never before another, null staying null: the end of a duration that must not be
  negative, e.g. not_before('closed_at', 'created_at') for a close the source dated before the
  creation (kept as given in raw and flagged is_closed_before_created). greatest() is not used:
  DuckDB and PostgreSQL skip its nulls.
#}
{% macro not_before(ts_expr, floor_expr) -%}
    case when {{ ts_expr }} < {{ floor_expr }} then {{ floor_expr }} else {{ ts_expr }} end
{%- endmacro %}
