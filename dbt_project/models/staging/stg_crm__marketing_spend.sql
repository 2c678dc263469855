with

source as (select * from {{ source('raw', 'marketing_spend') }}),

renamed as (
    select
        month as spend_month,
        lead_source,
        cast(amount as numeric(18, 2)) as spend_amount,
        upper(currency) as currency
    from source
)

select * from renamed
