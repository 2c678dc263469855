{#
  Time travel: the state of every deal at a point in time t <= as_of, rebuilt from what was
  known at as_of (stage events, value histories, closes).

  Points in time come from vars (pipeline_date, from_date, to_date) as 'YYYY-MM-DD' (= the end
  of that day, 23:59:59) or 'YYYY-MM-DD HH:MM:SS' (UTC). A point after as_of is taken as as_of:
  nothing later is known.
#}

{# The text 'YYYY-MM-DD HH:MM:SS' of a point-in-time var, or of `default_text` when unset. #}
{% macro point_in_time_var(name, default_text) %}
    {%- set given = var(name, none) -%}
    {%- if given is none or (given | string | trim) == '' -%}
        {%- set text = default_text -%}
    {%- else -%}
        {%- set text = given | string | trim -%}
        {%- if modules.re.match('^\d{4}-\d{2}-\d{2}$', text) -%}
            {%- set text = text ~ ' 23:59:59' -%}
        {%- endif -%}
        {%- if not modules.re.match('^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}$', text) -%}
            {{ exceptions.raise_compiler_error(
                "var " ~ name ~ " must be 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS' (UTC), got '" ~ text ~ "'") }}
        {%- endif -%}
        {%- set text = text | replace('T', ' ') -%}
    {%- endif -%}
    {%- set as_of = voronka.as_of_value() -%}
    {{ return(as_of if text > as_of else text) }}
{% endmacro %}


{# The text of a timestamp `days` days before the timestamp text `text`. #}
{% macro shift_timestamp_text(text, days) %}
    {%- set moment = modules.datetime.datetime.strptime(text, '%Y-%m-%d %H:%M:%S') -%}
    {{ return((moment + modules.datetime.timedelta(days=days)).strftime('%Y-%m-%d %H:%M:%S')) }}
{% endmacro %}


{#
  The window of mart_pipeline_changes: to = var to_date (default as_of), from = var from_date
  (default 7 days before to), and the close period pushes and pull-ins are judged against:
  var changes_period ('YYYY-MM' or 'YYYY-Qn'; default the quarter holding `to`).
  Returns {from, to, period, period_start, period_end} (texts; period_end exclusive).
#}
{% macro changes_window() %}
    {%- set to_text = voronka.point_in_time_var('to_date', voronka.as_of_value()) -%}
    {%- set from_text = voronka.point_in_time_var('from_date', voronka.shift_timestamp_text(to_text, -7)) -%}
    {%- if from_text > to_text -%}
        {{ exceptions.raise_compiler_error(
            "var from_date (" ~ from_text ~ ") must not be after to_date (" ~ to_text ~ ")") }}
    {%- endif -%}
    {%- set period = var('changes_period', none) -%}
    {%- if period is none or (period | string | trim) == '' -%}
        {%- set period = to_text[:4] ~ '-Q' ~ (((to_text[5:7] | int) - 1) // 3 + 1) -%}
    {%- endif -%}
    {%- set period = period | string | trim | upper -%}
    {%- set year = period[:4] | int if modules.re.match('^\d{4}-', period) else none -%}
    {%- if modules.re.match('^\d{4}-Q[1-4]$', period) -%}
        {%- set first_month = ((period[6:] | int) - 1) * 3 + 1 -%}
        {%- set months = 3 -%}
    {%- elif modules.re.match('^\d{4}-(0[1-9]|1[0-2])$', period) -%}
        {%- set first_month = period[5:] | int -%}
        {%- set months = 1 -%}
    {%- else -%}
        {{ exceptions.raise_compiler_error(
            "var changes_period must be 'YYYY-MM' or 'YYYY-Qn', got '" ~ period ~ "'") }}
    {%- endif -%}
    {%- set end_index = year * 12 + first_month - 1 + months -%}
    {%- set start = '%04d-%02d-01' % (year, first_month) -%}
    {%- set end = '%04d-%02d-01' % (end_index // 12, end_index % 12 + 1) -%}
    {{ return({'from': from_text, 'to': to_text, 'period': period, 'period_start': start, 'period_end': end}) }}
{% endmacro %}


{# A timestamp literal from 'YYYY-MM-DD HH:MM:SS' text. #}
{% macro timestamp_literal(text) -%}
    {{ dbt.cast("'" ~ text ~ "'", dbt.type_timestamp()) }}
{%- endmacro %}


{#
  A subquery: every deal that existed at `at` (a timestamp SQL expression, at or before as_of)
  with its state at that time.

  - status_at: won/lost/unknown (closed, outcome not known) if the deal closed at or before
    `at`; also won/lost/unknown if its last stage at `at` was a won/lost/unknown stage that it
    left later (closed then, reopened afterwards); otherwise open.
  - stage_at: the last stage entered at or before `at`. Without stage events: the export's
    current_stage if it is an open stage, else the pipeline's first open stage (an eventless
    deal that is closed now was somewhere in the open part before; its stage then is unknown).
  - amount_at / currency_at / expected_close_date_at: the value history's value valid at `at`
    (int_deal_amounts_historized, int_deal_close_dates_historized); the export's without history.
#}
{% macro deals_as_of(at) -%}
    with

    tt_deals as (select * from {{ ref('int_deals_restated_as_of') }}),
    tt_transitions as (select * from {{ ref('fct_stage_transitions') }}),
    tt_pipeline_stages as (select * from {{ ref('stg_crm__pipeline_stages') }}),
    tt_amounts as (select * from {{ ref('int_deal_amounts_historized') }}),
    tt_close_dates as (select * from {{ ref('int_deal_close_dates_historized') }}),

    tt_existing as (
        select *
        from tt_deals
        where created_at <= {{ at }}
    ),

    tt_ranked_stays as (
        select
            deal_key,
            pipeline,
            stage,
            stage_kind,
            entered_at,
            exited_at,
            row_number() over (partition by deal_key order by stay_number desc) as recency
        from tt_transitions
        where entered_at <= {{ at }}
    ),

    tt_last_stays as (
        select *
        from tt_ranked_stays
        where recency = 1
    ),

    tt_first_open_stages as (
        select pipeline, stage
        from (
            select
                pipeline,
                stage,
                row_number() over (partition by pipeline order by stage_order, stage) as position
            from tt_pipeline_stages
            where stage_kind = 'open'
        ) as ordered_stages
        where position = 1
    ),

    tt_positioned as (
        select
            tt_existing.*,
            case
                when tt_existing.closed_at_as_of <= {{ at }} then tt_existing.status_as_of
                when tt_last_stays.stage_kind in ('won', 'lost', 'unknown') and tt_last_stays.exited_at is not null
                    then tt_last_stays.stage_kind
                else 'open'
            end as status_at,
            coalesce(tt_last_stays.pipeline, tt_existing.pipeline) as stage_pipeline,
            coalesce(
                tt_last_stays.stage,
                case when current_stages.stage_kind = 'open' then tt_existing.current_stage end,
                tt_first_open_stages.stage,
                tt_existing.current_stage
            ) as stage_at,
            tt_last_stays.entered_at as entered_stage_at
        from tt_existing
        left join tt_last_stays
            on tt_existing.deal_key = tt_last_stays.deal_key
        left join tt_pipeline_stages as current_stages
            on tt_existing.pipeline = current_stages.pipeline
            and tt_existing.current_stage = current_stages.stage
        left join tt_first_open_stages
            on tt_existing.pipeline = tt_first_open_stages.pipeline
    )

    select
        tt_positioned.deal_key,
        tt_positioned.pipeline,
        tt_positioned.title,
        tt_positioned.owner,
        tt_positioned.lead_source,
        tt_positioned.segment,
        tt_positioned.region,
        tt_positioned.product,
        tt_positioned.created_at,
        tt_positioned.status_at,
        tt_positioned.stage_at,
        tt_pipeline_stages.stage_order as stage_order_at,
        tt_pipeline_stages.crm_probability,
        tt_positioned.entered_stage_at,
        tt_amounts.amount as amount_at,
        tt_amounts.currency as currency_at,
        tt_amounts.is_from_history as has_amount_history,
        tt_close_dates.expected_close_date as expected_close_date_at,
        tt_close_dates.is_from_history as has_close_date_history
    from tt_positioned
    left join tt_pipeline_stages
        on tt_positioned.stage_pipeline = tt_pipeline_stages.pipeline
        and tt_positioned.stage_at = tt_pipeline_stages.stage
    left join tt_amounts
        on tt_positioned.deal_key = tt_amounts.deal_key
        and tt_amounts.valid_from <= {{ at }}
        and (tt_amounts.valid_to is null or {{ at }} < tt_amounts.valid_to)
    left join tt_close_dates
        on tt_positioned.deal_key = tt_close_dates.deal_key
        and tt_close_dates.valid_from <= {{ at }}
        and (tt_close_dates.valid_to is null or {{ at }} < tt_close_dates.valid_to)
{%- endmacro %}
