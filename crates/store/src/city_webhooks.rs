//! Settings changed in the back office, and outbound webhooks to the city's systems.

use crate::Result;
use sqlx::AnyConnection;

pub async fn settings(conn: &mut AnyConnection) -> Result<Vec<(String, String)>> {
    Ok(
        sqlx::query_as("SELECT key, value FROM settings ORDER BY key")
            .fetch_all(conn)
            .await?,
    )
}

pub async fn put_setting(
    conn: &mut AnyConnection,
    key: &str,
    value: &str,
    at: i64,
    by: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO settings (key, value, updated_at, updated_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT (key) DO UPDATE SET value = $2, updated_at = $3, updated_by = $4",
    )
    .bind(key)
    .bind(value)
    .bind(at)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    pub secret: String,
    pub events: String,
    pub created_by: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

const ECOLS: &str = "id, url, secret, events, created_by, created_at, disabled_at";

pub async fn insert_endpoint(conn: &mut AnyConnection, e: &EndpointRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO webhook_endpoints ({ECOLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(&e.id)
    .bind(&e.url)
    .bind(&e.secret)
    .bind(&e.events)
    .bind(&e.created_by)
    .bind(e.created_at)
    .bind(e.disabled_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn endpoints(conn: &mut AnyConnection) -> Result<Vec<EndpointRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ECOLS} FROM webhook_endpoints ORDER BY created_at, id"
    ))
    .fetch_all(conn)
    .await?)
}

pub async fn endpoint(conn: &mut AnyConnection, id: &str) -> Result<Option<EndpointRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ECOLS} FROM webhook_endpoints WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

pub async fn disable_endpoint(conn: &mut AnyConnection, id: &str, at: i64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE webhook_endpoints SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL",
    )
    .bind(at)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub lease_until: Option<i64>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

const DCOLS: &str =
    "id, endpoint_id, event_id, event_type, payload, status, attempts, next_attempt_at,
    lease_until, last_status, last_error, created_at, delivered_at";

pub async fn insert_delivery(conn: &mut AnyConnection, d: &DeliveryRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO webhook_deliveries ({DCOLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (endpoint_id, event_id) DO NOTHING"
    ))
    .bind(&d.id)
    .bind(&d.endpoint_id)
    .bind(&d.event_id)
    .bind(&d.event_type)
    .bind(&d.payload)
    .bind(&d.status)
    .bind(d.attempts)
    .bind(d.next_attempt_at)
    .bind(d.lease_until)
    .bind(d.last_status)
    .bind(&d.last_error)
    .bind(d.created_at)
    .bind(d.delivered_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deliveries due now: pending ones whose time has come, and `sending` ones whose lease
/// ran out (their sender died).
pub async fn due(conn: &mut AnyConnection, now: i64, limit: i64) -> Result<Vec<DeliveryRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {DCOLS} FROM webhook_deliveries
         WHERE (status = 'pending' AND next_attempt_at <= $1) OR (status = 'sending' AND lease_until < $1)
         ORDER BY next_attempt_at, id LIMIT $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Claims a delivery for one sender until `lease_until` (compare-and-set on its state):
/// two workers, or two nodes, never send one delivery twice at once.
pub async fn claim(
    conn: &mut AnyConnection,
    id: &str,
    status: &str,
    attempts: i64,
    lease_until: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'sending', lease_until = $1
         WHERE id = $2 AND status = $3 AND attempts = $4",
    )
    .bind(lease_until)
    .bind(id)
    .bind(status)
    .bind(attempts)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Records an attempt's outcome.
#[allow(clippy::too_many_arguments)]
pub async fn finish(
    conn: &mut AnyConnection,
    id: &str,
    status: &str,
    attempts: i64,
    next_attempt_at: i64,
    last_status: Option<i64>,
    last_error: Option<&str>,
    delivered_at: Option<i64>,
) -> Result<()> {
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $1, attempts = $2, next_attempt_at = $3, lease_until = NULL,
            last_status = $4, last_error = $5, delivered_at = $6
         WHERE id = $7",
    )
    .bind(status)
    .bind(attempts)
    .bind(next_attempt_at)
    .bind(last_status)
    .bind(last_error)
    .bind(delivered_at)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn deliveries(conn: &mut AnyConnection, limit: i64) -> Result<Vec<DeliveryRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {DCOLS} FROM webhook_deliveries ORDER BY created_at DESC, id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Queues a delivery again now (a person's resend). True if it was not being sent.
pub async fn resend(conn: &mut AnyConnection, id: &str, now: i64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1, attempts = 0
         WHERE id = $2 AND status <> 'sending'",
    )
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// An account's bills, newest first: (id, CIS id, cents).
pub async fn bills_newest_first(
    conn: &mut AnyConnection,
    account: &str,
) -> Result<Vec<(String, Option<String>, i64)>> {
    Ok(sqlx::query_as(
        "SELECT id, cis_bill_id, amount_cents FROM bills WHERE account_number = $1 ORDER BY issued_on DESC, id DESC",
    )
    .bind(account)
    .fetch_all(conn)
    .await?)
}

pub async fn set_paid(conn: &mut AnyConnection, bill_id: &str, at: i64) -> Result<()> {
    sqlx::query("UPDATE bills SET paid_at = $1 WHERE id = $2 AND paid_at IS NULL")
        .bind(at)
        .bind(bill_id)
        .execute(conn)
        .await?;
    Ok(())
}
