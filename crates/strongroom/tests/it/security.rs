//! Invariants of the design, tested from outside.

use crate::harness::*;
use serde_json::json;

const PANS: &[&str] = &[
    "4242424242424242",
    "4242 4242 4242 4242",
    "4000-0000-0000-0002",
    "378282246310005",
];

#[tokio::test]
async fn card_numbers_are_refused_in_every_input_and_never_stored_or_logged() {
    let s = server().start().await;
    for pan in PANS {
        // Form fields.
        for (path, field) in [
            ("/quick-pay", "account_number"),
            ("/quick-pay", "postal_code"),
            ("/quick-pay/pay", "email"),
            ("/quick-pay/pay", "amount"),
            ("/register", "email"),
            ("/login", "password"),
        ] {
            let res = s.post_form(path, &[(field, pan), ("other", "x")]).await;
            assert_eq!(res.status(), 400, "{path} {field}");
            assert!(res.text().await.unwrap().contains("card number"));
        }
        // JSON bodies, query strings, paths, headers.
        let (st, err) = s
            .api(
                reqwest::Method::POST,
                "/api/v1/quick-pay/lookup",
                Some(json!({"account_number": pan, "postal_code": "93301"})),
                None,
            )
            .await;
        assert_eq!(st, 400);
        assert_eq!(err["error"]["code"], "card_number_refused");
        let (st, _) = s
            .api(
                reqwest::Method::POST,
                "/api/v1/payments",
                Some(json!({"items": [], "email": format!("{pan}@x.com")})),
                Some("k"),
            )
            .await;
        assert_eq!(st, 400);
        assert_eq!(
            s.get(&format!("/?q={}", pan.replace(' ', "+")))
                .await
                .status(),
            400
        );
        assert_eq!(
            s.get(&format!("/payments/{}/receipt", pan.replace(' ', "%20")))
                .await
                .status(),
            400
        );
        let res = s
            .http
            .get(format!("{}/", s.portal))
            .header("x-note", *pan)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        let res = s
            .http
            .post(format!("{}/api/v1/payments", s.portal))
            .header("content-type", "application/json")
            .header("Idempotency-Key", *pan)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
    }
    // Nothing of them reached the database or the logs.
    let (files, findings) =
        strongroom::scan::scan(&[s.data_dir.clone(), artifacts_dir().join("logs")]).unwrap();
    assert!(files > 0);
    assert!(findings.is_empty(), "card numbers found: {findings:?}");
}

#[tokio::test]
async fn many_payments_leave_no_card_number_on_disk() {
    let s = server().start().await;
    for i in 0..10 {
        s.pay_ok("100001", "93301", 100, &format!("scan-{i}")).await;
    }
    let (_, declined_url) = s.api_payment("100001", "93301", 100, "scan-decline").await;
    assert_eq!(
        s.pay_hosted(&declined_url, "4000000000000002")
            .await
            .status(),
        402
    );
    let (files, findings) =
        strongroom::scan::scan(&[s.data_dir.clone(), artifacts_dir().join("logs")]).unwrap();
    assert!(files >= 1);
    assert!(findings.is_empty(), "card numbers found: {findings:?}");
}

#[tokio::test]
async fn scanner_finds_a_planted_card_number() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clean.log"), "account 100001 paid 12.34").unwrap();
    std::fs::write(
        dir.path().join("leak.log"),
        b"\x00\x01card=4242 4242 4242 4242\x00",
    )
    .unwrap();
    let (files, findings) = strongroom::scan::scan(&[dir.path().to_owned()]).unwrap();
    assert_eq!(files, 2);
    assert_eq!(findings.len(), 1);
    assert!(findings[0].path.ends_with("leak.log"));
}

#[tokio::test]
async fn pages_carry_security_headers() {
    let s = server().start().await;
    let res = s.get("/").await;
    assert_eq!(res.status(), 200);
    let h = res.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    for part in [
        "script-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(part), "{part} in {csp}");
    }
    assert!(csp.contains(&format!("form-action 'self' {}", s.processor)));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    assert!(html.contains("integrity=\"sha384-"), "SRI on the script");
    assert!(!html.contains("<script>"), "no inline script");
    assert!(!html.contains("style="), "no inline style");
}

#[tokio::test]
async fn cross_site_form_posts_are_refused() {
    let s = server().start().await;
    let res = s
        .http
        .post(format!("{}/quick-pay", s.portal))
        .header("origin", "https://evil.example.net")
        .form(&[("account_number", "100001"), ("postal_code", "93301")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let post = |origin: &'static str, site: &'static str| {
        s.http
            .post(format!("{}/quick-pay", s.portal))
            .header("origin", origin)
            .header("sec-fetch-site", site)
            .form(&[("account_number", "100001"), ("postal_code", "93301")])
            .send()
    };
    assert_eq!(post("null", "cross-site").await.unwrap().status(), 403);
    assert_eq!(post("null", "same-site").await.unwrap().status(), 403);
    assert_eq!(
        post("null", "same-origin").await.unwrap().status(),
        200,
        "Chromium's same-origin post with a null origin"
    );
    let res = s
        .http
        .post(format!("{}/quick-pay", s.portal))
        .header("origin", "null")
        .form(&[("account_number", "100001"), ("postal_code", "93301")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "null origin without fetch metadata");
}

#[tokio::test]
async fn staff_paths_are_not_on_the_portal_listener() {
    let s = server().start().await;
    for path in [
        "/outbox",
        "/payments/x",
        "/OUTBOX",
        "/%6futbox",
        "/staff",
        "/admin",
    ] {
        let res = s.get(path).await;
        assert_eq!(res.status(), 404, "{path}");
    }
    let res = s
        .http
        .get(format!("{}/outbox", s.portal))
        .header("host", s.staff.trim_start_matches("http://"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn audit_chain_records_payments_and_verifies() {
    let s = server().start().await;
    s.pay_ok("100001", "93301", 100, "audit-1").await;
    let mut c = s.app().store.conn().await.unwrap();
    let n = store::audit::verify(&mut c, AUDIT_KEY)
        .await
        .unwrap()
        .expect("chain intact");
    assert!(n >= 3, "created, succeeded and demo seed at least: {n}");
    let events: Vec<String> = store::audit::recent(&mut c, 50)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect();
    assert!(events.iter().any(|e| e == "payment.created"));
    assert!(events.iter().any(|e| e == "payment.succeeded"));
}
