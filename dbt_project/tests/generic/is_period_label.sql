{# Every non-null value is a period label: 'YYYY-MM' (01..12) or 'YYYY-Qn' (1..4). #}
{% test is_period_label(model, column_name) %}

select *
from {{ model }}
where {{ column_name }} is not null
    and not (
        (
            {{ column_name }} like '____-__'
            and substr({{ column_name }}, 1, 4) between '0000' and '9999'
            and substr({{ column_name }}, 6, 2) between '01' and '12'
        )
        or (
            {{ column_name }} like '____-Q_'
            and substr({{ column_name }}, 1, 4) between '0000' and '9999'
            and substr({{ column_name }}, 7, 1) in ('1', '2', '3', '4')
        )
    )

{% endtest %}
