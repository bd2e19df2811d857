{{ config(materialized='table', tags=['marketing', 'sales']) }}
-- Per channel, in the reporting currency: ad spend, deals won from leads of that channel,
-- what they booked, the cost to acquire one customer (CAC = spend / customers won) and the
-- return on ad spend (ROAS = bookings / spend). Spend is summed at campaign level only: the
-- levels of ad_performance_daily overlap. The channel of a deal is its lead source as sales
-- recorded it.
with campaigns as (
    select ad_campaign_key, channel from {{ source('marketing', 'ad_campaigns') }} where not is_deleted
),
spend as (
    select
        coalesce(c.channel, case p.source_system when 'google_ads' then 'PAID_SEARCH' else 'PAID_SOCIAL' end) as channel,
        sum(fx_convert(p.spend, p.currency, '{{ var("reporting_currency") }}', p.date_day)) as spend
    from {{ source('marketing', 'ad_performance_daily') }} p
    left join campaigns c on c.ad_campaign_key = p.ad_campaign_key
    where p.level = 'CAMPAIGN' and not p.is_deleted
    group by 1
),
won as (
    select
        case
            when regexp_like(lower(lead_source), 'google|bing|search') then 'PAID_SEARCH'
            when regexp_like(lower(lead_source), 'meta|facebook|instagram|linkedin|social') then 'PAID_SOCIAL'
            when regexp_like(lower(lead_source), 'newsletter|email|mailchimp') then 'EMAIL'
            else 'OTHER'
        end as channel,
        count(*) as customers_won,
        sum(fx_convert(amount, currency, '{{ var("reporting_currency") }}', close_date)) as bookings
    from {{ source('crm', 'opportunities') }}
    where is_current and not is_deleted and stage_category = 'WON'
    group by 1
)
select
    coalesce(s.channel, w.channel) as channel,
    '{{ var("reporting_currency") }}' as currency,
    coalesce(s.spend, 0) as spend,
    coalesce(w.customers_won, 0) as customers_won,
    coalesce(w.bookings, 0) as bookings,
    case when w.customers_won > 0 and s.spend is not null then s.spend / w.customers_won end as cac,
    case when s.spend > 0 then w.bookings / s.spend end as roas
from spend s
full outer join won w on w.channel = s.channel
