//! The sandbox processor: a separate HTTP server speaking the subset of Stripe's
//! API that Strongroom uses, with its own hosted card page, test cards, signed
//! webhooks with retries, and refunds.
//!
//! All state is in memory. Card numbers, security codes and expiry dates exist
//! only inside the handler of one card-form POST; the brand and last four digits
//! are all that is kept.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, watch};

use crate::{SessionPaymentStatus, SessionStatus};

mod card;
mod delivery;
mod lists;
mod page;
mod params;

use params::{parse_int, truncate, ApiError, Params};

#[cfg(test)]
mod tests;

/// Largest request body the sandbox reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Stripe's largest USD amount: $999,999.99.
const MAX_AMOUNT: i64 = 99_999_999;
const MAX_LINE_ITEMS: usize = 100;
const DEFAULT_SESSION_LIFETIME: i64 = 24 * 60 * 60;
const MIN_SESSION_LIFETIME: i64 = 30 * 60;

/// A clock returning unix seconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock, for production use of the sandbox.
pub fn system_clock() -> Clock {
    Arc::new(|| time::OffsetDateTime::now_utc().unix_timestamp())
}

#[derive(Clone)]
pub struct SandboxConfig {
    /// The `sk_test_...` key API callers must present as `Authorization: Bearer`.
    pub secret_key: String,
    /// Base URL residents' browsers reach the sandbox on, e.g. `http://127.0.0.1:8082`;
    /// used in `session.url`.
    pub public_base_url: String,
    /// Where events are POSTed; `None` records events without delivering them.
    pub webhook_url: Option<String>,
    /// The `whsec_...` secret events are signed with.
    pub webhook_secret: String,
    /// First retry delay of a failed delivery; doubles each time, 8 attempts at most.
    pub retry_base: Duration,
    /// Unix seconds; injected so tests control expiry and signature timestamps.
    pub now: Clock,
}

impl SandboxConfig {
    /// A configuration with the system clock, no webhook endpoint and a 1 s retry base.
    pub fn new(
        secret_key: impl Into<String>,
        public_base_url: impl Into<String>,
        webhook_secret: impl Into<String>,
    ) -> Self {
        SandboxConfig {
            secret_key: secret_key.into(),
            public_base_url: public_base_url.into(),
            webhook_url: None,
            webhook_secret: webhook_secret.into(),
            retry_base: Duration::from_secs(1),
            now: system_clock(),
        }
    }
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("secret_key", &"[redacted]")
            .field("public_base_url", &self.public_base_url)
            .field("webhook_url", &self.webhook_url)
            .field("webhook_secret", &"[redacted]")
            .field("retry_base", &self.retry_base)
            .finish_non_exhaustive()
    }
}

/// The sandbox's HTTP routes. Webhook delivery runs on a background task that is
/// started on the current tokio runtime (or on the first request if there is none
/// yet) and stops when the router is dropped.
pub fn router(cfg: SandboxConfig) -> Router {
    let state = Shared::new(cfg);
    state.ensure_worker();
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/v1/checkout/sessions",
            post(create_session).get(lists::list_sessions),
        )
        .route("/v1/checkout/sessions/{id}", get(retrieve_session))
        .route("/v1/checkout/sessions/{id}/expire", post(expire_session))
        .route("/v1/refunds", post(create_refund).get(lists::list_refunds))
        .route("/v1/charges", get(lists::list_charges))
        .route("/v1/payouts", get(lists::list_payouts))
        .route("/v1/refunds/{id}", get(retrieve_refund))
        .route("/c/pay/{id}", get(page::show).post(page::submit))
        .route("/static/sandbox.css", get(page::stylesheet))
        .route("/_sandbox/events", get(list_events))
        .route("/_sandbox/webhooks/pause", post(pause_webhooks))
        .route("/_sandbox/webhooks/resume", post(resume_webhooks))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(baseline_headers))
        .with_state(state)
}

/// Every sandbox response (JSON API, errors) is `nosniff` and, unless its handler chose
/// otherwise (the stylesheet), not stored by caches: it may carry payers' details.
async fn baseline_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

/// Serves the sandbox on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, cfg: SandboxConfig) -> std::io::Result<()> {
    axum::serve(listener, router(cfg)).await
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

pub(crate) struct Shared {
    cfg: SandboxConfig,
    base_url: String,
    inner: Mutex<Inner>,
    paused: watch::Sender<bool>,
    queue_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    http: reqwest::Client,
}

pub(crate) struct LineItemRec {
    pub(crate) name: String,
    pub(crate) unit_amount: i64,
    pub(crate) quantity: i64,
    pub(crate) amount_total: i64,
}

pub(crate) struct SessionRec {
    id: String,
    created: i64,
    expires_at: i64,
    pub(crate) status: SessionStatus,
    payment_status: SessionPaymentStatus,
    pub(crate) line_items: Vec<LineItemRec>,
    pub(crate) amount_total: i64,
    currency: String,
    pub(crate) success_url: String,
    pub(crate) cancel_url: String,
    client_reference_id: Option<String>,
    customer_email: Option<String>,
    metadata: BTreeMap<String, String>,
    payment_intent: Option<String>,
    /// The hosted page's language (Stripe's `locale`): `es` or anything else for English.
    pub(crate) locale: String,
}

struct Decline {
    decline_code: &'static str,
    message: &'static str,
    charge: String,
}

struct IntentRec {
    id: String,
    created: i64,
    amount: i64,
    currency: String,
    status: &'static str,
    latest_charge: Option<String>,
    last_payment_error: Option<Decline>,
}

/// A charge keeps the card's brand and last four digits, nothing else of it.
struct ChargeRec {
    id: String,
    created: i64,
    amount: i64,
    amount_refunded: i64,
    currency: String,
    payment_intent: String,
    succeeded: bool,
    brand: &'static str,
    last4: String,
    failure: Option<(&'static str, &'static str)>,
}

struct RefundRec {
    id: String,
    created: i64,
    amount: i64,
    currency: String,
    charge: String,
    payment_intent: String,
    reason: Option<String>,
    metadata: BTreeMap<String, String>,
}

pub(crate) struct EventRec {
    pub(crate) id: String,
    kind: &'static str,
    created: i64,
    /// The exact JSON body delivered.
    pub(crate) payload: String,
    pub(crate) attempts: u32,
    pub(crate) delivered: bool,
    pub(crate) last_status: Option<u16>,
}

struct IdemRec {
    fingerprint: [u8; 32],
    status: StatusCode,
    body: Value,
}

pub(crate) struct Inner {
    sessions: HashMap<String, SessionRec>,
    intents: HashMap<String, IntentRec>,
    charges: HashMap<String, ChargeRec>,
    refunds: HashMap<String, RefundRec>,
    pub(crate) events: Vec<EventRec>,
    idempotency: HashMap<String, IdemRec>,
    queue: mpsc::UnboundedSender<String>,
}

pub(crate) fn random_id(prefix: &str) -> String {
    let tail: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    format!("{prefix}{tail}")
}

impl Shared {
    fn new(cfg: SandboxConfig) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (paused, _) = watch::channel(false);
        // Building a client only fails if the TLS backend cannot initialise;
        // fall back to the default one rather than failing the router.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let base_url = cfg.public_base_url.trim_end_matches('/').to_owned();
        Arc::new(Shared {
            cfg,
            base_url,
            inner: Mutex::new(Inner {
                sessions: HashMap::new(),
                intents: HashMap::new(),
                charges: HashMap::new(),
                refunds: HashMap::new(),
                events: Vec::new(),
                idempotency: HashMap::new(),
                queue: tx,
            }),
            paused,
            queue_rx: Mutex::new(Some(rx)),
            http,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // No code panics while holding the lock; if something did, the data is
        // still consistent enough for a sandbox.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn now(&self) -> i64 {
        (self.cfg.now)()
    }

    /// Starts the delivery worker once, if a tokio runtime is available.
    pub(crate) fn ensure_worker(self: &Arc<Self>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut slot = self.queue_rx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = slot.take() {
            handle.spawn(delivery::worker(Arc::downgrade(self), rx));
        }
    }

    /// Expires open sessions whose `expires_at` has passed, and returns the lock.
    pub(crate) fn lock_fresh(&self) -> MutexGuard<'_, Inner> {
        let now = self.now();
        let mut inner = self.lock();
        inner.expire_due(now, &self.base_url);
        inner
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let unauthorized = |msg: &str| ApiError::request(StatusCode::UNAUTHORIZED, None, msg);
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "You did not provide an API key. Provide it in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            ));
        };
        let given = value
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .ok_or_else(|| unauthorized("Invalid Authorization header: use Bearer auth."))?;
        let expected = self.cfg.secret_key.as_bytes();
        if expected.is_empty() || !bool::from(given.ct_eq(expected)) {
            return Err(unauthorized("Invalid API Key provided."));
        }
        Ok(())
    }

    /// Runs `op` under the state lock, honouring the `Idempotency-Key` header:
    /// the same key with the same request replays the first answer; with a
    /// different request it is an `idempotency_error`. Failed validations are
    /// not remembered (as with Stripe).
    fn idempotent(
        &self,
        headers: &HeaderMap,
        endpoint: &str,
        body: &[u8],
        op: impl FnOnce(&mut Inner, i64, &str) -> Result<Value, ApiError>,
    ) -> Response {
        let key = match headers.get("idempotency-key") {
            None => None,
            Some(v) => match v.to_str() {
                Ok(k) if !k.is_empty() && k.len() <= 255 => Some(k.to_owned()),
                _ => {
                    return ApiError::invalid(
                        "Idempotency-Key",
                        "idempotency_key_invalid",
                        "Idempotency keys must be 1 to 255 visible ASCII characters.",
                    )
                    .into_response()
                }
            },
        };
        let fingerprint: [u8; 32] = {
            let mut h = Sha256::new();
            h.update(endpoint.as_bytes());
            h.update([0]);
            h.update(body);
            h.finalize().into()
        };
        let now = self.now();
        let mut inner = self.lock();
        inner.expire_due(now, &self.base_url);
        if let Some(key) = &key {
            if let Some(rec) = inner.idempotency.get(key) {
                if rec.fingerprint == fingerprint {
                    let mut resp = (rec.status, axum::Json(rec.body.clone())).into_response();
                    resp.headers_mut()
                        .insert("idempotent-replayed", HeaderValue::from_static("true"));
                    return resp;
                }
                return ApiError {
                    status: StatusCode::BAD_REQUEST,
                    kind: "idempotency_error",
                    code: None,
                    message: format!(
                        "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{}' if you meant to execute a different request.",
                        truncate(key, 100)
                    ),
                    param: None,
                }
                .into_response();
            }
        }
        match op(&mut inner, now, &self.base_url) {
            Ok(body) => {
                if let Some(key) = key {
                    inner.idempotency.insert(
                        key.clone(),
                        IdemRec {
                            fingerprint,
                            status: StatusCode::OK,
                            body: body.clone(),
                        },
                    );
                    let mut resp = axum::Json(body).into_response();
                    if let Ok(v) = HeaderValue::from_str(&key) {
                        resp.headers_mut().insert("idempotency-key", v);
                    }
                    return resp;
                }
                axum::Json(body).into_response()
            }
            Err(e) => e.into_response(),
        }
    }
}

/// Reads at most [`MAX_BODY_BYTES`] of a request body.
pub(crate) async fn read_body(body: Body) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::request(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                format!("Request bodies are limited to {MAX_BODY_BYTES} bytes."),
            )
        })
}

// ---------------------------------------------------------------------------
// JSON views (Stripe's object shapes)
// ---------------------------------------------------------------------------

#[derive(Default, Clone, Copy)]
struct Expand {
    payment_intent: bool,
    latest_charge: bool,
}

impl Expand {
    fn parse(values: &[String]) -> Result<Self, ApiError> {
        let mut e = Expand::default();
        for v in values {
            match v.as_str() {
                "payment_intent" => e.payment_intent = true,
                "payment_intent.latest_charge" => {
                    e.payment_intent = true;
                    e.latest_charge = true;
                }
                other => {
                    return Err(ApiError::invalid(
                        "expand",
                        "parameter_invalid_string",
                        format!(
                            "This property cannot be expanded ({}).",
                            truncate(other, 60)
                        ),
                    ))
                }
            }
        }
        Ok(e)
    }
}

impl Inner {
    fn emit(&mut self, kind: &'static str, object: Value, now: i64) {
        let id = random_id("evt_test_");
        let payload = json!({
            "id": id,
            "object": "event",
            "api_version": crate::STRIPE_API_VERSION,
            "created": now,
            "data": { "object": object },
            "livemode": false,
            "pending_webhooks": 1,
            "request": { "id": null, "idempotency_key": null },
            "type": kind,
        })
        .to_string();
        self.events.push(EventRec {
            id: id.clone(),
            kind,
            created: now,
            payload,
            attempts: 0,
            delivered: false,
            last_status: None,
        });
        // The worker is gone only when the sandbox is being dropped.
        let _ = self.queue.send(id);
    }

    fn expire_due(&mut self, now: i64, base_url: &str) {
        let due: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.status == SessionStatus::Open && now >= s.expires_at)
            .map(|s| s.id.clone())
            .collect();
        for id in due {
            self.expire(&id, now, base_url);
        }
    }

    /// Marks an open session expired, cancels its payment intent and emits
    /// `checkout.session.expired`.
    fn expire(&mut self, id: &str, now: i64, base_url: &str) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        s.status = SessionStatus::Expired;
        if let Some(pi) = s
            .payment_intent
            .as_ref()
            .and_then(|p| self.intents.get_mut(p))
        {
            pi.status = "canceled";
        }
        if let Some(obj) = self.session_json(id, Expand::default(), base_url) {
            self.emit("checkout.session.expired", obj, now);
        }
    }

    pub(crate) fn session(&self, id: &str) -> Option<&SessionRec> {
        self.sessions.get(id)
    }

    fn session_json(&self, id: &str, expand: Expand, base_url: &str) -> Option<Value> {
        let s = self.sessions.get(id)?;
        let payment_intent = match &s.payment_intent {
            None => Value::Null,
            Some(pi) if expand.payment_intent => self
                .intent_json(pi, expand.latest_charge)
                .unwrap_or(Value::Null),
            Some(pi) => json!(pi),
        };
        let url = match s.status {
            SessionStatus::Open => json!(format!("{base_url}/c/pay/{}", s.id)),
            _ => Value::Null,
        };
        Some(json!({
            "id": s.id,
            "object": "checkout.session",
            "amount_subtotal": s.amount_total,
            "amount_total": s.amount_total,
            "cancel_url": s.cancel_url,
            "client_reference_id": s.client_reference_id,
            "created": s.created,
            "currency": s.currency,
            "customer_email": s.customer_email,
            "expires_at": s.expires_at,
            "livemode": false,
            "metadata": s.metadata,
            "mode": "payment",
            "payment_intent": payment_intent,
            "payment_method_types": ["card"],
            "payment_status": s.payment_status.as_str(),
            "status": s.status.as_str(),
            "success_url": s.success_url,
            "url": url,
        }))
    }

    fn intent_json(&self, id: &str, expand_charge: bool) -> Option<Value> {
        let pi = self.intents.get(id)?;
        let latest_charge = match &pi.latest_charge {
            None => Value::Null,
            Some(ch) if expand_charge => self.charge_json(ch).unwrap_or(Value::Null),
            Some(ch) => json!(ch),
        };
        let last_payment_error = match &pi.last_payment_error {
            None => Value::Null,
            Some(d) => json!({
                "type": "card_error",
                "code": "card_declined",
                "decline_code": d.decline_code,
                "message": d.message,
                "charge": d.charge,
            }),
        };
        let received = if pi.status == "succeeded" {
            pi.amount
        } else {
            0
        };
        Some(json!({
            "id": pi.id,
            "object": "payment_intent",
            "amount": pi.amount,
            "amount_received": received,
            "created": pi.created,
            "currency": pi.currency,
            "last_payment_error": last_payment_error,
            "latest_charge": latest_charge,
            "livemode": false,
            "metadata": {},
            "payment_method_types": ["card"],
            "status": pi.status,
        }))
    }

    fn charge_json(&self, id: &str) -> Option<Value> {
        let ch = self.charges.get(id)?;
        Some(json!({
            "id": ch.id,
            "object": "charge",
            "amount": ch.amount,
            "amount_captured": if ch.succeeded { ch.amount } else { 0 },
            "amount_refunded": ch.amount_refunded,
            "captured": ch.succeeded,
            "created": ch.created,
            "currency": ch.currency,
            "failure_code": ch.failure.map(|f| f.0),
            "failure_message": ch.failure.map(|f| f.1),
            "livemode": false,
            "paid": ch.succeeded,
            "payment_intent": ch.payment_intent,
            "payment_method_details": {
                "type": "card",
                "card": { "brand": ch.brand, "last4": ch.last4 },
            },
            "refunded": ch.succeeded && ch.amount_refunded == ch.amount,
            "status": if ch.succeeded { "succeeded" } else { "failed" },
        }))
    }

    fn refund_json(&self, id: &str) -> Option<Value> {
        let r = self.refunds.get(id)?;
        Some(json!({
            "id": r.id,
            "object": "refund",
            "amount": r.amount,
            "charge": r.charge,
            "created": r.created,
            "currency": r.currency,
            "metadata": r.metadata,
            "payment_intent": r.payment_intent,
            "reason": r.reason,
            "status": "succeeded",
        }))
    }

    /// Records one card attempt on an open session. Returns `None` if the
    /// session is unknown or no longer open (nothing is charged then).
    pub(crate) fn attempt_payment(
        &mut self,
        session_id: &str,
        brand: &'static str,
        last4: String,
        outcome: card::Outcome,
        now: i64,
        base_url: &str,
    ) -> Option<()> {
        let s = self.sessions.get_mut(session_id)?;
        if s.status != SessionStatus::Open {
            return None;
        }
        let (amount, currency) = (s.amount_total, s.currency.clone());
        let pi_id = s
            .payment_intent
            .get_or_insert_with(|| random_id("pi_test_"))
            .clone();
        let pi = self
            .intents
            .entry(pi_id.clone())
            .or_insert_with(|| IntentRec {
                id: pi_id.clone(),
                created: now,
                amount,
                currency: currency.clone(),
                status: "requires_payment_method",
                latest_charge: None,
                last_payment_error: None,
            });
        let charge_id = random_id("ch_test_");
        pi.latest_charge = Some(charge_id.clone());
        let succeeded = outcome == card::Outcome::Succeed;
        let failure = match outcome {
            card::Outcome::Succeed => {
                pi.status = "succeeded";
                pi.last_payment_error = None;
                None
            }
            card::Outcome::Decline {
                decline_code,
                message,
            } => {
                pi.status = "requires_payment_method";
                pi.last_payment_error = Some(Decline {
                    decline_code,
                    message,
                    charge: charge_id.clone(),
                });
                Some(("card_declined", message))
            }
        };
        self.charges.insert(
            charge_id.clone(),
            ChargeRec {
                id: charge_id,
                created: now,
                amount,
                amount_refunded: 0,
                currency,
                payment_intent: pi_id,
                succeeded,
                brand,
                last4,
                failure,
            },
        );
        if succeeded {
            if let Some(s) = self.sessions.get_mut(session_id) {
                s.status = SessionStatus::Complete;
                s.payment_status = SessionPaymentStatus::Paid;
            }
            if let Some(obj) = self.session_json(session_id, Expand::default(), base_url) {
                self.emit("checkout.session.completed", obj, now);
            }
        }
        Some(())
    }
}

// ---------------------------------------------------------------------------
// API handlers
// ---------------------------------------------------------------------------

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok")
}

async fn not_found() -> Response {
    ApiError::request(
        StatusCode::NOT_FOUND,
        None,
        "Unrecognized request URL. The sandbox implements checkout sessions and refunds only.",
    )
    .into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::request(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "Unrecognized request URL (method not allowed).",
    )
    .into_response()
}

fn is_http_url(s: &str) -> bool {
    if s.is_empty() || s.len() > 5000 || !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return false;
    }
    match reqwest::Url::parse(s) {
        Ok(u) => matches!(u.scheme(), "http" | "https") && u.host_str().is_some(),
        Err(_) => false,
    }
}

struct NewSession {
    rec: SessionRec,
    expand: Expand,
}

fn parse_create_session(body: &[u8], now: i64) -> Result<NewSession, ApiError> {
    let mut p = Params::parse(body)?;
    match p.take("mode")?.as_deref() {
        Some("payment") => {}
        None | Some("") => return Err(ApiError::missing("mode")),
        Some(_) => {
            return Err(ApiError::invalid(
                "mode",
                "parameter_invalid_string",
                "The sandbox supports only mode=payment.",
            ))
        }
    }
    let top_currency = p.take("currency")?;
    if let Some(c) = &top_currency {
        if c != "usd" {
            return Err(ApiError::invalid(
                "currency",
                "parameter_invalid_string",
                "The sandbox supports only currency=usd.",
            ));
        }
    }
    let mut line_items = Vec::new();
    let mut total: i64 = 0;
    for i in 0..MAX_LINE_ITEMS {
        let base = format!("line_items[{i}]");
        if !p.has_prefix(&format!("{base}[")) {
            break;
        }
        let cur_key = format!("{base}[price_data][currency]");
        let currency = p.take_required(&cur_key)?;
        if currency != "usd" {
            return Err(ApiError::invalid(
                cur_key,
                "parameter_invalid_string",
                "The sandbox supports only currency=usd.",
            ));
        }
        let name_key = format!("{base}[price_data][product_data][name]");
        let name = p.take_required(&name_key)?;
        if name.trim().is_empty() || name.chars().count() > 250 {
            return Err(ApiError::invalid(
                name_key,
                "parameter_invalid_string",
                "Product names must be 1 to 250 characters.",
            ));
        }
        let ua_key = format!("{base}[price_data][unit_amount]");
        let unit_amount = parse_int(&ua_key, &p.take_required(&ua_key)?)?;
        if unit_amount <= 0 || unit_amount > MAX_AMOUNT {
            return Err(ApiError::invalid(
                ua_key,
                "parameter_invalid_integer",
                "unit_amount must be a positive integer number of cents, at most 99999999.",
            ));
        }
        let q_key = format!("{base}[quantity]");
        let quantity = parse_int(&q_key, &p.take_required(&q_key)?)?;
        if !(1..=999_999).contains(&quantity) {
            return Err(ApiError::invalid(
                q_key,
                "parameter_invalid_integer",
                "quantity must be an integer of at least 1.",
            ));
        }
        let amount_total = unit_amount
            .checked_mul(quantity)
            .filter(|a| *a <= MAX_AMOUNT)
            .ok_or_else(|| {
                ApiError::invalid(
                    base.clone(),
                    "amount_too_large",
                    "Amount must be no more than $999,999.99.",
                )
            })?;
        total = total
            .checked_add(amount_total)
            .filter(|a| *a <= MAX_AMOUNT)
            .ok_or_else(|| {
                ApiError::invalid(
                    "line_items",
                    "amount_too_large",
                    "Amount must be no more than $999,999.99.",
                )
            })?;
        line_items.push(LineItemRec {
            name,
            unit_amount,
            quantity,
            amount_total,
        });
    }
    if line_items.is_empty() {
        return Err(ApiError::missing("line_items"));
    }
    let mut urls = Vec::new();
    for key in ["success_url", "cancel_url"] {
        let v = p.take_required(key)?;
        if !is_http_url(&v) {
            return Err(ApiError::invalid(key, "url_invalid", "Not a valid URL"));
        }
        urls.push(v);
    }
    let cancel_url = urls.pop().unwrap_or_default();
    let success_url = urls.pop().unwrap_or_default();
    let client_reference_id = p.take("client_reference_id")?.filter(|v| !v.is_empty());
    if let Some(c) = &client_reference_id {
        if c.chars().count() > 200 || c.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "client_reference_id",
                "parameter_invalid_string",
                "client_reference_id must be at most 200 characters.",
            ));
        }
    }
    let customer_email = p.take("customer_email")?.filter(|v| !v.is_empty());
    if let Some(e) = &customer_email {
        let valid = e.len() <= 800
            && e.split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
            && !e.chars().any(|c| c.is_whitespace() || c.is_control());
        if !valid {
            return Err(ApiError::invalid(
                "customer_email",
                "email_invalid",
                "Invalid email address",
            ));
        }
    }
    let expires_at = match p.take("expires_at")? {
        None => now.saturating_add(DEFAULT_SESSION_LIFETIME),
        Some(v) => {
            let at = parse_int("expires_at", &v)?;
            if at < now.saturating_add(MIN_SESSION_LIFETIME)
                || at > now.saturating_add(DEFAULT_SESSION_LIFETIME)
            {
                return Err(ApiError::invalid(
                    "expires_at",
                    "parameter_invalid_integer",
                    "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.",
                ));
            }
            at
        }
    };
    let mut metadata = BTreeMap::new();
    let entries = p.take_hash("metadata");
    if entries.len() > 50 {
        return Err(ApiError::invalid(
            "metadata",
            "parameter_invalid_string",
            "metadata can have at most 50 keys.",
        ));
    }
    for (k, v) in entries {
        if k.is_empty() || k.chars().count() > 40 || v.chars().count() > 500 {
            return Err(ApiError::invalid(
                format!("metadata[{}]", truncate(&k, 40)),
                "parameter_invalid_string",
                "Metadata keys must be 1 to 40 characters and values at most 500.",
            ));
        }
        if !v.is_empty() {
            metadata.insert(k, v);
        }
    }
    // Harmless parameters official SDKs or integrations may send.
    for pm in p.take_list("payment_method_types") {
        if pm != "card" {
            return Err(ApiError::invalid(
                "payment_method_types",
                "parameter_invalid_string",
                "The sandbox supports only card payments.",
            ));
        }
    }
    let locale = p.take("locale")?.unwrap_or_default();
    let _ = p.take("submit_type")?;
    let expand = Expand::parse(&p.take_list("expand"))?;
    p.finish()?;
    Ok(NewSession {
        rec: SessionRec {
            id: random_id("cs_test_"),
            created: now,
            expires_at,
            status: SessionStatus::Open,
            payment_status: SessionPaymentStatus::Unpaid,
            line_items,
            amount_total: total,
            currency: "usd".into(),
            success_url,
            cancel_url,
            client_reference_id,
            customer_email,
            metadata,
            payment_intent: None,
            locale,
        },
        expand,
    })
}

async fn create_session(State(st): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    st.ensure_worker();
    if let Err(e) = st.authorize(&headers) {
        return e.into_response();
    }
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    st.idempotent(
        &headers,
        "POST /v1/checkout/sessions",
        &body,
        |inner, now, base| {
            let new = parse_create_session(&body, now)?;
            let id = new.rec.id.clone();
            inner.sessions.insert(id.clone(), new.rec);
            inner
                .session_json(&id, new.expand, base)
                .ok_or_else(|| ApiError::not_found("checkout.session", &id, None))
        },
    )
}

fn path_id(
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    match path {
        Ok(Path(id)) if id.len() <= 255 => Ok(id),
        _ => Err(ApiError::request(
            StatusCode::NOT_FOUND,
            Some("resource_missing"),
            "No such object.",
        )),
    }
}

async fn retrieve_session(
    State(st): State<Arc<Shared>>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    st.ensure_worker();
    let result = (|| {
        st.authorize(&headers)?;
        let id = path_id(path)?;
        let mut p = Params::parse(query.unwrap_or_default().as_bytes())?;
        let expand = Expand::parse(&p.take_list("expand"))?;
        p.finish()?;
        let inner = st.lock_fresh();
        inner
            .session_json(&id, expand, &st.base_url)
            .ok_or_else(|| ApiError::not_found("checkout.session", &id, Some("session")))
    })();
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn expire_session(
    State(st): State<Arc<Shared>>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    st.ensure_worker();
    if let Err(e) = st.authorize(&headers) {
        return e.into_response();
    }
    let id = match path_id(path) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let endpoint = format!("POST /v1/checkout/sessions/{id}/expire");
    st.idempotent(&headers, &endpoint, &body, |inner, now, base| {
        let mut p = Params::parse(&body)?;
        let expand = Expand::parse(&p.take_list("expand"))?;
        p.finish()?;
        let s = inner
            .sessions
            .get(&id)
            .ok_or_else(|| ApiError::not_found("checkout.session", &id, Some("session")))?;
        if s.status != SessionStatus::Open {
            return Err(ApiError::request(
                StatusCode::BAD_REQUEST,
                None,
                "Only Checkout Sessions with a status in [\"open\"] can be expired.",
            ));
        }
        inner.expire(&id, now, base);
        inner
            .session_json(&id, expand, base)
            .ok_or_else(|| ApiError::not_found("checkout.session", &id, Some("session")))
    })
}

fn dollars_plain(cents: i64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

async fn create_refund(State(st): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    st.ensure_worker();
    if let Err(e) = st.authorize(&headers) {
        return e.into_response();
    }
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    st.idempotent(&headers, "POST /v1/refunds", &body, |inner, now, _base| {
        let mut p = Params::parse(&body)?;
        let pi_param = p.take("payment_intent")?.filter(|v| !v.is_empty());
        let ch_param = p.take("charge")?.filter(|v| !v.is_empty());
        let amount = match p.take("amount")? {
            None => None,
            Some(v) => Some(parse_int("amount", &v)?),
        };
        let reason = p.take("reason")?.filter(|v| !v.is_empty());
        if let Some(r) = &reason {
            if !matches!(r.as_str(), "duplicate" | "fraudulent" | "requested_by_customer") {
                return Err(ApiError::invalid("reason", "parameter_invalid_string", "Invalid reason."));
            }
        }
        let metadata: BTreeMap<String, String> = p
            .take_hash("metadata")
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        if metadata.len() > 50
            || metadata.iter().any(|(k, v)| k.is_empty() || k.chars().count() > 40 || v.chars().count() > 500)
        {
            return Err(ApiError::invalid("metadata", "parameter_invalid_string", "Invalid metadata."));
        }
        p.finish()?;
        let charge_id = match (pi_param, ch_param) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "charge",
                    "parameter_invalid_string",
                    "You may specify either a charge or a payment_intent, not both.",
                ))
            }
            (None, None) => return Err(ApiError::missing("payment_intent")),
            (Some(pi_id), None) => {
                let pi = inner
                    .intents
                    .get(&pi_id)
                    .ok_or_else(|| ApiError::not_found("payment_intent", &pi_id, Some("payment_intent")))?;
                match (&pi.latest_charge, pi.status) {
                    (Some(ch), "succeeded") => ch.clone(),
                    _ => {
                        return Err(ApiError::invalid(
                            "payment_intent",
                            "payment_intent_unexpected_state",
                            format!("This PaymentIntent ({pi_id}) does not have a successful charge to refund."),
                        ))
                    }
                }
            }
            (None, Some(ch)) => ch,
        };
        let ch = inner
            .charges
            .get_mut(&charge_id)
            .ok_or_else(|| ApiError::not_found("charge", &charge_id, Some("charge")))?;
        if !ch.succeeded {
            return Err(ApiError::invalid(
                "charge",
                "charge_not_refundable",
                format!("Charge {} has not succeeded and cannot be refunded.", ch.id),
            ));
        }
        let remaining = ch.amount - ch.amount_refunded;
        if remaining <= 0 {
            return Err(ApiError::invalid(
                "charge",
                "charge_already_refunded",
                format!("Charge {} has already been refunded.", ch.id),
            ));
        }
        let amount = amount.unwrap_or(remaining);
        if amount <= 0 {
            return Err(ApiError::invalid("amount", "amount_too_small", "Refund amount must be positive."));
        }
        if amount > remaining {
            return Err(ApiError::invalid(
                "amount",
                "amount_too_large",
                format!(
                    "Refund amount ({}) is greater than unrefunded amount on charge ({})",
                    dollars_plain(amount),
                    dollars_plain(remaining)
                ),
            ));
        }
        ch.amount_refunded += amount;
        let refund = RefundRec {
            id: random_id("re_test_"),
            created: now,
            amount,
            currency: ch.currency.clone(),
            charge: ch.id.clone(),
            payment_intent: ch.payment_intent.clone(),
            reason,
            metadata,
        };
        let refund_id = refund.id.clone();
        inner.refunds.insert(refund_id.clone(), refund);
        if let Some(obj) = inner.charge_json(&charge_id) {
            inner.emit("charge.refunded", obj, now);
        }
        inner
            .refund_json(&refund_id)
            .ok_or_else(|| ApiError::not_found("refund", &refund_id, None))
    })
}

async fn retrieve_refund(
    State(st): State<Arc<Shared>>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        st.authorize(&headers)?;
        let id = path_id(path)?;
        st.lock()
            .refund_json(&id)
            .ok_or_else(|| ApiError::not_found("refund", &id, Some("refund")))
    })();
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

// ---------------------------------------------------------------------------
// Operator / test controls
// ---------------------------------------------------------------------------

// The `/_sandbox/*` controls are test-only, but they show webhook payloads (payers'
// e-mail addresses, amounts) and can hold webhooks back, so they take the API key like
// every other sandbox API call: no anonymous or cross-site (CSRF) use.
async fn list_events(State(st): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(e) = st.authorize(&headers) {
        return e.into_response();
    }
    st.ensure_worker();
    let paused = *st.paused.borrow();
    let inner = st.lock_fresh();
    let data: Vec<Value> = inner
        .events
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "type": e.kind,
                "created": e.created,
                "payload": serde_json::from_str::<Value>(&e.payload).unwrap_or(Value::Null),
                "delivery_attempts": e.attempts,
                "delivered": e.delivered,
                "last_response_status": e.last_status,
            })
        })
        .collect();
    axum::Json(json!({ "object": "list", "paused": paused, "data": data })).into_response()
}

async fn pause_webhooks(State(st): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(e) = st.authorize(&headers) {
        return e.into_response();
    }
    st.paused.send_replace(true);
    axum::Json(json!({ "paused": true })).into_response()
}

async fn resume_webhooks(State(st): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(e) = st.authorize(&headers) {
        return e.into_response();
    }
    st.ensure_worker();
    st.paused.send_replace(false);
    axum::Json(json!({ "paused": false })).into_response()
}
