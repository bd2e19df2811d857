-- Money that moved, signed (in positive, out negative), deleted payments left out.
select
    payment_key,
    source_system,
    payment_type,
    amount,
    currency,
    paid_at
from {{ source('finance', 'payments') }}
where not is_deleted and paid_at is not null
