{#
  Small statistics in portable SQL (only exp, sqrt, abs and arithmetic).
#}

{# a / b as a double; null when b is 0 or null. #}
{% macro safe_divide(numerator, denominator) -%}
    case
        when ({{ denominator }}) <> 0
            then {{ dbt.cast(numerator, voronka.type_double()) }} / ({{ denominator }})
    end
{%- endmacro %}


{#
  P(Z > x) for x >= 0 under the standard normal (Zelen & Severo 1964, Abramowitz–Stegun 26.2.17;
  absolute error < 7.5e-8). No engine-specific erf() is needed.
#}
{% macro normal_upper_tail(x) -%}
    (
        exp(-0.5 * ({{ x }}) * ({{ x }})) * 0.3989422804014327
        * (
            (1.0 / (1.0 + 0.2316419 * ({{ x }}))) * (0.319381530
            + (1.0 / (1.0 + 0.2316419 * ({{ x }}))) * (-0.356563782
            + (1.0 / (1.0 + 0.2316419 * ({{ x }}))) * (1.781477937
            + (1.0 / (1.0 + 0.2316419 * ({{ x }}))) * (-1.821255978
            + (1.0 / (1.0 + 0.2316419 * ({{ x }}))) * 1.330274429))))
        )
    )
{%- endmacro %}


{# The two-sided p-value of a z statistic: 2 * P(Z > |z|); null when z is null. #}
{% macro two_sided_p_value(z) -%}
    case
        when {{ z }} is not null then 2.0 * {{ voronka.normal_upper_tail('abs(' ~ z ~ ')') }}
    end
{%- endmacro %}
