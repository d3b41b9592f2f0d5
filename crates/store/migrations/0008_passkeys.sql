-- Passkeys (WebAuthn) of staff and residents: a second factor beside TOTP.
-- `credential` is the relying party's record of the credential (public key, algorithm,
-- signature counter, flags) as webauthn-rs serialises it: public data, no secret.
-- `credential_id` (base64url) is unique per realm, so one authenticator cannot be
-- registered to two people.
CREATE TABLE passkeys (
    id TEXT PRIMARY KEY,
    realm TEXT NOT NULL,
    user_id TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    name TEXT NOT NULL,
    credential TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    UNIQUE (realm, credential_id)
);
CREATE INDEX passkeys_by_user ON passkeys (realm, user_id);

-- The server's half of a ceremony in progress (the challenge it issued), between the
-- request that starts it and the one that finishes it. Keyed by the SHA-256 of a random
-- token the browser holds (a form field for registration, the login challenge cookie for
-- sign-in); used once, then deleted; 5 minutes at most.
CREATE TABLE passkey_ceremonies (
    token_hash TEXT PRIMARY KEY,
    realm TEXT NOT NULL,
    user_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    state TEXT NOT NULL,
    options TEXT NOT NULL,
    label TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
