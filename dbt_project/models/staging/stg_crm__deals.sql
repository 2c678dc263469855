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
        {{ dbt.cast('is_close_date_only', dbt.type_boolean()) }} as is_close_date_only,
        {{ dbt.cast('is_closed_before_created', dbt.type_boolean()) }} as is_closed_before_created,
        {{ dbt.cast('is_created_at_missing', dbt.type_boolean()) }} as is_created_at_missing,
        current_stage,
        attributes,
        export_file,
        {{ dbt.cast('exported_at', dbt.type_timestamp()) }} as exported_at
    from source
)

select * from renamed
