//! A Stripe API client (form-encoded requests, JSON responses) over reqwest + rustls.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Url};

use crate::{
    Charge, CheckoutSession, CreateCheckoutSession, CreateRefund, Payout, Processor,
    ProcessorError, Refund, STRIPE_API_VERSION,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(20);
/// Responses larger than this are refused (Stripe objects are a few KiB).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
const SESSION_EXPAND: &str = "payment_intent.latest_charge";

/// Talks to Stripe (or the sandbox) at `base_url`.
#[derive(Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    base_url: Url,
    secret_key: String,
}

impl fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeClient")
            .field("base_url", &self.base_url.as_str())
            .field("secret_key", &"[redacted]")
            .finish()
    }
}

impl StripeClient {
    /// `base_url` is e.g. `https://api.stripe.com` or `http://127.0.0.1:8082`.
    pub fn new(base_url: &str, secret_key: impl Into<String>) -> Result<Self, ProcessorError> {
        let secret_key = secret_key.into();
        if secret_key.is_empty()
            || !secret_key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(ProcessorError::Http(
                "secret key is empty or has characters a key never has".into(),
            ));
        }
        let mut base_url = Url::parse(base_url)
            .map_err(|e| ProcessorError::Http(format!("invalid base URL: {e}")))?;
        if !matches!(base_url.scheme(), "http" | "https") || base_url.cannot_be_a_base() {
            return Err(ProcessorError::Http(
                "base URL must be an http(s) URL".into(),
            ));
        }
        if base_url.query().is_some() || base_url.fragment().is_some() {
            return Err(ProcessorError::Http(
                "base URL must not have a query or fragment".into(),
            ));
        }
        // Make sure path joins append rather than replace the last segment.
        if !base_url.path().ends_with('/') {
            let p = format!("{}/", base_url.path());
            base_url.set_path(&p);
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            "Stripe-Version",
            HeaderValue::from_static(STRIPE_API_VERSION),
        );
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .user_agent(concat!("strongroom-processor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProcessorError::Http(format!("building HTTP client: {e}")))?;
        Ok(StripeClient {
            http,
            base_url,
            secret_key,
        })
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ProcessorError> {
        let mut url = self.base_url.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| ProcessorError::Http("base URL cannot be a base".into()))?;
            path.pop_if_empty();
            // Each segment is percent-encoded, so an id cannot change the path.
            path.extend(segments);
        }
        Ok(url)
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        form: Option<Vec<(String, String)>>,
        idempotency_key: Option<&str>,
    ) -> Result<serde_json::Value, ProcessorError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.secret_key))
            .map_err(|_| ProcessorError::Http("secret key is not a valid header value".into()))?;
        auth.set_sensitive(true);
        let mut req = self.http.request(method, url).header(AUTHORIZATION, auth);
        if let Some(key) = idempotency_key {
            let v = HeaderValue::from_str(key).map_err(|_| {
                ProcessorError::Http("idempotency key is not a valid header".into())
            })?;
            req = req.header("Idempotency-Key", v);
        }
        if let Some(form) = form {
            let body = serde_urlencoded::to_string(&form)
                .map_err(|e| ProcessorError::Http(format!("encoding form: {e}")))?;
            req = req
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body);
        }
        let resp = req.send().await.map_err(transport_error)?;
        let status = resp.status();
        if let Some(len) = resp.content_length() {
            if len > MAX_RESPONSE_BYTES as u64 {
                return Err(ProcessorError::Decode("response too large".into()));
            }
        }
        let bytes = resp.bytes().await.map_err(transport_error)?;
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(ProcessorError::Decode("response too large".into()));
        }
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| ProcessorError::Decode(format!("response is not JSON: {e}")));
        }
        Err(api_error(status.as_u16(), &bytes))
    }
}

fn transport_error(e: reqwest::Error) -> ProcessorError {
    // reqwest's Display never includes headers, so the key cannot leak here.
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    ProcessorError::Http(format!("{what}: {}", e.without_url()))
}

fn api_error(status: u16, body: &[u8]) -> ProcessorError {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        #[serde(rename = "type", default)]
        kind: Option<String>,
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(env) => ProcessorError::Api {
            status,
            kind: env.error.kind.unwrap_or_else(|| "api_error".into()),
            code: env.error.code,
            message: env
                .error
                .message
                .unwrap_or_else(|| format!("HTTP status {status}")),
        },
        Err(_) => ProcessorError::Api {
            status,
            kind: "api_error".into(),
            code: None,
            message: format!("HTTP status {status} with an unrecognised body"),
        },
    }
}

/// The form fields of a checkout session creation, in Stripe's encoding.
pub fn checkout_session_form(req: &CreateCheckoutSession) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = vec![("mode".into(), "payment".into())];
    for (i, item) in req.line_items.iter().enumerate() {
        let p = format!("line_items[{i}]");
        f.push((format!("{p}[price_data][currency]"), req.currency.clone()));
        f.push((
            format!("{p}[price_data][product_data][name]"),
            item.name.clone(),
        ));
        f.push((
            format!("{p}[price_data][unit_amount]"),
            item.unit_amount.to_string(),
        ));
        f.push((format!("{p}[quantity]"), item.quantity.to_string()));
    }
    f.push(("success_url".into(), req.success_url.clone()));
    f.push(("cancel_url".into(), req.cancel_url.clone()));
    f.push((
        "client_reference_id".into(),
        req.client_reference_id.clone(),
    ));
    for (k, v) in &req.metadata {
        f.push((format!("metadata[{k}]"), v.clone()));
    }
    if let Some(email) = &req.customer_email {
        f.push(("customer_email".into(), email.clone()));
    }
    if let Some(l) = &req.locale {
        f.push(("locale".into(), l.clone()));
    }
    if let Some(at) = req.expires_at {
        f.push(("expires_at".into(), at.to_string()));
    }
    f
}

/// The form fields of a refund creation, in Stripe's encoding.
pub fn refund_form(req: &CreateRefund) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = vec![("payment_intent".into(), req.payment_intent.clone())];
    if let Some(amount) = req.amount {
        f.push(("amount".into(), amount.to_string()));
    }
    for (k, v) in &req.metadata {
        f.push((format!("metadata[{k}]"), v.clone()));
    }
    f
}

#[async_trait::async_trait]
impl Processor for StripeClient {
    async fn create_checkout_session(
        &self,
        req: &CreateCheckoutSession,
        idempotency_key: &str,
    ) -> Result<CheckoutSession, ProcessorError> {
        let url = self.url(&["v1", "checkout", "sessions"])?;
        let v = self
            .send(
                Method::POST,
                url,
                Some(checkout_session_form(req)),
                Some(idempotency_key),
            )
            .await?;
        CheckoutSession::from_stripe_json(&v)
    }

    async fn retrieve_checkout_session(&self, id: &str) -> Result<CheckoutSession, ProcessorError> {
        let mut url = self.url(&["v1", "checkout", "sessions", id])?;
        url.query_pairs_mut()
            .append_pair("expand[]", SESSION_EXPAND);
        let v = self.send(Method::GET, url, None, None).await?;
        CheckoutSession::from_stripe_json(&v)
    }

    async fn expire_checkout_session(&self, id: &str) -> Result<CheckoutSession, ProcessorError> {
        let url = self.url(&["v1", "checkout", "sessions", id, "expire"])?;
        // A key derived from the session makes a retried expire replay the first
        // answer instead of failing with "session is not open".
        let key = format!("expire-{id}");
        let form = vec![("expand[]".to_owned(), SESSION_EXPAND.to_owned())];
        let v = self.send(Method::POST, url, Some(form), Some(&key)).await?;
        CheckoutSession::from_stripe_json(&v)
    }

    async fn create_refund(
        &self,
        req: &CreateRefund,
        idempotency_key: &str,
    ) -> Result<Refund, ProcessorError> {
        let url = self.url(&["v1", "refunds"])?;
        let v = self
            .send(
                Method::POST,
                url,
                Some(refund_form(req)),
                Some(idempotency_key),
            )
            .await?;
        Refund::from_stripe_json(&v)
    }

    async fn list_checkout_sessions(
        &self,
        created_gte: i64,
        created_lt: i64,
    ) -> Result<Vec<CheckoutSession>, ProcessorError> {
        let all = self
            .list_all(&["v1", "checkout", "sessions"], created_gte, created_lt)
            .await?;
        all.iter().map(CheckoutSession::from_stripe_json).collect()
    }

    async fn list_charges(
        &self,
        created_gte: i64,
        created_lt: i64,
    ) -> Result<Vec<Charge>, ProcessorError> {
        let all = self
            .list_all(&["v1", "charges"], created_gte, created_lt)
            .await?;
        all.iter().map(Charge::from_stripe_json).collect()
    }

    async fn list_refunds(
        &self,
        created_gte: i64,
        created_lt: i64,
    ) -> Result<Vec<Refund>, ProcessorError> {
        let all = self
            .list_all(&["v1", "refunds"], created_gte, created_lt)
            .await?;
        all.iter().map(Refund::from_stripe_json).collect()
    }

    async fn list_payouts(
        &self,
        created_gte: i64,
        created_lt: i64,
    ) -> Result<Vec<Payout>, ProcessorError> {
        let all = self
            .list_all(&["v1", "payouts"], created_gte, created_lt)
            .await?;
        all.iter().map(Payout::from_stripe_json).collect()
    }
}

/// Most pages one listing follows (100 objects each): 100,000 objects, far above a city's
/// day; a longer list is an error rather than an unbounded loop.
const MAX_PAGES: usize = 1000;

impl StripeClient {
    /// Every object of a Stripe list endpoint created in `[gte, lt)`: pages of 100,
    /// following `has_more` with `starting_after` = the last object's id.
    async fn list_all(
        &self,
        path: &[&str],
        gte: i64,
        lt: i64,
    ) -> Result<Vec<serde_json::Value>, ProcessorError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut url = self.url(path)?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("limit", "100")
                    .append_pair("created[gte]", &gte.to_string())
                    .append_pair("created[lt]", &lt.to_string());
                if let Some(a) = &after {
                    q.append_pair("starting_after", a);
                }
            }
            let page = self.send(Method::GET, url, None, None).await?;
            let data = page
                .get("data")
                .and_then(|d| d.as_array())
                .ok_or_else(|| ProcessorError::Decode("list has no data".into()))?;
            let has_more = page
                .get("has_more")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            after = data
                .last()
                .and_then(|o| o.get("id"))
                .and_then(|i| i.as_str())
                .map(str::to_owned);
            out.extend(data.iter().cloned());
            if !has_more || after.is_none() {
                return Ok(out);
            }
        }
        Err(ProcessorError::Decode(format!(
            "list longer than {MAX_PAGES} pages"
        )))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::LineItem;

    #[test]
    fn debug_hides_key() {
        let c = StripeClient::new("http://127.0.0.1:1", "sk_test_supersecret").unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("supersecret"), "{d}");
        assert!(d.contains("redacted"));
    }

    #[test]
    fn rejects_bad_config() {
        assert!(StripeClient::new("ftp://x", "sk_test_1").is_err());
        assert!(StripeClient::new("not a url", "sk_test_1").is_err());
        assert!(StripeClient::new("http://x", "").is_err());
        assert!(StripeClient::new("http://x", "sk_test_1\r\nX: y").is_err());
    }

    #[test]
    fn urls_encode_ids() {
        let c = StripeClient::new("http://127.0.0.1:1/prefix", "sk_test_1").unwrap();
        let u = c
            .url(&["v1", "checkout", "sessions", "../../x?y#z"])
            .unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:1/prefix/v1/checkout/sessions/..%2F..%2Fx%3Fy%23z"
        );
        let c = StripeClient::new("http://127.0.0.1:1", "sk_test_1").unwrap();
        assert_eq!(
            c.url(&["v1", "refunds"]).unwrap().as_str(),
            "http://127.0.0.1:1/v1/refunds"
        );
    }

    #[test]
    fn form_encoding_matches_stripe() {
        let req = CreateCheckoutSession {
            line_items: vec![LineItem {
                name: "Water & sewer".into(),
                unit_amount: 1234,
                quantity: 1,
            }],
            currency: "usd".into(),
            success_url: "https://city.example/pay/done?s={CHECKOUT_SESSION_ID}".into(),
            cancel_url: "https://city.example/pay/cancel".into(),
            client_reference_id: "pay_1".into(),
            metadata: vec![("payment_id".into(), "pay_1".into())],
            customer_email: Some("a@b.example".into()),
            expires_at: Some(1_700_000_000),
            locale: None,
        };
        let body = serde_urlencoded::to_string(checkout_session_form(&req)).unwrap();
        assert_eq!(
            body,
            "mode=payment\
             &line_items%5B0%5D%5Bprice_data%5D%5Bcurrency%5D=usd\
             &line_items%5B0%5D%5Bprice_data%5D%5Bproduct_data%5D%5Bname%5D=Water+%26+sewer\
             &line_items%5B0%5D%5Bprice_data%5D%5Bunit_amount%5D=1234\
             &line_items%5B0%5D%5Bquantity%5D=1\
             &success_url=https%3A%2F%2Fcity.example%2Fpay%2Fdone%3Fs%3D%7BCHECKOUT_SESSION_ID%7D\
             &cancel_url=https%3A%2F%2Fcity.example%2Fpay%2Fcancel\
             &client_reference_id=pay_1\
             &metadata%5Bpayment_id%5D=pay_1\
             &customer_email=a%40b.example\
             &expires_at=1700000000"
        );
    }

    #[test]
    fn error_shapes() {
        let e = api_error(
            400,
            br#"{"error":{"type":"invalid_request_error","code":"parameter_missing","message":"Missing required param: mode.","param":"mode"}}"#,
        );
        assert_eq!(
            e,
            ProcessorError::Api {
                status: 400,
                kind: "invalid_request_error".into(),
                code: Some("parameter_missing".into()),
                message: "Missing required param: mode.".into()
            }
        );
        let e = api_error(502, b"<html>bad gateway</html>");
        assert!(matches!(e, ProcessorError::Api { status: 502, .. }));
        assert!(e.is_retryable());
    }
}
