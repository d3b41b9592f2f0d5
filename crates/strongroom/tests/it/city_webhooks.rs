//! Settings changed in the back office (audited before and after), and the city's
//! real-time events: signed, delivered by a worker that claims each delivery, retried
//! with backoff on the injected clock, logged, and sent again on request.

use crate::harness::*;
use crate::journeys::hidden_value;
use crate::staff::staff_login_full;
use std::sync::{Arc, Mutex};

const PW: &str = "ledger-harbor-webhooks-42";

#[derive(Default)]
struct Receiver {
    /// (signature header, body) of each request answered 2xx.
    got: Mutex<Vec<(String, String)>>,
    /// Answer 500 to this many requests first.
    fail: Mutex<u32>,
}

async fn receiver() -> (Arc<Receiver>, String) {
    let r = Arc::new(Receiver::default());
    let state = r.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let mut fail = state.fail.lock().unwrap();
                if *fail > 0 {
                    *fail -= 1;
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                let sig = headers
                    .get("strongroom-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                state.got.lock().unwrap().push((sig, body));
                axum::http::StatusCode::OK
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (r, url)
}

async fn admin(s: &Server) -> (reqwest::Client, String) {
    s.app()
        .create_staff("admin1", "Admin", PW, app::staff::Role::Administrator)
        .await
        .unwrap();
    let c = client();
    staff_login_full(s, &c, "admin1", PW).await;
    let page = c
        .get(format!("{}/settings", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden_value(&page, "csrf");
    (c, csrf)
}

#[tokio::test]
async fn settings_changes_are_audited_with_before_and_after() {
    let s = server().fixed_clock().start().await;
    let (c, csrf) = admin(&s).await;
    let post = |cutoff: &'static str, threshold: &'static str| {
        c.post(format!("{}/settings", s.staff))
            .header("origin", &s.staff)
            .form(&[
                ("csrf", csrf.as_str()),
                ("cutoff", cutoff),
                ("threshold", threshold),
            ])
            .send()
    };
    let res = post("25:00", "lots").await.unwrap();
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("href=\"#cutoff\"") && html.contains("href=\"#threshold\""),
        "both errors at once"
    );
    assert_eq!(s.app().cutoff(), (17, 0), "nothing changed");
    let res = post("18:30", "250.00").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(s.app().cutoff(), (18, 30));
    assert_eq!(s.app().refund_threshold_cents(), 25_000);
    // 15:00 UTC is 07:00 in Los Angeles; 02:00 UTC the next day is 18:00: before the new cut-off.
    let t = time::macros::datetime!(2026-11-17 02:00 UTC).unix_timestamp();
    assert_eq!(s.app().business_date(t).unwrap().to_string(), "2026-11-16");
    let mut db = s.app().store.conn().await.unwrap();
    let (detail,): (String,) =
        sqlx::query_as("SELECT detail FROM audit_log WHERE event = 'settings.changed'")
            .fetch_one(&mut *db)
            .await
            .unwrap();
    assert_eq!(
        detail,
        "cut-off 17:00 -> 18:30; refund approval threshold $500.00 -> $250.00"
    );
}

#[tokio::test]
async fn payments_and_paid_bills_reach_the_city_signed_retried_and_resent() {
    let s = server().fixed_clock().start().await;
    let (rx, url) = receiver().await;
    let (c, csrf) = admin(&s).await;
    // Only https, or http on this machine; and at least one event.
    let res = c
        .post(format!("{}/settings/webhooks", s.staff))
        .header("origin", &s.staff)
        .form(&[("csrf", csrf.as_str()), ("url", "http://example.com/hook")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = c
        .post(format!("{}/settings/webhooks", s.staff))
        .header("origin", &s.staff)
        .form(&[
            ("csrf", csrf.as_str()),
            ("url", url.as_str()),
            ("event", "payment.succeeded"),
            ("event", "bill.paid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let start = html.find("<code id=\"new-secret\">").unwrap() + "<code id=\"new-secret\">".len();
    let secret = html[start..].split('<').next().unwrap().to_owned();

    // The first attempts fail (one per event); the worker waits 30 s (by the server's
    // clock) to try again.
    *rx.fail.lock().unwrap() = 2;
    let balance = s.balance("100001").await;
    let paid = s.pay_ok("100001", "93301", balance, "hook-1").await;
    eventually("the first attempts fail", || async {
        let d = s.app().city_webhook_deliveries(10).await.unwrap();
        d.len() == 2 && d.iter().all(|d| d.attempts == 1 && d.status == "pending")
    })
    .await;
    assert!(rx.got.lock().unwrap().is_empty());
    s.clock.advance(time::Duration::seconds(31));
    eventually("both events are delivered", || async {
        rx.got.lock().unwrap().len() == 2
    })
    .await;
    let got = rx.got.lock().unwrap().clone();
    let now = app::Clock::now(&*s.clock).unix_timestamp();
    let mut kinds = Vec::new();
    for (sig, body) in &got {
        let ev =
            processor::webhook::verify(body.as_bytes(), sig, &secret, now, 300).expect("signed");
        kinds.push(ev.kind.clone());
        assert!(processor::webhook::verify(body.as_bytes(), sig, "srw_wrong", now, 300).is_err());
    }
    kinds.sort();
    assert_eq!(kinds, vec!["bill.paid", "payment.succeeded"]);
    assert!(got.iter().any(|(_, b)| b.contains(&paid)));

    // Sent again on request: audited, delivered once more.
    let log = c
        .get(format!("{}/webhooks", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let d = s.app().city_webhook_deliveries(10).await.unwrap().remove(0);
    let res = c
        .post(format!("{}/webhooks/resend", s.staff))
        .header("origin", &s.staff)
        .form(&[
            ("csrf", hidden_value(&log, "csrf").as_str()),
            ("id", d.id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    eventually("the resend is delivered", || async {
        rx.got.lock().unwrap().len() == 3
    })
    .await;
    let mut db = s.app().store.conn().await.unwrap();
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit_log WHERE event = 'webhook.resent'")
            .fetch_one(&mut *db)
            .await
            .unwrap();
    assert_eq!(n, 1);
}
