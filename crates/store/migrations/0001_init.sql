-- Portable subset of SQL for SQLite and PostgreSQL: TEXT, BIGINT, no auto-increment,
-- times as BIGINT unix seconds (UTC), calendar dates as TEXT 'YYYY-MM-DD', money as BIGINT cents.

CREATE TABLE utility_accounts (
    account_number TEXT PRIMARY KEY,
    postal_code TEXT NOT NULL,
    holder_name TEXT NOT NULL,
    service_street TEXT NOT NULL,
    service_city TEXT NOT NULL,
    currency TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE bills (
    id TEXT PRIMARY KEY,
    account_number TEXT NOT NULL REFERENCES utility_accounts (account_number),
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    issued_on TEXT NOT NULL,
    due_on TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    meter_previous BIGINT,
    meter_current BIGINT,
    usage_units BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX bills_by_account ON bills (account_number, issued_on);

CREATE TABLE bill_lines (
    bill_id TEXT NOT NULL REFERENCES bills (id),
    line_no BIGINT NOT NULL,
    kind TEXT NOT NULL,
    description TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    PRIMARY KEY (bill_id, line_no)
);

-- Every change to what an account owes. Balance = SUM(amount_cents).
-- Bills are positive, payments negative. UNIQUE makes posting exactly-once.
CREATE TABLE account_ledger (
    id TEXT PRIMARY KEY,
    account_number TEXT NOT NULL REFERENCES utility_accounts (account_number),
    kind TEXT NOT NULL,
    reference TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    description TEXT NOT NULL,
    posted_at BIGINT NOT NULL,
    UNIQUE (account_number, kind, reference)
);
CREATE INDEX ledger_by_account ON account_ledger (account_number, posted_at);

CREATE TABLE residents (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    email_verified_at BIGINT,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE resident_tokens (
    token_hash TEXT PRIMARY KEY,
    resident_id TEXT NOT NULL REFERENCES residents (id),
    purpose TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE resident_accounts (
    resident_id TEXT NOT NULL REFERENCES residents (id),
    account_number TEXT NOT NULL REFERENCES utility_accounts (account_number),
    linked_at BIGINT NOT NULL,
    PRIMARY KEY (resident_id, account_number)
);

CREATE TABLE staff_users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    disabled BIGINT NOT NULL DEFAULT 0,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT,
    created_at BIGINT NOT NULL
);

-- Sessions for both realms; a cookie holds a random token, the table its SHA-256.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    realm TEXT NOT NULL,
    user_id TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (realm, user_id);

CREATE TABLE payments (
    id TEXT PRIMARY KEY,
    confirmation_number TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    currency TEXT NOT NULL,
    email TEXT NOT NULL,
    resident_id TEXT,
    channel TEXT NOT NULL,
    processor_session_id TEXT UNIQUE,
    processor_payment_intent TEXT,
    card_brand TEXT,
    card_last4 TEXT,
    failure_code TEXT,
    failure_message TEXT,
    refunded_cents BIGINT NOT NULL DEFAULT 0,
    return_url TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    decided_at BIGINT
);
CREATE INDEX payments_by_status ON payments (status, created_at);
CREATE INDEX payments_by_email ON payments (email);
CREATE INDEX payments_by_resident ON payments (resident_id, created_at);

CREATE TABLE payment_items (
    payment_id TEXT NOT NULL REFERENCES payments (id),
    line_no BIGINT NOT NULL,
    item_type TEXT NOT NULL,
    account_number TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    PRIMARY KEY (payment_id, line_no)
);
CREATE INDEX payment_items_by_account ON payment_items (account_number);

-- The timeline staff see: created, processor events, posting.
CREATE TABLE payment_events (
    id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX payment_events_by_payment ON payment_events (payment_id, at);

CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response_status BIGINT,
    response_body TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);

CREATE TABLE processed_webhooks (
    event_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    received_at BIGINT NOT NULL
);

-- Append-only, hash-chained with a keyed MAC: hash = HMAC(key, prev_hash || fields).
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    event TEXT NOT NULL,
    object TEXT NOT NULL,
    outcome TEXT NOT NULL,
    source_ip TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE TABLE outbox_emails (
    id TEXT PRIMARY KEY,
    to_addr TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX outbox_due ON outbox_emails (status, next_attempt_at);

CREATE TABLE rate_limits (
    bucket TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    hits BIGINT NOT NULL
);
