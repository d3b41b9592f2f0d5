//! Bulk SQL of the bill import: existing bills and accounts of a chunk in one query each,
//! new rows in multi-row INSERTs (a chunk of bills costs a handful of statements, not a
//! handful per bill).

use crate::accounts::{AccountRow, BillLineRow, BillRow, LedgerRow};
use crate::Result;
use sqlx::AnyConnection;

/// A bill already stored under a CIS bill id.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KnownBill {
    pub id: String,
    pub cis_bill_id: String,
    pub account_number: String,
    pub amount_cents: i64,
    pub import_id: Option<String>,
}

fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Bills stored under any of these CIS ids.
pub async fn known_bills(conn: &mut AnyConnection, cis_ids: &[String]) -> Result<Vec<KnownBill>> {
    if cis_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id, cis_bill_id, account_number, amount_cents, import_id FROM bills WHERE cis_bill_id IN ({})",
        placeholders(1, cis_ids.len())
    );
    let mut q = sqlx::query_as(&sql);
    for id in cis_ids {
        q = q.bind(id);
    }
    Ok(q.fetch_all(conn).await?)
}

/// Which of these account numbers exist.
pub async fn known_accounts(conn: &mut AnyConnection, numbers: &[String]) -> Result<Vec<String>> {
    if numbers.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT account_number FROM utility_accounts WHERE account_number IN ({})",
        placeholders(1, numbers.len())
    );
    let mut q = sqlx::query_as::<_, (String,)>(&sql);
    for n in numbers {
        q = q.bind(n);
    }
    Ok(q.fetch_all(conn).await?.into_iter().map(|(n,)| n).collect())
}

/// Rows per multi-row INSERT. PostgreSQL: 1,000 (13,000 bound parameters for the widest
/// table, 13 columns, well under its 65,535). SQLite: 50, because sqlx looks up each parameter's name
/// with `sqlite3_bind_parameter_name`, which walks the statement's parameter list: binding
/// costs the square of the parameters per statement (found with `perf`: at 400 rows that
/// lookup took most of an import's time).
async fn rows_per_insert(conn: &mut AnyConnection) -> usize {
    match crate::backend_of(conn).await {
        crate::Backend::Postgres => 1_000,
        crate::Backend::Sqlite => 50,
    }
}

/// One row's values bound onto a statement.
type Bind<T> = for<'q> fn(
    sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    &'q T,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// `INSERT INTO <into> VALUES (...), (...) <tail>` of `rows`, as many rows a statement as
/// the backend binds well (`rows_per_insert`).
async fn insert_rows<T>(
    conn: &mut AnyConnection,
    into: &str,
    width: usize,
    tail: &str,
    rows: &[T],
    bind: Bind<T>,
) -> Result<()> {
    let n = rows_per_insert(conn).await;
    for chunk in rows.chunks(n) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", placeholders(i * width + 1, width)))
            .collect();
        let sql = format!("INSERT INTO {into} VALUES {} {tail}", values.join(", "));
        let mut q = sqlx::query(&sql);
        for row in chunk {
            q = bind(q, row);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

pub async fn insert_accounts(conn: &mut AnyConnection, rows: &[AccountRow]) -> Result<()> {
    insert_rows(
        conn,
        "utility_accounts (account_number, postal_code, holder_name, service_street, service_city, currency, created_at)",
        7,
        "",
        rows,
        |q, a| {
            q.bind(&a.account_number)
                .bind(&a.postal_code)
                .bind(&a.holder_name)
                .bind(&a.service_street)
                .bind(&a.service_city)
                .bind(&a.currency)
                .bind(a.created_at)
        },
    )
    .await
}

/// (account number, sealed code, created at).
pub async fn insert_linking_codes(
    conn: &mut AnyConnection,
    rows: &[(String, String, i64)],
) -> Result<()> {
    insert_rows(
        conn,
        "account_linking_codes (account_number, code, created_at)",
        3,
        "ON CONFLICT (account_number) DO NOTHING",
        rows,
        |q, (a, c, t)| q.bind(a).bind(c).bind(*t),
    )
    .await
}

/// New bills with their CIS id; `import_id` is the import that writes them.
pub async fn insert_bills(
    conn: &mut AnyConnection,
    rows: &[(BillRow, String)],
    import_id: &str,
) -> Result<()> {
    let rows: Vec<(&BillRow, &String, &str)> =
        rows.iter().map(|(b, c)| (b, c, import_id)).collect();
    insert_rows(
        conn,
        "bills (id, account_number, period_start, period_end, issued_on, due_on, amount_cents,
                meter_previous, meter_current, usage_units, created_at, cis_bill_id, import_id)",
        13,
        "",
        &rows,
        |q, (b, cis, import)| {
            q.bind(&b.id)
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
                .bind(*cis)
                .bind(*import)
        },
    )
    .await
}

pub async fn insert_bill_lines(conn: &mut AnyConnection, rows: &[BillLineRow]) -> Result<()> {
    insert_rows(
        conn,
        "bill_lines (bill_id, line_no, kind, description, amount_cents)",
        5,
        "",
        rows,
        |q, l| {
            q.bind(&l.bill_id)
                .bind(l.line_no)
                .bind(&l.kind)
                .bind(&l.description)
                .bind(l.amount_cents)
        },
    )
    .await
}

pub async fn insert_ledger(conn: &mut AnyConnection, rows: &[LedgerRow]) -> Result<()> {
    insert_rows(
        conn,
        "account_ledger (id, account_number, kind, reference, amount_cents, description, posted_at)",
        7,
        "ON CONFLICT (account_number, kind, reference) DO NOTHING",
        rows,
        |q, e| {
            q.bind(&e.id)
                .bind(&e.account_number)
                .bind(&e.kind)
                .bind(&e.reference)
                .bind(e.amount_cents)
                .bind(&e.description)
                .bind(e.posted_at)
        },
    )
    .await
}

/// A stored bill's new amount and lines (its ledger adjustment is the caller's).
pub async fn update_bill(
    conn: &mut AnyConnection,
    b: &BillRow,
    lines: &[BillLineRow],
    import_id: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE bills SET period_start = $1, period_end = $2, issued_on = $3, due_on = $4, amount_cents = $5,
                meter_previous = $6, meter_current = $7, usage_units = $8, import_id = $9
         WHERE id = $10",
    )
    .bind(&b.period_start)
    .bind(&b.period_end)
    .bind(&b.issued_on)
    .bind(&b.due_on)
    .bind(b.amount_cents)
    .bind(b.meter_previous)
    .bind(b.meter_current)
    .bind(b.usage_units)
    .bind(import_id)
    .bind(&b.id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM bill_lines WHERE bill_id = $1")
        .bind(&b.id)
        .execute(&mut *conn)
        .await?;
    insert_bill_lines(conn, lines).await
}

/// Marks unchanged bills as seen by this import (so a second occurrence in the same file
/// is caught).
pub async fn touch_bills(conn: &mut AnyConnection, ids: &[String], import_id: &str) -> Result<()> {
    let n = rows_per_insert(conn).await;
    for chunk in ids.chunks(n) {
        let sql = format!(
            "UPDATE bills SET import_id = $1 WHERE id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(import_id);
        for id in chunk {
            q = q.bind(id);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Residents who asked for new-bill emails, linked to any of these accounts: (account,
/// sealed email).
pub async fn notice_recipients(
    conn: &mut AnyConnection,
    accounts: &[String],
) -> Result<Vec<(String, String)>> {
    if accounts.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT ra.account_number, r.email FROM resident_accounts ra JOIN residents r ON r.id = ra.resident_id
         WHERE r.bill_notices = 1 AND r.disabled = 0 AND ra.account_number IN ({})
         ORDER BY ra.account_number, r.id",
        placeholders(1, accounts.len())
    );
    let mut q = sqlx::query_as(&sql);
    for a in accounts {
        q = q.bind(a);
    }
    Ok(q.fetch_all(conn).await?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ImportRow {
    pub id: String,
    pub source: String,
    pub file_sha256: String,
    pub status: String,
    pub started_by: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub lines: i64,
    pub bills_created: i64,
    pub bills_updated: i64,
    pub bills_unchanged: i64,
    pub lines_skipped: i64,
    pub accounts_created: i64,
    pub errors: String,
}

const COLS: &str =
    "id, source, file_sha256, status, started_by, started_at, finished_at, lines, bills_created,
    bills_updated, bills_unchanged, lines_skipped, accounts_created, errors";

pub async fn insert_import(conn: &mut AnyConnection, r: &ImportRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO bill_imports ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .bind(&r.id)
    .bind(&r.source)
    .bind(&r.file_sha256)
    .bind(&r.status)
    .bind(&r.started_by)
    .bind(r.started_at)
    .bind(r.finished_at)
    .bind(r.lines)
    .bind(r.bills_created)
    .bind(r.bills_updated)
    .bind(r.bills_unchanged)
    .bind(r.lines_skipped)
    .bind(r.accounts_created)
    .bind(&r.errors)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn finish_import(conn: &mut AnyConnection, r: &ImportRow) -> Result<()> {
    sqlx::query(
        "UPDATE bill_imports SET status = $1, finished_at = $2, lines = $3, bills_created = $4,
            bills_updated = $5, bills_unchanged = $6, lines_skipped = $7, accounts_created = $8, errors = $9,
            file_sha256 = $10
         WHERE id = $11",
    )
    .bind(&r.status)
    .bind(r.finished_at)
    .bind(r.lines)
    .bind(r.bills_created)
    .bind(r.bills_updated)
    .bind(r.bills_unchanged)
    .bind(r.lines_skipped)
    .bind(r.accounts_created)
    .bind(&r.errors)
    .bind(&r.file_sha256)
    .bind(&r.id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn import(conn: &mut AnyConnection, id: &str) -> Result<Option<ImportRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLS} FROM bill_imports WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn recent_imports(conn: &mut AnyConnection, limit: i64) -> Result<Vec<ImportRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM bill_imports ORDER BY started_at DESC, id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// The sealed linking code of an account.
pub async fn linking_code(conn: &mut AnyConnection, account: &str) -> Result<Option<String>> {
    let r: Option<(String,)> =
        sqlx::query_as("SELECT code FROM account_linking_codes WHERE account_number = $1")
            .bind(account)
            .fetch_optional(conn)
            .await?;
    Ok(r.map(|(c,)| c))
}

/// The sealed linking codes of these accounts: (account, sealed code).
pub async fn linking_codes_of(
    conn: &mut AnyConnection,
    numbers: &[String],
) -> Result<Vec<(String, String)>> {
    if numbers.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT account_number, code FROM account_linking_codes WHERE account_number IN ({})",
        placeholders(1, numbers.len())
    );
    let mut q = sqlx::query_as(&sql);
    for n in numbers {
        q = q.bind(n);
    }
    Ok(q.fetch_all(conn).await?)
}

/// Sets an account's linking code (sealed), replacing any it had.
pub async fn set_linking_code(
    conn: &mut AnyConnection,
    account: &str,
    sealed: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO account_linking_codes (account_number, code, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (account_number) DO UPDATE SET code = excluded.code, created_at = excluded.created_at",
    )
    .bind(account)
    .bind(sealed)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Every (account, sealed code), by account number, after `after`, `limit` at a time.
pub async fn linking_codes_after(
    conn: &mut AnyConnection,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT account_number, code FROM account_linking_codes WHERE account_number > $1
         ORDER BY account_number LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Accounts with no linking code yet, `limit` at a time.
pub async fn accounts_without_code(conn: &mut AnyConnection, limit: i64) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT a.account_number FROM utility_accounts a
         LEFT JOIN account_linking_codes c ON c.account_number = a.account_number
         WHERE c.account_number IS NULL ORDER BY a.account_number LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(a,)| a).collect())
}

pub async fn set_bill_notices(conn: &mut AnyConnection, resident_id: &str, on: bool) -> Result<()> {
    sqlx::query("UPDATE residents SET bill_notices = $1 WHERE id = $2")
        .bind(i64::from(on))
        .bind(resident_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn bill_notices(conn: &mut AnyConnection, resident_id: &str) -> Result<bool> {
    let r: Option<(i64,)> = sqlx::query_as("SELECT bill_notices FROM residents WHERE id = $1")
        .bind(resident_id)
        .fetch_optional(conn)
        .await?;
    Ok(r.is_some_and(|(n,)| n != 0))
}
