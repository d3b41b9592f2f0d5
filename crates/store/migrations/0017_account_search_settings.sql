-- Staff account search: a keyed blind index of the normalised words of each account's
-- holder name and service street (both sealed at rest). word_key is
-- HMAC-SHA256(index key, "account_word" || 0 || word); see app::crypto and app::account_search.
CREATE TABLE account_search_words (
    account_number TEXT NOT NULL REFERENCES utility_accounts (account_number),
    word_key TEXT NOT NULL,
    PRIMARY KEY (account_number, word_key)
);
CREATE INDEX account_search_words_by_key ON account_search_words (word_key, account_number);

-- Back-office settings (app::settings): one row per setting changed from its configured
-- default; each change is audited with before and after in the same transaction.
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

-- Outbound signed webhooks (app::outbound_webhooks). The signing secret is sealed
-- (column webhook_endpoints.secret); removed endpoints are kept for the delivery log.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    removed_at BIGINT
);
-- One row per endpoint per event, enqueued in the transaction of the change. status:
-- pending -> sending (claimed by compare-and-set until claimed_until) -> delivered, or back
-- to pending with a later next_attempt_at, or failed after the last attempt.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id),
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL DEFAULT 0,
    last_status_code BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
