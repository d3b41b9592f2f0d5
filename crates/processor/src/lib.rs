//! The payment processor boundary of Strongroom.
//!
//! * [`Processor`] is the trait the rest of the application codes against.
//! * [`client::StripeClient`] speaks Stripe's wire format over HTTPS.
//! * [`sandbox`] is a separate HTTP server that implements the subset of Stripe
//!   Strongroom uses, with its own hosted card page, test cards, signed webhooks
//!   with retries, and refunds.
//! * [`webhook`] signs and verifies `Stripe-Signature` headers and parses events.
//!
//! No type in this crate holds a card number, security code or expiry date: only
//! the card brand and last four digits ever leave the sandbox's card form handler.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod client;
pub mod sandbox;
pub mod webhook;

/// The Stripe API version the client pins (`Stripe-Version` header), so the
/// shape of responses does not change under us when the account is upgraded.
pub const STRIPE_API_VERSION: &str = "2024-06-20";

/// What the application needs from a payment processor.
#[async_trait::async_trait]
pub trait Processor: Send + Sync {
    /// `POST /v1/checkout/sessions` (mode=payment).
    async fn create_checkout_session(
        &self,
        req: &CreateCheckoutSession,
        idempotency_key: &str,
    ) -> Result<CheckoutSession, ProcessorError>;

    /// `GET /v1/checkout/sessions/{id}?expand[]=payment_intent.latest_charge`
    /// (so card brand/last4 and `last_payment_error` are available).
    async fn retrieve_checkout_session(&self, id: &str) -> Result<CheckoutSession, ProcessorError>;

    /// `POST /v1/checkout/sessions/{id}/expire`.
    async fn expire_checkout_session(&self, id: &str) -> Result<CheckoutSession, ProcessorError>;

    /// `POST /v1/refunds`.
    async fn create_refund(
        &self,
        req: &CreateRefund,
        idempotency_key: &str,
    ) -> Result<Refund, ProcessorError>;

    /// `GET /v1/checkout/sessions` created in `[created_gte, created_lt)`, every page.
    async fn list_checkout_sessions(
        &self,
        created_gte: i64,
        created_lt: i64,
    ) -> Result<Vec<CheckoutSession>, ProcessorError>;

    /// `GET /v1/charges` created in `[created_gte, created_lt)`, every page.
    async fn list_charges(
        &self,
        created_gte: i64,
        created_lt: i64,
    ) -> Result<Vec<Charge>, ProcessorError>;

    /// `GET /v1/refunds` created in `[created_gte, created_lt)`, every page.
    async fn list_refunds(
        &self,
        created_gte: i64,
        created_lt: i64,
    ) -> Result<Vec<Refund>, ProcessorError>;

    /// `GET /v1/payouts` created in `[created_gte, created_lt)`, every page.
    async fn list_payouts(
        &self,
        created_gte: i64,
        created_lt: i64,
    ) -> Result<Vec<Payout>, ProcessorError>;
}

/// Parameters of a hosted checkout session (always `mode=payment`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateCheckoutSession {
    pub line_items: Vec<LineItem>,
    /// Lower-case ISO currency code, `"usd"`.
    pub currency: String,
    /// Where the processor sends the resident after paying; may contain the
    /// literal placeholder `{CHECKOUT_SESSION_ID}`.
    pub success_url: String,
    pub cancel_url: String,
    pub client_reference_id: String,
    pub metadata: Vec<(String, String)>,
    pub customer_email: Option<String>,
    /// Unix seconds; Stripe accepts 30 minutes to 24 hours from now.
    pub expires_at: Option<i64>,
    /// The hosted page's language (`es`; `None` lets the processor choose).
    pub locale: Option<String>,
}

/// One line of a checkout session, priced inline (`price_data`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub name: String,
    /// Minor units (cents).
    pub unit_amount: i64,
    pub quantity: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Open,
    Complete,
    Expired,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Open => "open",
            SessionStatus::Complete => "complete",
            SessionStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(SessionStatus::Open),
            "complete" => Some(SessionStatus::Complete),
            "expired" => Some(SessionStatus::Expired),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionPaymentStatus {
    Paid,
    Unpaid,
    NoPaymentRequired,
}

impl SessionPaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionPaymentStatus::Paid => "paid",
            SessionPaymentStatus::Unpaid => "unpaid",
            SessionPaymentStatus::NoPaymentRequired => "no_payment_required",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "paid" => Some(SessionPaymentStatus::Paid),
            "unpaid" => Some(SessionPaymentStatus::Unpaid),
            "no_payment_required" => Some(SessionPaymentStatus::NoPaymentRequired),
            _ => None,
        }
    }
}

/// A checkout session as the application sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    /// The hosted page; `None` once the session is no longer open.
    pub url: Option<String>,
    pub status: SessionStatus,
    pub payment_status: SessionPaymentStatus,
    /// Minor units (cents).
    pub amount_total: i64,
    pub currency: String,
    pub client_reference_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Brand and last four digits of the card of the latest charge, when the
    /// payment intent was expanded with its latest charge.
    pub card: Option<CardSummary>,
    /// The error of the latest failed attempt, when the payment intent was expanded.
    pub last_payment_error: Option<PaymentError>,
}

/// The only card data anything outside the card form handler ever holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardSummary {
    /// `visa`, `mastercard`, `amex`, `discover`, `unknown`.
    pub brand: String,
    pub last4: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentError {
    /// e.g. `card_declined`.
    pub code: String,
    /// e.g. `generic_decline`, `insufficient_funds`.
    pub decline_code: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRefund {
    pub payment_intent: String,
    /// Minor units; `None` refunds whatever is left.
    pub amount: Option<i64>,
    pub metadata: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    /// `succeeded`, `pending`, `failed`, `canceled`, `requires_action`.
    pub status: String,
    pub payment_intent: String,
    /// Unix seconds.
    pub created: i64,
}

/// A charge: the money a payment intent captured (Stripe's `charge` object, the fields
/// reconciliation reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub id: String,
    pub amount: i64,
    pub amount_captured: i64,
    pub amount_refunded: i64,
    pub currency: String,
    /// Unix seconds.
    pub created: i64,
    pub paid: bool,
    pub refunded: bool,
    /// `succeeded`, `pending` or `failed`.
    pub status: String,
    pub payment_intent: Option<String>,
}

/// A payout of the processor's balance to the city's bank account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    /// Unix seconds.
    pub arrival_date: i64,
    pub created: i64,
    /// `paid`, `pending`, `in_transit`, `canceled` or `failed`.
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessorError {
    /// The request did not complete (connect, TLS, timeout, reading the body).
    #[error("processor transport error: {0}")]
    Http(String),
    /// The processor answered with an error object.
    #[error("processor API error {status} ({kind}{}): {message}", code.as_deref().map(|c| format!("/{c}")).unwrap_or_default())]
    Api {
        status: u16,
        /// Stripe's `error.type`, e.g. `invalid_request_error`, `card_error`, `idempotency_error`.
        kind: String,
        code: Option<String>,
        message: String,
    },
    /// The processor answered 2xx with something we could not understand.
    #[error("could not decode processor response: {0}")]
    Decode(String),
}

impl ProcessorError {
    /// Whether retrying the same request (with the same idempotency key) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProcessorError::Http(_) => true,
            ProcessorError::Api { status, .. } => {
                *status == 409 || *status == 429 || *status >= 500
            }
            ProcessorError::Decode(_) => false,
        }
    }
}

// ---------------------------------------------------------------------------
// Wire shapes (Stripe JSON) and their conversion into the public types.
// ---------------------------------------------------------------------------

/// A field that is either an id or, when expanded, the object itself.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Expandable<T> {
    Id(String),
    Object(Box<T>),
}

impl<T: HasId> Expandable<T> {
    fn id(&self) -> &str {
        match self {
            Expandable::Id(s) => s,
            Expandable::Object(o) => o.id(),
        }
    }

    fn object(&self) -> Option<&T> {
        match self {
            Expandable::Id(_) => None,
            Expandable::Object(o) => Some(o),
        }
    }
}

pub(crate) trait HasId {
    fn id(&self) -> &str;
}

#[derive(Debug, Deserialize)]
struct WireSession {
    id: String,
    #[serde(default)]
    url: Option<String>,
    status: Option<String>,
    payment_status: String,
    #[serde(default)]
    amount_total: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    client_reference_id: Option<String>,
    #[serde(default)]
    payment_intent: Option<Expandable<WirePaymentIntent>>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
struct WirePaymentIntent {
    id: String,
    #[serde(default)]
    latest_charge: Option<Expandable<WireCharge>>,
    #[serde(default)]
    last_payment_error: Option<WirePaymentError>,
}

impl HasId for WirePaymentIntent {
    fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireCharge {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) amount: i64,
    #[serde(default)]
    pub(crate) amount_refunded: i64,
    #[serde(default)]
    pub(crate) payment_intent: Option<Expandable<WirePaymentIntentId>>,
    #[serde(default)]
    payment_method_details: Option<WirePaymentMethodDetails>,
}

impl HasId for WireCharge {
    fn id(&self) -> &str {
        &self.id
    }
}

/// A payment intent of which only the id matters (used inside charges).
#[derive(Debug, Deserialize)]
pub(crate) struct WirePaymentIntentId {
    id: String,
}

impl HasId for WirePaymentIntentId {
    fn id(&self) -> &str {
        &self.id
    }
}

impl WireCharge {
    pub(crate) fn payment_intent_id(&self) -> Option<&str> {
        self.payment_intent.as_ref().map(|p| p.id())
    }
}

#[derive(Debug, Deserialize)]
struct WirePaymentMethodDetails {
    #[serde(default)]
    card: Option<WireCard>,
}

#[derive(Debug, Deserialize)]
struct WireCard {
    brand: Option<String>,
    last4: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WirePaymentError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    decline_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireRefund {
    id: String,
    amount: i64,
    status: Option<String>,
    #[serde(default)]
    payment_intent: Option<Expandable<WirePaymentIntentId>>,
    #[serde(default)]
    created: i64,
}

impl CheckoutSession {
    /// Builds a session from Stripe's `checkout.session` JSON object.
    pub fn from_stripe_json(value: &serde_json::Value) -> Result<Self, ProcessorError> {
        if let Some(obj) = value.get("object").and_then(|o| o.as_str()) {
            if obj != "checkout.session" {
                return Err(ProcessorError::Decode(format!(
                    "expected a checkout.session, got {obj}"
                )));
            }
        }
        let wire: WireSession = serde_json::from_value(value.clone())
            .map_err(|e| ProcessorError::Decode(format!("checkout.session: {e}")))?;
        let status = match wire.status.as_deref() {
            Some(s) => SessionStatus::parse(s)
                .ok_or_else(|| ProcessorError::Decode(format!("unknown session status {s:?}")))?,
            None => return Err(ProcessorError::Decode("session status missing".into())),
        };
        let payment_status =
            SessionPaymentStatus::parse(&wire.payment_status).ok_or_else(|| {
                ProcessorError::Decode(format!(
                    "unknown session payment_status {:?}",
                    wire.payment_status
                ))
            })?;
        let pi = wire.payment_intent.as_ref();
        let pi_obj = pi.and_then(|p| p.object());
        let card = pi_obj
            .and_then(|p| p.latest_charge.as_ref())
            .and_then(|c| c.object())
            .and_then(|c| c.payment_method_details.as_ref())
            .and_then(|d| d.card.as_ref())
            .and_then(|c| match (&c.brand, &c.last4) {
                (Some(brand), Some(last4)) => Some(CardSummary {
                    brand: brand.clone(),
                    last4: last4.clone(),
                }),
                _ => None,
            });
        let last_payment_error =
            pi_obj
                .and_then(|p| p.last_payment_error.as_ref())
                .map(|e| PaymentError {
                    code: e.code.clone().unwrap_or_default(),
                    decline_code: e.decline_code.clone(),
                    message: e.message.clone().unwrap_or_default(),
                });
        Ok(CheckoutSession {
            id: wire.id,
            url: wire.url,
            status,
            payment_status,
            amount_total: wire.amount_total.unwrap_or(0),
            currency: wire.currency.unwrap_or_default(),
            client_reference_id: wire.client_reference_id,
            payment_intent_id: pi.map(|p| p.id().to_owned()),
            metadata: wire.metadata.unwrap_or_default(),
            card,
            last_payment_error,
        })
    }
}

impl Refund {
    /// Builds a refund from Stripe's `refund` JSON object.
    pub fn from_stripe_json(value: &serde_json::Value) -> Result<Self, ProcessorError> {
        let wire: WireRefund = serde_json::from_value(value.clone())
            .map_err(|e| ProcessorError::Decode(format!("refund: {e}")))?;
        Ok(Refund {
            id: wire.id,
            amount: wire.amount,
            status: wire.status.unwrap_or_default(),
            payment_intent: wire
                .payment_intent
                .as_ref()
                .map(|p| p.id().to_owned())
                .unwrap_or_default(),
            created: wire.created,
        })
    }
}

#[derive(Deserialize)]
struct WireChargeListed {
    id: String,
    amount: i64,
    #[serde(default)]
    amount_captured: i64,
    #[serde(default)]
    amount_refunded: i64,
    currency: String,
    created: i64,
    #[serde(default)]
    paid: bool,
    #[serde(default)]
    refunded: bool,
    status: String,
    #[serde(default)]
    payment_intent: Option<Expandable<WirePaymentIntentId>>,
}

impl Charge {
    /// Builds a charge from Stripe's `charge` JSON object.
    pub fn from_stripe_json(value: &serde_json::Value) -> Result<Self, ProcessorError> {
        let w: WireChargeListed = serde_json::from_value(value.clone())
            .map_err(|e| ProcessorError::Decode(format!("charge: {e}")))?;
        Ok(Charge {
            id: w.id,
            amount: w.amount,
            amount_captured: w.amount_captured,
            amount_refunded: w.amount_refunded,
            currency: w.currency,
            created: w.created,
            paid: w.paid,
            refunded: w.refunded,
            status: w.status,
            payment_intent: w.payment_intent.as_ref().map(|p| p.id().to_owned()),
        })
    }
}

impl Payout {
    /// Builds a payout from Stripe's `payout` JSON object.
    pub fn from_stripe_json(value: &serde_json::Value) -> Result<Self, ProcessorError> {
        serde_json::from_value(value.clone())
            .map_err(|e| ProcessorError::Decode(format!("payout: {e}")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_unexpanded_session() {
        let v = json!({
            "id": "cs_test_1", "object": "checkout.session", "url": "https://x/c/pay/cs_test_1",
            "status": "open", "payment_status": "unpaid", "amount_total": 1234, "currency": "usd",
            "client_reference_id": "ref-1", "payment_intent": null, "metadata": {"a": "b"}
        });
        let s = CheckoutSession::from_stripe_json(&v).unwrap();
        assert_eq!(s.status, SessionStatus::Open);
        assert_eq!(s.payment_status, SessionPaymentStatus::Unpaid);
        assert_eq!(s.amount_total, 1234);
        assert_eq!(s.payment_intent_id, None);
        assert_eq!(s.metadata.get("a").map(String::as_str), Some("b"));
        assert!(s.card.is_none());
    }

    #[test]
    fn parses_expanded_session() {
        let v = json!({
            "id": "cs_test_1", "object": "checkout.session", "url": null,
            "status": "complete", "payment_status": "paid", "amount_total": 1234, "currency": "usd",
            "client_reference_id": null, "metadata": {},
            "payment_intent": {
                "id": "pi_1", "object": "payment_intent", "status": "succeeded",
                "last_payment_error": null,
                "latest_charge": {"id": "ch_1", "object": "charge", "amount": 1234, "amount_refunded": 0,
                    "payment_intent": "pi_1",
                    "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}}}
            }
        });
        let s = CheckoutSession::from_stripe_json(&v).unwrap();
        assert_eq!(s.payment_intent_id.as_deref(), Some("pi_1"));
        assert_eq!(
            s.card,
            Some(CardSummary {
                brand: "visa".into(),
                last4: "4242".into()
            })
        );
    }

    #[test]
    fn parses_decline() {
        let v = json!({
            "id": "cs_test_1", "object": "checkout.session",
            "status": "open", "payment_status": "unpaid", "amount_total": 1, "currency": "usd",
            "payment_intent": {"id": "pi_1", "latest_charge": "ch_1",
                "last_payment_error": {"type": "card_error", "code": "card_declined",
                    "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}}
        });
        let s = CheckoutSession::from_stripe_json(&v).unwrap();
        let e = s.last_payment_error.unwrap();
        assert_eq!(e.code, "card_declined");
        assert_eq!(e.decline_code.as_deref(), Some("insufficient_funds"));
        assert!(s.card.is_none());
    }

    #[test]
    fn rejects_wrong_shapes() {
        for v in [
            json!({}),
            json!({"id": "x", "object": "payment_intent", "status": "open", "payment_status": "paid"}),
            json!({"id": "x", "status": "weird", "payment_status": "paid"}),
            json!({"id": "x", "status": "open", "payment_status": "weird"}),
            json!({"id": 5, "status": "open", "payment_status": "paid"}),
            json!([1, 2]),
            json!(null),
        ] {
            assert!(matches!(
                CheckoutSession::from_stripe_json(&v),
                Err(ProcessorError::Decode(_))
            ));
        }
    }
}
