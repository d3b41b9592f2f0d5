-- Audit entries written on PostgreSQL wait here, in the transaction of the change they
-- record, without any lock; a sealer then chains them into `audit_log` in batches under
-- a lock held only for the batch (see `store::audit::seal`). On SQLite (one writer)
-- entries are chained at once and this table stays empty. The id comes from the
-- `audit_pending_id` sequence on PostgreSQL (created with the backend-specific DDL).
CREATE TABLE audit_pending (
    id BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    event TEXT NOT NULL,
    object TEXT NOT NULL,
    outcome TEXT NOT NULL,
    source_ip TEXT NOT NULL,
    detail TEXT NOT NULL
);
