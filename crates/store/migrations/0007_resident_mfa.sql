-- Resident two-step sign-in (opt-in): the same shape as the staff tables of 0005
-- (TOTP, RFC 6238; keyed hashes of single-use recovery codes; login challenges held by the
-- browser as a random token in cookie `sr_resident_mfa`, path /login, only SHA-256 kept).
-- A row in `resident_mfa` with `enrolled_at` set means two-step sign-in is on; a row with
-- `enrolled_at` NULL is a secret shown on /account/security and not yet confirmed.
CREATE TABLE resident_mfa (
    resident_id TEXT PRIMARY KEY REFERENCES residents (id),
    totp_secret TEXT NOT NULL,
    enrolled_at BIGINT,
    last_used_step BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE resident_recovery_codes (
    resident_id TEXT NOT NULL REFERENCES residents (id),
    code_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (resident_id, code_hash)
);

CREATE TABLE resident_login_challenges (
    token_hash TEXT PRIMARY KEY,
    resident_id TEXT NOT NULL REFERENCES residents (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX resident_login_challenges_by_resident ON resident_login_challenges (resident_id);
