//! Emails are written here in the same transaction as what caused them; a worker delivers.

use crate::Result;
use sqlx::AnyConnection;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EmailRow {
    pub id: String,
    pub to_addr: String,
    pub subject: String,
    pub body_text: String,
    pub kind: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

const COLS: &str = "id, to_addr, subject, body_text, kind, status, attempts, next_attempt_at, last_error, created_at, sent_at";

// The row's fields, spelled out; `to` and `body` arrive sealed, `to_index` is the
// recipient's blind index.
#[allow(clippy::too_many_arguments)]
pub async fn enqueue(
    conn: &mut AnyConnection,
    id: &str,
    to: &str,
    to_index: &str,
    subject: &str,
    body: &str,
    kind: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox_emails (id, to_addr, to_index, subject, body_text, kind, status, attempts, next_attempt_at, created_at)
         VALUES ($1, $2, $7, $3, $4, $5, 'pending', 0, $6, $6)",
    )
    .bind(id)
    .bind(to)
    .bind(subject)
    .bind(body)
    .bind(kind)
    .bind(now)
    .bind(to_index)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn due(conn: &mut AnyConnection, now: i64, limit: i64) -> Result<Vec<EmailRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM outbox_emails WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

pub async fn mark_sent(conn: &mut AnyConnection, id: &str, status: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE outbox_emails SET status = $1, sent_at = $2, attempts = attempts + 1, last_error = NULL WHERE id = $3")
        .bind(status)
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a failed attempt; gives up (status `failed`) after `max_attempts`.
pub async fn mark_retry(
    conn: &mut AnyConnection,
    id: &str,
    error: &str,
    next_at: i64,
    max_attempts: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE outbox_emails SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2,
            status = CASE WHEN attempts + 1 >= $3 THEN 'failed' ELSE 'pending' END WHERE id = $4",
    )
    .bind(error)
    .bind(next_at)
    .bind(max_attempts)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn recent(conn: &mut AnyConnection, limit: i64) -> Result<Vec<EmailRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM outbox_emails ORDER BY created_at DESC, id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<EmailRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLS} FROM outbox_emails WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

/// Emails to one recipient, found by the blind index of the address.
pub async fn for_recipient(
    conn: &mut AnyConnection,
    to_index: &str,
    limit: i64,
) -> Result<Vec<EmailRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM outbox_emails WHERE to_index = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
    ))
    .bind(to_index)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Claims a due email for `lease_secs`: its next attempt moves to the end of the lease, so
/// no other node picks it up meanwhile, and it is due again if this node dies before
/// recording the outcome. True if this caller now holds it.
pub async fn claim(conn: &mut AnyConnection, id: &str, now: i64, lease_secs: i64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE outbox_emails SET next_attempt_at = $3
         WHERE id = $1 AND status = 'pending' AND next_attempt_at <= $2",
    )
    .bind(id)
    .bind(now)
    .bind(now + lease_secs)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}
