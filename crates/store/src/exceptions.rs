//! The exceptions queue: money at the processor that our ledger does not account for,
//! each kept `open` until a person resolves it.

use crate::Result;
use sqlx::AnyConnection;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExceptionRow {
    pub id: String,
    pub dedupe_key: String,
    pub kind: String,
    pub payment_id: Option<String>,
    pub processor_ref: Option<String>,
    pub amount_cents: Option<i64>,
    pub currency: Option<String>,
    pub business_date: Option<String>,
    pub evidence: String,
    pub status: String,
    pub resolution: Option<String>,
    pub resolution_account: Option<String>,
    pub resolution_note: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<i64>,
    pub processor_refund_id: Option<String>,
    pub created_at: i64,
}

const COLS: &str =
    "id, dedupe_key, kind, payment_id, processor_ref, amount_cents, currency, business_date,
    evidence, status, resolution, resolution_account, resolution_note, resolved_by, resolved_at,
    processor_refund_id, created_at";

/// Inserts the exception unless one with the same `dedupe_key` exists. True if inserted.
pub async fn insert_once(conn: &mut AnyConnection, e: &ExceptionRow) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO payment_exceptions (id, dedupe_key, kind, payment_id, processor_ref, amount_cents, currency,
            business_date, evidence, status, resolution, resolution_account, resolution_note, resolved_by,
            resolved_at, processor_refund_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(&e.id)
    .bind(&e.dedupe_key)
    .bind(&e.kind)
    .bind(&e.payment_id)
    .bind(&e.processor_ref)
    .bind(e.amount_cents)
    .bind(&e.currency)
    .bind(&e.business_date)
    .bind(&e.evidence)
    .bind(&e.status)
    .bind(&e.resolution)
    .bind(&e.resolution_account)
    .bind(&e.resolution_note)
    .bind(&e.resolved_by)
    .bind(e.resolved_at)
    .bind(&e.processor_refund_id)
    .bind(e.created_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<ExceptionRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM payment_exceptions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

pub async fn by_dedupe_key(conn: &mut AnyConnection, key: &str) -> Result<Option<ExceptionRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM payment_exceptions WHERE dedupe_key = $1"
    ))
    .bind(key)
    .fetch_optional(conn)
    .await?)
}

/// Newest first; `status` `None` lists all.
pub async fn list(
    conn: &mut AnyConnection,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<ExceptionRow>> {
    Ok(match status {
        Some(st) => {
            sqlx::query_as(&format!(
                "SELECT {COLS} FROM payment_exceptions WHERE status = $1
                 ORDER BY created_at DESC, id LIMIT $2"
            ))
            .bind(st)
            .bind(limit)
            .fetch_all(conn)
            .await?
        }
        None => {
            sqlx::query_as(&format!(
                "SELECT {COLS} FROM payment_exceptions ORDER BY created_at DESC, id LIMIT $1"
            ))
            .bind(limit)
            .fetch_all(conn)
            .await?
        }
    })
}

pub async fn count_open(conn: &mut AnyConnection) -> Result<i64> {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM payment_exceptions WHERE status = 'open'")
            .fetch_one(conn)
            .await?;
    Ok(n)
}

/// Moves an exception from `from` to `to` (compare-and-set: of two people resolving one
/// exception at once, exactly one wins). True if this call made the change.
#[allow(clippy::too_many_arguments)]
pub async fn transition(
    conn: &mut AnyConnection,
    id: &str,
    from: &str,
    to: &str,
    resolution: &str,
    account: Option<&str>,
    note: &str,
    staff_id: &str,
    at: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE payment_exceptions SET status = $1, resolution = $2, resolution_account = $3,
            resolution_note = $4, resolved_by = $5, resolved_at = $6
         WHERE id = $7 AND status = $8",
    )
    .bind(to)
    .bind(resolution)
    .bind(account)
    .bind(note)
    .bind(staff_id)
    .bind(at)
    .bind(id)
    .bind(from)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_refund_id(conn: &mut AnyConnection, id: &str, refund_id: &str) -> Result<()> {
    sqlx::query("UPDATE payment_exceptions SET processor_refund_id = $1 WHERE id = $2")
        .bind(refund_id)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Back to `open` after a refund the processor refused (`refunding -> open`).
pub async fn reopen(conn: &mut AnyConnection, id: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE payment_exceptions SET status = 'open', resolution = NULL, resolution_note = NULL,
            resolved_by = NULL, resolved_at = NULL
         WHERE id = $1 AND status = 'refunding'",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
