-- Bookings over all months equal the won deals the staging model holds, converted the same
-- way: a month lost in the union or the grouping would show here.
with mart as (
    select sum(bookings) as bookings from {{ ref('fct_pipeline_bookings_cash') }}
),
deals as (
    select coalesce(sum(fx_convert(amount, currency, '{{ var("reporting_currency") }}', close_date)), 0) as bookings
    from {{ ref('stg_crm__opportunities') }}
    where stage_category = 'WON' and close_date is not null and amount is not null
)
select mart.bookings as mart_bookings, deals.bookings as deal_bookings
from mart cross join deals
where mart.bookings <> deals.bookings
