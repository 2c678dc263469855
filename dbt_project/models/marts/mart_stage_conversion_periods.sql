{#
  Stage conversion period over period, with a two-proportion z-test, per pipeline, open stage
  and month / quarter.

  The cohort funnel keeps changing while its deals are open, so periods are compared on the
  decisions taken in them: a stay in an open stage of the deal's pipeline is decided when the
  deal moves on to a later open stage or the won stage (advanced), or is lost from it (lost) -
  at the next stay's start, or at the close for a deal closed without a won/lost stage event.
  A move back decides nothing. conversion = advanced / decided stays in the period.

  Against the previous period of the same grain: z = (p1 - p0) / sqrt(p (1 - p) (1/n1 + 1/n0))
  with the pooled p; two-sided p-value from the normal CDF (macro two_sided_p_value, a
  polynomial approximation in SQL); significant below var significance_level (0.05).
#}

with

deals as (select * from {{ ref('int_deals_restated_as_of') }}),
transitions as (select * from {{ ref('fct_stage_transitions') }}),

decisions as (
    select
        stays.pipeline,
        stays.stage,
        stays.stage_order,
        case
            when next_stays.deal_key is not null then next_stays.entered_at
            else deals.closed_at_as_of
        end as decided_at,
        case
            when next_stays.deal_key is not null and next_stays.pipeline = stays.pipeline
                and (
                    next_stays.stage_kind = 'won'
                    or (next_stays.stage_kind = 'open' and next_stays.stage_order > stays.stage_order)
                )
                then 1
            when next_stays.deal_key is null and deals.status_as_of = 'won' then 1
            else 0
        end as is_advanced,
        case
            when next_stays.deal_key is not null and next_stays.pipeline = stays.pipeline
                and next_stays.stage_kind = 'lost'
                then 1
            when next_stays.deal_key is null and deals.status_as_of = 'lost' then 1
            else 0
        end as is_lost
    from transitions as stays
    inner join deals
        on stays.deal_key = deals.deal_key
        and stays.pipeline = deals.pipeline
    left join transitions as next_stays
        on stays.deal_key = next_stays.deal_key
        and next_stays.stay_number = stays.stay_number + 1
    where stays.stage_kind = 'open'
),

decided as (
    select *
    from decisions
    where is_advanced = 1 or is_lost = 1
),

per_period as (
    {%- for grain in ['month', 'quarter'] %}
    select
        pipeline,
        stage,
        stage_order,
        '{{ grain }}' as period_grain,
        {{ period_label(grain, 'decided_at') }} as period,
        {{ dbt.cast(dbt.date_trunc(grain, 'decided_at'), 'date') }} as period_start_date,
        count(*) as decided_stays,
        sum(is_advanced) as advanced_stays
    from decided
    group by pipeline, stage, stage_order, {{ period_label(grain, 'decided_at') }},
        {{ dbt.cast(dbt.date_trunc(grain, 'decided_at'), 'date') }}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

compared as (
    select
        current_period.*,
        previous_period.period as previous_period,
        previous_period.decided_stays as previous_decided_stays,
        previous_period.advanced_stays as previous_advanced_stays
    from per_period as current_period
    left join per_period as previous_period
        on current_period.pipeline = previous_period.pipeline
        and current_period.stage = previous_period.stage
        and current_period.period_grain = previous_period.period_grain
        and previous_period.period_start_date = case
            when current_period.period_grain = 'month'
                then {{ dbt.cast(dbt.dateadd('month', -1, 'current_period.period_start_date'), 'date') }}
            else {{ dbt.cast(dbt.dateadd('month', -3, 'current_period.period_start_date'), 'date') }}
        end
),

rated as (
    select
        compared.*,
        {{ safe_divide('advanced_stays', 'decided_stays') }} as conversion,
        {{ safe_divide('previous_advanced_stays', 'previous_decided_stays') }} as previous_conversion,
        {{ safe_divide('advanced_stays + previous_advanced_stays', 'decided_stays + previous_decided_stays') }}
            as pooled_conversion
    from compared
),

tested as (
    select
        rated.*,
        case
            when previous_decided_stays > 0 and pooled_conversion > 0 and pooled_conversion < 1
                then (conversion - previous_conversion) / sqrt(
                    pooled_conversion * (1 - pooled_conversion)
                    * (1.0 / decided_stays + 1.0 / previous_decided_stays)
                )
        end as z_score
    from rated
),

final as (
    select
        pipeline,
        stage,
        stage_order,
        period_grain,
        period,
        period_start_date,
        period_start_date = case
            when period_grain = 'month' then {{ dbt.cast(dbt.date_trunc('month', as_of_ts()), 'date') }}
            else {{ dbt.cast(dbt.date_trunc('quarter', as_of_ts()), 'date') }}
        end as is_current_period,
        {{ dbt.cast('decided_stays', dbt.type_bigint()) }} as decided_stays,
        {{ dbt.cast('advanced_stays', dbt.type_bigint()) }} as advanced_stays,
        conversion,
        previous_period,
        {{ dbt.cast('previous_decided_stays', dbt.type_bigint()) }} as previous_decided_stays,
        {{ dbt.cast('previous_advanced_stays', dbt.type_bigint()) }} as previous_advanced_stays,
        previous_conversion,
        conversion - previous_conversion as conversion_change,
        z_score,
        {{ two_sided_p_value('z_score') }} as p_value,
        coalesce({{ two_sided_p_value('z_score') }} < {{ var('significance_level', 0.05) }}, false) as is_significant
    from tested
)

select * from final
