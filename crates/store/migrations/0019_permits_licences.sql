-- Building permits, business licences, the invoices residents pay for them, inspections.

-- Permit and licence types as the city configures them (the config file or the back
-- office; both are audited). `definition` is the checked TOML of the type.
CREATE TABLE service_types (
    kind TEXT NOT NULL,
    code TEXT NOT NULL,
    definition TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, code)
);

-- A permit application and, once issued, the permit. Status: draft, submitted,
-- revision_requested, rejected, approved (fees invoiced), issued.
-- applicant_name and applicant_phone are sealed (personal data).
CREATE TABLE permits (
    id TEXT PRIMARY KEY,
    resident_id TEXT NOT NULL REFERENCES residents (id),
    permit_type TEXT NOT NULL,
    status TEXT NOT NULL,
    applicant_name TEXT NOT NULL,
    applicant_phone TEXT NOT NULL,
    site_street TEXT NOT NULL,
    site_zip TEXT NOT NULL,
    scope TEXT NOT NULL,
    valuation_cents BIGINT NOT NULL,
    area_sq_ft BIGINT NOT NULL,
    contractor_licence TEXT NOT NULL,
    permit_number TEXT UNIQUE,
    review_note TEXT,
    reviewed_by TEXT,
    submitted_at BIGINT,
    decided_at BIGINT,
    issued_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX permits_by_resident ON permits (resident_id, created_at);
CREATE INDEX permits_by_status ON permits (status, submitted_at);

-- Plans uploaded with an application: opaque blobs, like documents.
CREATE TABLE permit_plans (
    id TEXT PRIMARY KEY,
    permit_id TEXT NOT NULL REFERENCES permits (id),
    original_name TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    content_base64 TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX permit_plans_by_permit ON permit_plans (permit_id, created_at);

-- What a resident owes for a permit or a licence. Paid by payments whose items name the
-- invoice; `invoice_payments` makes each payment count once.
CREATE TABLE invoices (
    id TEXT PRIMARY KEY,
    item_type TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    resident_id TEXT,
    amount_cents BIGINT NOT NULL,
    paid_cents BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    paid_at BIGINT
);
CREATE INDEX invoices_by_subject ON invoices (subject_id, created_at);
CREATE INDEX invoices_by_resident ON invoices (resident_id, status);

CREATE TABLE invoice_lines (
    invoice_id TEXT NOT NULL REFERENCES invoices (id),
    line_no BIGINT NOT NULL,
    code TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    PRIMARY KEY (invoice_id, line_no)
);

CREATE TABLE invoice_payments (
    invoice_id TEXT NOT NULL REFERENCES invoices (id),
    payment_id TEXT NOT NULL REFERENCES payments (id),
    amount_cents BIGINT NOT NULL,
    posted_at BIGINT NOT NULL,
    PRIMARY KEY (invoice_id, payment_id)
);

-- Status: requested, passed, failed, partial, canceled. requested_for is 'YYYY-MM-DD'.
CREATE TABLE inspections (
    id TEXT PRIMARY KEY,
    permit_id TEXT NOT NULL REFERENCES permits (id),
    inspection_type TEXT NOT NULL,
    requested_for TEXT NOT NULL,
    status TEXT NOT NULL,
    result_note TEXT,
    inspector_id TEXT,
    recorded_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX inspections_by_day ON inspections (requested_for, status);
CREATE INDEX inspections_by_permit ON inspections (permit_id, created_at);

-- Inspections a day can take, where staff set it (otherwise the configured default).
CREATE TABLE inspection_capacity (
    day TEXT PRIMARY KEY,
    capacity BIGINT NOT NULL
);

-- A business licence. Status: pending (first fee unpaid), active, suspended, revoked.
CREATE TABLE licences (
    id TEXT PRIMARY KEY,
    licence_number TEXT UNIQUE,
    resident_id TEXT NOT NULL REFERENCES residents (id),
    licence_type TEXT NOT NULL,
    business_name TEXT NOT NULL,
    business_street TEXT NOT NULL,
    business_zip TEXT NOT NULL,
    employees BIGINT NOT NULL,
    gross_receipts_cents BIGINT NOT NULL,
    status TEXT NOT NULL,
    issued_on TEXT,
    expires_on TEXT,
    verification_code TEXT UNIQUE,
    renewal_notice_for TEXT,
    status_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX licences_by_resident ON licences (resident_id, created_at);
CREATE INDEX licences_by_expiry ON licences (status, expires_on);

-- Sequences for human numbers (permit and licence numbers), per name.
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
