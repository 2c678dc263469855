{#
  Attainment of owner targets: for every target scoped to an owner (raw.targets scope_owner; any
  segment scope is not supported yet and such targets are left out), the owner's deals won in
  the target's period (and pipeline, when the target names one; 'all' otherwise) against it.
  The targets, their conversion and what their scope booked are mart_scoped_targets' (targets at
  their period's first day's rate, the as_of date's for a period that starts after as_of; won
  deals at their close date's rate, no amount = 0); this adds how far the period has gone.
#}

with

scoped_targets as (select * from {{ ref('mart_scoped_targets') }}),

owner_targets as (
    select
        scoped_targets.*,
        {{ period_end_date('period_grain', 'period_start_date') }} as period_end_date
    from scoped_targets
    where owner is not null
        and segment is null
),

final as (
    select
        owner,
        pipeline,
        period_grain,
        period,
        period_start_date,
        target_amount_reporting,
        won_deals,
        won_amount_reporting,
        {{ safe_divide('won_amount_reporting', 'target_amount_reporting') }} as attainment,
        case
            when {{ as_of_ts() }} < period_start_date then 0.0
            when {{ as_of_ts() }} >= period_end_date then 1.0
            else {{ days_between('period_start_date', as_of_ts()) }}
                / ({{ days_between('period_start_date', 'period_end_date') }})
        end as period_elapsed_share,
        period_start_date <= {{ as_of_date() }} and {{ as_of_date() }} < period_end_date
            as is_current_period,
        reporting_currency
    from owner_targets
)

select * from final
