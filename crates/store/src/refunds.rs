//! Refunds of payment items, and the reservation that keeps concurrent refunds within
//! what was paid.

use crate::Result;
use sqlx::AnyConnection;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefundRow {
    pub id: String,
    pub payment_id: String,
    pub account_number: String,
    pub amount_cents: i64,
    pub reason: String,
    pub staff_id: String,
    /// `requested`, `succeeded` or `failed`.
    pub status: String,
    pub processor_refund_id: Option<String>,
    pub created_at: i64,
    pub decided_at: Option<i64>,
}

const COLS: &str = "id, payment_id, account_number, amount_cents, reason, staff_id, status, processor_refund_id, created_at, decided_at";

/// Adds `cents` to the payment's refunded total if the total stays within the amount
/// paid (a compare-and-set; on PostgreSQL the row lock also orders concurrent refunds).
pub async fn reserve(
    conn: &mut AnyConnection,
    payment_id: &str,
    cents: i64,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE payments SET refunded_cents = refunded_cents + $1, updated_at = $2
         WHERE id = $3 AND refunded_cents + $1 <= amount_cents",
    )
    .bind(cents)
    .bind(now)
    .bind(payment_id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Moves a captured payment to a refund status (`from` -> `to`, compare-and-set); its
/// decision time stays when the payment was decided.
pub async fn set_status(
    conn: &mut AnyConnection,
    payment_id: &str,
    from: &str,
    to: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE payments SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4",
    )
    .bind(to)
    .bind(now)
    .bind(payment_id)
    .bind(from)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Gives back a reservation (the processor refused the refund).
pub async fn release(
    conn: &mut AnyConnection,
    payment_id: &str,
    cents: i64,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE payments SET refunded_cents = refunded_cents - $1, updated_at = $2 WHERE id = $3",
    )
    .bind(cents)
    .bind(now)
    .bind(payment_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn insert(conn: &mut AnyConnection, r: &RefundRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO payment_refunds ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(&r.id)
    .bind(&r.payment_id)
    .bind(&r.account_number)
    .bind(r.amount_cents)
    .bind(&r.reason)
    .bind(&r.staff_id)
    .bind(&r.status)
    .bind(&r.processor_refund_id)
    .bind(r.created_at)
    .bind(r.decided_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves a `requested` refund to `succeeded` or `failed`; false if it was decided already.
pub async fn decide(
    conn: &mut AnyConnection,
    id: &str,
    status: &str,
    processor_refund_id: Option<&str>,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE payment_refunds SET status = $1, processor_refund_id = $2, decided_at = $3
         WHERE id = $4 AND status = 'requested'",
    )
    .bind(status)
    .bind(processor_refund_id)
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A payment's refunds, oldest first.
pub async fn for_payment(conn: &mut AnyConnection, payment_id: &str) -> Result<Vec<RefundRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM payment_refunds WHERE payment_id = $1 ORDER BY created_at, id"
    ))
    .bind(payment_id)
    .fetch_all(conn)
    .await?)
}

/// Refunds still `requested` that were made before `before`, oldest first.
pub async fn stuck(conn: &mut AnyConnection, before: i64, limit: i64) -> Result<Vec<RefundRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM payment_refunds WHERE status = 'requested' AND created_at < $1 ORDER BY created_at, id LIMIT $2"
    ))
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// `awaiting_approval -> requested` by a second person (compare-and-set: of two approvals
/// racing, one wins). True if this call approved it.
pub async fn approve(conn: &mut AnyConnection, id: &str, staff_id: &str) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE payment_refunds SET status = 'requested', approved_by = $1
         WHERE id = $2 AND status = 'awaiting_approval'",
    )
    .bind(staff_id)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// `awaiting_approval -> rejected` (compare-and-set). True if this call rejected it.
pub async fn reject(
    conn: &mut AnyConnection,
    id: &str,
    staff_id: &str,
    note: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE payment_refunds SET status = 'rejected', approved_by = $1, review_note = $2, decided_at = $3
         WHERE id = $4 AND status = 'awaiting_approval'",
    )
    .bind(staff_id)
    .bind(note)
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<RefundRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLS} FROM payment_refunds WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

/// Refunds waiting for a second person, oldest first.
pub async fn awaiting(conn: &mut AnyConnection, limit: i64) -> Result<Vec<RefundRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM payment_refunds WHERE status = 'awaiting_approval' ORDER BY created_at, id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}
