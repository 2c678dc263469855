{# Every row's `columns` (all non-null) match a row of `to` on the same columns (`to_columns`). #}
{% test composite_relationships(model, columns, to, to_columns=none) %}

{%- set to_columns = to_columns or columns -%}

select child.*
from {{ model }} as child
left join {{ to }} as parent
    on {% for c in columns -%}
        child.{{ c }} = parent.{{ to_columns[loop.index0] }}{% if not loop.last %} and {% endif %}
    {%- endfor %}
where parent.{{ to_columns[0] }} is null
    {% for c in columns -%}
    and child.{{ c }} is not null
    {% endfor %}

{% endtest %}
