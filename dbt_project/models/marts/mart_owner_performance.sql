{#
  Per owner and pipeline (plus 'all' pipelines together): volume, conversion to won, win rate,
  deal size, sales cycle, speed to lead, velocity, open and stalled pipeline, and attainment of
  the owner's target for the period holding as_of when there is one (a quarter target is shown
  before a month target; pipeline 'all' takes the owner's all-pipeline target). A deal without
  an owner is under '(none)'. Definitions as in mart_sales_cycles, mart_sales_velocity,
  mart_stalled_deals and mart_owner_attainment.
#}

with

sales_cycles as (select * from {{ ref('mart_sales_cycles') }}),
sales_velocity as (select * from {{ ref('mart_sales_velocity') }}),
stalled_deals as (select * from {{ ref('mart_stalled_deals') }}),
attainment as (select * from {{ ref('mart_owner_attainment') }}),

owners as (
    select *
    from sales_cycles
    where breakdown = 'owner'
),

velocity as (
    select *
    from sales_velocity
    where breakdown = 'owner'
),

stalled as (
    {%- for grouping in ['pipeline', "'all'"] %}
    select
        {{ dbt.cast(grouping, dbt.type_string()) }} as pipeline,
        coalesce(owner, {{ missing_label() }}) as owner,
        count(*) as stalled_deals,
        sum(amount_reporting) as stalled_amount_reporting
    from stalled_deals
    group by {% if grouping == 'pipeline' %}pipeline, {% endif %}coalesce(owner, {{ missing_label() }})
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

current_targets as (
    select *
    from (
        select
            attainment.*,
            row_number() over (
                partition by owner, pipeline
                order by case when period_grain = 'quarter' then 0 else 1 end
            ) as preference
        from attainment
        where is_current_period
    ) as ranked
    where preference = 1
),

final as (
    select
        owners.pipeline,
        owners.breakdown_value as owner,
        owners.created_deals,
        owners.open_deals,
        owners.won_deals,
        owners.lost_deals,
        {{ safe_divide('owners.won_deals', 'owners.created_deals') }} as conversion_to_won,
        velocity.win_rate,
        velocity.avg_won_amount_reporting,
        velocity.open_amount_reporting,
        owners.median_sales_cycle_days,
        owners.mean_sales_cycle_days_won,
        owners.median_speed_to_lead_days,
        owners.share_never_worked,
        velocity.velocity_per_day_reporting,
        coalesce(stalled.stalled_deals, 0) as stalled_deals,
        coalesce(stalled.stalled_amount_reporting, 0) as stalled_amount_reporting,
        current_targets.period as target_period,
        current_targets.target_amount_reporting,
        current_targets.won_amount_reporting as target_period_won_amount_reporting,
        current_targets.attainment,
        current_targets.period_elapsed_share as target_period_elapsed_share,
        velocity.reporting_currency
    from owners
    left join velocity
        on owners.pipeline = velocity.pipeline
        and owners.breakdown_value = velocity.breakdown_value
    left join stalled
        on owners.pipeline = stalled.pipeline
        and owners.breakdown_value = stalled.owner
    left join current_targets
        on owners.pipeline = current_targets.pipeline
        and owners.breakdown_value = current_targets.owner
)

select * from final
