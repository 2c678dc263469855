{#
  One row per deal that existed at as_of, with the facts the funnel marts aggregate: status, how
  far it got in its own pipeline (stays in other pipelines do not count, as in
  mart_funnel_conversion), the stage it was lost at, its sales cycle and speed to lead (with
  the censoring flags Kaplan–Meier needs), cohorts, its amount in the reporting currency, and
  the loader's flags.

  Deals without stage history count (docs/metrics.md, "Deals without stage history"): every deal
  reached at least the first open stage of its pipeline. Without an open stay in its pipeline
  begun by the close, a deal's furthest stage is the export's stage when that is an open stage,
  else the first open stage; a lost deal is lost at that export stage, or at no known stage
  (lost_at_stage null, is_lost_stage_unknown). A won deal passed every open stage.
  Durations end at the close, never before the creation (not_before): a close the source dated
  before the creation is kept as given and flagged (is_closed_before_created).
#}

{#- a stay begun by the close; a date-only close (is_close_date_only) means that whole day #}
{%- set begun_by_close %}
    (
        transitions.entered_at <= {{ not_before('deals.closed_at_as_of', 'deals.created_at') }}
        or (
            deals.is_close_date_only
            and {{ dbt.cast('transitions.entered_at', 'date') }} <= {{ dbt.cast('deals.closed_at_as_of', 'date') }}
        )
    )
{%- endset %}

with

deals as (select * from {{ ref('int_deals_restated_as_of') }}),
transitions as (select * from {{ ref('fct_stage_transitions') }}),
pipeline_stages as (select * from {{ ref('stg_crm__pipeline_stages') }}),
fx_rates as (select * from {{ ref('int_fx_rates_triangulated') }}),

first_open_stages as (
    select
        pipeline,
        min(stage_order) as first_stage_order
    from pipeline_stages
    where stage_kind = 'open'
    group by pipeline
),

own_pipeline_stays as (
    select
        transitions.deal_key,
        transitions.stage,
        transitions.stage_order,
        transitions.stage_kind,
        transitions.stay_number,
        transitions.entered_at,
        transitions.is_backward,
        first_open_stages.first_stage_order,
        deals.status_as_of,
        coalesce({{ begun_by_close }}, false) as is_begun_by_close
    from transitions
    inner join deals
        on transitions.deal_key = deals.deal_key
        and transitions.pipeline = deals.pipeline
    left join first_open_stages
        on transitions.pipeline = first_open_stages.pipeline
),

-- one pass over the deal's stays in its pipeline
progress as (
    select
        deal_key,
        count(*) as stays,
        max(case when stage_kind = 'open' then stage_order end) as max_open_stage_order,
        max(case when stage_kind = 'won' then 1 else 0 end) as has_entered_won,
        sum(case when is_backward then 1 else 0 end) as backward_moves,
        min(case
            when stage_kind = 'won' or (stage_kind = 'open' and stage_order > first_stage_order)
                then entered_at
        end) as first_worked_at,
        max(case
            when status_as_of = 'lost' and stage_kind = 'open' and is_begun_by_close
                then stay_number
        end) as last_open_stay_before_loss
    from own_pipeline_stays
    group by deal_key
),

measured as (
    select
        deals.*,
        coalesce(progress.stays, 0) > 0 as has_stage_events,
        progress.max_open_stage_order,
        coalesce(
            progress.max_open_stage_order,
            export_stages.stage_order,
            first_open_stages.first_stage_order
        ) as reached_stage_order,
        coalesce(progress.has_entered_won, 0) = 1 as has_entered_won,
        coalesce(progress.backward_moves, 0) as backward_moves,
        case
            when deals.status_as_of <> 'lost' then null
            when progress.last_open_stay_before_loss is not null then lost_stays.stage
            else export_stages.stage
        end as lost_at_stage,
        progress.first_worked_at,
        {{ not_before('deals.closed_at_as_of', 'deals.created_at') }} as ended_at,
        case
            when deals.closed_at_as_of is not null then {{ dbt.cast('deals.closed_at_as_of', 'date') }}
            else {{ as_of_date() }}
        end as rate_date
    from deals
    left join progress
        on deals.deal_key = progress.deal_key
    left join transitions as lost_stays
        on progress.deal_key = lost_stays.deal_key
        and progress.last_open_stay_before_loss = lost_stays.stay_number
    -- the export's stage stands in only for a deal without an open stay in its pipeline
    left join pipeline_stages as export_stages
        on deals.pipeline = export_stages.pipeline
        and deals.current_stage = export_stages.stage
        and export_stages.stage_kind = 'open'
        and progress.max_open_stage_order is null
        and progress.last_open_stay_before_loss is null
    left join first_open_stages
        on deals.pipeline = first_open_stages.pipeline
),

-- the rate of each (currency, day) needed, looked up once: a range join per deal would compare
-- every deal with every rate interval of its currency
rate_days as (
    select distinct currency, rate_date
    from measured
),

day_rates as (
    select
        rate_days.currency,
        rate_days.rate_date,
        fx_rates.rate_to_reporting
    from rate_days
    inner join fx_rates
        on {{ fx_rate_on('fx_rates', 'rate_days.currency', 'rate_days.rate_date') }}
),

final as (
    select
        measured.deal_key,
        measured.source_system,
        measured.pipeline,
        measured.owner,
        measured.lead_source,
        measured.segment,
        measured.region,
        measured.product,
        measured.created_at,
        {{ dbt.cast(dbt.date_trunc('week', 'measured.created_at'), 'date') }} as created_week,
        {{ period_label('month', 'measured.created_at') }} as created_month,
        measured.status_as_of,
        measured.closed_at_as_of,
        case
            when measured.closed_at_as_of is not null then {{ period_label('month', 'measured.closed_at_as_of') }}
        end as closed_month,
        measured.lost_reason_as_of,
        measured.has_stage_events,
        measured.max_open_stage_order,
        measured.reached_stage_order,
        measured.has_entered_won,
        measured.backward_moves,
        measured.lost_at_stage,
        coalesce(measured.status_as_of = 'lost' and measured.lost_at_stage is null, false) as is_lost_stage_unknown,
        measured.first_worked_at,
        case
            when not measured.has_stage_events then null
            else measured.first_worked_at is not null
        end as is_lead_worked,
        coalesce(
            measured.has_stage_events and measured.first_worked_at is null and measured.status_as_of = 'lost',
            false
        ) as is_never_worked,
        case
            when not measured.has_stage_events then null
            when measured.first_worked_at is not null
                then case
                    when measured.first_worked_at <= measured.created_at then 0.0
                    else {{ days_between('measured.created_at', 'measured.first_worked_at') }}
                end
            else {{ days_between('measured.created_at', 'coalesce(measured.ended_at, ' ~ as_of_ts() ~ ')') }}
        end as speed_to_lead_days,
        case
            when measured.status_as_of in ('lost', 'unknown') then null
            else {{ days_between('measured.created_at', 'coalesce(measured.ended_at, ' ~ as_of_ts() ~ ')') }}
        end as sales_cycle_days,
        measured.amount,
        measured.currency,
        {{ convert_to_reporting('measured.amount', 'day_rates') }} as amount_reporting,
        {{ reporting_currency() }} as reporting_currency,
        measured.is_close_date_only,
        measured.is_closed_before_created,
        measured.is_created_at_missing
    from measured
    left join day_rates
        on measured.currency = day_rates.currency
        and measured.rate_date = day_rates.rate_date
)

select * from final
