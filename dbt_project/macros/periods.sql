{#
  Reporting periods: months labelled 'YYYY-MM', quarters labelled 'YYYY-Qn'.
  The default implementations use only extract/lpad/substr/concat/cast (PostgreSQL, DuckDB,
  Snowflake...); an engine without them gets its own `<adapter>__` version.
#}

{# The label of the period of `grain` ('month' | 'quarter') holding the date/timestamp `date_expr`. #}
{% macro period_label(grain, date_expr) -%}
    {{ return(adapter.dispatch('period_label', 'voronka')(grain, date_expr)) }}
{%- endmacro %}

{% macro default__period_label(grain, date_expr) -%}
    {%- set year = dbt.cast('extract(year from ' ~ date_expr ~ ')', 'integer') -%}
    {%- if grain == 'month' -%}
        {%- set month = dbt.cast('extract(month from ' ~ date_expr ~ ')', 'integer') -%}
        {{ dbt.concat([dbt.cast(year, dbt.type_string()), "'-'",
                       "lpad(" ~ dbt.cast(month, dbt.type_string()) ~ ", 2, '0')"]) }}
    {%- elif grain == 'quarter' -%}
        {%- set quarter = dbt.cast('extract(quarter from ' ~ date_expr ~ ')', 'integer') -%}
        {{ dbt.concat([dbt.cast(year, dbt.type_string()), "'-Q'", dbt.cast(quarter, dbt.type_string())]) }}
    {%- else -%}
        {{ exceptions.raise_compiler_error("period grain must be 'month' or 'quarter', got '" ~ grain ~ "'") }}
    {%- endif -%}
{%- endmacro %}


{# 'month' or 'quarter' for a label; null for anything else. #}
{% macro period_grain_of(label) -%}
    case
        when {{ label }} like '____-Q_' then 'quarter'
        when {{ label }} like '____-__' then 'month'
    end
{%- endmacro %}


{# The first day of the period a label names ('2026-02' -> 2026-02-01, '2026-Q2' -> 2026-04-01). #}
{% macro period_start_date(label) -%}
    {{ return(adapter.dispatch('period_start_date', 'voronka')(label)) }}
{%- endmacro %}

{% macro default__period_start_date(label) -%}
    {%- set year = 'substr(' ~ label ~ ', 1, 4)' -%}
    {%- set quarter = dbt.cast('substr(' ~ label ~ ', 7, 1)', 'integer') -%}
    {%- set quarter_month = dbt.cast('(' ~ quarter ~ ' - 1) * 3 + 1', dbt.type_string()) -%}
    case
        when {{ label }} like '____-Q_' then
            {{ dbt.cast(dbt.concat([year, "'-'", "lpad(" ~ quarter_month ~ ", 2, '0')", "'-01'"]), 'date') }}
        when {{ label }} like '____-__' then
            {{ dbt.cast(dbt.concat([label, "'-01'"]), 'date') }}
    end
{%- endmacro %}


{#- The day after a period (a month or a quarter) that starts on start_date. -#}
{% macro period_end_date(grain_expr, start_date_expr) -%}
    case
        when {{ grain_expr }} = 'quarter' then {{ dbt.cast(dbt.dateadd('month', 3, start_date_expr), 'date') }}
        else {{ dbt.cast(dbt.dateadd('month', 1, start_date_expr), 'date') }}
    end
{%- endmacro %}
