with

source as (
    select * from {{ source('raw', 'deals') }}
    -- a deal the CRM marks deleted or merged stays in raw (flagged by the loader), not in the marts
    where not coalesce(is_deleted, false)
),

renamed as (
    select
        deal_key,
        source_system,
        native_id,
        pipeline,
        title,
        owner,
        lead_source,
        segment,
        region,
        product,
        cast(amount as numeric(18, 2)) as amount,
        upper(currency) as currency,
        {{ dbt.cast('created_at', dbt.type_timestamp()) }} as created_at,
        {{ dbt.cast('expected_close_date', 'date') }} as expected_close_date,
        {{ dbt.cast('closed_at', dbt.type_timestamp()) }} as closed_at,
        outcome,
        lost_reason,
        current_stage,
        attributes,
        export_file,
        {{ dbt.cast('exported_at', dbt.type_timestamp()) }} as exported_at
    from source
)

select * from renamed
