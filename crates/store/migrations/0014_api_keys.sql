-- Keys of the city's systems for the JSON API. Shown once when made; only the SHA-256 of
-- the secret is kept. `sr_live_<id>_<secret>`: the id finds the row, the secret proves the
-- key. Scopes are space-separated (bills:write payments:read postings:read refunds:write).
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    last_used_at BIGINT
);
