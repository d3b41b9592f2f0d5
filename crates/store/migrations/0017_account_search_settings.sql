-- Staff account search: a keyed blind index of the normalised words of each account's
-- holder name and service street (both sealed at rest). word_key is
-- HMAC-SHA256(index key, "account_word" || 0 || word); see app::crypto and app::account_search.
CREATE TABLE account_search_words (
    account_number TEXT NOT NULL REFERENCES utility_accounts (account_number),
    word_key TEXT NOT NULL,
    PRIMARY KEY (account_number, word_key)
);
CREATE INDEX account_search_words_by_key ON account_search_words (word_key, account_number);

-- Back-office settings (app::settings): one row per setting changed from its configured
-- default; each change is audited with before and after in the same transaction.
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
