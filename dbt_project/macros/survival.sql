{#
  Kaplan–Meier survival in SQL, for durations with right censoring (time in stage, sales cycle,
  speed to lead).

  kaplan_meier_quantiles(times, group_columns, quantiles) emits CTEs (no leading `with`, a
  trailing comma) ending in a CTE named `<times>_km` with one row per group: the group columns,
  `observations`, `events` and, per quantile label, `km_<label>`: the first event time t at
  which S(t) <= 1 - q. `times` is a CTE with the group columns, `duration` (days, >= 0),
  `events` (how many ended at that duration) and `observations` (how many ended or were
  censored there); several rows per duration are summed.

      S(t) = prod over event times t_i <= t of (1 - d_i / n_i)
      d_i = events at t_i, n_i = observations with duration >= t_i (censored ones at t_i included)

  computed as exp(sum(ln(1 - d/n))); when d = n the survival drops to 0 there and stays 0 (ln(0)
  is avoided). A quantile the curve never reaches (too much censoring) is null. A tolerance of
  1e-9 absorbs the rounding of exp(sum(ln)) when S(t) lands exactly on 1 - q.
  n_i = all observations of the group - those with a shorter duration, so every window shares
  one sort order.
#}

{% macro kaplan_meier_quantiles(times, group_columns, quantiles) -%}
    {%- set groups = group_columns | join(', ') -%}
    {%- set partition = 'partition by ' ~ groups if group_columns else '' -%}
{{ times }}_km_points as (
    select
        {% if group_columns %}{{ groups }},{% endif %}
        duration,
        sum(events) as events,
        sum(observations) as observations
    from {{ times }}
    group by {% if group_columns %}{{ groups }},{% endif %} duration
),

{{ times }}_km_at_risk as (
    select
        *,
        sum(observations) over ({{ partition }})
            - sum(observations) over (
                {{ partition }} order by duration rows between unbounded preceding and current row
            )
            + observations as at_risk
    from {{ times }}_km_points
),

{{ times }}_km_curve as (
    select
        *,
        max(case when events > 0 and events = at_risk then 1 else 0 end) over (
            {{ partition }} order by duration rows between unbounded preceding and current row
        ) as is_exhausted,
        sum(case
            when events > 0 and events < at_risk
                then ln(1.0 - {{ dbt.cast('events', voronka.type_double()) }} / at_risk)
            else 0.0
        end) over (
            {{ partition }} order by duration rows between unbounded preceding and current row
        ) as log_survival
    from {{ times }}_km_at_risk
),

{{ times }}_km as (
    select
        {% if group_columns %}{{ groups }},{% endif %}
        sum(observations) as observations,
        sum(events) as events
        {%- for label, q in quantiles.items() %},
        min(case
            when events > 0 and (is_exhausted = 1 or exp(log_survival) <= {{ (1 - q) | round(12) }} + 1e-9)
                then duration
        end) as km_{{ label }}
        {%- endfor %}
    from {{ times }}_km_curve
    {% if group_columns %}group by {{ groups }}{% endif %}
),
{%- endmacro %}


{#
  A duration in days counted on the survival clock: rounded up to var km_resolution_hours (1:
  whole hours; 0 = exact). Whole hours keep the Kaplan–Meier curves small (one point per hour,
  not per second) at millions of stays; medians and p90 are then in steps of 1/24 day.
#}
{% macro km_duration(days) -%}
    {%- set hours = var('km_resolution_hours', 1) | float -%}
    {%- if hours <= 0 -%}
        ({{ days }})
    {%- else -%}
        (ceil(greatest(({{ days }}) * {{ 24.0 / hours }} - 1e-9, 0.0)) / {{ 24.0 / hours }})
    {%- endif -%}
{%- endmacro %}
