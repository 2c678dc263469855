with

source as (select * from {{ source('raw', 'stage_events') }}),

renamed as (
    select
        event_key,
        deal_key,
        pipeline,
        stage,
        {{ dbt.cast('entered_at', dbt.type_timestamp()) }} as entered_at,
        origin as event_origin,
        export_file
    from source
)

select * from renamed
