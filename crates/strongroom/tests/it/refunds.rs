//! Refunds from the back office: supervisors and administrators only, per account of a
//! payment, never beyond what was paid on that account, exactly once with the processor;
//! the amount is owed again, the payer is emailed, and every step is audited.

use crate::harness::*;
use crate::journeys::hidden_value;
use crate::staff::staff_login_full;

const PW: &str = "ledger-harbor-refund-42";

async fn audit_events(s: &Server, object: &str) -> Vec<(String, String)> {
    // Entries of calls made straight to the app (not over HTTP) may wait to be chained.
    s.app().seal_audit().await.unwrap();
    let mut c = s.app().store.conn().await.unwrap();
    sqlx::query_as("SELECT event, outcome FROM audit_log WHERE object = $1 ORDER BY seq")
        .bind(object)
        .fetch_all(&mut *c)
        .await
        .unwrap()
}

async fn status_of(s: &Server, id: &str) -> String {
    let (_, body) = s
        .api(
            reqwest::Method::GET,
            &format!("/api/v1/payments/{id}"),
            None,
            None,
        )
        .await;
    body["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_supervisor_refunds_part_then_the_rest_and_nobody_refunds_more() {
    let s = server().start().await;
    let before = s.balance("100001").await;
    let id = s.pay_ok("100001", "93301", 900, "refund-1").await;
    assert_eq!(s.balance("100001").await, before - 900);
    for (name, role) in [
        ("super1", app::staff::Role::Supervisor),
        ("clerk1", app::staff::Role::Clerk),
    ] {
        s.app().create_staff(name, name, PW, role).await.unwrap();
    }
    let sup = client();
    staff_login_full(&s, &sup, "super1", PW).await;
    let clerk = client();
    staff_login_full(&s, &clerk, "clerk1", PW).await;
    let url = format!("{}/payments/{id}", s.staff);
    let refund_url = format!("{url}/refund");

    // A clerk may ask for a refund, which waits for a supervisor; nothing is refunded.
    let html = clerk.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Refund to card"));
    let csrf = hidden_value(&html, "csrf");
    let res = clerk
        .post(&refund_url)
        .header("origin", &s.staff)
        .form(&[
            ("csrf", csrf.as_str()),
            ("account", "100001"),
            ("amount", "1.00"),
            ("reason", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("waits for a supervisor"));
    assert_eq!(s.balance("100001").await, before - 900);
    let waiting = s.app().refunds_awaiting_approval().await.unwrap();
    assert_eq!(waiting.len(), 1);
    // The supervisor rejects it with a reason: the held amount is free again.
    let queue = sup
        .get(format!("{}/refunds", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sup_csrf = hidden_value(&queue, "csrf");
    let res = sup
        .post(format!("{}/refunds/{}/reject", s.staff, waiting[0].0.id))
        .header("origin", &s.staff)
        .form(&[("csrf", sup_csrf.as_str()), ("note", "asked by mistake")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(s
        .app()
        .refunds_awaiting_approval()
        .await
        .unwrap()
        .is_empty());

    let html = sup.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Refund to card"), "{html}");
    let csrf = hidden_value(&html, "csrf");
    let post = |account: &'static str, amount: &'static str, reason: &'static str| {
        sup.post(&refund_url)
            .header("origin", &s.staff)
            .form(&[
                ("csrf", csrf.as_str()),
                ("account", account),
                ("amount", amount),
                ("reason", reason),
            ])
            .send()
    };
    // Two problems at once: both in the summary.
    let res = post("100001", "abc", " ").await.unwrap();
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("href=\"#refund-amount\"") && html.contains("href=\"#refund-reason\""),
        "{html}"
    );
    // Refused, each with its reason, and nothing changes.
    for (account, amount, reason, says) in [
        ("100001", "9.01", "duplicate", "more than is left"),
        ("100001", "abc", "duplicate", "Enter an amount in dollars"),
        (
            "100001",
            "0",
            "duplicate",
            "Enter an amount more than $0.00",
        ),
        ("100001", "1.00", " ", "Give a reason"),
        ("100002", "1.00", "duplicate", "not part of this payment"),
    ] {
        let res = post(account, amount, reason).await.unwrap();
        assert_eq!(res.status(), 400, "{amount} {reason}");
        let html = res.text().await.unwrap();
        assert!(html.contains(says), "{says}");
        assert!(
            html.contains("id=\"error-summary\"") && html.contains("aria-invalid=\"true\""),
            "summary and aria-invalid"
        );
    }
    assert_eq!(s.balance("100001").await, before - 900);
    assert_eq!(status_of(&s, &id).await, "succeeded");

    // Part of it: owed again, the payment partly refunded, the payer told.
    let res = post("100001", "4.00", "billing error").await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Refunded $4.00 for account 100001"));
    assert_eq!(s.balance("100001").await, before - 500);
    assert_eq!(status_of(&s, &id).await, "partially_refunded");
    let mails = s.app().emails_to("payer@example.com").await.unwrap();
    assert!(mails
        .iter()
        .any(|m| m.kind == "refund" && m.body_text.contains("$4.00")));
    // More than is left: refused; the rest: refunded in full, and the form is gone.
    let res = post("100001", "5.01", "billing error").await.unwrap();
    assert_eq!(res.status(), 400);
    let res = post("100001", "5.00", "billing error").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(s.balance("100001").await, before);
    assert_eq!(status_of(&s, &id).await, "refunded");
    let html = sup.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(!html.contains("Refund to card"));
    assert!(html.contains("billing error"));
    let events = audit_events(&s, &id).await;
    let count = |e: &str, o: &str| events.iter().filter(|(a, b)| a == e && b == o).count();
    assert_eq!(
        count("payment.refund_requested", "success"),
        3,
        "the clerk's and two"
    );
    assert_eq!(count("payment.refund_rejected", "success"), 1);
    assert_eq!(count("payment.refunded", "success"), 2);
    // The processor's own notices of the refunds reach the timeline.
    s.webhooks_settled().await;
    let timeline = s.app().payment_timeline(&id).await.unwrap();
    assert!(timeline.iter().any(|e| e.kind == "refund_reported"));
}

/// The server stopped after the processor made a refund but before it was recorded: the
/// worker finishes it with the same idempotency key, so the processor makes no second
/// refund and the account is credited once.
#[tokio::test]
async fn a_refund_interrupted_after_the_processor_call_is_finished_once() {
    use app::processor::Processor;
    let s = server().start().await;
    let before = s.balance("100001").await;
    let id = s.pay_ok("100001", "93301", 900, "stuck-1").await;
    let intent = {
        let mut c = s.app().store.conn().await.unwrap();
        store::payments::get(&mut c, &id)
            .await
            .unwrap()
            .unwrap()
            .processor_payment_intent
            .unwrap()
    };
    // Step 1 happened (reserved, recorded as requested)...
    let now = app::Clock::now(&*s.clock).unix_timestamp();
    let refund_id = "rf_interrupted1";
    {
        let mut c = s.app().store.conn().await.unwrap();
        assert!(store::refunds::reserve(&mut c, &id, 300, now)
            .await
            .unwrap());
        store::refunds::insert(
            &mut c,
            &store::refunds::RefundRow {
                id: refund_id.into(),
                payment_id: id.clone(),
                account_number: "100001".into(),
                amount_cents: 300,
                reason: "billing error".into(),
                staff_id: "stf_gone".into(),
                status: "requested".into(),
                processor_refund_id: None,
                created_at: now,
                decided_at: None,
            },
        )
        .await
        .unwrap();
    }
    // ...and step 2: the processor made the refund; then the server stopped.
    let client = app::processor::client::StripeClient::new(&s.processor, SK).unwrap();
    let req = app::processor::CreateRefund {
        payment_intent: intent,
        amount: Some(300),
        metadata: vec![
            ("payment_id".into(), id.clone()),
            ("refund_id".into(), refund_id.into()),
        ],
    };
    client.create_refund(&req, refund_id).await.unwrap();
    // Not yet five minutes: left alone.
    assert_eq!(s.app().resume_stuck_refunds().await.unwrap(), 0);
    s.clock.advance(time::Duration::minutes(6));
    assert_eq!(s.app().resume_stuck_refunds().await.unwrap(), 1);
    assert_eq!(s.app().resume_stuck_refunds().await.unwrap(), 0, "once");
    assert_eq!(s.balance("100001").await, before - 900 + 300);
    assert_eq!(status_of(&s, &id).await, "partially_refunded");
    // The processor made one refund, not two.
    s.webhooks_settled().await;
    let v = s.sandbox_events().await;
    let refunds = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "charge.refunded")
        .count();
    assert_eq!(refunds, 1);
}

/// A large bill on 100001 (above the refund approval threshold).
async fn owe_a_lot(s: &Server) {
    let mut c = s.app().store.conn().await.unwrap();
    store::accounts::post_ledger(
        &mut c,
        &store::accounts::LedgerRow {
            id: app::ids::random_id(),
            account_number: "100001".into(),
            kind: "bill".into(),
            reference: "big-bill".into(),
            amount_cents: 100_000,
            description: "Annual sewer connection".into(),
            posted_at: 0,
        },
    )
    .await
    .unwrap();
}

async fn processor_refunded(s: &Server) -> (usize, i64) {
    use processor::Processor;
    let c = processor::client::StripeClient::new(&s.processor, SK).unwrap();
    let now = app::Clock::now(&*s.clock).unix_timestamp();
    let all = c.list_refunds(0, now + 86_400).await.unwrap();
    (all.len(), all.iter().map(|r| r.amount).sum())
}

#[tokio::test]
async fn a_refund_above_the_threshold_waits_for_a_second_person() {
    let s = server().start().await;
    owe_a_lot(&s).await;
    let before = s.balance("100001").await;
    let id = s.pay_ok("100001", "93301", 60_000, "big-refund").await;
    let app = s.app();
    let clerk = app
        .create_staff("clerk1", "c", PW, app::staff::Role::Clerk)
        .await
        .unwrap();
    let sup1 = app
        .create_staff("super1", "s1", PW, app::staff::Role::Supervisor)
        .await
        .unwrap();
    let sup2 = app
        .create_staff("super2", "s2", PW, app::staff::Role::Supervisor)
        .await
        .unwrap();
    // Above the $500.00 threshold: even a supervisor's refund waits.
    let r = s
        .app()
        .refund_payment(&sup1, &id, "100001", "600.00", "Meter misread", "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(r.status, "awaiting_approval");
    assert_eq!(processor_refunded(&s).await, (0, 0));
    // Nobody approves their own; a clerk approves nothing.
    for who in [&sup1, &clerk] {
        let e = s
            .app()
            .approve_refund(who, &r.id, "127.0.0.1")
            .await
            .unwrap_err();
        assert_eq!(e.code(), "forbidden");
    }
    let done = s
        .app()
        .approve_refund(&sup2, &r.id, "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(done.status, "succeeded");
    assert_eq!(processor_refunded(&s).await, (1, 60_000));
    assert_eq!(s.balance("100001").await, before);
    let events = audit_events(&s, &id).await;
    assert!(events.contains(&("payment.refund_approved".into(), "success".into())));
    assert!(events.contains(&("payment.refund_approved".into(), "failure".into())));
    // Approving again changes nothing.
    assert!(s
        .app()
        .approve_refund(&sup2, &r.id, "127.0.0.1")
        .await
        .is_err());
    assert_eq!(processor_refunded(&s).await, (1, 60_000));
}

#[tokio::test]
async fn racing_refund_requests_and_approvals_never_refund_more_than_was_paid() {
    let s = server().start().await;
    owe_a_lot(&s).await;
    let before = s.balance("100001").await;
    let id = s.pay_ok("100001", "93301", 60_000, "race-refund").await;
    let mut staff = Vec::new();
    for (name, role) in [
        ("clerk1", app::staff::Role::Clerk),
        ("clerk2", app::staff::Role::Clerk),
        ("super1", app::staff::Role::Supervisor),
        ("super2", app::staff::Role::Supervisor),
    ] {
        staff.push(s.app().create_staff(name, name, PW, role).await.unwrap());
    }
    let (c1, c2, s1, s2) = (&staff[0], &staff[1], &staff[2], &staff[3]);
    for round in 0..2 {
        // Two requests at once for $400 each: the payment holds $600, or $200 left.
        let (a, b) = tokio::join!(
            s.app()
                .refund_payment(c1, &id, "100001", "400.00", "race a", "127.0.0.1"),
            s.app()
                .refund_payment(c2, &id, "100001", "400.00", "race b", "127.0.0.1"),
        );
        let asked: Vec<_> = [a, b].into_iter().filter_map(Result::ok).collect();
        assert_eq!(
            asked.len(),
            usize::from(round == 0),
            "round {round}: one reserves at most"
        );
        // And two smaller ones for $200 each.
        let (a, b) = tokio::join!(
            s.app()
                .refund_payment(c1, &id, "100001", "200.00", "race c", "127.0.0.1"),
            s.app()
                .refund_payment(c2, &id, "100001", "200.00", "race d", "127.0.0.1"),
        );
        let small: Vec<_> = [a, b].into_iter().filter_map(Result::ok).collect();
        assert_eq!(
            small.len(),
            usize::from(round == 0),
            "round {round}: $200 was left, then nothing"
        );
        // Two supervisors approve every waiting refund at once: each acts once.
        for (r, _) in s.app().refunds_awaiting_approval().await.unwrap() {
            let (x, y) = tokio::join!(
                s.app().approve_refund(s1, &r.id, "127.0.0.1"),
                s.app().approve_refund(s2, &r.id, "127.0.0.1"),
            );
            assert_eq!(
                u8::from(x.is_ok()) + u8::from(y.is_ok()),
                1,
                "one approval wins: {x:?} {y:?}"
            );
        }
        if round == 0 {
            assert_eq!(processor_refunded(&s).await, (2, 60_000));
        }
    }
    // Never more than was paid: at the processor, in our ledger, on the payment.
    assert_eq!(processor_refunded(&s).await, (2, 60_000));
    assert_eq!(s.balance("100001").await, before);
    assert_eq!(status_of(&s, &id).await, "refunded");
    let p = s.app().payment(&id).await.unwrap();
    assert_eq!(p.refunded.cents(), 60_000);
}
