with

source as (select * from {{ source('raw', 'targets') }}),

renamed as (
    select
        upper(period) as period,
        scope_pipeline,
        scope_owner,
        scope_segment,
        cast(target_amount as numeric(18, 2)) as target_amount,
        upper(currency) as currency
    from source
)

select * from renamed
