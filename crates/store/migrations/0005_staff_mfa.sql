-- Staff multi-factor authentication (TOTP, RFC 6238) and recovery codes.
-- `totp_secret` is base32 (160 bits from the OS RNG). `enrolled_at` is NULL until the
-- member proves the app works by entering a first code. `last_used_step` is the 30-second
-- step of the newest code accepted: a code is accepted only for a later step, so no code
-- works twice.
CREATE TABLE staff_mfa (
    staff_id TEXT PRIMARY KEY REFERENCES staff_users (id),
    totp_secret TEXT NOT NULL,
    enrolled_at BIGINT,
    last_used_step BIGINT NOT NULL DEFAULT 0
);

-- Single-use recovery codes: only their SHA-256 is kept.
CREATE TABLE staff_recovery_codes (
    staff_id TEXT NOT NULL REFERENCES staff_users (id),
    code_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (staff_id, code_hash)
);

-- The half-signed-in step: the password was right, a code is still owed. The browser holds
-- a random token (cookie `sr_staff_mfa`, path /login); the table its SHA-256. A challenge
-- is never a session: it opens no page but /login/mfa.
CREATE TABLE staff_login_challenges (
    token_hash TEXT PRIMARY KEY,
    staff_id TEXT NOT NULL REFERENCES staff_users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX staff_login_challenges_by_staff ON staff_login_challenges (staff_id);
