{{ config(materialized='table', tags=['finance', 'sales']) }}
-- Per month and country, in the reporting currency: what sales won next to what finance
-- collected. Bookings are won deals by close month, placed in the billing country of the
-- deal's organization; cash is payments less refunds by payment month, placed in the country
-- of the CRM person whose email paid: the email the payment records, else its customer's. A
-- deal or payment nobody can place counts under 'Unknown'; one with no exchange rate counts in
-- amounts_without_rate: neither is dropped.
-- The performance benchmark runs this model (docs/performance.md).
with won as (
    select
        cast(date_trunc('month', o.close_date) as date) as month,
        coalesce(a.billing_country, 'Unknown') as country,
        fx_convert(o.amount, o.currency, '{{ var("reporting_currency") }}', o.close_date) as converted,
        o.amount
    from {{ ref('stg_crm__opportunities') }} o
    left join {{ source('crm', 'organizations') }} a on a.organization_key = o.organization_key and not a.is_deleted
    where o.stage_category = 'WON' and o.close_date is not null
),
-- One country per email: when several CRM records share an email, the latest that has one.
-- max_by leaves out records without an update time; when no record has one, min picks one.
countries as (
    select email, coalesce(max_by(country, source_updated_at), min(country)) as country
    from {{ source('crm', 'people') }}
    where not is_deleted and email is not null and country is not null
    group by email
),
-- Each payment reduced to its customer key, email, month and converted amount before the joins,
-- so that only those columns travel through them: the joins are the model's cost
-- (docs/performance.md).
paid as (
    select
        p.customer_key,
        p.customer_email,
        cast(date_trunc('month', p.paid_on) as date) as month,
        -- The settlement side where the tool has one (Stripe's Converted Amount): the money as
        -- it reached the account, at the processor's rate.
        case when p.settlement_amount is not null
            then fx_convert(p.settlement_amount - coalesce(p.settlement_amount_refunded, 0), p.settlement_currency,
                            '{{ var("reporting_currency") }}', p.paid_on)
            else fx_convert(p.amount - coalesce(p.amount_refunded, 0), p.currency,
                            '{{ var("reporting_currency") }}', p.paid_on) end as converted
    from (select *, cast(paid_at as date) as paid_on from {{ ref('stg_finance__payments') }}) p
    where p.payment_type = 'PAYMENT'
),
-- The email that paid: the payment's own where the tool records it (Stripe's exports do), else
-- its customer's (QuickBooks and Xero keep it only there). Only the payments without one join
-- the customers, so a lake whose payments all carry it never builds that join.
payer_emails as (
    select month, customer_email as email, converted from paid where customer_email is not null
    union all
    select p.month, cu.email, p.converted
    from paid p
    left join {{ source('finance', 'customers') }} cu on cu.customer_key = p.customer_key and not cu.is_deleted
    where p.customer_email is null
),
collected as (
    select e.month, coalesce(c.country, 'Unknown') as country, e.converted
    from payer_emails e
    left join countries c on c.email = e.email
),
bookings as (
    select month, country, sum(converted) as bookings, count(*) as won_deals,
           count(case when converted is null and amount is not null then 1 end) as without_rate
    from won
    group by month, country
),
cash as (
    select month, country, sum(converted) as cash, count(*) as payments,
           count(case when converted is null then 1 end) as without_rate
    from collected
    group by month, country
)
select
    coalesce(b.month, c.month) as month,
    coalesce(b.country, c.country) as country,
    '{{ var("reporting_currency") }}' as currency,
    cast(coalesce(b.bookings, 0) as decimal(18, 2)) as bookings,
    coalesce(b.won_deals, 0) as won_deals,
    cast(coalesce(c.cash, 0) as decimal(18, 2)) as cash_collected,
    coalesce(c.payments, 0) as payments,
    coalesce(b.without_rate, 0) + coalesce(c.without_rate, 0) as amounts_without_rate
from bookings b
full outer join cash c on c.month = b.month and c.country = b.country
order by month, country
