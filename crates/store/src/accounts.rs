//! Utility accounts, their bills and the ledger that gives their balance.

use crate::Result;
use sqlx::AnyConnection;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    pub account_number: String,
    pub postal_code: String,
    pub holder_name: String,
    pub service_street: String,
    pub service_city: String,
    pub currency: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BillRow {
    pub id: String,
    pub account_number: String,
    pub period_start: String,
    pub period_end: String,
    pub issued_on: String,
    pub due_on: String,
    pub amount_cents: i64,
    pub meter_previous: Option<i64>,
    pub meter_current: Option<i64>,
    pub usage_units: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BillLineRow {
    pub bill_id: String,
    pub line_no: i64,
    pub kind: String,
    pub description: String,
    pub amount_cents: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LedgerRow {
    pub id: String,
    pub account_number: String,
    pub kind: String,
    pub reference: String,
    pub amount_cents: i64,
    pub description: String,
    pub posted_at: i64,
}

pub async fn get(conn: &mut AnyConnection, account_number: &str) -> Result<Option<AccountRow>> {
    Ok(sqlx::query_as(
        "SELECT account_number, postal_code, holder_name, service_street, service_city, currency, created_at
         FROM utility_accounts WHERE account_number = $1",
    )
    .bind(account_number)
    .fetch_optional(conn)
    .await?)
}

/// An account with its balance (the sum of its ledger), in one query.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountWithBalance {
    #[sqlx(flatten)]
    pub account: AccountRow,
    pub balance_cents: i64,
}

pub async fn get_with_balance(
    conn: &mut AnyConnection,
    account_number: &str,
) -> Result<Option<AccountWithBalance>> {
    Ok(sqlx::query_as(
        "SELECT a.account_number, a.postal_code, a.holder_name, a.service_street, a.service_city,
                a.currency, a.created_at,
                CAST((SELECT COALESCE(SUM(l.amount_cents), 0) FROM account_ledger l
                      WHERE l.account_number = a.account_number) AS BIGINT) AS balance_cents
         FROM utility_accounts a WHERE a.account_number = $1",
    )
    .bind(account_number)
    .fetch_optional(conn)
    .await?)
}

pub async fn insert(conn: &mut AnyConnection, a: &AccountRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO utility_accounts (account_number, postal_code, holder_name, service_street, service_city, currency, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&a.account_number)
    .bind(&a.postal_code)
    .bind(&a.holder_name)
    .bind(&a.service_street)
    .bind(&a.service_city)
    .bind(&a.currency)
    .bind(a.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn count(conn: &mut AnyConnection) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM utility_accounts")
        .fetch_one(conn)
        .await?;
    Ok(n)
}

/// What the account owes now: the sum of its ledger.
pub async fn balance_cents(conn: &mut AnyConnection, account_number: &str) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) FROM account_ledger WHERE account_number = $1",
    )
    .bind(account_number)
    .fetch_one(conn)
    .await?;
    Ok(n)
}

pub async fn insert_bill(
    conn: &mut AnyConnection,
    b: &BillRow,
    lines: &[BillLineRow],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO bills (id, account_number, period_start, period_end, issued_on, due_on, amount_cents,
                            meter_previous, meter_current, usage_units, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&b.id)
    .bind(&b.account_number)
    .bind(&b.period_start)
    .bind(&b.period_end)
    .bind(&b.issued_on)
    .bind(&b.due_on)
    .bind(b.amount_cents)
    .bind(b.meter_previous)
    .bind(b.meter_current)
    .bind(b.usage_units)
    .bind(b.created_at)
    .execute(&mut *conn)
    .await?;
    for l in lines {
        sqlx::query("INSERT INTO bill_lines (bill_id, line_no, kind, description, amount_cents) VALUES ($1, $2, $3, $4, $5)")
            .bind(&l.bill_id)
            .bind(l.line_no)
            .bind(&l.kind)
            .bind(&l.description)
            .bind(l.amount_cents)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Bills of an account, newest first.
pub async fn bills(
    conn: &mut AnyConnection,
    account_number: &str,
    limit: i64,
) -> Result<Vec<BillRow>> {
    Ok(sqlx::query_as(
        "SELECT id, account_number, period_start, period_end, issued_on, due_on, amount_cents,
                meter_previous, meter_current, usage_units, created_at
         FROM bills WHERE account_number = $1 ORDER BY issued_on DESC, id DESC LIMIT $2",
    )
    .bind(account_number)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

pub async fn latest_bill(
    conn: &mut AnyConnection,
    account_number: &str,
) -> Result<Option<BillRow>> {
    Ok(bills(conn, account_number, 1).await?.into_iter().next())
}

pub async fn bill(conn: &mut AnyConnection, bill_id: &str) -> Result<Option<BillRow>> {
    Ok(sqlx::query_as(
        "SELECT id, account_number, period_start, period_end, issued_on, due_on, amount_cents,
                meter_previous, meter_current, usage_units, created_at
         FROM bills WHERE id = $1",
    )
    .bind(bill_id)
    .fetch_optional(conn)
    .await?)
}

/// The lines of several bills in one query, in each bill's line order.
pub async fn bill_lines_of(
    conn: &mut AnyConnection,
    bill_ids: &[&str],
) -> Result<Vec<BillLineRow>> {
    crate::fetch_for_ids(
        conn,
        "SELECT bill_id, line_no, kind, description, amount_cents FROM bill_lines
         WHERE bill_id IN ({ids}) ORDER BY bill_id, line_no",
        bill_ids,
    )
    .await
}

pub async fn bill_lines(conn: &mut AnyConnection, bill_id: &str) -> Result<Vec<BillLineRow>> {
    Ok(sqlx::query_as(
        "SELECT bill_id, line_no, kind, description, amount_cents FROM bill_lines WHERE bill_id = $1 ORDER BY line_no",
    )
    .bind(bill_id)
    .fetch_all(conn)
    .await?)
}

/// Adds a ledger entry unless one with the same (account, kind, reference) exists.
/// Returns whether it was added: this is what makes posting exactly-once.
pub async fn post_ledger(conn: &mut AnyConnection, e: &LedgerRow) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO account_ledger (id, account_number, kind, reference, amount_cents, description, posted_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (account_number, kind, reference) DO NOTHING",
    )
    .bind(&e.id)
    .bind(&e.account_number)
    .bind(&e.kind)
    .bind(&e.reference)
    .bind(e.amount_cents)
    .bind(&e.description)
    .bind(e.posted_at)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn ledger(
    conn: &mut AnyConnection,
    account_number: &str,
    limit: i64,
) -> Result<Vec<LedgerRow>> {
    Ok(sqlx::query_as(
        "SELECT id, account_number, kind, reference, amount_cents, description, posted_at
         FROM account_ledger WHERE account_number = $1 ORDER BY posted_at DESC, id DESC LIMIT $2",
    )
    .bind(account_number)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Accounts not yet in the search index, with their sealed name and street.
pub async fn unindexed(
    conn: &mut AnyConnection,
    limit: i64,
) -> Result<Vec<(String, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT a.account_number, a.holder_name, a.service_street FROM utility_accounts a
         LEFT JOIN account_search_done d ON d.account_number = a.account_number
         WHERE d.account_number IS NULL ORDER BY a.account_number LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Records an account's word tokens and marks it indexed.
pub async fn index_account(
    conn: &mut AnyConnection,
    account: &str,
    tokens: &[String],
) -> Result<()> {
    for t in tokens {
        sqlx::query(
            "INSERT INTO account_search (token, account_number) VALUES ($1, $2)
             ON CONFLICT (token, account_number) DO NOTHING",
        )
        .bind(t)
        .bind(account)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "INSERT INTO account_search_done (account_number) VALUES ($1)
         ON CONFLICT (account_number) DO NOTHING",
    )
    .bind(account)
    .execute(conn)
    .await?;
    Ok(())
}

/// Accounts carrying every one of these tokens (at most `limit`).
pub async fn with_tokens(
    conn: &mut AnyConnection,
    tokens: &[String],
    limit: i64,
) -> Result<Vec<String>> {
    if tokens.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT account_number FROM account_search WHERE token IN ({}) GROUP BY account_number
         HAVING COUNT(*) = ${} ORDER BY account_number LIMIT ${}",
        crate::placeholders(tokens.len()),
        tokens.len() + 1,
        tokens.len() + 2
    );
    let mut q = sqlx::query_as::<_, (String,)>(&sql);
    for t in tokens {
        q = q.bind(t);
    }
    let rows = q
        .bind(tokens.len() as i64)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(|(a,)| a).collect())
}

/// Account numbers starting with `prefix` (digits only).
pub async fn with_prefix(
    conn: &mut AnyConnection,
    prefix: &str,
    limit: i64,
) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT account_number FROM utility_accounts WHERE account_number LIKE $1 ORDER BY account_number LIMIT $2",
    )
    .bind(format!("{prefix}%"))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(a,)| a).collect())
}
