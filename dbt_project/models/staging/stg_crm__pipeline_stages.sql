with

source as (select * from {{ source('raw', 'pipeline_stages') }}),

renamed as (
    select
        pipeline,
        stage,
        {{ dbt.cast('stage_order', 'integer') }} as stage_order,
        kind as stage_kind,
        {{ dbt.cast('crm_probability', voronka.type_double()) }} as crm_probability
    from source
)

select * from renamed
