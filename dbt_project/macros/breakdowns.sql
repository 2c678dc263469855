{#
  Breakdowns: the funnel marts are computed for every pipeline and, within it, for
    breakdown 'all'                      -> breakdown_value 'all'
    each attribute of funnel_breakdowns() -> the deal's value, '(none)' when missing
    breakdown 'created_week'             -> the Monday of the creation week, 'YYYY-MM-DD'
    breakdown 'created_month'            -> 'YYYY-MM' of creation
  (var funnel_breakdowns lists the attributes: default owner, lead_source, segment, region,
  product; the cohorts can be left out per mart).
#}

{# The attributes (fct_deals columns) to break down by. #}
{% macro funnel_breakdowns() %}
    {%- set names = var('funnel_breakdowns', ['owner', 'lead_source', 'segment', 'region', 'product']) -%}
    {%- set allowed = ['owner', 'lead_source', 'segment', 'region', 'product', 'source_system'] -%}
    {%- for name in names if name not in allowed -%}
        {{ exceptions.raise_compiler_error(
            "var funnel_breakdowns: '" ~ name ~ "' is not one of " ~ allowed | join(', ')) }}
    {%- endfor -%}
    {{ return(names) }}
{% endmacro %}


{# The label shown for a missing breakdown value. #}
{% macro missing_label() -%}
    '(none)'
{%- endmacro %}


{# [(breakdown name, SQL of its value over fct_deals' columns)], 'all' first. #}
{% macro breakdown_values(cohorts=true) %}
    {%- set values = [('all', "'all'")] -%}
    {%- for name in voronka.funnel_breakdowns() -%}
        {%- do values.append((name, 'coalesce(' ~ dbt.cast(name, dbt.type_string()) ~ ', ' ~ voronka.missing_label() ~ ')')) -%}
    {%- endfor -%}
    {%- if cohorts -%}
        {%- do values.append(('created_week', dbt.cast('created_week', dbt.type_string()))) -%}
        {%- do values.append(('created_month', 'created_month')) -%}
    {%- endif -%}
    {{ return(values) }}
{% endmacro %}


{#
  A union of aggregations of `relation` (with fct_deals' attribute columns), one per pipeline
  grouping and breakdown: columns pipeline, breakdown, breakdown_value, the `keys` (further group
  columns) and the `aggregates` (SQL, e.g. "count(*) as deals"). Each part is a plain GROUP BY
  over the relation, so nothing is fanned out row by row.
  pooled=true adds pipeline 'all' (every pipeline together).
#}
{% macro aggregate_by_breakdowns(relation, aggregates, keys=[], cohorts=true, pooled=false) -%}
    {%- set pipelines = ['pipeline', "'all'"] if pooled else ['pipeline'] -%}
    {%- set parts = [] -%}
    {%- for pipeline in pipelines -%}
        {%- for name, value in voronka.breakdown_values(cohorts) -%}
            {%- do parts.append((pipeline, name, value)) -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- for pipeline, name, value in parts %}
    select
        {{ dbt.cast(pipeline, dbt.type_string()) }} as pipeline,
        {{ dbt.cast("'" ~ name ~ "'", dbt.type_string()) }} as breakdown,
        {{ dbt.cast(value, dbt.type_string()) }} as breakdown_value,
        {%- for key in keys %}
        {{ key }},
        {%- endfor %}
        {{ aggregates }}
    from {{ relation }}
    {%- set group = [] -%}
    {%- if pipeline == 'pipeline' -%}{%- do group.append('pipeline') -%}{%- endif -%}
    {%- if name != 'all' -%}{%- do group.append(value) -%}{%- endif -%}
    {%- for key in keys -%}{%- do group.append(key) -%}{%- endfor -%}
    {%- if group %}
    group by {{ group | join(', ') }}
    {%- endif %}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
{%- endmacro %}


{#
  The stage shown for the deals lost at no known stage (no open stay before the loss and no open
  stage in the export): an explicit row of the funnel and losses marts, so they are not lost.
#}
{% macro unknown_stage_label() -%}
    '(stage unknown)'
{%- endmacro %}
