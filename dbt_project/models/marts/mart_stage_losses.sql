{#
  Drop-off per pipeline, open stage and lost reason. A deal lost at as_of is lost at the stage
  of its last open stay that began at or before the loss (as lost_here in mart_funnel_conversion;
  a lost deal without an open stay in its pipeline is in no row). Drop-off rate = lost deals /
  deals that reached the stage; share_of_stage_losses = the reason's part of the stage's losses.
#}

with

deals as (select * from {{ ref('fct_deals') }}),
funnel as (select * from {{ ref('mart_funnel_conversion') }}),

lost_deals as (
    select
        pipeline,
        lost_at_stage as stage,
        coalesce(lost_reason_as_of, {{ missing_label() }}) as lost_reason,
        amount_reporting
    from deals
    where status_as_of = 'lost'
        and lost_at_stage is not null
),

by_reason as (
    select
        pipeline,
        stage,
        lost_reason,
        count(*) as lost_deals,
        sum(amount_reporting) as lost_amount_reporting
    from lost_deals
    group by pipeline, stage, lost_reason
),

by_stage as (
    select
        pipeline,
        stage,
        sum(lost_deals) as stage_lost_deals
    from by_reason
    group by pipeline, stage
),

final as (
    select
        by_reason.pipeline,
        by_reason.stage,
        funnel.stage_order,
        by_reason.lost_reason,
        by_reason.lost_deals,
        by_reason.lost_amount_reporting,
        by_stage.stage_lost_deals,
        {{ safe_divide('by_reason.lost_deals', 'by_stage.stage_lost_deals') }} as share_of_stage_losses,
        funnel.reached,
        {{ safe_divide('by_reason.lost_deals', 'funnel.reached') }} as drop_off_rate,
        {{ reporting_currency() }} as reporting_currency
    from by_reason
    inner join by_stage
        on by_reason.pipeline = by_stage.pipeline
        and by_reason.stage = by_stage.stage
    left join funnel
        on by_reason.pipeline = funnel.pipeline
        and by_reason.stage = funnel.stage
)

select * from final
