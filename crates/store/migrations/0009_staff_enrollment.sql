-- Administrator-issued enrollment: a staff member's first second factor (and any after a
-- reset) is enrolled only with a one-time code an administrator gave them out of band
-- (`strongroom staff-add`, or "Reset sign-in factors" at /admin/sessions), so knowing
-- the password first is not enough to own the account's second factor. Only a keyed hash
-- of the code is kept; it is used once and expires.
CREATE TABLE staff_enrollment_codes (
    staff_id TEXT PRIMARY KEY REFERENCES staff_users (id),
    code_hash TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
