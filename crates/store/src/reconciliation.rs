//! What reconciliation reads of our side of a business day, and its runs.

use crate::Result;
use sqlx::AnyConnection;

/// A captured payment: id, processor payment intent, amount (cents), decided at.
pub type CapturedPayment = (String, Option<String>, i64, i64);

/// Payments captured (succeeded, later refunded or not) with `decided_at` in `[from, to)`.
pub async fn captured_between(
    conn: &mut AnyConnection,
    from: i64,
    to: i64,
) -> Result<Vec<CapturedPayment>> {
    Ok(sqlx::query_as(
        "SELECT id, processor_payment_intent, amount_cents, decided_at FROM payments
         WHERE status IN ('succeeded', 'partially_refunded', 'refunded')
           AND decided_at >= $1 AND decided_at < $2
         ORDER BY decided_at, id",
    )
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?)
}

/// Refunds the processor made for us with their answer recorded in `[from, to)`: payment
/// refunds (`payment_refunds`) and exceptions refunded (`payment_exceptions`), as (our id,
/// processor refund id, amount in cents).
pub async fn refunds_between(
    conn: &mut AnyConnection,
    from: i64,
    to: i64,
) -> Result<Vec<(String, String, i64)>> {
    let mut out: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT id, processor_refund_id, amount_cents FROM payment_refunds
         WHERE status = 'succeeded' AND processor_refund_id IS NOT NULL
           AND decided_at >= $1 AND decided_at < $2",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    let exc: Vec<(String, String, Option<i64>)> = sqlx::query_as(
        "SELECT id, processor_refund_id, amount_cents FROM payment_exceptions
         WHERE processor_refund_id IS NOT NULL AND resolved_at >= $1 AND resolved_at < $2",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    out.extend(exc.into_iter().map(|(id, re, c)| (id, re, c.unwrap_or(0))));
    Ok(out)
}

/// A processor refund id we recorded at any time (payment refund or exception refund).
pub async fn refund_known(
    conn: &mut AnyConnection,
    processor_refund_id: &str,
) -> Result<Option<(String, i64)>> {
    let r: Option<(String, i64)> = sqlx::query_as(
        "SELECT id, amount_cents FROM payment_refunds WHERE processor_refund_id = $1",
    )
    .bind(processor_refund_id)
    .fetch_optional(&mut *conn)
    .await?;
    if r.is_some() {
        return Ok(r);
    }
    let e: Option<(String, Option<i64>)> = sqlx::query_as(
        "SELECT id, amount_cents FROM payment_exceptions WHERE processor_refund_id = $1",
    )
    .bind(processor_refund_id)
    .fetch_optional(conn)
    .await?;
    Ok(e.map(|(id, c)| (id, c.unwrap_or(0))))
}

/// Payment intents whose capture a resolved exception accounts for (attached, refunded or
/// explained): not "missing on our side" any more.
pub async fn accounted_intents(conn: &mut AnyConnection) -> Result<Vec<String>> {
    let keys: Vec<(String,)> = sqlx::query_as(
        "SELECT dedupe_key FROM payment_exceptions
         WHERE status = 'resolved' AND dedupe_key LIKE 'capture:%'",
    )
    .fetch_all(conn)
    .await?;
    Ok(keys
        .into_iter()
        .filter_map(|(k,)| k.strip_prefix("capture:").map(str::to_owned))
        .collect())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunRow {
    pub id: String,
    pub business_date: String,
    pub ran_at: i64,
    pub ran_by: String,
    pub processor_capture_count: i64,
    pub processor_captures_cents: i64,
    pub processor_refunds_cents: i64,
    pub payouts_cents: i64,
    pub our_payment_count: i64,
    pub our_payments_cents: i64,
    pub our_refunds_cents: i64,
    pub posted_cents: i64,
    pub exported: i64,
    pub differences: i64,
    pub new_exceptions: i64,
    pub detail: String,
}

const COLS: &str = "id, business_date, ran_at, ran_by, processor_capture_count, processor_captures_cents,
    processor_refunds_cents, payouts_cents, our_payment_count, our_payments_cents, our_refunds_cents,
    posted_cents, exported, differences, new_exceptions, detail";

pub async fn insert_run(conn: &mut AnyConnection, r: &RunRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO reconciliation_runs ({COLS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    ))
    .bind(&r.id)
    .bind(&r.business_date)
    .bind(r.ran_at)
    .bind(&r.ran_by)
    .bind(r.processor_capture_count)
    .bind(r.processor_captures_cents)
    .bind(r.processor_refunds_cents)
    .bind(r.payouts_cents)
    .bind(r.our_payment_count)
    .bind(r.our_payments_cents)
    .bind(r.our_refunds_cents)
    .bind(r.posted_cents)
    .bind(r.exported)
    .bind(r.differences)
    .bind(r.new_exceptions)
    .bind(&r.detail)
    .execute(conn)
    .await?;
    Ok(())
}

/// The newest run of each day, newest day first.
pub async fn latest_runs(conn: &mut AnyConnection, limit: i64) -> Result<Vec<RunRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM reconciliation_runs r
         WHERE ran_at = (SELECT MAX(ran_at) FROM reconciliation_runs x WHERE x.business_date = r.business_date)
         ORDER BY business_date DESC, id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Every run of one day, newest first.
pub async fn runs_of_day(conn: &mut AnyConnection, day: &str) -> Result<Vec<RunRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM reconciliation_runs WHERE business_date = $1 ORDER BY ran_at DESC, id"
    ))
    .bind(day)
    .fetch_all(conn)
    .await?)
}

/// Whether a day was reconciled at least once.
pub async fn has_run(conn: &mut AnyConnection, day: &str) -> Result<bool> {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM reconciliation_runs WHERE business_date = $1")
            .bind(day)
            .fetch_one(conn)
            .await?;
    Ok(n > 0)
}

/// The first business day anything was posted on (the city's first day with money).
pub async fn first_posting_day(conn: &mut AnyConnection) -> Result<Option<String>> {
    let (d,): (Option<String>,) = sqlx::query_as("SELECT MIN(business_date) FROM postings")
        .fetch_one(conn)
        .await?;
    Ok(d)
}
