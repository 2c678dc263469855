{#
  The pipeline waterfall between var from_date and var to_date, per pipeline and 'all', from
  fct_pipeline_changes: opening + new + reopened + pulled in + amount changes - pushed - won -
  lost - closed with an unknown outcome = closing, exactly. Two scopes side by side:
  - deals / amount_reporting: the whole open pipeline (nothing can be pushed or pulled in);
  - period_deals / period_amount_reporting: the deals expected to close in close_period.
  advanced / moved_back are not flows (is_flow false): the deals that moved stage while in the
  scope at both points, with their amount at to. Amounts at the to date's rate; a deal without
  a converted amount counts 0.
#}

{%- set steps = [
    ('opening', 1, false, 'is_open_from', 'is_in_period_from', 'value_from'),
    ('new', 2, true, 'is_new and is_open_to', 'is_new and is_in_period_to', 'value_to'),
    ('reopened', 3, true, 'is_reopened and is_open_to', 'is_reopened and is_in_period_to', 'value_to'),
    ('pulled_in', 4, true, 'false', 'is_open_from and not is_in_period_from and is_in_period_to', 'value_to'),
    ('amount_changed', 5, true, 'is_open_from and is_open_to and is_amount_changed',
        'is_in_period_from and is_in_period_to and is_amount_changed', 'value_to - value_from'),
    ('pushed', 6, true, 'false', 'is_in_period_from and is_open_to and not is_in_period_to', '-value_from'),
    ('won', 7, true, "is_open_from and status_to = 'won'", "is_in_period_from and status_to = 'won'", '-value_from'),
    ('lost', 8, true, "is_open_from and status_to = 'lost'", "is_in_period_from and status_to = 'lost'", '-value_from'),
    ('closed_unknown', 9, true, "is_open_from and status_to = 'unknown'", "is_in_period_from and status_to = 'unknown'",
        '-value_from'),
    ('closing', 10, false, 'is_open_to', 'is_in_period_to', 'value_to'),
    ('advanced', 11, false, 'is_open_from and is_open_to and is_advanced',
        'is_in_period_from and is_in_period_to and is_advanced', 'value_to'),
    ('moved_back', 12, false, 'is_open_from and is_open_to and is_moved_back',
        'is_in_period_from and is_in_period_to and is_moved_back', 'value_to'),
] %}

with

changes as (select * from {{ ref('fct_pipeline_changes') }}),

valued as (
    select
        changes.*,
        coalesce(amount_from_reporting, 0) as value_from,
        coalesce(amount_to_reporting, 0) as value_to
    from changes
),

contributions as (
    {%- for name, order, is_flow, whole, period, amount in steps %}
    select
        pipeline,
        '{{ name }}' as change_type,
        {{ order }} as step_order,
        {{ is_flow }} as is_flow,
        case when {{ whole }} then 1 else 0 end as in_pipeline,
        case when {{ whole }} then {{ amount }} else 0 end as pipeline_amount,
        case when {{ period }} then 1 else 0 end as in_period,
        case when {{ period }} then {{ amount }} else 0 end as period_amount
    from valued
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

steps as (
    {%- for name, order, is_flow, whole, period, amount in steps %}
    select '{{ name }}' as change_type, {{ order }} as step_order, {{ is_flow }} as is_flow
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

pipelines as (
    select distinct pipeline from changes
    union all
    select {{ dbt.cast("'all'", dbt.type_string()) }} as pipeline
),

aggregated as (
    {%- for grouping in ['pipeline', "'all'"] %}
    select
        {{ dbt.cast(grouping, dbt.type_string()) }} as pipeline,
        change_type,
        sum(in_pipeline) as deals,
        sum(pipeline_amount) as amount_reporting,
        sum(in_period) as period_deals,
        sum(period_amount) as period_amount_reporting
    from contributions
    group by {% if grouping == 'pipeline' %}pipeline, {% endif %}change_type
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

final as (
    select
        pipelines.pipeline,
        steps.change_type,
        steps.step_order,
        steps.is_flow,
        {{ dbt.cast('coalesce(aggregated.deals, 0)', dbt.type_bigint()) }} as deals,
        coalesce(aggregated.amount_reporting, 0) as amount_reporting,
        {{ dbt.cast('coalesce(aggregated.period_deals, 0)', dbt.type_bigint()) }} as period_deals,
        coalesce(aggregated.period_amount_reporting, 0) as period_amount_reporting,
        '{{ changes_window()['period'] }}' as close_period,
        {{ timestamp_literal(changes_window()['from']) }} as from_at,
        {{ timestamp_literal(changes_window()['to']) }} as to_at,
        {{ reporting_currency() }} as reporting_currency
    from pipelines
    cross join steps
    left join aggregated
        on pipelines.pipeline = aggregated.pipeline
        and steps.change_type = aggregated.change_type
)

select * from final
