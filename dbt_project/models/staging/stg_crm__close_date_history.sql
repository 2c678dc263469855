with

source as (
    select *
    from {{ source_or_empty('raw', 'close_date_history', {
        'deal_key': dbt.type_string(), 'changed_at': dbt.type_timestamp(),
        'expected_close_date': 'date', 'export_file': dbt.type_string(), 'origin': dbt.type_string()}) }}
        as close_date_history
),

renamed as (
    select
        deal_key,
        {{ dbt.cast('changed_at', dbt.type_timestamp()) }} as changed_at,
        {{ dbt.cast('expected_close_date', 'date') }} as expected_close_date,
        coalesce(origin, 'history') as history_origin,
        export_file
    from source
)

select * from renamed
