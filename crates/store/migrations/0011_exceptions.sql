-- Money the processor holds that our ledger does not account for (a capture for a session
-- we do not know, an amount that differs, a capture after we closed the payment, and every
-- difference reconciliation finds). Nothing of this kind is acknowledged silently: each
-- row stays `open` until a supervisor resolves it (attached to an account, refunded, or
-- explained with a reason), and every step is audited.
CREATE TABLE payment_exceptions (
    id TEXT PRIMARY KEY,
    -- One exception per fact: a repeated webhook or a second reconciliation run finds the
    -- same key and adds nothing.
    dedupe_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    payment_id TEXT,
    processor_ref TEXT,
    amount_cents BIGINT,
    currency TEXT,
    business_date TEXT,
    -- The processor's evidence (ids, amounts, status, times) as JSON; never card data or
    -- the payer's email.
    evidence TEXT NOT NULL,
    status TEXT NOT NULL,
    resolution TEXT,
    resolution_account TEXT,
    resolution_note TEXT,
    resolved_by TEXT,
    resolved_at BIGINT,
    processor_refund_id TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX payment_exceptions_by_status ON payment_exceptions (status, created_at);

-- The portal's payment forms carry a one-time key: a double click or a resubmitted form
-- finds the payment it already started instead of starting a second one.
ALTER TABLE payments ADD COLUMN form_key TEXT;
CREATE UNIQUE INDEX payments_by_form_key ON payments (form_key);
