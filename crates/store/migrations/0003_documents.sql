-- Documents attached to utility accounts by staff (later: permit plans).
-- The content is an opaque blob kept in the database, never a file: there is no path
-- derived from the uploaded name, and nothing is written to the filesystem. It is stored
-- base64-encoded in TEXT so the one migration serves SQLite and PostgreSQL alike.
-- `original_name` is the checked name, for display and the download's filename only.
CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    account_number TEXT NOT NULL REFERENCES utility_accounts (account_number),
    uploaded_by TEXT NOT NULL REFERENCES staff_users (id),
    original_name TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    content_base64 TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX documents_by_account ON documents (account_number, created_at);
