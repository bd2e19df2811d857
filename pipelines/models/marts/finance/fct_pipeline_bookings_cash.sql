{{ config(materialized='table', tags=['finance', 'sales']) }}
-- Per month, in the reporting currency: the open pipeline expected to close that month, the
-- deals won that month (bookings) and the cash that moved (payments less refunds). Amounts
-- are converted at the rate of their day; an amount with no rate is counted in
-- amounts_without_rate instead of being added as a wrong number.
with deals as (
    select
        cast(date_trunc('month', close_date) as date) as month,
        stage_category,
        amount,
        fx_convert(amount, currency, '{{ var("reporting_currency") }}', close_date) as converted
    from {{ ref('stg_crm__opportunities') }}
    where close_date is not null and amount is not null
),
cash as (
    select
        cast(date_trunc('month', paid_at) as date) as month,
        amount,
        fx_convert(amount, currency, '{{ var("reporting_currency") }}', cast(paid_at as date)) as converted
    from {{ ref('stg_finance__payments') }}
),
by_month as (
    select
        month,
        sum(case when stage_category = 'OPEN' then converted end) as pipeline,
        sum(case when stage_category = 'WON' then converted end) as bookings,
        cast(null as decimal(38, 6)) as cash,
        count(case when converted is null then 1 end) as amounts_without_rate
    from deals
    group by month
    union all
    select month, null, null, sum(converted), count(case when converted is null then 1 end)
    from cash
    group by month
)
select
    month,
    '{{ var("reporting_currency") }}' as currency,
    coalesce(sum(pipeline), 0) as pipeline,
    coalesce(sum(bookings), 0) as bookings,
    coalesce(sum(cash), 0) as cash,
    sum(amounts_without_rate) as amounts_without_rate
from by_month
group by month
