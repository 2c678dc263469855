{#
  The analysis time. Every model sees only what was known at or before it:
  events after it are ignored, a deal closed after it is open, a deal created after it does not exist.

  var('as_of') is a UTC timestamp string 'YYYY-MM-DD HH:MM:SS' (a bare 'YYYY-MM-DD' means midnight).
  Without it: the run's setting (voronka_run.settings, which the orchestrator writes before its
  build), else the newest timestamp in the raw data (max of deals.exported_at / created_at /
  closed_at and stage_events.entered_at); both read at run time; with no data at all, now (UTC).
  The orchestrator passes the as_of as data, not as a var: a var that changes every day makes
  dbt parse the whole project again on every run.
#}

{% macro as_of_ts() -%}
    {{ dbt.cast("'" ~ voronka.as_of_value() ~ "'", dbt.type_timestamp()) }}
{%- endmacro %}


{% macro as_of_date() -%}
    {{ dbt.cast(voronka.as_of_ts(), 'date') }}
{%- endmacro %}


{% macro as_of_value() %}
    {%- set given = var('as_of', none) -%}
    {%- if given is none or (given | string | trim) == '' -%}
        {%- set given = voronka.run_setting('as_of') -%}
    {%- endif -%}
    {%- if given is not none and (given | string | trim) != '' -%}
        {%- set text = given | string | trim -%}
        {%- if modules.re.match('^\d{4}-\d{2}-\d{2}$', text) -%}
            {%- set text = text ~ ' 00:00:00' -%}
        {%- endif -%}
        {%- if not modules.re.match('^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}$', text) -%}
            {{ exceptions.raise_compiler_error(
                "var as_of must be 'YYYY-MM-DD HH:MM:SS' (UTC), got '" ~ text ~ "'") }}
        {%- endif -%}
        {{ return(text | replace('T', ' ')) }}
    {%- endif -%}
    {{ return(voronka.newest_raw_timestamp()) }}
{% endmacro %}


{% macro newest_raw_timestamp() %}
    {#- Only at execution: parsing must not query the warehouse. The relations are looked up in
        the graph (not with source()) so that models using as_of_ts() do not depend on sources. -#}
    {%- if not execute -%}
        {{ return('1970-01-01 00:00:00') }}
    {%- endif -%}
    {%- set relations = {} -%}
    {%- for node in graph.sources.values() if node.source_name == 'raw' -%}
        {%- do relations.update({node.name: node.relation_name}) -%}
    {%- endfor -%}
    {%- set query -%}
        select max(newest_at) from (
            select max(exported_at) as newest_at from {{ relations['deals'] }}
            union all select max(created_at) from {{ relations['deals'] }}
            union all select max(closed_at) from {{ relations['deals'] }}
            union all select max(entered_at) from {{ relations['stage_events'] }}
        ) as newest
    {%- endset -%}
    {%- set newest = run_query(query).columns[0].values()[0] -%}
    {%- if newest is none -%}
        {%- set newest = modules.datetime.datetime.utcnow() -%}
    {%- endif -%}
    {{ return(newest.strftime('%Y-%m-%d %H:%M:%S')) }}
{% endmacro %}


{% macro reporting_currency() -%}
    {%- set given = var('reporting_currency', none) -%}
    {%- if given is none or (given | string | trim) == '' -%}
        {%- set given = voronka.run_setting('reporting_currency') or 'USD' -%}
    {%- endif -%}
    {%- set currency = given | string | trim | upper -%}
    {%- if not modules.re.match('^[A-Z]{3}$', currency) -%}
        {{ exceptions.raise_compiler_error(
            "var reporting_currency must be an ISO-4217 code such as USD, got '" ~ currency ~ "'") }}
    {%- endif -%}
    '{{ currency }}'
{%- endmacro %}


{#
  A value of the run's settings (the one row of voronka_run.settings: as_of, reporting_currency),
  or none: while parsing, when the table is absent (a build by hand, PostgreSQL) or empty.
#}
{% macro run_setting(name) %}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set relation = adapter.get_relation(database=target.database, schema='voronka_run', identifier='settings') -%}
    {%- if relation is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set values = run_query('select ' ~ name ~ ' from ' ~ relation).columns[0].values() -%}
    {{ return(values[0] if values | length > 0 and values[0] is not none else none) }}
{% endmacro %}


{#
  A source table that older warehouses may not have yet (the value histories): the relation when
  it exists, else an empty relation with the given columns ({name: type}), so the models build
  and the marts say "no history" instead of failing.
#}
{% macro source_or_empty(source_name, table_name, columns) -%}
    {%- set relation = source(source_name, table_name) -%}
    {%- if execute and load_relation(relation) is none -%}
        (
            select
            {%- for name, type in columns.items() %}
                {{ dbt.cast('null', type) }} as {{ name }}{% if not loop.last %},{% endif %}
            {%- endfor %}
            where 1 = 0
        )
    {%- else -%}
        {{ relation }}
    {%- endif -%}
{%- endmacro %}
