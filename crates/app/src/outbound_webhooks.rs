//! Outbound signed webhooks for cities whose CIS has an API: `payment.succeeded`,
//! `payment.refunded` and `bill.paid`.
//!
//! - Each event is enqueued, one delivery per subscribed endpoint, in the SAME transaction
//!   as the change it reports ([`App::enqueue_webhook`]), so an event is never sent for a
//!   change that was rolled back and never lost for one that committed.
//! - [`App::deliver_webhooks`] claims each due delivery by compare-and-set
//!   (`pending -> sending` until a claim deadline), so two nodes never send one delivery at
//!   once; a claim left by a crashed node runs out and the delivery is due again.
//! - The body is signed like the processor's webhooks (`processor::webhook::sign`):
//!   `Strongroom-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//! - A failure (no answer in 10 s, or a status other than 2xx) is retried with exponential
//!   backoff ([`backoff_secs`]) up to [`MAX_ATTEMPTS`]; then the delivery is `failed`. An
//!   administrator may re-send any delivered or failed one (audited).
//! - Signing secrets are generated here, shown once, and sealed at rest.

use crate::crypto::columns;
use crate::error::FieldProblem;
use crate::ids::random_id;
use crate::staff::{Role, StaffUser};
use crate::{App, AppError};
use domain::account::newly_paid_bills;
use rand::distributions::{Alphanumeric, DistString};
use serde_json::json;
use std::time::Duration;
use store::accounts;
use store::outbound_webhooks::{self as wh, DeliveryRow, EndpointRow};
use store::payments::PaymentRow;
use store::{Conn, StoreError};

/// The events an endpoint may subscribe to.
pub const EVENTS: &[&str] = &["payment.succeeded", "payment.refunded", "bill.paid"];
/// The signature header.
pub const SIGNATURE_HEADER: &str = "Strongroom-Signature";
/// After this many failed attempts a delivery is `failed` (a re-send tries once more).
pub const MAX_ATTEMPTS: i64 = 8;
const FIRST_BACKOFF_SECS: i64 = 30;
const MAX_BACKOFF_SECS: i64 = 6 * 3600;
/// How long a node's claim on a delivery lasts (longer than the request timeout).
const CLAIM_SECS: i64 = 60;
const TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries one worker pass sends at most.
const BATCH: i64 = 50;
const MAX_URL: usize = 500;

/// Seconds to wait after `attempts` failed attempts: 30 s, 1 min, 2 min, ... capped at 6 h.
pub fn backoff_secs(attempts: i64) -> i64 {
    let shift = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    FIRST_BACKOFF_SECS
        .checked_mul(1_i64 << shift)
        .map_or(MAX_BACKOFF_SECS, |s| s.min(MAX_BACKOFF_SECS))
}

/// Is this a URL webhooks may go to? `https://`, or `http://` to this machine (tests).
fn url_allowed(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    let local = matches!(
        u.host_str(),
        Some("127.0.0.1") | Some("localhost") | Some("[::1]")
    );
    let scheme_ok = u.scheme() == "https" || (u.scheme() == "http" && local);
    scheme_ok
        && u.host_str().is_some()
        && u.username().is_empty()
        && u.password().is_none()
        && url.len() <= MAX_URL
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[derive(Debug, Clone)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: i64,
}

/// A delivery as the log page shows it (never the secret).
#[derive(Debug, Clone)]
pub struct DeliveryView {
    pub id: String,
    pub endpoint_url: String,
    pub event_type: String,
    pub event_id: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
}

fn endpoint_view(e: EndpointRow) -> EndpointView {
    EndpointView {
        events: e.events.split_whitespace().map(str::to_owned).collect(),
        id: e.id,
        url: e.url,
        created_at: e.created_at,
    }
}

impl App {
    pub async fn webhook_endpoints(&self) -> Result<Vec<EndpointView>, AppError> {
        let mut conn = self.store.conn().await?;
        Ok(wh::live_endpoints(&mut conn)
            .await?
            .into_iter()
            .map(endpoint_view)
            .collect())
    }

    /// Adds an endpoint (administrators); returns it with its signing secret, shown once.
    pub async fn add_webhook_endpoint(
        &self,
        staff: &StaffUser,
        url: &str,
        events: &[String],
        source_ip: &str,
    ) -> Result<(EndpointView, String), AppError> {
        if staff.role != Role::Administrator {
            return Err(AppError::Forbidden);
        }
        let url = url.trim();
        let mut problems = Vec::new();
        if !url_allowed(url) {
            problems.push(FieldProblem::new(
                "webhook_url",
                "webhook_url",
                "enter an https:// address of at most 500 characters",
            ));
        }
        if events.is_empty() || events.iter().any(|e| !EVENTS.contains(&e.as_str())) {
            problems.push(FieldProblem::new(
                "webhook_events",
                "webhook_events",
                "choose at least one event",
            ));
        }
        if !problems.is_empty() {
            return Err(AppError::Fields(problems));
        }
        let mut events: Vec<String> = events.to_vec();
        events.sort();
        events.dedup();
        let secret = format!(
            "whsec_{}",
            Alphanumeric.sample_string(&mut rand::rngs::OsRng, 32)
        );
        let row = EndpointRow {
            id: format!("we_{}", random_id()),
            url: url.to_owned(),
            secret: self.seal(columns::WEBHOOK_SECRET, &secret)?,
            events: events.join(" "),
            created_at: self.now_unix(),
            created_by: staff.id.clone(),
            removed_at: None,
        };
        let mut tx = self.store.begin().await?;
        wh::insert_endpoint(&mut tx, &row).await?;
        self.audit(
            &mut tx,
            &format!("staff:{}", staff.id),
            "webhook_endpoint.added",
            &row.id,
            "success",
            source_ip,
            &format!("{}: {}", row.url, row.events),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok((endpoint_view(row), secret))
    }

    pub async fn remove_webhook_endpoint(
        &self,
        staff: &StaffUser,
        id: &str,
        source_ip: &str,
    ) -> Result<(), AppError> {
        if staff.role != Role::Administrator {
            return Err(AppError::Forbidden);
        }
        let mut tx = self.store.begin().await?;
        if !wh::remove_endpoint(&mut tx, id, self.now_unix()).await? {
            return Err(AppError::NotFound("webhook endpoint"));
        }
        self.audit(
            &mut tx,
            &format!("staff:{}", staff.id),
            "webhook_endpoint.removed",
            id,
            "success",
            source_ip,
            "",
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Enqueues `event_type` with `data` for every endpoint subscribed to it, in the
    /// caller's transaction (the one that makes the change).
    pub(crate) async fn enqueue_webhook(
        &self,
        tx: &mut Conn,
        event_type: &str,
        data: serde_json::Value,
    ) -> Result<(), AppError> {
        let endpoints: Vec<EndpointRow> = wh::live_endpoints(tx)
            .await?
            .into_iter()
            .filter(|e| e.events.split_whitespace().any(|x| x == event_type))
            .collect();
        if endpoints.is_empty() {
            return Ok(());
        }
        let now = self.now_unix();
        let event_id = format!("evt_{}", random_id());
        let body = json!({
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": now,
            "data": { "object": data },
        })
        .to_string();
        for e in endpoints {
            wh::insert_delivery(
                tx,
                &DeliveryRow {
                    id: format!("wd_{}", random_id()),
                    endpoint_id: e.id,
                    event_id: event_id.clone(),
                    event_type: event_type.to_owned(),
                    body: body.clone(),
                    status: "pending".into(),
                    attempts: 0,
                    next_attempt_at: now,
                    claimed_until: 0,
                    last_status_code: None,
                    last_error: None,
                    created_at: now,
                    updated_at: now,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// `payment.succeeded` for a payment just captured and posted to its accounts' ledgers,
    /// and `bill.paid` for each bill it paid off (credits allocated to bills oldest first,
    /// `domain::account::newly_paid_bills`). In the settling transaction.
    pub(crate) async fn enqueue_payment_webhooks(
        &self,
        tx: &mut Conn,
        p: &PaymentRow,
    ) -> Result<(), AppError> {
        if wh::live_endpoints(tx).await?.is_empty() {
            return Ok(());
        }
        let items = store::payments::items(tx, &p.id).await?;
        let item_json: Vec<serde_json::Value> = items
            .iter()
            .map(|i| json!({ "account_number": i.account_number, "amount_cents": i.amount_cents, "item_type": i.item_type }))
            .collect();
        self.enqueue_webhook(
            tx,
            "payment.succeeded",
            json!({
                "payment_id": p.id,
                "confirmation_number": p.confirmation_number,
                "amount_cents": p.amount_cents,
                "currency": p.currency,
                "items": item_json,
            }),
        )
        .await?;
        for i in &items {
            // Oldest first. What has been paid toward the bills = billed - owed.
            let mut bills = accounts::bills(tx, &i.account_number, i64::MAX).await?;
            bills.reverse();
            let amounts: Vec<i64> = bills.iter().map(|b| b.amount_cents).collect();
            let billed = amounts
                .iter()
                .try_fold(0_i64, |a, &b| a.checked_add(b))
                .ok_or_else(|| AppError::Internal("bill total overflows".into()))?;
            let owed = accounts::balance_cents(tx, &i.account_number).await?;
            let after = billed.saturating_sub(owed);
            let before = after.saturating_sub(i.amount_cents);
            for k in newly_paid_bills(&amounts, before, after) {
                let b = &bills[k];
                self.enqueue_webhook(
                    tx,
                    "bill.paid",
                    json!({
                        "bill_id": b.id,
                        "account_number": b.account_number,
                        "amount_cents": b.amount_cents,
                        "due_on": b.due_on,
                        "payment_id": p.id,
                    }),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// One pass of the delivery worker: sends every due delivery this node can claim.
    /// Returns how many it attempted.
    pub async fn deliver_webhooks(&self) -> Result<usize, AppError> {
        let now = self.now_unix();
        let due = {
            let mut conn = self.store.conn().await?;
            wh::due(&mut conn, now, BATCH).await?
        };
        if due.is_empty() {
            return Ok(0);
        }
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AppError::Internal(format!("webhook client: {e}")))?;
        let mut attempted = 0;
        for id in due {
            let until = now + CLAIM_SECS;
            let (d, e) = {
                let mut conn = self.store.conn().await?;
                if !wh::claim(&mut conn, &id, now, until).await? {
                    continue; // another node has it
                }
                let Some(d) = wh::delivery(&mut conn, &id).await? else {
                    continue;
                };
                let Some(e) = wh::endpoint(&mut conn, &d.endpoint_id).await? else {
                    continue;
                };
                (d, e)
            };
            attempted += 1;
            let secret = self.open(columns::WEBHOOK_SECRET, &e.secret)?;
            let signature = processor::webhook::sign(d.body.as_bytes(), &secret, now);
            let answer = client
                .post(&e.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, signature)
                .body(d.body.clone())
                .send()
                .await;
            let (code, error) = match answer {
                Ok(r) if r.status().is_success() => (Some(i64::from(r.status().as_u16())), None),
                Ok(r) => (
                    Some(i64::from(r.status().as_u16())),
                    Some(format!("answered {}", r.status().as_u16())),
                ),
                Err(err) if err.is_timeout() => (None, Some("no answer in 10 seconds".to_owned())),
                Err(_) => (None, Some("could not connect".to_owned())),
            };
            let attempts = d.attempts + 1;
            let (status, next) = match (&error, attempts >= MAX_ATTEMPTS) {
                (None, _) => ("delivered", now),
                (Some(_), true) => ("failed", now),
                (Some(_), false) => ("pending", now + backoff_secs(attempts)),
            };
            if error.is_some() {
                tracing::warn!(delivery = %d.id, attempts, status, "webhook delivery failed");
            }
            let mut conn = self.store.conn().await?;
            wh::record_attempt(
                &mut conn,
                &d.id,
                until,
                status,
                next,
                code,
                error.as_deref(),
                self.now_unix(),
            )
            .await?;
        }
        Ok(attempted)
    }

    /// The newest deliveries with their endpoint's address.
    pub async fn webhook_deliveries(&self, limit: i64) -> Result<Vec<DeliveryView>, AppError> {
        let mut conn = self.store.conn().await?;
        let rows = wh::recent(&mut conn, limit).await?;
        let mut out = Vec::with_capacity(rows.len());
        for d in rows {
            let endpoint_url = wh::endpoint(&mut conn, &d.endpoint_id)
                .await?
                .map(|e| e.url)
                .unwrap_or_default();
            out.push(DeliveryView {
                id: d.id,
                endpoint_url,
                event_type: d.event_type,
                event_id: d.event_id,
                status: d.status,
                attempts: d.attempts,
                next_attempt_at: d.next_attempt_at,
                last_status_code: d.last_status_code,
                last_error: d.last_error,
                created_at: d.created_at,
            });
        }
        Ok(out)
    }

    /// Puts a delivered or failed delivery back in the queue, due now (administrators;
    /// audited). The same event id and body are sent again, freshly signed.
    pub async fn resend_webhook(
        &self,
        staff: &StaffUser,
        id: &str,
        source_ip: &str,
    ) -> Result<(), AppError> {
        if staff.role != Role::Administrator {
            return Err(AppError::Forbidden);
        }
        let mut tx = self.store.begin().await?;
        let d = wh::delivery(&mut tx, id)
            .await?
            .ok_or(AppError::NotFound("webhook delivery"))?;
        if !wh::requeue(&mut tx, id, self.now_unix()).await? {
            return Err(AppError::invalid(
                "delivery",
                "this delivery is already waiting to be sent",
            ));
        }
        self.audit(
            &mut tx,
            &format!("staff:{}", staff.id),
            "webhook.resent",
            id,
            "success",
            source_ip,
            &format!("{} {} (was {})", d.event_type, d.event_id, d.status),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{backoff_secs, url_allowed};

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_secs(1), 30);
        assert_eq!(backoff_secs(2), 60);
        assert_eq!(backoff_secs(5), 480);
        assert_eq!(backoff_secs(100), 6 * 3600);
    }

    #[test]
    fn only_https_or_this_machine() {
        assert!(url_allowed("https://cis.example.gov/hooks"));
        assert!(url_allowed("http://127.0.0.1:8080/x"));
        assert!(url_allowed("http://localhost/x"));
        assert!(!url_allowed("http://cis.example.gov/hooks"));
        assert!(!url_allowed("ftp://cis.example.gov/"));
        assert!(!url_allowed("https://user:pw@cis.example.gov/"));
        assert!(!url_allowed("not a url"));
    }
}
