//! Real-time events to the city's systems: `payment.succeeded`, `payment.refunded` and
//! `bill.paid`, POSTed as JSON to the endpoints administrators configure, signed like the
//! processor's (`Strongroom-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`,
//! the secret shown once when the endpoint is added and kept sealed).
//!
//! A delivery is recorded in the same transaction as the change it reports, so an event is
//! never lost nor invented. The worker claims each due delivery by compare-and-set with a
//! lease (two workers or two nodes never send one at once; a sender that died is taken
//! over when its lease ends), and retries a failure with exponential backoff (30 s, 1 min,
//! 2 min, ... 8 attempts), then marks it failed. Staff read the delivery log and send one
//! again (audited).

use crate::crypto::columns;
use crate::ids::random_id;
use crate::staff::{Role, StaffUser};
use crate::{App, AppError, FieldProblem};
use store::city_webhooks::{self as cw, DeliveryRow, EndpointRow};
use store::{Conn, StoreError};

/// The events an endpoint can receive.
pub const EVENTS: [&str; 3] = ["payment.succeeded", "payment.refunded", "bill.paid"];
/// Attempts before a delivery is marked failed.
pub const MAX_ATTEMPTS: i64 = 8;
/// How long a claimed delivery is the claimer's.
pub const LEASE_SECS: i64 = 60;

/// An endpoint as the back office shows it (never its secret).
#[derive(Debug, Clone)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: i64,
    pub disabled: bool,
}

/// Where an endpoint may be: https, or http on this machine (a relay, or tests).
fn url_allowed(u: &str) -> bool {
    let Ok(url) = url::Url::parse(u) else {
        return false;
    };
    match url.scheme() {
        "https" => url.host_str().is_some(),
        "http" => matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
        _ => false,
    }
}

/// Backoff after `attempts` failed attempts.
fn backoff(attempts: i64) -> i64 {
    30 * (1i64 << attempts.clamp(0, 10))
}

impl App {
    pub async fn webhook_endpoints(&self) -> Result<Vec<EndpointView>, AppError> {
        let mut conn = self.store.conn().await?;
        Ok(cw::endpoints(&mut conn)
            .await?
            .into_iter()
            .map(|e| EndpointView {
                id: e.id,
                url: e.url,
                events: e.events.split_whitespace().map(str::to_owned).collect(),
                created_at: e.created_at,
                disabled: e.disabled_at.is_some(),
            })
            .collect())
    }

    /// Adds an endpoint (administrators); returns its id and its signing secret, shown once.
    pub async fn add_webhook_endpoint(
        &self,
        staff: &StaffUser,
        url: &str,
        events: &[String],
        source_ip: &str,
    ) -> Result<(String, String), AppError> {
        if staff.role != Role::Administrator {
            return Err(AppError::Forbidden);
        }
        let url = url.trim();
        let mut problems = Vec::new();
        if url.len() > 500 || !url_allowed(url) {
            problems.push(FieldProblem::new(
                "url",
                "webhook_url",
                "an https:// address",
            ));
        }
        if events.is_empty() || events.iter().any(|e| !EVENTS.contains(&e.as_str())) {
            problems.push(FieldProblem::new(
                "events",
                "webhook_events",
                "choose the events to send",
            ));
        }
        if !problems.is_empty() {
            return Err(AppError::Fields(problems));
        }
        let id = format!("we_{}", random_id());
        let secret = format!("srw_{}", crate::ids::random_token());
        let row = EndpointRow {
            id: id.clone(),
            url: url.to_owned(),
            secret: self.seal(columns::WEBHOOK_SECRET, &secret)?,
            events: events.join(" "),
            created_by: staff.id.clone(),
            created_at: self.now_unix(),
            disabled_at: None,
        };
        let mut tx = self.store.begin().await?;
        cw::insert_endpoint(&mut tx, &row).await?;
        self.audit(
            &mut tx,
            &format!("staff:{}", staff.id),
            "settings.changed",
            &id,
            "success",
            source_ip,
            &format!("webhook endpoint added: none -> {url} ({})", row.events),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok((id, secret))
    }

    pub async fn disable_webhook_endpoint(
        &self,
        staff: &StaffUser,
        id: &str,
        source_ip: &str,
    ) -> Result<(), AppError> {
        if staff.role != Role::Administrator {
            return Err(AppError::Forbidden);
        }
        let mut tx = self.store.begin().await?;
        let e = cw::endpoint(&mut tx, id)
            .await?
            .ok_or(AppError::NotFound("webhook endpoint"))?;
        if cw::disable_endpoint(&mut tx, id, self.now_unix()).await? {
            self.audit(
                &mut tx,
                &format!("staff:{}", staff.id),
                "settings.changed",
                id,
                "success",
                source_ip,
                &format!("webhook endpoint removed: {} -> none", e.url),
            )
            .await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Records an event for every endpoint that wants it, in the caller's transaction.
    pub(crate) async fn enqueue_city_event(
        &self,
        tx: &mut Conn,
        kind: &str,
        object: serde_json::Value,
    ) -> Result<(), AppError> {
        let endpoints = cw::endpoints(tx).await?;
        let now = self.now_unix();
        let event_id = format!("evt_{}", random_id());
        let payload = serde_json::json!({
            "id": event_id,
            "type": kind,
            "created": now,
            "data": { "object": object },
        })
        .to_string();
        for e in endpoints
            .into_iter()
            .filter(|e| e.disabled_at.is_none() && e.events.split_whitespace().any(|x| x == kind))
        {
            cw::insert_delivery(
                tx,
                &DeliveryRow {
                    id: format!("wd_{}", random_id()),
                    endpoint_id: e.id,
                    event_id: event_id.clone(),
                    event_type: kind.to_owned(),
                    payload: payload.clone(),
                    status: "pending".into(),
                    attempts: 0,
                    next_attempt_at: now,
                    lease_until: None,
                    last_status: None,
                    last_error: None,
                    created_at: now,
                    delivered_at: None,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// After a payment is posted: the bills it paid off (oldest bills are paid first) are
    /// `bill.paid` events. `paid` is (account, cents) of each item.
    pub(crate) async fn bills_paid_events(
        &self,
        tx: &mut Conn,
        paid: &[(String, i64)],
        payment_id: &str,
    ) -> Result<(), AppError> {
        let now = self.now_unix();
        for (account, cents) in paid {
            let after = store::accounts::balance_cents(tx, account).await?;
            let bills = cw::bills_newest_first(tx, account).await?;
            let amounts: Vec<(String, i64)> =
                bills.iter().map(|(id, _, c)| (id.clone(), *c)).collect();
            let newly = domain::reconcile::newly_paid(&amounts, after + cents, after);
            for id in newly {
                let Some((_, cis, amount)) = bills.iter().find(|(b, _, _)| b == id) else {
                    continue;
                };
                cw::set_paid(tx, id, now).await?;
                self.enqueue_city_event(
                    tx,
                    "bill.paid",
                    serde_json::json!({
                        "bill_id": id, "cis_bill_id": cis, "account_number": account,
                        "amount_cents": amount, "payment_id": payment_id,
                    }),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Sends the deliveries that are due (the worker). Returns how many were delivered.
    pub async fn deliver_city_webhooks(&self) -> Result<usize, AppError> {
        let now = self.now_unix();
        let due = {
            let mut conn = self.store.conn().await?;
            cw::due(&mut conn, now, 50).await?
        };
        // The worker ticks every few seconds; most ticks find nothing to send.
        if due.is_empty() {
            return Ok(0);
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AppError::Internal(format!("http client: {e}")))?;
        let mut delivered = 0;
        for d in due {
            {
                let mut conn = self.store.conn().await?;
                if !cw::claim(&mut conn, &d.id, &d.status, d.attempts, now + LEASE_SECS).await? {
                    continue;
                }
            }
            let endpoint = {
                let mut conn = self.store.conn().await?;
                cw::endpoint(&mut conn, &d.endpoint_id).await?
            };
            let Some(endpoint) = endpoint else { continue };
            let secret = self.open(columns::WEBHOOK_SECRET, &endpoint.secret)?;
            let t = self.now_unix();
            let signature = processor::webhook::sign(d.payload.as_bytes(), &secret, t);
            let answer = http
                .post(&endpoint.url)
                .header("content-type", "application/json")
                .header("strongroom-signature", signature)
                .body(d.payload.clone())
                .send()
                .await;
            let attempts = d.attempts + 1;
            let (status, code, error) = match answer {
                Ok(r) if r.status().is_success() => {
                    ("delivered", Some(i64::from(r.status().as_u16())), None)
                }
                Ok(r) => (
                    "retry",
                    Some(i64::from(r.status().as_u16())),
                    Some(format!("answered {}", r.status().as_u16())),
                ),
                Err(e) => (
                    "retry",
                    None,
                    Some(if e.is_timeout() {
                        "timed out".to_owned()
                    } else {
                        "could not connect".to_owned()
                    }),
                ),
            };
            let done = self.now_unix();
            let mut conn = self.store.conn().await?;
            if status == "delivered" {
                cw::finish(
                    &mut conn,
                    &d.id,
                    "delivered",
                    attempts,
                    done,
                    code,
                    None,
                    Some(done),
                )
                .await?;
                delivered += 1;
            } else {
                let next = if attempts >= MAX_ATTEMPTS {
                    "failed"
                } else {
                    "pending"
                };
                cw::finish(
                    &mut conn,
                    &d.id,
                    next,
                    attempts,
                    done + backoff(d.attempts),
                    code,
                    error.as_deref(),
                    None,
                )
                .await?;
                tracing::warn!(delivery = %d.id, attempts, "city webhook not delivered");
            }
        }
        Ok(delivered)
    }

    pub async fn city_webhook_deliveries(&self, limit: i64) -> Result<Vec<DeliveryRow>, AppError> {
        let mut conn = self.store.conn().await?;
        Ok(cw::deliveries(&mut conn, limit).await?)
    }

    /// Queues a delivery again now (supervisors and administrators), audited.
    pub async fn resend_city_webhook(
        &self,
        staff: &StaffUser,
        id: &str,
        source_ip: &str,
    ) -> Result<(), AppError> {
        if staff.role < Role::Supervisor {
            return Err(AppError::Forbidden);
        }
        let mut tx = self.store.begin().await?;
        if !cw::resend(&mut tx, id, self.now_unix()).await? {
            return Err(AppError::invalid("delivery", "it is being sent right now"));
        }
        self.audit(
            &mut tx,
            &format!("staff:{}", staff.id),
            "webhook.resent",
            id,
            "success",
            source_ip,
            "",
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }
}
