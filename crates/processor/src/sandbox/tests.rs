//! End-to-end tests: the sandbox on 127.0.0.1:0 driven by the real
//! `StripeClient`, a browser-like form client, and a webhook receiver.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::mpsc;

use super::*;
use crate::client::StripeClient;
use crate::webhook::{self, Event};
use crate::{
    CardSummary, CreateCheckoutSession, CreateRefund, LineItem, Processor, ProcessorError,
};

const KEY: &str = "sk_test_sandboxkey123";
const WHSEC: &str = "whsec_test_abc";
const T0: i64 = 1_700_000_000; // 2023-11-14
type Form<'a> = Vec<(&'a str, &'a str)>;
const WAIT: Duration = Duration::from_secs(10);

struct Receiver {
    clock: Arc<AtomicI64>,
    fail_first: usize,
    requests: AtomicUsize,
    tx: mpsc::UnboundedSender<Event>,
}

async fn hook(State(rs): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let n = rs.requests.fetch_add(1, Ordering::SeqCst);
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let sig = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ev = match webhook::verify(&body, sig, WHSEC, rs.clock.load(Ordering::SeqCst), 300) {
        Ok(ev) => ev,
        Err(_) => return StatusCode::BAD_REQUEST,
    };
    if n < rs.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let _ = rs.tx.send(ev);
    StatusCode::OK
}

struct Harness {
    base: String,
    client: StripeClient,
    browser: reqwest::Client,
    clock: Arc<AtomicI64>,
    hooks: mpsc::UnboundedReceiver<Event>,
    receiver: Arc<Receiver>,
}

async fn start(fail_first: usize) -> Harness {
    let clock = Arc::new(AtomicI64::new(T0));
    let (tx, hooks) = mpsc::unbounded_channel();
    let receiver = Arc::new(Receiver {
        clock: clock.clone(),
        fail_first,
        requests: AtomicUsize::new(0),
        tx,
    });
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", hook_listener.local_addr().unwrap());
    let hook_app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(hook_listener, hook_app).await });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let c = clock.clone();
    let cfg = SandboxConfig {
        secret_key: KEY.into(),
        public_base_url: base.clone(),
        webhook_url: Some(hook_url),
        webhook_secret: WHSEC.into(),
        retry_base: Duration::from_millis(20),
        now: Arc::new(move || c.load(Ordering::SeqCst)),
    };
    tokio::spawn(serve(listener, cfg));
    Harness {
        client: StripeClient::new(&base, KEY).unwrap(),
        browser: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base,
        clock,
        hooks,
        receiver,
    }
}

fn session_req(amount: i64) -> CreateCheckoutSession {
    CreateCheckoutSession {
        line_items: vec![LineItem {
            name: "Water & sewer <March>".into(),
            unit_amount: amount,
            quantity: 1,
        }],
        currency: "usd".into(),
        success_url: "http://127.0.0.1:9/pay/done?session_id={CHECKOUT_SESSION_ID}".into(),
        cancel_url: "http://127.0.0.1:9/pay/cancel".into(),
        client_reference_id: "pay_123".into(),
        metadata: vec![("payment_id".into(), "pay_123".into())],
        customer_email: Some("resident@example.org".into()),
        expires_at: None,
        locale: None,
    }
}

fn card_form<'a>(number: &'a str, expiry: &'a str, cvc: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("card_number", number),
        ("expiry", expiry),
        ("cvc", cvc),
        ("name", "Pat Resident"),
        ("zip", "12345"),
    ]
}

impl Harness {
    async fn pay(&self, id: &str, form: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        let resp = self
            .browser
            .post(format!("{}/c/pay/{id}", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap())
    }

    async fn next_hook(&mut self) -> Event {
        tokio::time::timeout(WAIT, self.hooks.recv())
            .await
            .expect("webhook in time")
            .expect("receiver alive")
    }

    async fn raw_post(&self, path: &str, key: Option<&str>, body: &str) -> (StatusCode, Value) {
        let mut req = self
            .browser
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned());
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        (status, v)
    }

    async fn events(&self) -> Value {
        self.browser
            .get(format!("{}/_sandbox/events", self.base))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn api_error_kind(e: &ProcessorError) -> (&str, Option<&str>) {
    match e {
        ProcessorError::Api { kind, code, .. } => (kind.as_str(), code.as_deref()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_retrieve_and_idempotency() {
    let h = start(0).await;
    let s = h
        .client
        .create_checkout_session(&session_req(1234), "key-1")
        .await
        .unwrap();
    assert!(s.id.starts_with("cs_test_"), "{}", s.id);
    assert_eq!(
        s.url.as_deref(),
        Some(format!("{}/c/pay/{}", h.base, s.id).as_str())
    );
    assert_eq!(s.status, SessionStatus::Open);
    assert_eq!(s.payment_status, SessionPaymentStatus::Unpaid);
    assert_eq!(s.amount_total, 1234);
    assert_eq!(s.currency, "usd");
    assert_eq!(s.client_reference_id.as_deref(), Some("pay_123"));
    assert_eq!(
        s.metadata.get("payment_id").map(String::as_str),
        Some("pay_123")
    );
    assert_eq!(s.payment_intent_id, None);

    // Same key, same body: the same session.
    let again = h
        .client
        .create_checkout_session(&session_req(1234), "key-1")
        .await
        .unwrap();
    assert_eq!(again, s);
    // Same key, different body: refused.
    let err = h
        .client
        .create_checkout_session(&session_req(999), "key-1")
        .await
        .unwrap_err();
    assert_eq!(api_error_kind(&err).0, "idempotency_error");
    assert!(matches!(err, ProcessorError::Api { status: 400, .. }));
    // Another key: another session.
    let other = h
        .client
        .create_checkout_session(&session_req(1234), "key-2")
        .await
        .unwrap();
    assert_ne!(other.id, s.id);

    let got = h.client.retrieve_checkout_session(&s.id).await.unwrap();
    assert_eq!(got, s);
    let err = h
        .client
        .retrieve_checkout_session("cs_test_nope")
        .await
        .unwrap_err();
    assert_eq!(
        api_error_kind(&err),
        ("invalid_request_error", Some("resource_missing"))
    );
    // Path tricks are encoded by the client and unknown to the sandbox.
    let err = h
        .client
        .retrieve_checkout_session("../refunds")
        .await
        .unwrap_err();
    assert!(matches!(err, ProcessorError::Api { status: 404, .. }));
}

#[tokio::test]
async fn auth_and_validation_errors() {
    let h = start(0).await;
    let good = serde_urlencoded::to_string(crate::client::checkout_session_form(&session_req(500)))
        .unwrap();
    let (st, v) = h.raw_post("/v1/checkout/sessions", None, &good).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let (st, _) = h
        .raw_post("/v1/checkout/sessions", Some("sk_test_wrong"), &good)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let bad = StripeClient::new(&h.base, "sk_test_wrong").unwrap();
    let err = bad
        .retrieve_checkout_session("cs_test_x")
        .await
        .unwrap_err();
    assert!(matches!(err, ProcessorError::Api { status: 401, .. }));

    let li = "line_items[0][price_data][currency]=usd&line_items[0][price_data][product_data][name]=Bill&line_items[0][price_data][unit_amount]=100&line_items[0][quantity]=1";
    let urls = "success_url=https://city.example/ok&cancel_url=https://city.example/no";
    let cases: Vec<(String, &str)> = vec![
        (format!("{li}&{urls}"), "mode"),
        (format!("mode=subscription&{li}&{urls}"), "mode"),
        (format!("mode=payment&{urls}"), "line_items"),
        (format!("mode=payment&{}&{urls}", li.replace("unit_amount]=100", "unit_amount]=0")), "line_items[0][price_data][unit_amount]"),
        (format!("mode=payment&{}&{urls}", li.replace("unit_amount]=100", "unit_amount]=-5")), "line_items[0][price_data][unit_amount]"),
        (format!("mode=payment&{}&{urls}", li.replace("unit_amount]=100", "unit_amount]=1.5")), "line_items[0][price_data][unit_amount]"),
        (format!("mode=payment&{}&{urls}", li.replace("quantity]=1", "quantity]=0")), "line_items[0][quantity]"),
        (format!("mode=payment&{}&{urls}", li.replace("currency]=usd", "currency]=eur")), "line_items[0][price_data][currency]"),
        (format!("mode=payment&{li}&success_url=javascript:alert(1)&cancel_url=https://city.example/no"), "success_url"),
        (format!("mode=payment&{li}&success_url=https://city.example/ok&cancel_url=ftp://x/"), "cancel_url"),
        (format!("mode=payment&{li}&success_url=https://city.example/ok"), "cancel_url"),
        (format!("mode=payment&{li}&{urls}&bogus=1"), "bogus"),
        (format!("mode=payment&{li}&{urls}&line_items[3][quantity]=1"), "line_items[3][quantity]"),
        (format!("mode=payment&{li}&{urls}&expires_at=1"), "expires_at"),
        (format!("mode=payment&{li}&{urls}&expires_at={}", T0 + 90_000), "expires_at"),
        (format!("mode=payment&{li}&{urls}&customer_email=nope"), "customer_email"),
        (format!("mode=payment&{li}&{urls}&mode=payment"), "mode"),
        (format!("mode=payment&{}&{urls}", li.replace("unit_amount]=100", "unit_amount]=99999999999999999999")), "line_items[0][price_data][unit_amount]"),
        (format!("mode=payment&{}&{urls}", li.replace("quantity]=1", "quantity]=999999").replace("unit_amount]=100", "unit_amount]=99999999")), "line_items[0]"),
    ];
    for (body, param) in cases {
        let (st, v) = h.raw_post("/v1/checkout/sessions", Some(KEY), &body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
    }
    // The well-formed body is accepted, with a valid explicit expiry.
    let (st, v) = h
        .raw_post("/v1/checkout/sessions", Some(KEY), &format!("mode=payment&{li}&{urls}&expires_at={}&payment_method_types[0]=card&expand[]=payment_intent", T0 + 3600))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["expires_at"], T0 + 3600);
    assert_eq!(v["object"], "checkout.session");
}

#[tokio::test]
async fn hostile_requests_get_4xx_never_5xx() {
    let h = start(0).await;
    let bodies: Vec<Vec<u8>> = vec![
        vec![],
        b"%".to_vec(),
        b"%ff%fe=%00".to_vec(),
        vec![0xff, 0x00, 0x80],
        b"line_items[0]=x".to_vec(),
        b"line_items=1&mode=payment".to_vec(),
        b"metadata[a][b]=c".to_vec(),
        b"amount=1&payment_intent=pi_x&charge=ch_y".to_vec(),
        "a=1&".repeat(2000).into_bytes(),
        vec![b'a'; MAX_BODY_BYTES + 10],
    ];
    for path in [
        "/v1/checkout/sessions",
        "/v1/refunds",
        "/v1/checkout/sessions/cs_test_x/expire",
    ] {
        for body in &bodies {
            let resp = h
                .browser
                .post(format!("{}{path}", h.base))
                .bearer_auth(KEY)
                .header("idempotency-key", "hostile")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let st = resp.status();
            assert!(st.is_client_error(), "{path} -> {st}");
            let v: Value = resp.json().await.unwrap();
            assert!(v["error"]["message"].is_string(), "{v}");
        }
    }
    for (method, path) in [
        ("GET", "/v1/nothing"),
        ("DELETE", "/v1/checkout/sessions"),
        ("GET", "/v1/checkout/sessions/%FF%FE"),
        ("GET", "/v1/checkout/sessions/x?expand[]=customer"),
        ("GET", "/v1/checkout/sessions/x?limit=3"),
    ] {
        let resp = h
            .browser
            .request(method.parse().unwrap(), format!("{}{path}", h.base))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_client_error(),
            "{method} {path} -> {}",
            resp.status()
        );
        let v: Value = resp.json().await.unwrap();
        assert!(v["error"]["type"].is_string());
    }
    let resp = h
        .browser
        .get(format!("{}/c/pay/cs_test_missing", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = h
        .browser
        .post(format!("{}/c/pay/cs_test_missing", h.base))
        .body("card_number=4242424242424242")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = h
        .browser
        .get(format!("{}/healthz", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn hosted_page_markup_and_headers() {
    let h = start(0).await;
    let s = h
        .client
        .create_checkout_session(&session_req(123456), "k")
        .await
        .unwrap();
    let resp = h.browser.get(s.url.clone().unwrap()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        csp,
        "default-src 'none'; style-src 'self'; form-action 'self' http://127.0.0.1:9; frame-ancestors 'none'; base-uri 'none'"
    );
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let html = resp.text().await.unwrap();
    for needle in [
        "<html lang=\"en\">",
        "<title>Pay $1,234.56 - Sandbox checkout</title>",
        "<main id=\"main\">",
        "<h1>Pay $1,234.56</h1>",
        "Water &amp; sewer &lt;March&gt;",
        "<label for=\"card-number\">Card number</label>",
        "<label for=\"card-expiry\">Expiration (MM/YY)</label>",
        "<label for=\"card-cvc\">Security code</label>",
        "<label for=\"card-name\">Name on card</label>",
        "<label for=\"card-zip\">ZIP code</label>",
        "autocomplete=\"cc-number\"",
        "autocomplete=\"cc-exp\"",
        "autocomplete=\"cc-csc\"",
        "autocomplete=\"cc-name\"",
        "autocomplete=\"postal-code\"",
        "<button type=\"submit\">Pay</button>",
        "href=\"http://127.0.0.1:9/pay/cancel\">Cancel and return</a>",
        "<link rel=\"stylesheet\" href=\"/static/sandbox.css\">",
    ] {
        assert!(html.contains(needle), "missing {needle:?}");
    }
    assert!(!html.contains("<script"));
    assert!(!html.contains("style="));
    assert!(!html.contains("<style"));
    let css = h
        .browser
        .get(format!("{}/static/sandbox.css", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), StatusCode::OK);
    assert!(css.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
}

#[tokio::test]
async fn pay_success_redirects_and_sends_signed_webhook() {
    let mut h = start(0).await;
    let s = h
        .client
        .create_checkout_session(&session_req(1234), "k")
        .await
        .unwrap();
    let (st, headers, _) = h
        .pay(&s.id, &card_form("4242 4242 4242 4242", "12/30", "123"))
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(
        headers["location"].to_str().unwrap(),
        format!("http://127.0.0.1:9/pay/done?session_id={}", s.id)
    );
    let got = h.client.retrieve_checkout_session(&s.id).await.unwrap();
    assert_eq!(got.status, SessionStatus::Complete);
    assert_eq!(got.payment_status, SessionPaymentStatus::Paid);
    assert_eq!(got.url, None);
    assert!(got
        .payment_intent_id
        .as_deref()
        .unwrap()
        .starts_with("pi_test_"));
    assert_eq!(
        got.card,
        Some(CardSummary {
            brand: "visa".into(),
            last4: "4242".into()
        })
    );
    assert_eq!(got.last_payment_error, None);

    let ev = h.next_hook().await;
    assert_eq!(ev.kind, "checkout.session.completed");
    assert!(ev.id.starts_with("evt_"));
    let hs = ev.session().unwrap();
    assert_eq!(hs.id, s.id);
    assert_eq!(hs.payment_status, SessionPaymentStatus::Paid);
    assert_eq!(hs.client_reference_id.as_deref(), Some("pay_123"));
    assert_eq!(hs.payment_intent_id, got.payment_intent_id);

    // The page is closed now and a second submission charges nothing.
    let page = h
        .browser
        .get(format!("{}/c/pay/{}", h.base, s.id))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("This checkout is no longer open"));
    let (st, _, body) = h
        .pay(&s.id, &card_form("5555555555554444", "12/30", "123"))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(body.contains("This checkout is no longer open"));
    let again = h.client.retrieve_checkout_session(&s.id).await.unwrap();
    assert_eq!(again.card, got.card);
    let events = h.events().await;
    let completed = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "checkout.session.completed")
        .count();
    assert_eq!(completed, 1);
}

#[tokio::test]
async fn declines_then_success() {
    let mut h = start(0).await;
    let s = h
        .client
        .create_checkout_session(&session_req(5000), "k")
        .await
        .unwrap();

    let (st, _, body) = h
        .pay(&s.id, &card_form("4000 0000 0000 0002", "12/30", "123"))
        .await;
    assert_eq!(st, StatusCode::PAYMENT_REQUIRED);
    assert!(body.contains("Your card was declined."));
    assert!(body.contains("role=\"alert\""));
    assert!(body.contains("Cancel and return"));
    assert!(!body.contains("4000 0000 0000 0002\"") && !body.contains("value=\"4000"));
    let got = h.client.retrieve_checkout_session(&s.id).await.unwrap();
    assert_eq!(got.status, SessionStatus::Open);
    assert_eq!(got.payment_status, SessionPaymentStatus::Unpaid);
    let err = got.last_payment_error.clone().unwrap();
    assert_eq!(err.code, "card_declined");
    assert_eq!(err.decline_code.as_deref(), Some("generic_decline"));
    assert_eq!(err.message, "Your card was declined.");
    let pi = got.payment_intent_id.clone().unwrap();

    let (st, _, body) = h
        .pay(&s.id, &card_form("4000000000009995", "12/30", "123"))
        .await;
    assert_eq!(st, StatusCode::PAYMENT_REQUIRED);
    assert!(body.contains("Your card has insufficient funds."));
    let got = h.client.retrieve_checkout_session(&s.id).await.unwrap();
    assert_eq!(
        got.last_payment_error
            .as_ref()
            .and_then(|e| e.decline_code.as_deref()),
        Some("insufficient_funds")
    );
    assert_eq!(got.payment_intent_id.as_deref(), Some(pi.as_str()));

    // A refund of a declined payment is refused.
    let err = h
        .client
        .create_refund(
            &CreateRefund {
                payment_intent: pi.clone(),
                amount: None,
                metadata: vec![],
            },
            "r",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ProcessorError::Api { status: 400, .. }));

    // Amex with its 4-digit code succeeds on the same payment intent.
    let (st, _, _) = h
        .pay(&s.id, &card_form("3782 822463 10005", "01/31", "1234"))
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let got = h.client.retrieve_checkout_session(&s.id).await.unwrap();
    assert_eq!(got.payment_status, SessionPaymentStatus::Paid);
    assert_eq!(got.payment_intent_id.as_deref(), Some(pi.as_str()));
    assert_eq!(
        got.card,
        Some(CardSummary {
            brand: "amex".into(),
            last4: "0005".into()
        })
    );
    assert_eq!(got.last_payment_error, None);
    assert_eq!(h.next_hook().await.kind, "checkout.session.completed");
}

#[tokio::test]
async fn field_errors_rerender_the_page() {
    let h = start(0).await;
    let s = h
        .client
        .create_checkout_session(&session_req(100), "k")
        .await
        .unwrap();
    // Clock is November 2023: 10/23 is in the past.
    let cases: Vec<(Form, &str, &str)> = vec![
        (
            card_form("4242 4242 4242 4241", "12/30", "123"),
            "card-number",
            "enter a valid card number",
        ),
        (
            card_form("", "12/30", "123"),
            "card-number",
            "enter your card number",
        ),
        (
            card_form("4242", "12/30", "123"),
            "card-number",
            "enter a valid card number",
        ),
        (
            card_form("4242424242424242", "10/23", "123"),
            "card-expiry",
            "in the past",
        ),
        (
            card_form("4242424242424242", "13/30", "123"),
            "card-expiry",
            "MM/YY",
        ),
        (
            card_form("4242424242424242", "", "123"),
            "card-expiry",
            "expiration date",
        ),
        (
            card_form("4242424242424242", "12/30", "12"),
            "card-cvc",
            "3-digit",
        ),
        (
            card_form("378282246310005", "12/30", "123"),
            "card-cvc",
            "4-digit",
        ),
        (
            vec![
                ("card_number", "4242424242424242"),
                ("expiry", "12/30"),
                ("cvc", "123"),
                ("name", ""),
                ("zip", "12345"),
            ],
            "card-name",
            "Name on card",
        ),
        (
            vec![
                ("card_number", "4242424242424242"),
                ("expiry", "12/30"),
                ("cvc", "123"),
                ("name", "Pat"),
                ("zip", "1234"),
            ],
            "card-zip",
            "5-digit ZIP",
        ),
    ];
    for (form, field, message) in cases {
        let (st, headers, body) = h.pay(&s.id, &form).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{field}");
        assert!(headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"));
        assert!(body.contains(message), "{field}: {message}");
        assert!(body.contains("role=\"alert\""));
        assert!(body.contains(&format!("href=\"#{field}\"")));
        assert!(body.contains(&format!("id=\"{field}-error\"")));
        assert!(
            body.contains(&format!("aria-describedby=\"{field}-error\""))
                || body.contains(&format!(" {field}-error\""))
        );
        assert!(body.contains("aria-invalid=\"true\""));
        assert!(body.starts_with("<!DOCTYPE html>"));
        assert!(body.contains("<title>Error: "));
        // Nothing typed into the card fields is written back.
        assert!(!body.contains("value=\"4242"));
        assert!(!body.contains("value=\"12/30\""));
        assert!(!body.contains("value=\"123\""));
    }
    let got = h.client.retrieve_checkout_session(&s.id).await.unwrap();
    assert_eq!(got.payment_intent_id, None, "no attempt was recorded");
}

#[tokio::test]
async fn refunds_partial_full_and_over() {
    let mut h = start(0).await;
    let s = h
        .client
        .create_checkout_session(&session_req(1234), "k")
        .await
        .unwrap();
    let (st, _, _) = h
        .pay(&s.id, &card_form("4242424242424242", "12/30", "123"))
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(h.next_hook().await.kind, "checkout.session.completed");
    let pi = h
        .client
        .retrieve_checkout_session(&s.id)
        .await
        .unwrap()
        .payment_intent_id
        .unwrap();

    let req = |amount| CreateRefund {
        payment_intent: pi.clone(),
        amount,
        metadata: vec![("refund_id".into(), "rf_1".into())],
    };
    let r1 = h
        .client
        .create_refund(&req(Some(300)), "refund-1")
        .await
        .unwrap();
    assert!(r1.id.starts_with("re_test_"));
    assert_eq!(
        (r1.amount, r1.status.as_str(), r1.payment_intent.as_str()),
        (300, "succeeded", pi.as_str())
    );
    // Replay returns the same refund, not a second one.
    assert_eq!(
        h.client
            .create_refund(&req(Some(300)), "refund-1")
            .await
            .unwrap(),
        r1
    );

    let err = h
        .client
        .create_refund(&req(Some(2000)), "refund-2")
        .await
        .unwrap_err();
    assert_eq!(
        api_error_kind(&err),
        ("invalid_request_error", Some("amount_too_large"))
    );
    let err = h
        .client
        .create_refund(&req(Some(0)), "refund-2b")
        .await
        .unwrap_err();
    assert!(matches!(err, ProcessorError::Api { status: 400, .. }));

    let r2 = h
        .client
        .create_refund(&req(None), "refund-3")
        .await
        .unwrap();
    assert_eq!(r2.amount, 934);
    let err = h
        .client
        .create_refund(&req(Some(1)), "refund-4")
        .await
        .unwrap_err();
    assert_eq!(
        api_error_kind(&err),
        ("invalid_request_error", Some("charge_already_refunded"))
    );
    let err = h
        .client
        .create_refund(
            &CreateRefund {
                payment_intent: "pi_test_nope".into(),
                amount: None,
                metadata: vec![],
            },
            "refund-5",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ProcessorError::Api { status: 404, .. }));

    let mut refunded = Vec::new();
    for _ in 0..2 {
        let ev = h.next_hook().await;
        assert_eq!(ev.kind, "charge.refunded");
        let rc = ev.refunded_charge().unwrap();
        assert_eq!(rc.amount, 1234);
        assert_eq!(rc.payment_intent.as_deref(), Some(pi.as_str()));
        assert!(rc.charge_id.starts_with("ch_test_"));
        refunded.push(rc.amount_refunded);
    }
    refunded.sort_unstable();
    assert_eq!(refunded, vec![300, 1234]);
}

#[tokio::test]
async fn expire_explicitly_and_by_clock() {
    let mut h = start(0).await;
    let s = h
        .client
        .create_checkout_session(&session_req(700), "k")
        .await
        .unwrap();
    let e = h.client.expire_checkout_session(&s.id).await.unwrap();
    assert_eq!(e.status, SessionStatus::Expired);
    assert_eq!(e.url, None);
    // The client's retry of the same expire replays the answer.
    assert_eq!(h.client.expire_checkout_session(&s.id).await.unwrap(), e);
    // A fresh expire request on a non-open session is refused.
    let (st, v) = h
        .raw_post(
            &format!("/v1/checkout/sessions/{}/expire", s.id),
            Some(KEY),
            "",
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let ev = h.next_hook().await;
    assert_eq!(ev.kind, "checkout.session.expired");
    assert_eq!(ev.session().unwrap().status, SessionStatus::Expired);
    let (st, _, body) = h
        .pay(&s.id, &card_form("4242424242424242", "12/30", "123"))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(body.contains("This checkout is no longer open"));

    // Completed sessions cannot be expired.
    let paid = h
        .client
        .create_checkout_session(&session_req(700), "k2")
        .await
        .unwrap();
    h.pay(&paid.id, &card_form("4242424242424242", "12/30", "123"))
        .await;
    assert_eq!(h.next_hook().await.kind, "checkout.session.completed");
    let err = h
        .client
        .expire_checkout_session(&paid.id)
        .await
        .unwrap_err();
    assert!(matches!(err, ProcessorError::Api { status: 400, .. }));

    // A session past its expires_at is expired by the clock.
    let s2 = h
        .client
        .create_checkout_session(&session_req(700), "k3")
        .await
        .unwrap();
    h.clock.fetch_add(24 * 3600, Ordering::SeqCst);
    let got = h.client.retrieve_checkout_session(&s2.id).await.unwrap();
    assert_eq!(got.status, SessionStatus::Expired);
    let ev = h.next_hook().await;
    assert_eq!(ev.kind, "checkout.session.expired");
    assert_eq!(ev.session().unwrap().id, s2.id);
}

#[tokio::test]
async fn webhook_retry_after_failure() {
    let mut h = start(1).await;
    let s = h
        .client
        .create_checkout_session(&session_req(100), "k")
        .await
        .unwrap();
    h.pay(&s.id, &card_form("4242424242424242", "12/30", "123"))
        .await;
    let ev = h.next_hook().await;
    assert_eq!(ev.kind, "checkout.session.completed");
    assert_eq!(h.receiver.requests.load(Ordering::SeqCst), 2);
    // The sandbox records the attempt once it has read the response, which may
    // be just after the receiver handed us the event: poll its list briefly.
    let events = tokio::time::timeout(WAIT, async {
        loop {
            let events = h.events().await;
            if events["data"][0]["delivered"] == true {
                return events;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("delivery recorded");
    let e = &events["data"][0];
    assert_eq!(e["id"], ev.id.as_str());
    assert_eq!(e["delivery_attempts"], 2);
    assert_eq!(e["delivered"], true);
    assert_eq!(e["payload"]["type"], "checkout.session.completed");
    assert_eq!(e["payload"]["object"], "event");
}

#[tokio::test]
async fn paused_webhooks_arrive_after_resume() {
    let mut h = start(0).await;
    let resp = h
        .browser
        .post(format!("{}/_sandbox/webhooks/pause", h.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let s = h
        .client
        .create_checkout_session(&session_req(100), "k")
        .await
        .unwrap();
    let (st, _, _) = h
        .pay(&s.id, &card_form("4242424242424242", "12/30", "123"))
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    // The resident is back; the portal asks the processor meanwhile.
    let got = h.client.retrieve_checkout_session(&s.id).await.unwrap();
    assert_eq!(got.payment_status, SessionPaymentStatus::Paid);
    let events = h.events().await;
    assert_eq!(events["paused"], true);
    assert_eq!(events["data"][0]["delivered"], false);
    assert_eq!(events["data"][0]["delivery_attempts"], 0);
    assert!(h.hooks.try_recv().is_err());
    h.browser
        .post(format!("{}/_sandbox/webhooks/resume", h.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let ev = h.next_hook().await;
    assert_eq!(ev.session().unwrap().id, s.id);
}

#[tokio::test]
async fn no_card_number_is_kept() {
    let mut h = start(0).await;
    let numbers = [
        "4242424242424242",
        "4000000000000002",
        "4000000000009995",
        "5555555555554444",
        "6011111111111117",
    ];
    let mut ids = Vec::new();
    for (i, n) in numbers.iter().enumerate() {
        let s = h
            .client
            .create_checkout_session(&session_req(100), &format!("k{i}"))
            .await
            .unwrap();
        h.pay(&s.id, &card_form(n, "12/30", "987")).await;
        ids.push(s.id);
    }
    for _ in 0..3 {
        h.next_hook().await;
    }
    let mut everything = h.events().await.to_string();
    for id in &ids {
        let v: Value = h
            .browser
            .get(format!(
                "{}/v1/checkout/sessions/{id}?expand[]=payment_intent.latest_charge",
                h.base
            ))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        everything.push_str(&v.to_string());
    }
    for n in numbers {
        assert!(!everything.contains(n));
        assert!(!everything.contains(&n[..12]));
    }
    assert!(!everything.contains("12/30"));
    assert!(everything.contains("\"last4\":\"4242\""));
}

#[test]
fn config_debug_hides_secrets() {
    let cfg = SandboxConfig::new("sk_test_hideme", "http://127.0.0.1:1", "whsec_hideme");
    let d = format!("{cfg:?}");
    assert!(!d.contains("hideme"), "{d}");
}

impl Harness {
    async fn get_json(&self, path_and_query: &str) -> (StatusCode, Value) {
        let resp = self
            .browser
            .get(format!("{}{path_and_query}", self.base))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A paid session at the current clock; returns its payment intent.
    async fn paid(&mut self, amount: i64) -> String {
        let s = self
            .client
            .create_checkout_session(&session_req(amount), &format!("k{amount}"))
            .await
            .unwrap();
        let (st, _, _) = self
            .pay(&s.id, &card_form("4242424242424242", "12/30", "123"))
            .await;
        assert_eq!(st, StatusCode::SEE_OTHER);
        assert_eq!(self.next_hook().await.kind, "checkout.session.completed");
        self.client
            .retrieve_checkout_session(&s.id)
            .await
            .unwrap()
            .payment_intent_id
            .unwrap()
    }
}

fn ids(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn lists_page_newest_first_with_cursors_and_filters() {
    let mut h = start(0).await;
    let mut intents = Vec::new();
    for i in 0..5 {
        h.clock.store(T0 + i * 10, Ordering::SeqCst);
        intents.push(h.paid(1000 + i).await);
    }
    // Newest first, Stripe's envelope.
    let (st, all) = h.get_json("/v1/charges?limit=100").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(all["object"], "list");
    assert_eq!(all["url"], "/v1/charges");
    assert_eq!(all["has_more"], false);
    let every = ids(&all);
    assert_eq!(every.len(), 5);
    let amounts: Vec<i64> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, vec![1004, 1003, 1002, 1001, 1000]);

    // Pages of two, following has_more and starting_after, then back with ending_before.
    let (_, p1) = h.get_json("/v1/charges?limit=2").await;
    assert_eq!(
        (ids(&p1), p1["has_more"].as_bool()),
        (every[0..2].to_vec(), Some(true))
    );
    let (_, p2) = h
        .get_json(&format!("/v1/charges?limit=2&starting_after={}", every[1]))
        .await;
    assert_eq!(
        (ids(&p2), p2["has_more"].as_bool()),
        (every[2..4].to_vec(), Some(true))
    );
    let (_, p3) = h
        .get_json(&format!("/v1/charges?limit=2&starting_after={}", every[3]))
        .await;
    // The exact page boundary: the last page says there is no more.
    assert_eq!(
        (ids(&p3), p3["has_more"].as_bool()),
        (every[4..5].to_vec(), Some(false))
    );
    let (_, back) = h
        .get_json(&format!("/v1/charges?limit=2&ending_before={}", every[3]))
        .await;
    assert_eq!(
        (ids(&back), back["has_more"].as_bool()),
        (every[1..3].to_vec(), Some(true))
    );

    // created filters: [T0+10, T0+30) holds the 2nd and 3rd.
    let (_, window) = h
        .get_json(&format!(
            "/v1/charges?created[gte]={}&created[lt]={}",
            T0 + 10,
            T0 + 30
        ))
        .await;
    assert_eq!(ids(&window), every[2..4].to_vec());
    let (_, none) = h
        .get_json(&format!("/v1/checkout/sessions?created[gt]={}", T0 + 100))
        .await;
    assert_eq!(
        (ids(&none).len(), none["has_more"].as_bool()),
        (0, Some(false))
    );
    let (_, sessions) = h.get_json("/v1/checkout/sessions?limit=100").await;
    assert_eq!(sessions["data"].as_array().unwrap().len(), 5);
    assert_eq!(sessions["data"][0]["object"], "checkout.session");

    // The client follows every page of 100 (here: one) and decodes the objects.
    let charges = h.client.list_charges(T0, T0 + 100).await.unwrap();
    assert_eq!(charges.len(), 5);
    assert!(charges.iter().all(|c| c.paid && c.status == "succeeded"));
    assert_eq!(
        charges[0].payment_intent.as_deref(),
        Some(intents[4].as_str())
    );
    let sessions = h.client.list_checkout_sessions(T0, T0 + 100).await.unwrap();
    assert_eq!(sessions.len(), 5);

    // Bad parameters are Stripe's 400s.
    for q in [
        "limit=0",
        "limit=101",
        "limit=ten",
        "starting_after=ch_a&ending_before=ch_b",
        "created[gte]=soon",
        "colour=blue",
    ] {
        let (st, v) = h.get_json(&format!("/v1/charges?{q}")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{q}");
    }
    let (st, v) = h.get_json("/v1/charges?starting_after=ch_nosuch").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "resource_missing");
    // The API key is required.
    let st = h
        .browser
        .get(format!("{}/v1/charges", h.base))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refunds_and_daily_payouts_are_listed() {
    let mut h = start(0).await;
    let day = T0 - T0.rem_euclid(86_400); // 2023-11-14 00:00 UTC
    h.clock.store(day + 3600, Ordering::SeqCst);
    let a = h.paid(5000).await;
    h.paid(2500).await;
    h.client
        .create_refund(
            &CreateRefund {
                payment_intent: a,
                amount: Some(700),
                metadata: vec![],
            },
            "r1",
        )
        .await
        .unwrap();
    let refunds = h.client.list_refunds(day, day + 86_400).await.unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!((refunds[0].amount, refunds[0].created), (700, day + 3600));
    // No payout while the day is open.
    assert!(h
        .client
        .list_payouts(day, day + 10 * 86_400)
        .await
        .unwrap()
        .is_empty());
    h.clock.store(day + 86_400 + 60, Ordering::SeqCst);
    let payouts = h.client.list_payouts(day, day + 10 * 86_400).await.unwrap();
    assert_eq!(payouts.len(), 1);
    assert_eq!(payouts[0].id, "po_test_20231114");
    assert_eq!(payouts[0].amount, 5000 + 2500 - 700);
    assert_eq!(payouts[0].status, "in_transit");
    h.clock.store(day + 3 * 86_400 + 60, Ordering::SeqCst);
    let payouts = h.client.list_payouts(day, day + 10 * 86_400).await.unwrap();
    assert_eq!(payouts[0].status, "paid");
}
