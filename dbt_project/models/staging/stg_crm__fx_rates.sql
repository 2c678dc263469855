with

source as (select * from {{ source('raw', 'fx_rates') }}),

renamed as (
    select
        {{ dbt.cast('rate_date', 'date') }} as rate_date,
        upper(currency) as currency,
        upper(quote_currency) as quote_currency,
        {{ dbt.cast('rate', voronka.type_double()) }} as rate
    from source
)

select * from renamed
