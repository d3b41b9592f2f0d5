//! Outbound webhook endpoints and their deliveries (migration 0017).

use crate::Result;
use sqlx::AnyConnection;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    /// Sealed.
    pub secret: String,
    /// Space-separated event types.
    pub events: String,
    pub created_at: i64,
    pub created_by: String,
    pub removed_at: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub body: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub claimed_until: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const ENDPOINT_COLS: &str = "id, url, secret, events, created_at, created_by, removed_at";
const DELIVERY_COLS: &str = "id, endpoint_id, event_id, event_type, body, status, attempts, next_attempt_at, claimed_until, last_status_code, last_error, created_at, updated_at";

pub async fn insert_endpoint(conn: &mut AnyConnection, e: &EndpointRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, url, secret, events, created_at, created_by, removed_at)
         VALUES ($1, $2, $3, $4, $5, $6, NULL)",
    )
    .bind(&e.id)
    .bind(&e.url)
    .bind(&e.secret)
    .bind(&e.events)
    .bind(e.created_at)
    .bind(&e.created_by)
    .execute(conn)
    .await?;
    Ok(())
}

/// Endpoints not removed, oldest first.
pub async fn live_endpoints(conn: &mut AnyConnection) -> Result<Vec<EndpointRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLS} FROM webhook_endpoints WHERE removed_at IS NULL ORDER BY created_at, id"
    ))
    .fetch_all(conn)
    .await?)
}

pub async fn endpoint(conn: &mut AnyConnection, id: &str) -> Result<Option<EndpointRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLS} FROM webhook_endpoints WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// Marks an endpoint removed; false when it was unknown or removed already.
pub async fn remove_endpoint(conn: &mut AnyConnection, id: &str, at: i64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE webhook_endpoints SET removed_at = $2 WHERE id = $1 AND removed_at IS NULL",
    )
    .bind(id)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn insert_delivery(conn: &mut AnyConnection, d: &DeliveryRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO webhook_deliveries ({DELIVERY_COLS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (endpoint_id, event_id) DO NOTHING"
    ))
    .bind(&d.id)
    .bind(&d.endpoint_id)
    .bind(&d.event_id)
    .bind(&d.event_type)
    .bind(&d.body)
    .bind(&d.status)
    .bind(d.attempts)
    .bind(d.next_attempt_at)
    .bind(d.claimed_until)
    .bind(d.last_status_code)
    .bind(&d.last_error)
    .bind(d.created_at)
    .bind(d.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ids of deliveries due at `now`: pending and due, or claimed by a node whose claim ran out.
pub async fn due(conn: &mut AnyConnection, now: i64, limit: i64) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM webhook_deliveries
         WHERE (status = 'pending' AND next_attempt_at <= $1)
            OR (status = 'sending' AND claimed_until <= $1)
         ORDER BY next_attempt_at, id LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(i,)| i).collect())
}

/// Compare-and-set claim of a due delivery until `until`; false when another node has it.
pub async fn claim(conn: &mut AnyConnection, id: &str, now: i64, until: i64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'sending', claimed_until = $3, updated_at = $2
         WHERE id = $1 AND ((status = 'pending' AND next_attempt_at <= $2)
            OR (status = 'sending' AND claimed_until <= $2))",
    )
    .bind(id)
    .bind(now)
    .bind(until)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn delivery(conn: &mut AnyConnection, id: &str) -> Result<Option<DeliveryRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// Records an attempt's outcome, if the claim `claimed_until` is still ours.
#[allow(clippy::too_many_arguments)]
pub async fn record_attempt(
    conn: &mut AnyConnection,
    id: &str,
    claimed_until: i64,
    status: &str,
    next_attempt_at: i64,
    code: Option<i64>,
    error: Option<&str>,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE webhook_deliveries SET status = $3, attempts = attempts + 1, next_attempt_at = $4,
           last_status_code = $5, last_error = $6, updated_at = $7
         WHERE id = $1 AND status = 'sending' AND claimed_until = $2",
    )
    .bind(id)
    .bind(claimed_until)
    .bind(status)
    .bind(next_attempt_at)
    .bind(code)
    .bind(error)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Puts a delivered or failed delivery back in the queue, due now; false when it is
/// unknown or still pending or being sent.
pub async fn requeue(conn: &mut AnyConnection, id: &str, now: i64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $2, updated_at = $2
         WHERE id = $1 AND status IN ('delivered', 'failed')",
    )
    .bind(id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The newest deliveries, for the log page.
pub async fn recent(conn: &mut AnyConnection, limit: i64) -> Result<Vec<DeliveryRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLS} FROM webhook_deliveries ORDER BY created_at DESC, id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}
