-- Refunds staff give back to a payer, per payment item (utility account). A refund is
-- `requested` (its amount already reserved in payments.refunded_cents, so two refunds
-- racing cannot together exceed what was paid), then `succeeded` (posted back to the
-- account's ledger) or `failed` (the reservation released). The processor call carries
-- the refund's id as its idempotency key.
CREATE TABLE payment_refunds (
    id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    account_number TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    reason TEXT NOT NULL,
    staff_id TEXT NOT NULL,
    status TEXT NOT NULL,
    processor_refund_id TEXT,
    created_at BIGINT NOT NULL,
    decided_at BIGINT
);
CREATE INDEX payment_refunds_by_payment ON payment_refunds (payment_id, created_at);
