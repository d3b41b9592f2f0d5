-- Bills from the city's billing system (CIS), keyed by the CIS's own bill id: importing a
-- file again, or an overlapping one, finds the same bills. `import_id` is the import that
-- last wrote the bill (a bill id twice in one file is an error).
ALTER TABLE bills ADD COLUMN cis_bill_id TEXT;
ALTER TABLE bills ADD COLUMN import_id TEXT;
CREATE UNIQUE INDEX bills_by_cis_id ON bills (cis_bill_id);

-- One run of a bill file: who, which file, what it did.
CREATE TABLE bill_imports (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    status TEXT NOT NULL,
    started_by TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    lines BIGINT NOT NULL DEFAULT 0,
    bills_created BIGINT NOT NULL DEFAULT 0,
    bills_updated BIGINT NOT NULL DEFAULT 0,
    bills_unchanged BIGINT NOT NULL DEFAULT 0,
    lines_skipped BIGINT NOT NULL DEFAULT 0,
    accounts_created BIGINT NOT NULL DEFAULT 0,
    -- JSON list of {line, field, message}, at most 100.
    errors TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX bill_imports_by_time ON bill_imports (started_at);

-- The code printed on paper bills that proves a resident holds the bill: linking an
-- account to a login takes it. Sealed (the bill printer needs it back), one per account.
CREATE TABLE account_linking_codes (
    account_number TEXT PRIMARY KEY REFERENCES utility_accounts (account_number),
    code TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Residents who asked to be emailed when a new bill is ready.
ALTER TABLE residents ADD COLUMN bill_notices BIGINT NOT NULL DEFAULT 0;
