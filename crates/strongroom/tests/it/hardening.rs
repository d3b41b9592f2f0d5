//! Regression tests for what a black-box attack on the demo found (2026-11-30): each one
//! replays the attack and checks it no longer works.

use crate::harness::*;
use crate::journeys::hidden_value;

fn set_cookies(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

/// The form-token cookie only comes with pages: never with publicly cacheable assets, JSON
/// or health answers, where a shared cache could hand one token to many browsers.
#[tokio::test]
async fn the_form_cookie_is_set_on_pages_only() {
    let s = server().start().await;
    for path in [
        "/assets/app.css",
        "/healthz",
        "/api/v1/openapi.json",
        "/.well-known/script-inventory.json",
    ] {
        let res = client()
            .get(format!("{}{path}", s.portal))
            .send()
            .await
            .unwrap();
        assert!(
            set_cookies(&res).iter().all(|c| !c.starts_with("sr_form=")),
            "{path}: {:?}",
            set_cookies(&res)
        );
    }
    let res = client().get(format!("{}/", s.portal)).send().await.unwrap();
    assert!(set_cookies(&res).iter().any(|c| c.starts_with("sr_form=")));
    // The language cookie is not readable by scripts either.
    let res = client()
        .get(format!("{}/?lang=es", s.portal))
        .send()
        .await
        .unwrap();
    let lang = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("lang="))
        .unwrap();
    assert!(lang.contains("HttpOnly"), "{lang}");
}

/// The public return page asks the processor about a pending payment at most 10 times per
/// 15 minutes: reloading it cannot spend the city's processor quota.
#[tokio::test]
async fn the_return_page_asks_the_processor_a_bounded_number_of_times() {
    let s = server().start().await;
    let (id, url) = s.api_payment("100001", "93301", 700, "bounded-1").await;
    let ret = format!("{}/payments/{id}/return", s.portal);
    for _ in 0..app::payments::PROCESSOR_CHECKS {
        assert_eq!(client().get(&ret).send().await.unwrap().status(), 303);
    }
    // Paid now, its webhook held back: the next look is over the limit, so it does not
    // ask the processor and the payment stays pending until the webhook.
    s.http
        .post(format!("{}/_sandbox/webhooks/pause", s.processor))
        .bearer_auth(SK)
        .send()
        .await
        .unwrap();
    assert_eq!(s.pay_hosted(&url, "4242424242424242").await.status(), 303);
    client().get(&ret).send().await.unwrap();
    assert_eq!(
        s.app().payment(&id).await.unwrap().status.as_str(),
        "pending"
    );
    s.http
        .post(format!("{}/_sandbox/webhooks/resume", s.processor))
        .bearer_auth(SK)
        .send()
        .await
        .unwrap();
    eventually("the webhook settles it", || async {
        s.app().payment(&id).await.unwrap().status.as_str() == "succeeded"
    })
    .await;
}

/// A request that cannot be valid is refused before its idempotency key is stored (junk
/// keys cannot fill the database); keys are forgotten after a day; the media type is
/// exactly application/json.
#[tokio::test]
async fn idempotency_keys_are_kept_only_for_real_requests_and_only_a_day() {
    let s = server().start().await;
    let bad = serde_json::json!({"items":[{"type":"x","account_number":"100001","postal_code":"93301","amount_cents":100}],"email":"a@example.com"});
    let (status, _) = s
        .api(
            reqwest::Method::POST,
            "/api/v1/payments",
            Some(bad),
            Some("junk-1"),
        )
        .await;
    assert_eq!(status, 400);
    let count = || async {
        let mut c = s.app().store.conn().await.unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM idempotency_keys")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        n
    };
    assert_eq!(count().await, 0, "the refused request left no key");
    // So the same key still works for a proper request.
    s.api_payment("100001", "93301", 100, "junk-1").await;
    assert_eq!(count().await, 1);
    // A day later the expiry job (run here directly) forgets it, and the rate-limit
    // counters of long-past windows with it.
    let counters = || async {
        let mut c = s.app().store.conn().await.unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM rate_limits")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        n
    };
    // Per-client throttles are counted in memory now; the database keeps per-account
    // limits, like this one.
    {
        let mut c = s.app().store.conn().await.unwrap();
        let now = app::Clock::now(&*s.clock).unix_timestamp();
        store::ratelimit::hit(&mut c, "login-user:someone", now, 900)
            .await
            .unwrap();
    }
    assert!(counters().await > 0);
    s.clock.advance(time::Duration::hours(25));
    s.app().expire_stale_payments().await.unwrap();
    assert_eq!(count().await, 0);
    assert_eq!(counters().await, 0);

    let res = s
        .http
        .post(format!("{}/api/v1/quick-pay/lookup", s.portal))
        .header("content-type", "application/jsonx")
        .body(r#"{"account_number":"100001","postal_code":"93301"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
}

/// An unknown staff user name answers like a real one: 401 ten times, then 423, so
/// the lockout does not tell which names exist.
#[tokio::test]
async fn staff_lockout_does_not_reveal_which_names_exist() {
    let s = server().start().await;
    s.app()
        .create_staff(
            "realname",
            "Real",
            "ledger-harbor-quiet-42",
            app::staff::Role::Clerk,
        )
        .await
        .unwrap();
    let c = client();
    for name in ["realname", "nosuchname"] {
        let mut codes = Vec::new();
        for i in 0..11 {
            let res = crate::staff::staff_login(&s, &c, name, &format!("wrong password {i}")).await;
            codes.push(res.status().as_u16());
        }
        assert_eq!(&codes[..10], &[401; 10], "{name}");
        assert_eq!(codes[10], 423, "{name}");
    }
}

/// A resident who links an account sees their own payments on it, not other payers'
/// (their confirmation numbers and emails); the balance still counts them.
#[tokio::test]
async fn a_linked_account_shows_only_the_residents_own_payments() {
    let s = server().start().await;
    let other = s.pay_ok("100001", "93301", 1100, "someone-else").await;
    let conf = s.app().payment(&other).await.unwrap().confirmation_number;
    let (c, csrf) = crate::authz::resident(&s, "linker@example.com").await;
    crate::authz::link(&s, &c, &csrf, "100001").await;
    let page = c
        .get(format!("{}/accounts/100001", s.portal))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Your payments on this account"), "{html}");
    assert!(
        !html.contains(&conf),
        "another payer's confirmation number is shown"
    );
}

/// Password reset answers the same for unknown addresses, and records the attempt.
#[tokio::test]
async fn reset_requests_for_unknown_addresses_are_recorded() {
    let s = server().start().await;
    let c = client();
    let html = c
        .get(format!("{}/forgot", s.portal))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden_value(&html, "csrf");
    let res = c
        .post(format!("{}/forgot", s.portal))
        .header("origin", &s.portal)
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "nobody.here@example.com"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut conn = s.app().store.conn().await.unwrap();
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_log WHERE event = 'resident.reset_requested' AND object = 'unknown'",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(n, 1);
}

/// A 405 names the methods the address really takes.
#[tokio::test]
async fn method_not_allowed_names_the_routes_own_methods() {
    let s = server().start().await;
    for (url, allow) in [
        (format!("{}/quick-pay", s.portal), "POST"),
        (format!("{}/logout", s.staff), "POST"),
        (
            format!("{}/api/v1/payments/pay_AAAAAAAAAAAAAAAAAAAAAA", s.portal),
            "GET,HEAD",
        ),
    ] {
        let res = client().put(&url).send().await.unwrap();
        assert_eq!(res.status(), 405, "{url}");
        assert_eq!(res.headers()["allow"], allow, "{url}");
    }
}

/// A member refused a route for their role is recorded in the audit log, not only the
/// JSON log.
#[tokio::test]
async fn refused_staff_routes_are_audited() {
    let s = server().start().await;
    s.app()
        .create_staff(
            "aud7",
            "Auditor",
            "ledger-harbor-quiet-42",
            app::staff::Role::Auditor,
        )
        .await
        .unwrap();
    let c = client();
    crate::staff::staff_login_full(&s, &c, "aud7", "ledger-harbor-quiet-42").await;
    let res = c.get(format!("{}/outbox", s.staff)).send().await.unwrap();
    assert_eq!(res.status(), 403);
    eventually("the refusal is audited", || async {
        let mut conn = s.app().store.conn().await.unwrap();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT object, detail FROM audit_log WHERE event = 'staff.access_refused'",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        rows.iter()
            .any(|(o, d)| o == "/outbox" && d == "role auditor needs clerk")
    })
    .await;
}

/// A resident asking for an account they have not linked gets "not found", and the
/// attempt is audited.
#[tokio::test]
async fn another_residents_account_is_not_found_and_audited() {
    let s = server().start().await;
    let (c, _) = crate::authz::resident(&s, "curious@example.com").await;
    let res = c
        .get(format!("{}/accounts/100002", s.portal))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let mut conn = s.app().store.conn().await.unwrap();
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_log WHERE event = 'resident.access_refused' AND object = '100002'",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(n, 1);
}

/// Only administrators are shown the link to the access page.
#[tokio::test]
async fn the_access_page_is_linked_for_administrators_only() {
    let s = server().start().await;
    for (name, role, linked) in [
        ("adm8", app::staff::Role::Administrator, true),
        ("clk8", app::staff::Role::Clerk, false),
    ] {
        s.app()
            .create_staff(name, name, "ledger-harbor-quiet-42", role)
            .await
            .unwrap();
        let c = client();
        crate::staff::staff_login_full(&s, &c, name, "ledger-harbor-quiet-42").await;
        let html = c
            .get(format!("{}/", s.staff))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(html.contains("href=\"/admin/sessions\""), linked, "{name}");
    }
}
