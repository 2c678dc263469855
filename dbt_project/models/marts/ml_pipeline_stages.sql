{#
  The stages the models and the forecast read (voronka.warehouse_reads.canonical_frames): every
  stage of every pipeline with its order, kind and the CRM's probability.
#}

with

pipeline_stages as (select * from {{ ref('stg_crm__pipeline_stages') }}),

final as (
    select
        pipeline,
        stage,
        stage_order,
        stage_kind,
        crm_probability
    from pipeline_stages
)

select * from final
