{#
  Drop-off per pipeline, open stage and lost reason. A deal lost at as_of is lost at
  fct_deals.lost_at_stage (as lost_here in mart_funnel_conversion: its last open stay begun by the
  loss; without an open stay, the export's open stage); a deal lost at no known stage is on the
  '(stage unknown)' rows, with no stage_order, reached or drop-off. Drop-off rate = lost deals /
  deals that reached the stage; share_of_stage_losses = the reason's part of the stage's losses.
#}

with

deals as (select * from {{ ref('fct_deals') }}),
funnel as (select * from {{ ref('mart_funnel_conversion') }}),

lost_deals as (
    select
        pipeline,
        coalesce(lost_at_stage, {{ unknown_stage_label() }}) as stage,
        coalesce(lost_reason_as_of, {{ missing_label() }}) as lost_reason,
        amount_reporting
    from deals
    where status_as_of = 'lost'
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
