-- The city's ledger: each payment, refund and exception resolution becomes posting lines
-- (fund, department, ledger account) on the business day it happened. UNIQUE makes
-- posting exactly-once. A day's postings are exported once (posting_exports); the export
-- of a day can be produced again, byte for byte, from the postings it marked.
CREATE TABLE postings (
    id TEXT PRIMARY KEY,
    business_date TEXT NOT NULL,
    kind TEXT NOT NULL,
    source_id TEXT NOT NULL,
    line_no BIGINT NOT NULL,
    item_type TEXT NOT NULL,
    fund TEXT NOT NULL,
    department TEXT NOT NULL,
    ledger_account TEXT NOT NULL,
    account_number TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    currency TEXT NOT NULL,
    payment_method TEXT NOT NULL,
    reference TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    export_id TEXT,
    UNIQUE (kind, source_id, line_no)
);
CREATE INDEX postings_by_day ON postings (business_date, created_at);

CREATE TABLE posting_exports (
    id TEXT PRIMARY KEY,
    business_date TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    exported_by TEXT NOT NULL,
    row_count BIGINT NOT NULL,
    total_cents BIGINT NOT NULL
);
