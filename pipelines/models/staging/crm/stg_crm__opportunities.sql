-- The present state of every deal: the current version of each, deleted ones left out.
select
    opportunity_key,
    source_system,
    name,
    stage_category,
    organization_key,
    amount,
    currency,
    close_date
from {{ source('crm', 'opportunities') }}
where is_current and not is_deleted
