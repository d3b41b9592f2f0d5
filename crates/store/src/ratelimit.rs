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
    sqlx::query(
        "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1)
         ON CONFLICT (bucket) DO UPDATE SET
            hits = CASE WHEN rate_limits.window_start = excluded.window_start THEN rate_limits.hits + 1 ELSE 1 END,
            window_start = excluded.window_start",
    )
    .bind(bucket)
    .bind(window_start)
    .execute(&mut *conn)
    .await?;
    let (hits,): (i64,) = sqlx::query_as("SELECT hits FROM rate_limits WHERE bucket = $1")
        .bind(bucket)
        .fetch_one(conn)
        .await?;
    Ok(hits)
}
