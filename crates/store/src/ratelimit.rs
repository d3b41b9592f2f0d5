//! Fixed-window counters kept in the database, so every app node sees the same limits.

use crate::Result;
use sqlx::AnyConnection;

/// Counts one hit in `bucket`'s current window; returns the count including this hit.
pub async fn hit(
    conn: &mut AnyConnection,
    bucket: &str,
    now: i64,
    window_secs: i64,
) -> Result<i64> {
    let window_start = now - now.rem_euclid(window_secs.max(1));
    // One statement: the count comes back with the write (no window for a concurrent
    // prune between an upsert and a separate read).
    let (hits,): (i64,) = sqlx::query_as(
        "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1)
         ON CONFLICT (bucket) DO UPDATE SET
            hits = CASE WHEN rate_limits.window_start = excluded.window_start THEN rate_limits.hits + 1 ELSE 1 END,
            window_start = excluded.window_start
         RETURNING hits",
    )
    .bind(bucket)
    .bind(window_start)
    .fetch_one(conn)
    .await?;
    Ok(hits)
}

/// Removes counters whose window started before `before` (every window is at most an
/// hour, so a day-old counter counts for nothing): buckets keyed by address or name do
/// not pile up forever. Returns how many went.
pub async fn prune(conn: &mut AnyConnection, before: i64) -> Result<u64> {
    let r = sqlx::query("DELETE FROM rate_limits WHERE window_start < $1")
        .bind(before)
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}
