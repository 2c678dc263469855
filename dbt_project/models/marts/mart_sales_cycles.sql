{#
  Sales cycle and speed to lead per pipeline (plus 'all' pipelines together) and breakdown.

  Sales cycle = created -> won. Won deals are events; open deals are censored at as_of; lost
  deals never end in a win and are left out. Median and p90 from Kaplan–Meier (on the
  km_duration clock: whole hours), beside the naive mean of the won deals' exact cycles.
  Speed to lead = created -> the first move out of the pipeline's first open stage into a later
  open stage or the won stage (a deal created in a later stage counts 0). Deals still waiting in
  the first stage are censored at as_of; deals closed without ever being worked are censored at
  their close (they will never be worked) and are the "never worked" leads. Deals without stage
  events cannot be measured and are left out of the speed-to-lead figures.
#}

with

deals as (select * from {{ ref('fct_deals') }}),

cycle_deals as (
    select
        deals.*,
        {{ km_duration('deals.sales_cycle_days') }} as duration,
        case when deals.status_as_of = 'won' then 1 else 0 end as is_event
    from deals
    where deals.sales_cycle_days is not null
),

lead_deals as (
    select
        deals.*,
        {{ km_duration('deals.speed_to_lead_days') }} as duration,
        case when deals.is_lead_worked then 1 else 0 end as is_event
    from deals
    where deals.speed_to_lead_days is not null
),

cycle_times as (
    {{ aggregate_by_breakdowns('cycle_deals', 'sum(is_event) as events, count(*) as observations',
                               keys=['duration'], pooled=true) }}
),

lead_times as (
    {{ aggregate_by_breakdowns('lead_deals', 'sum(is_event) as events, count(*) as observations',
                               keys=['duration'], pooled=true) }}
),

{{ kaplan_meier_quantiles('cycle_times', ['pipeline', 'breakdown', 'breakdown_value'],
                          {'median': 0.5, 'p90': 0.9}) }}

{{ kaplan_meier_quantiles('lead_times', ['pipeline', 'breakdown', 'breakdown_value'],
                          {'median': 0.5, 'p90': 0.9}) }}

counts as (
    {{ aggregate_by_breakdowns('deals', "
        count(*) as created_deals,
        sum(case when status_as_of = 'open' then 1 else 0 end) as open_deals,
        sum(case when status_as_of = 'won' then 1 else 0 end) as won_deals,
        sum(case when status_as_of = 'lost' then 1 else 0 end) as lost_deals,
        avg(case when status_as_of = 'won' then sales_cycle_days end) as mean_sales_cycle_days_won,
        sum(case when has_stage_events then 1 else 0 end) as leads_measured,
        sum(case when is_lead_worked then 1 else 0 end) as leads_worked,
        sum(case when has_stage_events and not is_lead_worked and status_as_of = 'open' then 1 else 0 end)
            as leads_waiting,
        sum(case when is_never_worked then 1 else 0 end) as leads_never_worked,
        avg(case when is_lead_worked then speed_to_lead_days end) as mean_speed_to_lead_days_worked",
        pooled=true) }}
),

final as (
    select
        counts.pipeline,
        counts.breakdown,
        counts.breakdown_value,
        {{ dbt.cast('counts.created_deals', dbt.type_bigint()) }} as created_deals,
        {{ dbt.cast('counts.open_deals', dbt.type_bigint()) }} as open_deals,
        {{ dbt.cast('counts.won_deals', dbt.type_bigint()) }} as won_deals,
        {{ dbt.cast('counts.lost_deals', dbt.type_bigint()) }} as lost_deals,
        cycle_times_km.km_median as median_sales_cycle_days,
        cycle_times_km.km_p90 as p90_sales_cycle_days,
        counts.mean_sales_cycle_days_won,
        {{ dbt.cast('counts.leads_measured', dbt.type_bigint()) }} as leads_measured,
        {{ dbt.cast('counts.leads_worked', dbt.type_bigint()) }} as leads_worked,
        {{ dbt.cast('counts.leads_waiting', dbt.type_bigint()) }} as leads_waiting,
        {{ dbt.cast('counts.leads_never_worked', dbt.type_bigint()) }} as leads_never_worked,
        {{ safe_divide('counts.leads_never_worked', 'counts.leads_measured') }} as share_never_worked,
        lead_times_km.km_median as median_speed_to_lead_days,
        lead_times_km.km_p90 as p90_speed_to_lead_days,
        counts.mean_speed_to_lead_days_worked
    from counts
    left join cycle_times_km
        on counts.pipeline = cycle_times_km.pipeline
        and counts.breakdown = cycle_times_km.breakdown
        and counts.breakdown_value = cycle_times_km.breakdown_value
    left join lead_times_km
        on counts.pipeline = lead_times_km.pipeline
        and counts.breakdown = lead_times_km.breakdown
        and counts.breakdown_value = lead_times_km.breakdown_value
)

select * from final
