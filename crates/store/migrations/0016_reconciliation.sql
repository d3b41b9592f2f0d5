-- One run of the three-way match for a business day (the processor, our payments, our
-- postings). Kept for every run, so the history of a day can be read back; the newest run
-- of a day is its current state. Differences become payment_exceptions rows.
CREATE TABLE reconciliation_runs (
    id TEXT PRIMARY KEY,
    business_date TEXT NOT NULL,
    ran_at BIGINT NOT NULL,
    ran_by TEXT NOT NULL,
    processor_capture_count BIGINT NOT NULL,
    processor_captures_cents BIGINT NOT NULL,
    processor_refunds_cents BIGINT NOT NULL,
    payouts_cents BIGINT NOT NULL,
    our_payment_count BIGINT NOT NULL,
    our_payments_cents BIGINT NOT NULL,
    our_refunds_cents BIGINT NOT NULL,
    posted_cents BIGINT NOT NULL,
    exported BIGINT NOT NULL,
    differences BIGINT NOT NULL,
    new_exceptions BIGINT NOT NULL,
    -- JSON list of {kind, key, detail, exception_id}.
    detail TEXT NOT NULL
);
CREATE INDEX reconciliation_runs_by_day ON reconciliation_runs (business_date, ran_at);
