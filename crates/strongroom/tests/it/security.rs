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
    let token = form_token(&s.http, &s.portal).await;
    let post = |origin: &'static str, site: &'static str| {
        s.http
            .post(format!("{}/quick-pay", s.portal))
            .header("origin", origin)
            .header("sec-fetch-site", site)
            .form(&[
                ("account_number", "100001"),
                ("postal_code", "93301"),
                ("csrf", token.as_str()),
            ])
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

// Black-box scan (docs/security-scan.md, finding 1): a card number written with JSON
// string escapes (`\u0034` is `4`) slipped past the raw-text card-number guard, was
// decoded by the JSON extractor and stored (payment e-mail, return_url) or echoed in a
// JSON error message.
#[tokio::test]
async fn card_numbers_hidden_in_json_escapes_are_refused() {
    let s = server().start().await;
    // "4242424242424242" with one digit escaped, in a value, a URL and a key.
    let bodies = [
        (
            "/api/v1/payments",
            r#"{"email":"a\u0034242424242424242@example.com","items":[{"type":"utility","account_number":"100001","postal_code":"93301","amount_cents":100}]}"#,
        ),
        (
            "/api/v1/payments",
            r#"{"email":"a@example.com","return_url":"http://127.0.0.1/x?c=42424242\u003424242","items":[{"type":"utility","account_number":"100001","postal_code":"93301","amount_cents":100}]}"#,
        ),
        (
            "/api/v1/quick-pay/lookup",
            r#"{"account_number":"1","postal_code":"2","4242424242\u003424242":1}"#,
        ),
        (
            "/api/v1/quick-pay/lookup",
            r#"{"account_number":"4000\u0020\u0030000 0000 0002","postal_code":"93301"}"#,
        ),
    ];
    for (i, (path, body)) in bodies.iter().enumerate() {
        let res = s
            .http
            .post(format!("{}{path}", s.portal))
            .header("content-type", "application/json")
            .header("Idempotency-Key", format!("json-escape-{i}"))
            .body(*body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{path} {body}");
        let text = res.text().await.unwrap();
        assert!(text.contains("card_number_refused"), "{text}");
        assert!(!text.contains("4242424242424242"), "echoed: {text}");
    }
    let (_, findings) = strongroom::scan::scan(std::slice::from_ref(&s.data_dir)).unwrap();
    assert!(findings.is_empty(), "card numbers found: {findings:?}");
}

// Black-box scan (docs/security-scan.md, finding 2): the sandbox processor's test-only
// controls answered anyone: `/_sandbox/events` listed every webhook payload (payers'
// e-mail addresses, amounts, payment ids) and `/_sandbox/webhooks/pause` could be
// triggered by a cross-site form post. They now take the sandbox API key.
#[tokio::test]
async fn sandbox_controls_need_the_api_key() {
    let s = server().start().await;
    s.api_payment("100001", "93301", 100, "sandbox-controls")
        .await;
    let events = format!("{}/_sandbox/events", s.processor);
    let pause = format!("{}/_sandbox/webhooks/pause", s.processor);
    let resume = format!("{}/_sandbox/webhooks/resume", s.processor);
    let anon = s.http.get(&events).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    assert!(!anon.text().await.unwrap().contains("payer@example.com"));
    let wrong = s
        .http
        .get(&events)
        .bearer_auth("sk_test_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    for url in [&pause, &resume] {
        let res = s
            .http
            .post(url.as_str())
            .header("origin", "https://evil.example.net")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{url}");
    }
    let ok = s.http.get(&events).bearer_auth(SK).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let v: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(v["paused"], false, "the anonymous pause had no effect");
}

#[tokio::test]
async fn every_form_post_needs_the_form_token() {
    let s = server().start().await;
    let mine = form_token(&s.http, &s.portal).await;
    let other = form_token(&client(), &s.portal).await;
    for path in [
        "/quick-pay",
        "/quick-pay/pay",
        "/login",
        "/register",
        "/forgot",
        "/reset",
        "/logout",
        "/pay",
        "/accounts/link",
    ] {
        let post = |token: Option<&str>| {
            let mut form = vec![
                ("account_number", "100001"),
                ("postal_code", "93301"),
                ("email", "a@example.com"),
            ];
            if let Some(t) = token {
                form.push(("csrf", t));
            }
            s.http
                .post(format!("{}{path}", s.portal))
                .header("origin", &s.portal)
                .form(&form)
                .send()
        };
        assert_eq!(
            post(None).await.unwrap().status(),
            403,
            "{path} without a token"
        );
        assert_eq!(
            post(Some(&other)).await.unwrap().status(),
            403,
            "{path} with another browser's token"
        );
        assert_eq!(
            post(Some("")).await.unwrap().status(),
            403,
            "{path} with an empty token"
        );
    }
    // The right token gets through to the handler.
    let res = s
        .http
        .post(format!("{}/quick-pay", s.portal))
        .header("origin", &s.portal)
        .form(&[
            ("account_number", "100001"),
            ("postal_code", "93301"),
            ("csrf", mine.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The same on the staff listener's sign-in form.
    let staff_token = form_token(&s.http, &s.staff).await;
    let res = s
        .http
        .post(format!("{}/login", s.staff))
        .header("origin", &s.staff)
        .form(&[("username", "x"), ("password", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = s
        .http
        .post(format!("{}/login", s.staff))
        .header("origin", &s.staff)
        .form(&[
            ("username", "x"),
            ("password", "y"),
            ("csrf", staff_token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "reaches the login handler");
    // The cookie behind the token is HttpOnly and SameSite=Strict.
    let res = client().get(format!("{}/", s.portal)).send().await.unwrap();
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("sr_form="))
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
}

// Black-box scan (docs/security-scan.md, finding 3): the sandbox processor's JSON API and
// error responses had neither `X-Content-Type-Options: nosniff` nor `Cache-Control`;
// checkout sessions carry payers' e-mail addresses.
#[tokio::test]
async fn sandbox_api_responses_are_nosniff_and_not_cached() {
    let s = server().start().await;
    let (_, checkout_url) = s
        .api_payment("100001", "93301", 100, "sandbox-headers")
        .await;
    let id = checkout_url.rsplit('/').next().unwrap().to_owned();
    for (url, key) in [
        (
            format!("{}/v1/checkout/sessions/{id}", s.processor),
            Some(SK),
        ),
        (format!("{}/v1/checkout/sessions/{id}", s.processor), None),
        (format!("{}/no-such-thing", s.processor), None),
        (format!("{}/_sandbox/events", s.processor), Some(SK)),
        (checkout_url.clone(), None),
    ] {
        let mut req = s.http.get(&url);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let res = req.send().await.unwrap();
        let h = res.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{url}");
        assert_eq!(h["cache-control"], "no-store", "{url}");
    }
}

// Black-box scan (docs/security-scan.md, finding 4): a 404 under /assets/ (an HTML error
// page) went out without `Cache-Control`, because every /assets/ path skipped `no-store`.
#[tokio::test]
async fn asset_errors_are_not_cacheable() {
    let s = server().start().await;
    let res = s.get("/assets/no-such-file.css").await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let res = s.get("/assets/app.css").await;
    assert_eq!(res.status(), 200);
    assert_ne!(res.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn multipart_posts_are_not_forms_of_ours_on_the_portal() {
    let s = server().start().await;
    let (id, _) = s.api_payment("100001", "93301", 100, "mp-1").await;
    let body = "--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--xyz--\r\n";
    let res = s
        .http
        .post(format!("{}/payments/{id}/cancel", s.portal))
        .header("content-type", "multipart/form-data; boundary=xyz")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "no form token: refused");
    assert_eq!(
        s.app().payment(&id).await.unwrap().status.as_str(),
        "pending"
    );
}

#[tokio::test]
async fn the_pay_form_shares_the_lookup_budget() {
    let s = server().start().await;
    let mut last = 0;
    for _ in 0..61 {
        last = s
            .post_form(
                "/quick-pay/pay",
                &[
                    ("account_number", "100001"),
                    ("postal_code", "90210"),
                    ("amount", "1.00"),
                    ("email", "a@example.com"),
                ],
            )
            .await
            .status()
            .as_u16();
    }
    assert_eq!(
        last, 429,
        "guessing account + ZIP through the pay form is rate limited too"
    );
}
