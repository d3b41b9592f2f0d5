//! Outbound signed webhooks: endpoints added on the settings page (secret shown once),
//! events enqueued with the change, signed like the processor's, retried after a 500 with
//! backoff on the injected clock, claimed once when two workers race, a delivery log
//! without the secret, and an audited manual re-send.

use crate::harness::*;
use crate::journeys::hidden_value;
use crate::staff::{audit_of, staff_login_full};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const PW: &str = "ledger-harbor-webhooks-42";

/// A receiver on 127.0.0.1:0 that answers 500 to its first `fail_first` requests and
/// keeps (signature header, body) of each.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(String, String, u16)>>>,
    fail_first: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(fail_first: usize) -> (Receiver, String) {
        let r = Receiver::default();
        r.fail_first.store(fail_first, Ordering::SeqCst);
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let state = state.clone();
                async move {
                    let sig = headers
                        .get("strongroom-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let fail = state
                        .fail_first
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    let code = if fail { 500 } else { 200 };
                    state.got.lock().unwrap().push((sig, body, code));
                    axum::http::StatusCode::from_u16(code).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, format!("http://127.0.0.1:{}/hook", addr.port()))
    }

    fn got(&self) -> Vec<(String, String, u16)> {
        self.got.lock().unwrap().clone()
    }
}

/// Checks `t=..,v1=..` against HMAC-SHA256(secret, "{t}.{body}"), computed here.
fn signed_by(sig: &str, body: &str, secret: &str) -> bool {
    let mut t = "";
    let mut v1 = "";
    for part in sig.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v,
            Some(("v1", v)) => v1 = v,
            _ => {}
        }
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    !t.is_empty() && hex::encode(mac.finalize().into_bytes()) == v1
}

fn event(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap()
}

async fn post(
    s: &Server,
    c: &reqwest::Client,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let page = c
        .get(format!("{}/admin/settings", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden_value(&page, "csrf");
    let mut f: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
    f.extend_from_slice(form);
    c.post(format!("{}{path}", s.staff))
        .header("origin", &s.staff)
        .form(&f)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn events_are_signed_retried_claimed_once_logged_and_resent() {
    let s = server().fixed_clock().start().await;
    s.app()
        .create_staff("admin1", "admin1", PW, app::staff::Role::Administrator)
        .await
        .unwrap();
    let admin = client();
    staff_login_full(&s, &admin, "admin1", PW).await;
    let (rx, url) = Receiver::start(1).await;

    // Bad input: every problem at once, nothing stored.
    let res = post(
        &s,
        &admin,
        "/admin/settings/webhooks",
        &[("webhook_url", "http://cis.example.gov/hook")],
    )
    .await;
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(html.contains("id=\"error-summary\""));
    assert!(html.contains("https:// address") && html.contains("at least one event"));
    assert!(s.app().webhook_endpoints().await.unwrap().is_empty());

    // Add the endpoint: the secret is shown once.
    let res = post(
        &s,
        &admin,
        "/admin/settings/webhooks",
        &[
            ("webhook_url", url.as_str()),
            ("event", "payment.succeeded"),
            ("event", "payment.refunded"),
            ("event", "bill.paid"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let secret = html
        .split("id=\"new-secret\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap()
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let again = admin
        .get(format!("{}/admin/settings", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        again.contains(&url) && !again.contains(&secret),
        "secret shown once"
    );
    assert!(
        !audit_of(&s, &s.app().webhook_endpoints().await.unwrap()[0].id)
            .await
            .is_empty()
    );

    // Pay the whole balance: payment.succeeded, and bill.paid for each bill it pays off.
    let owed = s.balance("100001").await;
    assert!(owed > 0);
    let paid = s.pay_ok("100001", "93301", owed, "wh-1").await;
    // Nothing is sent before the worker runs: the events wait in the delivery table.
    assert!(rx.got().is_empty());
    let first = s.app().deliver_webhooks().await.unwrap();
    assert!(first >= 2, "{first}");
    let got = rx.got();
    assert_eq!(got.len(), first);
    for (sig, body, _) in &got {
        assert!(signed_by(sig, body, &secret), "{sig} {body}");
        assert!(!signed_by(sig, body, "whsec_wrong"));
    }
    let types: Vec<String> = got
        .iter()
        .map(|(_, b, _)| event(b)["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(types.contains(&"payment.succeeded".to_owned()), "{types:?}");
    assert!(types.contains(&"bill.paid".to_owned()), "{types:?}");
    let succeeded = got
        .iter()
        .map(|(_, b, _)| event(b))
        .find(|e| e["type"] == "payment.succeeded")
        .unwrap();
    assert_eq!(succeeded["data"]["object"]["payment_id"], paid.as_str());
    assert_eq!(succeeded["data"]["object"]["amount_cents"], owed);
    // The first request got a 500: that delivery waits for its backoff, on our clock.
    let (_, failed_body, code) = got[0].clone();
    assert_eq!(code, 500);
    let failed_event = event(&failed_body)["id"].as_str().unwrap().to_owned();
    assert_eq!(s.app().deliver_webhooks().await.unwrap(), 0, "not due yet");
    s.clock.advance(time::Duration::seconds(29));
    assert_eq!(s.app().deliver_webhooks().await.unwrap(), 0, "not due yet");
    s.clock.advance(time::Duration::seconds(1));
    assert_eq!(
        s.app().deliver_webhooks().await.unwrap(),
        1,
        "retried after 30 s"
    );
    let retried = rx.got().last().cloned().unwrap();
    assert_eq!(retried.2, 200);
    assert_eq!(event(&retried.1)["id"], failed_event.as_str(), "same event");
    assert!(signed_by(&retried.0, &retried.1, &secret));

    // The log: statuses, attempts, last answer; never the secret.
    let log = admin
        .get(format!("{}/admin/webhooks", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!log.contains(&secret));
    assert!(!log.contains("data-status=\"pending\""));
    assert!(log.contains("data-status=\"delivered\""));
    let deliveries = s.app().webhook_deliveries(100).await.unwrap();
    let retried_row = deliveries
        .iter()
        .find(|d| d.event_id == failed_event)
        .unwrap();
    assert_eq!(retried_row.attempts, 2);
    assert_eq!(retried_row.last_status_code, Some(200));

    // Re-send (audited); two workers racing send it once.
    let before = rx.got().len();
    let res = post(
        &s,
        &admin,
        &format!("/admin/webhooks/{}/resend", retried_row.id),
        &[],
    )
    .await;
    assert_eq!(res.status(), 303);
    let audit = audit_of(&s, &retried_row.id).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, "webhook.resent");
    let (a, b) = tokio::join!(s.app().deliver_webhooks(), s.app().deliver_webhooks());
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    assert_eq!(rx.got().len(), before + 1);
    assert_eq!(event(&rx.got()[before].1)["id"], failed_event.as_str());
    // A delivery still waiting cannot be re-sent: nothing changes.
    assert_eq!(s.app().deliver_webhooks().await.unwrap(), 0);

    // A refund sends payment.refunded.
    let page = format!("{}/payments/{paid}", s.staff);
    let html = admin.get(&page).send().await.unwrap().text().await.unwrap();
    let csrf = hidden_value(&html, "csrf");
    let res = admin
        .post(format!("{page}/refund"))
        .header("origin", &s.staff)
        .form(&[
            ("csrf", csrf.as_str()),
            ("account", "100001"),
            ("amount", "1.00"),
            ("reason", "duplicate"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(s.app().deliver_webhooks().await.unwrap(), 1);
    let refunded = event(&rx.got().last().unwrap().1);
    assert_eq!(refunded["type"], "payment.refunded");
    assert_eq!(refunded["data"]["object"]["payment_id"], paid.as_str());
    assert_eq!(refunded["data"]["object"]["amount_cents"], 100);
}
