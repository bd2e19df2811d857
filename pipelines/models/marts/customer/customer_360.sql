{{ config(materialized='table', tags=['customer', 'finance', 'sales', 'marketing']) }}
-- One row per billing customer (Stripe, QuickBooks, Xero, ...): the CRM organization it
-- resolves to by email domain, how its first deal came in, and what was booked, billed and
-- collected, in the reporting currency. A customer whose domain no CRM organization has keeps
-- a null organization: it is counted, never dropped.
with customers as (
    select
        customer_key,
        source_system as billing_system,
        coalesce(name, description, email) as customer_name,
        email_domain
    from {{ source('finance', 'customers') }}
    where not is_deleted
),
organizations as (
    -- One organization per domain; when two CRMs hold it, the record created first.
    select domain, organization_key, crm_system, organization_name
    from (
        select
            domain,
            organization_key,
            source_system as crm_system,
            name as organization_name,
            row_number() over (partition by domain order by source_created_at nulls last, organization_key) as n
        from {{ source('crm', 'organizations') }}
        where not is_deleted and domain is not null
    ) ranked
    where n = 1
),
deals as (
    select
        organization_key,
        lead_source,
        stage_category,
        fx_convert(amount, currency, '{{ var("reporting_currency") }}', close_date) as amount,
        row_number() over (partition by organization_key order by source_created_at nulls last, opportunity_key) as n
    from {{ source('crm', 'opportunities') }}
    where is_current and not is_deleted and organization_key is not null
),
by_organization as (
    select
        organization_key,
        max(case when n = 1 then lead_source end) as first_touch,
        sum(case when stage_category = 'WON' then amount end) as bookings
    from deals
    group by organization_key
),
billed as (
    select customer_key, sum(fx_convert(total, currency, '{{ var("reporting_currency") }}', issued_date)) as billed
    from {{ source('finance', 'invoices') }}
    where not is_deleted and invoice_type = 'RECEIVABLE' and coalesce(status_category, '') not in ('VOID', 'DRAFT')
    group by customer_key
),
collected as (
    select
        customer_key,
        sum(fx_convert(amount - coalesce(amount_refunded, 0), currency, '{{ var("reporting_currency") }}', cast(paid_at as date))) as collected
    from {{ source('finance', 'payments') }}
    where not is_deleted and payment_type = 'PAYMENT' and paid_at is not null
    group by customer_key
)
select
    c.customer_key,
    c.customer_name,
    c.billing_system,
    c.email_domain,
    o.organization_key,
    o.organization_name as crm_organization,
    o.crm_system,
    d.first_touch,
    '{{ var("reporting_currency") }}' as currency,
    d.bookings,
    b.billed,
    p.collected
from customers c
left join organizations o on o.domain = c.email_domain
left join by_organization d on d.organization_key = o.organization_key
left join billed b on b.customer_key = c.customer_key
left join collected p on p.customer_key = c.customer_key
