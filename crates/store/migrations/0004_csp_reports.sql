-- Content-Security-Policy violation reports from browsers (PCI DSS 11.6.1). Only the
-- document's path, the violated directive and the blocked resource's origin are kept:
-- never query strings, fragments or full URLs, which could carry personal data.
CREATE TABLE csp_reports (
    id TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL,
    document_path TEXT NOT NULL,
    violated_directive TEXT NOT NULL,
    blocked_origin TEXT NOT NULL
);
CREATE INDEX csp_reports_by_time ON csp_reports (received_at);
