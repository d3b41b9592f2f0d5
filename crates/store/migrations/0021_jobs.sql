-- Scheduled tasks that must run once across all nodes (expiry, refund recovery,
-- reconciliation, renewal notices, the search index): a node claims a task's row by
-- compare-and-set with a lease; another node takes it over when the lease ends (its
-- holder died). `next_run_at` spaces the runs.
CREATE TABLE jobs (
    name TEXT PRIMARY KEY,
    holder TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    next_run_at BIGINT NOT NULL DEFAULT 0,
    last_run_at BIGINT,
    runs BIGINT NOT NULL DEFAULT 0
);
