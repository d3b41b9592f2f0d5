//! Processor webhooks: verified, de-duplicated, order-independent, and never the only way
//! a payment is settled.

use crate::harness::*;
use serde_json::json;

async fn post_webhook(s: &Server, body: &str, sig: Option<String>) -> (u16, serde_json::Value) {
    let mut req = s
        .http
        .post(format!("{}/webhooks/processor", s.portal))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(sig) = sig {
        req = req.header("Stripe-Signature", sig);
    }
    let res = req.send().await.unwrap();
    let st = res.status().as_u16();
    (st, res.json().await.unwrap_or_default())
}

fn completed_event(event_id: &str, session_id: &str) -> String {
    json!({"id": event_id, "object": "event", "type": "checkout.session.completed", "created": 1, "data": {"object": {"id": session_id, "object": "checkout.session"}}}).to_string()
}

/// A paid session whose webhook is held back, so tests decide when it arrives.
async fn paid_without_webhook(s: &Server, key: &str) -> (String, String) {
    assert_eq!(
        s.http
            .post(format!("{}/_sandbox/webhooks/pause", s.processor))
            .bearer_auth(SK)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (id, url) = s.api_payment("100001", "93301", 900, key).await;
    let res = s.pay_hosted(&url, "4242424242424242").await;
    assert_eq!(res.status(), 303);
    let session = s
        .app()
        .payment(&id)
        .await
        .unwrap()
        .processor_session_id
        .unwrap();
    (id, session)
}

#[tokio::test]
async fn unsigned_mis_signed_and_stale_webhooks_change_nothing() {
    let s = server().start().await;
    let before = s.balance("100001").await;
    let (id, session) = paid_without_webhook(&s, "wh-bad").await;
    let body = completed_event("evt_forged", &session);
    let now = s.clock.now_unix();
    let cases = vec![
        ("unsigned", None),
        ("garbage header", Some("nonsense".to_owned())),
        (
            "wrong secret",
            Some(processor::webhook::sign(
                body.as_bytes(),
                "whsec_wrong",
                now,
            )),
        ),
        (
            "older than 5 minutes",
            Some(processor::webhook::sign(
                body.as_bytes(),
                WEBHOOK_SECRET,
                now - 301,
            )),
        ),
        (
            "from the future",
            Some(processor::webhook::sign(
                body.as_bytes(),
                WEBHOOK_SECRET,
                now + 301,
            )),
        ),
        (
            "signature of another body",
            Some(processor::webhook::sign(b"{}", WEBHOOK_SECRET, now)),
        ),
    ];
    for (what, sig) in cases {
        let (st, err) = post_webhook(&s, &body, sig).await;
        assert_eq!(st, 400, "{what}: {err}");
        assert_eq!(err["error"]["code"], "webhook_rejected", "{what}");
    }
    assert_eq!(
        s.app().payment(&id).await.unwrap().status.as_str(),
        "pending",
        "nothing settled by a bad webhook"
    );
    assert_eq!(s.balance("100001").await, before);
    // A malformed but correctly signed body is refused too.
    let junk = "{\"id\": 5}";
    let (st, _) = post_webhook(
        &s,
        junk,
        Some(processor::webhook::sign(
            junk.as_bytes(),
            WEBHOOK_SECRET,
            now,
        )),
    )
    .await;
    assert_eq!(st, 400);
    // The genuine one settles it.
    let (st, ok) = post_webhook(
        &s,
        &body,
        Some(processor::webhook::sign(
            body.as_bytes(),
            WEBHOOK_SECRET,
            now,
        )),
    )
    .await;
    assert_eq!(st, 200, "{ok}");
    assert_eq!(
        s.app().payment(&id).await.unwrap().status.as_str(),
        "succeeded"
    );
}

#[tokio::test]
async fn duplicated_webhooks_post_once() {
    let s = server().start().await;
    let before = s.balance("100001").await;
    let (id, session) = paid_without_webhook(&s, "wh-dup").await;
    let body = completed_event("evt_dup", &session);
    let sig = processor::webhook::sign(body.as_bytes(), WEBHOOK_SECRET, s.clock.now_unix());
    let (a, b) = tokio::join!(
        post_webhook(&s, &body, Some(sig.clone())),
        post_webhook(&s, &body, Some(sig.clone()))
    );
    assert_eq!((a.0, b.0), (200, 200));
    let (st, third) = post_webhook(&s, &body, Some(sig)).await;
    assert_eq!(st, 200);
    assert_eq!(third["outcome"], "duplicate");
    // A different event id for the same session is also harmless.
    let body2 = completed_event("evt_dup_2", &session);
    let (st, _) = post_webhook(
        &s,
        &body2,
        Some(processor::webhook::sign(
            body2.as_bytes(),
            WEBHOOK_SECRET,
            s.clock.now_unix(),
        )),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        s.ledger_payments("100001", &id).await,
        1,
        "posted exactly once"
    );
    assert_eq!(s.balance("100001").await, before - 900);
    let receipts = s
        .app()
        .emails_to("payer@example.com")
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == "receipt")
        .count();
    assert_eq!(receipts, 1, "one receipt");
}

#[tokio::test]
async fn webhook_delayed_past_the_return_and_racing_it_posts_once() {
    let s = server().start().await;
    let before = s.balance("100001").await;
    let (id, _session) = paid_without_webhook(&s, "wh-late").await;
    // The resident is back before the webhook: the portal asks the processor.
    let (p1, p2) = tokio::join!(s.app().complete_return(&id), s.app().complete_return(&id));
    assert_eq!(p1.unwrap().status.as_str(), "succeeded");
    assert_eq!(p2.unwrap().status.as_str(), "succeeded");
    // Now the held webhook is released and delivered (with retries) after the return.
    assert_eq!(
        s.http
            .post(format!("{}/_sandbox/webhooks/resume", s.processor))
            .bearer_auth(SK)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Every webhook delivered (answered 2xx) means this one was processed too.
    s.webhooks_settled().await;
    assert_eq!(s.ledger_payments("100001", &id).await, 1);
    assert_eq!(s.balance("100001").await, before - 900);
}

#[tokio::test]
async fn reordered_events_do_not_undo_a_payment() {
    let s = server().start().await;
    let (id, session) = paid_without_webhook(&s, "wh-order").await;
    // An "expired" event arrives first for a session that was in fact paid: the portal
    // asks the processor, which says complete, so the payment succeeds.
    let expired = json!({"id": "evt_exp", "object": "event", "type": "checkout.session.expired", "created": 1, "data": {"object": {"id": session, "object": "checkout.session"}}}).to_string();
    let (st, _) = post_webhook(
        &s,
        &expired,
        Some(processor::webhook::sign(
            expired.as_bytes(),
            WEBHOOK_SECRET,
            s.clock.now_unix(),
        )),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        s.app().payment(&id).await.unwrap().status.as_str(),
        "succeeded"
    );
    let completed = completed_event("evt_late_complete", &session);
    let (st, _) = post_webhook(
        &s,
        &completed,
        Some(processor::webhook::sign(
            completed.as_bytes(),
            WEBHOOK_SECRET,
            s.clock.now_unix(),
        )),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(s.ledger_payments("100001", &id).await, 1);
}

#[tokio::test]
async fn webhook_for_an_unknown_session_is_acknowledged_and_ignored() {
    let s = server().start().await;
    let body = completed_event("evt_unknown", "cs_test_doesnotexist");
    let (st, v) = post_webhook(
        &s,
        &body,
        Some(processor::webhook::sign(
            body.as_bytes(),
            WEBHOOK_SECRET,
            s.clock.now_unix(),
        )),
    )
    .await;
    assert_eq!(st, 200, "{v}");
}

pub trait NowUnix {
    fn now_unix(&self) -> i64;
}

impl NowUnix for app::ManualClock {
    fn now_unix(&self) -> i64 {
        app::Clock::now(self).unix_timestamp()
    }
}

#[tokio::test]
async fn a_paid_checkout_whose_session_id_was_never_recorded_is_still_posted() {
    let s = server().start().await;
    let before = s.balance("100001").await;
    let (id, url) = s.api_payment("100001", "93301", 321, "lost-session").await;
    // As if the process died between opening the checkout and recording its id.
    {
        let mut c = s.app().store.conn().await.unwrap();
        sqlx::query("UPDATE payments SET processor_session_id = NULL WHERE id = $1")
            .bind(&id)
            .execute(&mut *c)
            .await
            .unwrap();
    }
    assert_eq!(s.pay_hosted(&url, "4242424242424242").await.status(), 303);
    // The webhook finds the payment by the processor's reference (our payment id).
    eventually("the webhook settles the payment", || async {
        s.app().payment(&id).await.unwrap().status.as_str() == "succeeded"
    })
    .await;
    assert_eq!(s.balance("100001").await, before - 321);
    assert_eq!(s.ledger_payments("100001", &id).await, 1);
}
