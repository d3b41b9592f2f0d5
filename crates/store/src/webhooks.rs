//! De-duplication of processor webhook events by event id.

use crate::Result;
use sqlx::AnyConnection;

/// Records the event id; returns false when it was already processed.
pub async fn mark_processed(
    conn: &mut AnyConnection,
    event_id: &str,
    kind: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO processed_webhooks (event_id, kind, received_at) VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(kind)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn was_processed(conn: &mut AnyConnection, event_id: &str) -> Result<bool> {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM processed_webhooks WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(conn)
            .await?;
    Ok(n > 0)
}
