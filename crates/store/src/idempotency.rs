//! Idempotency keys for payment creation: the first request with a key reserves it; a
//! repeat with the same request replays the stored response; a different request is refused.

use crate::Result;
use sqlx::AnyConnection;

/// How long an unfinished reservation holds its key.
pub const STALE_SECS: i64 = 600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The key is new and now reserved for this request.
    Reserved,
    /// Same key, same request, finished: replay this response.
    Replay { status: i64, body: String },
    /// Same key, same request, still running.
    InProgress,
    /// Same key, different request.
    Mismatch,
}

pub async fn reserve(
    conn: &mut AnyConnection,
    scope: &str,
    key: &str,
    request_hash: &str,
    now: i64,
) -> Result<Reservation> {
    let r = sqlx::query(
        "INSERT INTO idempotency_keys (scope, idem_key, request_hash, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (scope, idem_key) DO NOTHING",
    )
    .bind(scope)
    .bind(key)
    .bind(request_hash)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 1 {
        return Ok(Reservation::Reserved);
    }
    // A reservation whose request never finished (the client went away mid-request) is
    // reclaimed after ten minutes, so the key does not answer "in progress" forever.
    let reclaimed = sqlx::query(
        "UPDATE idempotency_keys SET request_hash = $1, created_at = $2
         WHERE scope = $3 AND idem_key = $4 AND response_status IS NULL AND created_at < $5",
    )
    .bind(request_hash)
    .bind(now)
    .bind(scope)
    .bind(key)
    .bind(now - STALE_SECS)
    .execute(&mut *conn)
    .await?;
    if reclaimed.rows_affected() == 1 {
        return Ok(Reservation::Reserved);
    }
    let (hash, status, body): (String, Option<i64>, Option<String>) = sqlx::query_as(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys WHERE scope = $1 AND idem_key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_one(conn)
    .await?;
    Ok(match (hash == request_hash, status, body) {
        (false, _, _) => Reservation::Mismatch,
        (true, Some(status), Some(body)) => Reservation::Replay { status, body },
        (true, _, _) => Reservation::InProgress,
    })
}

pub async fn complete(
    conn: &mut AnyConnection,
    scope: &str,
    key: &str,
    status: i64,
    body: &str,
) -> Result<()> {
    sqlx::query("UPDATE idempotency_keys SET response_status = $1, response_body = $2 WHERE scope = $3 AND idem_key = $4")
        .bind(status)
        .bind(body)
        .bind(scope)
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Frees a key whose request failed before doing anything, so the client may retry.
pub async fn release(conn: &mut AnyConnection, scope: &str, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND idem_key = $2 AND response_status IS NULL")
        .bind(scope)
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Forgets keys older than `before` (a day after use, as the processor does), so stored
/// keys cannot pile up without bound. Returns how many went.
pub async fn prune(conn: &mut AnyConnection, before: i64) -> Result<u64> {
    let r = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(before)
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}
