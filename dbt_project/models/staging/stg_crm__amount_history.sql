with

source as (
    select *
    from {{ source_or_empty('raw', 'amount_history', {
        'deal_key': dbt.type_string(), 'changed_at': dbt.type_timestamp(),
        'amount': 'numeric(18, 2)', 'currency': dbt.type_string(), 'export_file': dbt.type_string(),
        'origin': dbt.type_string()}) }}
        as amount_history
),

renamed as (
    select
        deal_key,
        {{ dbt.cast('changed_at', dbt.type_timestamp()) }} as changed_at,
        cast(amount as numeric(18, 2)) as amount,
        upper(currency) as currency,
        coalesce(origin, 'history') as history_origin,
        export_file
    from source
)

select * from renamed
