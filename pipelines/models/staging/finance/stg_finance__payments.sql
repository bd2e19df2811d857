-- Money that moved, signed (in positive, out negative), deleted payments left out.
select
    payment_key,
    source_system,
    payment_type,
    customer_key,
    customer_email,
    amount,
    currency,
    amount_refunded,
    settlement_amount,
    settlement_amount_refunded,
    settlement_currency,
    paid_at
from {{ source('finance', 'payments') }}
where not is_deleted and paid_at is not null
