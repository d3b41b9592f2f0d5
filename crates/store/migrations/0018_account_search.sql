-- Staff find accounts by holder name or service street, which are sealed at rest: each
-- word is kept only as a keyed blind index (HMAC under the index key), so the table shows
-- nobody's name. `account_search_done` marks the accounts indexed.
CREATE TABLE account_search (
    token TEXT NOT NULL,
    account_number TEXT NOT NULL,
    PRIMARY KEY (token, account_number)
);
CREATE TABLE account_search_done (
    account_number TEXT PRIMARY KEY
);
