//! A captured payment is never lost: commits are durable on both databases, money the
//! processor captured for a session we do not know (or after we closed the payment)
//! becomes an exception that a supervisor resolves, and a portal payment form sent twice
//! starts one payment.

use crate::harness::*;
use crate::journeys::hidden_value;
use crate::staff::staff_login_full;
use processor::Processor;

const PW: &str = "ledger-harbor-exception-42";

#[tokio::test]
async fn commits_are_durable_on_this_database() {
    let s = server().start().await;
    let settings = s.app().store.durability().await.unwrap();
    let get = |name: &str| {
        settings
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    match s.app().store.backend() {
        store::Backend::Sqlite => {
            assert_eq!(get("journal_mode"), "wal");
            // FULL: the WAL is synced at every commit (NORMAL may lose the last commits
            // on a power cut).
            assert_eq!(get("synchronous"), "full");
        }
        store::Backend::Postgres => {
            assert_eq!(get("synchronous_commit"), "on");
            assert_eq!(get("fsync"), "on");
            assert_eq!(get("full_page_writes"), "on");
        }
    }
}

async fn audit_count(s: &Server, event: &str) -> i64 {
    let mut c = s.app().store.conn().await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_log WHERE event = $1")
        .bind(event)
        .fetch_one(&mut *c)
        .await
        .unwrap();
    n
}

#[tokio::test]
async fn a_capture_for_an_unknown_session_becomes_an_exception_that_a_supervisor_attaches() {
    let s = server().start().await;
    let session_id = s.foreign_capture(4321).await;
    // Not a silent 200: the capture waits in the queue with the processor's evidence.
    let open = s.app().exceptions(true).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    let e = &open[0];
    assert_eq!(e.kind.as_str(), "unknown_session");
    assert_eq!(e.processor_ref.as_deref(), Some(session_id.as_str()));
    assert_eq!(e.amount.map(|m| m.cents()), Some(4321));
    assert!(e.evidence.contains(&session_id) && e.evidence.contains("payment_intent"));
    assert!(
        !e.evidence.contains("someone@example.com"),
        "no payer email"
    );
    assert_eq!(audit_count(&s, "exception.raised").await, 1);
    // The same capture reported again adds nothing.
    let client = processor::client::StripeClient::new(&s.processor, SK).unwrap();
    let again = client.retrieve_checkout_session(&session_id).await.unwrap();
    s.app()
        .settle(&again, app::payments::SettleSource::Webhook, None)
        .await
        .unwrap();
    assert_eq!(s.app().exceptions(true).await.unwrap().len(), 1);

    for (name, role) in [
        ("super1", app::staff::Role::Supervisor),
        ("clerk1", app::staff::Role::Clerk),
    ] {
        s.app().create_staff(name, name, PW, role).await.unwrap();
    }
    let clerk = client_for_staff(&s, "clerk1").await;
    let sup = client_for_staff(&s, "super1").await;
    let list = sup
        .get(format!("{}/exceptions", s.staff))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let html = list.text().await.unwrap();
    assert!(html.contains("Capture for an unknown checkout") && html.contains("$43.21"));
    let url = format!("{}/exceptions/{}", s.staff, e.id);

    // A clerk reads it but may not resolve it.
    let html = clerk.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(html.contains(&session_id) && !html.contains("Resolve this exception"));
    let csrf = hidden_value(
        &sup.get(&url).send().await.unwrap().text().await.unwrap(),
        "csrf",
    );
    let clerk_csrf = hidden_value(&html, "csrf");
    let res = clerk
        .post(format!("{url}/resolve"))
        .header("origin", &s.staff)
        .form(&[
            ("csrf", clerk_csrf.as_str()),
            ("resolution", "explain"),
            ("note", "clerk tries"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // Every error at once, each tied to its field; nothing changes.
    let before = s.balance("100002").await;
    let res = sup
        .post(format!("{url}/resolve"))
        .header("origin", &s.staff)
        .form(&[
            ("csrf", csrf.as_str()),
            ("resolution", "attach"),
            ("account_number", "12"),
            ("note", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(html.contains("id=\"error-summary\""));
    assert!(html.contains("href=\"#account_number\"") && html.contains("href=\"#note\""));
    assert!(html.contains("aria-invalid=\"true\""));
    assert_eq!(s.app().exception(&e.id).await.unwrap().status, "open");

    // Attached: the captured amount is posted to the account once.
    let res = sup
        .post(format!("{url}/resolve"))
        .header("origin", &s.staff)
        .form(&[
            ("csrf", csrf.as_str()),
            ("resolution", "attach"),
            ("account_number", "100002"),
            (
                "note",
                "Resident called: paid from a bookmarked old checkout",
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Attached to an account"));
    assert_eq!(s.balance("100002").await, before - 4321);
    let resolved = s.app().exception(&e.id).await.unwrap();
    assert_eq!(resolved.status, "resolved");
    assert_eq!(resolved.resolution_account.as_deref(), Some("100002"));
    assert_eq!(audit_count(&s, "exception.resolved").await, 1);

    // Resolving again changes nothing.
    let res = sup
        .post(format!("{url}/resolve"))
        .header("origin", &s.staff)
        .form(&[
            ("csrf", csrf.as_str()),
            ("resolution", "attach"),
            ("account_number", "100002"),
            ("note", "again"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(s.balance("100002").await, before - 4321);
    assert!(s.app().exceptions(true).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_exception_refunded_by_a_supervisor_is_refunded_once_at_the_processor() {
    let s = server().start().await;
    s.foreign_capture(1500).await;
    let e = s.app().exceptions(true).await.unwrap().remove(0);
    s.app()
        .create_staff("super1", "super1", PW, app::staff::Role::Supervisor)
        .await
        .unwrap();
    let sup = client_for_staff(&s, "super1").await;
    let url = format!("{}/exceptions/{}", s.staff, e.id);
    let csrf = hidden_value(
        &sup.get(&url).send().await.unwrap().text().await.unwrap(),
        "csrf",
    );
    let send = || {
        sup.post(format!("{url}/resolve"))
            .header("origin", &s.staff)
            .form(&[
                ("csrf", csrf.as_str()),
                ("resolution", "refund"),
                ("note", "Not a city payment"),
            ])
            .send()
    };
    let (a, b) = tokio::join!(send(), send());
    let statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    assert!(statuses.contains(&200), "{statuses:?}");
    let done = s.app().exception(&e.id).await.unwrap();
    assert_eq!(done.status, "resolved");
    assert_eq!(done.resolution.as_deref(), Some("refunded"));
    assert!(done.processor_refund_id.is_some());
    s.webhooks_settled().await;
    let refunds: Vec<_> = s.sandbox_events().await["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|ev| ev["type"] == "charge.refunded")
        .cloned()
        .collect();
    assert_eq!(refunds.len(), 1, "one refund at the processor");
}

#[tokio::test]
async fn a_capture_after_the_payment_was_closed_becomes_an_exception() {
    let s = server().start().await;
    let (id, url) = s.api_payment("100001", "93301", 700, "late-capture").await;
    // We close the payment (as the expiry job would), but the resident still pays on the
    // processor's page they kept open.
    {
        let mut c = s.app().store.conn().await.unwrap();
        sqlx::query("UPDATE payments SET status = 'expired' WHERE id = $1")
            .bind(&id)
            .execute(&mut *c)
            .await
            .unwrap();
    }
    let before = s.balance("100001").await;
    assert_eq!(s.pay_hosted(&url, "4242424242424242").await.status(), 303);
    s.webhooks_settled().await;
    let open = s.app().exceptions(true).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].kind.as_str(), "capture_after_close");
    assert_eq!(open[0].payment_id.as_deref(), Some(id.as_str()));
    assert_eq!(
        s.balance("100001").await,
        before,
        "nothing posted behind staff's back"
    );
}

#[tokio::test]
async fn a_payment_form_sent_twice_at_once_starts_one_payment() {
    let s = server().start().await;
    // The quick-pay page renders the form with its one-time key.
    let html = s
        .post_form(
            "/quick-pay",
            &[("account_number", "100001"), ("postal_code", "93301")],
        )
        .await
        .text()
        .await
        .unwrap();
    let key = hidden_value(&html, "form_key");
    assert_eq!(key.len(), 32);
    let form = [
        ("account_number", "100001"),
        ("postal_code", "93301"),
        ("amount", "5.00"),
        ("email", "double@example.com"),
        ("form_key", key.as_str()),
    ];
    // A double click: both requests race; one payment, one checkout.
    let (a, b) = tokio::join!(
        s.post_form("/quick-pay/pay", &form),
        s.post_form("/quick-pay/pay", &form)
    );
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (303, 303));
    assert_eq!(a.headers()["location"], b.headers()["location"]);
    let count = || async {
        let mut c = s.app().store.conn().await.unwrap();
        store::payments::recent(&mut c, 10).await.unwrap().len()
    };
    assert_eq!(count().await, 1, "one payment");
    // Paid, then the same form sent again (back button, resubmit): the receipt, no charge.
    let checkout = a.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        s.pay_hosted(&checkout, "4242424242424242").await.status(),
        303
    );
    s.webhooks_settled().await;
    let again = s.post_form("/quick-pay/pay", &form).await;
    assert_eq!(again.status(), 303);
    let loc = again.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        loc.starts_with("/payments/") && loc.ends_with("/receipt"),
        "{loc}"
    );
    assert_eq!(count().await, 1);
    // The same key with another amount is refused, and starts nothing.
    let mut other = form;
    other[2] = ("amount", "6.00");
    assert_eq!(s.post_form("/quick-pay/pay", &other).await.status(), 422);
    // A malformed key is refused.
    let mut bad = form;
    bad[4] = ("form_key", "not-a-key");
    assert_eq!(s.post_form("/quick-pay/pay", &bad).await.status(), 400);
    assert_eq!(count().await, 1);
}

#[tokio::test]
async fn the_quick_pay_lookup_checks_its_form_token() {
    let s = server().start().await;
    let res = s
        .http
        .post(format!("{}/quick-pay", s.portal))
        .header("origin", &s.portal)
        .form(&[
            ("account_number", "100001"),
            ("postal_code", "93301"),
            (
                "csrf",
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "a token the page never gave is refused");
    let ok = s
        .post_form(
            "/quick-pay",
            &[("account_number", "100001"), ("postal_code", "93301")],
        )
        .await;
    assert_eq!(ok.status(), 200);
}

async fn client_for_staff(s: &Server, user: &str) -> reqwest::Client {
    let c = client();
    staff_login_full(s, &c, user, PW).await;
    c
}
