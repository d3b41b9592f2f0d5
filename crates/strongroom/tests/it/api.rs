use crate::harness::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn health_and_readiness() {
    let s = server().start().await;
    assert_eq!(s.get("/healthz").await.status(), 200);
    assert_eq!(s.get("/readyz").await.status(), 200);
    let staff = s
        .http
        .get(format!("{}/healthz", s.processor))
        .send()
        .await
        .unwrap();
    assert_eq!(
        staff.status(),
        200,
        "sandbox processor answers on its own origin"
    );
}

#[tokio::test]
async fn lookup_shows_balance_and_hides_which_part_was_wrong() {
    let s = server().start().await;
    let (st, body) = s
        .api(
            Method::POST,
            "/api/v1/quick-pay/lookup",
            Some(json!({"account_number":"100001","postal_code":"93301"})),
            None,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert!(body["balance_cents"].as_i64().unwrap() > 0);
    assert_eq!(body["currency"], "usd");
    assert!(body["masked_name"].as_str().unwrap().contains('*'));
    assert_eq!(body["latest_bill"]["lines"].as_array().unwrap().len(), 3);
    assert_eq!(
        body["latest_bill"]["amount_cents"].as_i64().unwrap(),
        body["balance_cents"].as_i64().unwrap()
    );

    let (st, zero) = s
        .api(
            Method::POST,
            "/api/v1/quick-pay/lookup",
            Some(json!({"account_number":"100002","postal_code":"93301"})),
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(zero["balance_cents"], 0);

    let (st1, wrong_zip) = s
        .api(
            Method::POST,
            "/api/v1/quick-pay/lookup",
            Some(json!({"account_number":"100001","postal_code":"90210"})),
            None,
        )
        .await;
    let (st2, unknown) = s
        .api(
            Method::POST,
            "/api/v1/quick-pay/lookup",
            Some(json!({"account_number":"999999","postal_code":"93301"})),
            None,
        )
        .await;
    assert_eq!((st1, st2), (404, 404));
    assert_eq!(wrong_zip, unknown, "same body either way");
    assert_eq!(unknown["error"]["code"], "account_not_found");
}

#[tokio::test]
async fn payment_creation_is_idempotent() {
    let s = server().start().await;
    let body = json!({"items":[{"type":"utility","account_number":"100001","postal_code":"93301","amount_cents":1000}],"email":"a@example.com"});
    let (st, first) = s
        .api(
            Method::POST,
            "/api/v1/payments",
            Some(body.clone()),
            Some("key-1"),
        )
        .await;
    assert_eq!(st, 201, "{first}");
    assert_eq!(first["status"], "pending");
    assert_eq!(first["amount_cents"], 1000);
    let url = first["checkout_url"].as_str().unwrap();
    assert!(
        url.starts_with(&s.processor),
        "checkout on the processor's origin: {url}"
    );
    assert_ne!(s.processor, s.portal);

    let (st, again) = s
        .api(
            Method::POST,
            "/api/v1/payments",
            Some(body.clone()),
            Some("key-1"),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(again, first, "same key and body replays the same response");

    let other = json!({"items":[{"type":"utility","account_number":"100001","postal_code":"93301","amount_cents":999}],"email":"a@example.com"});
    let (st, err) = s
        .api(Method::POST, "/api/v1/payments", Some(other), Some("key-1"))
        .await;
    assert_eq!(st, 422, "{err}");
    assert_eq!(err["error"]["code"], "idempotency_key_reused");

    let (st, err) = s
        .api(Method::POST, "/api/v1/payments", Some(body), None)
        .await;
    assert_eq!(st, 400);
    assert_eq!(err["error"]["field"], "Idempotency-Key");

    let (st, got) = s
        .api(
            Method::GET,
            &format!("/api/v1/payments/{}", first["id"].as_str().unwrap()),
            None,
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(got["status"], "pending");
    assert_eq!(got["items"][0]["account_number"], "100001");
}

#[tokio::test]
async fn api_refuses_bad_payments_and_changes_nothing() {
    let s = server().start().await;
    let balance = s.balance("100001").await;
    let cases = vec![
        (
            json!({"items":[{"type":"utility","account_number":"100001","postal_code":"93301","amount_cents": balance + 1}],"email":"a@example.com"}),
            "items[0].amount_cents",
        ),
        (
            json!({"items":[{"type":"utility","account_number":"100001","postal_code":"93301","amount_cents": 0}],"email":"a@example.com"}),
            "items[0].amount_cents",
        ),
        (
            json!({"items":[{"type":"utility","account_number":"100001","postal_code":"93301","amount_cents": -5}],"email":"a@example.com"}),
            "items[0].amount_cents",
        ),
        (
            json!({"items":[{"type":"utility","account_number":"100002","postal_code":"93301","amount_cents": 100}],"email":"a@example.com"}),
            "items[0].amount_cents",
        ),
        (
            json!({"items":[{"type":"permit","account_number":"100001","postal_code":"93301","amount_cents": 100}],"email":"a@example.com"}),
            "items[0].type",
        ),
        (
            json!({"items":[{"type":"utility","account_number":"10x","postal_code":"93301","amount_cents": 100}],"email":"a@example.com"}),
            "items[0].account_number",
        ),
        (json!({"items":[],"email":"a@example.com"}), "items"),
        (
            json!({"items":[{"type":"utility","account_number":"100001","postal_code":"93301","amount_cents": 100}],"email":"not-an-email"}),
            "email",
        ),
        (
            json!({"items":[{"type":"utility","account_number":"100001","postal_code":"93301","amount_cents": 100}],"email":"a@example.com","return_url":"https://evil.example.net/x"}),
            "return_url",
        ),
    ];
    for (i, (body, field)) in cases.into_iter().enumerate() {
        let (st, err) = s
            .api(
                Method::POST,
                "/api/v1/payments",
                Some(body),
                Some(&format!("bad-{i}")),
            )
            .await;
        assert_eq!(st, 400, "case {i}: {err}");
        assert_eq!(err["error"]["field"], field, "case {i}: {err}");
    }
    // Malformed bodies.
    for (i, raw) in ["{", "[]", "null", "{\"items\":\"x\"}", "{\"items\":[],\"email\":\"a@b.co\",\"extra\":1}", "{\"items\":[{\"type\":\"utility\",\"account_number\":\"100001\",\"postal_code\":\"93301\",\"amount_cents\":1.5}],\"email\":\"a@b.co\"}"].iter().enumerate() {
        let res = s.http.post(format!("{}/api/v1/payments", s.portal)).header("content-type", "application/json").header("Idempotency-Key", format!("raw-{i}")).body(raw.to_string()).send().await.unwrap();
        assert_eq!(res.status(), 400, "{raw}");
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_json", "{raw}");
    }
    let res = s
        .http
        .post(format!("{}/api/v1/quick-pay/lookup", s.portal))
        .header("content-type", "text/plain")
        .body("account=1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    let huge = "x".repeat(200 * 1024);
    let res = s
        .http
        .post(format!("{}/api/v1/quick-pay/lookup", s.portal))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let (st, _) = s
        .api(Method::GET, "/api/v1/payments/pay_doesnotexist", None, None)
        .await;
    assert_eq!(st, 404);
    let (st, _) = s
        .api(Method::GET, "/api/v1/payments/..%2F..%2Fetc", None, None)
        .await;
    assert_eq!(st, 404);
    assert_eq!(s.balance("100001").await, balance, "nothing changed");
    let mut c = s.app().store.conn().await.unwrap();
    assert!(
        store::payments::recent(&mut c, 10)
            .await
            .unwrap()
            .is_empty(),
        "no payment was recorded"
    );
}

#[tokio::test]
async fn openapi_document_describes_the_api() {
    let s = server().start().await;
    let (st, doc) = s.api(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(st, 200);
    for p in [
        "/api/v1/quick-pay/lookup",
        "/api/v1/payments",
        "/api/v1/payments/{id}",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} documented");
    }
}

#[tokio::test]
async fn payment_starts_are_rate_limited_per_client_behind_the_proxy() {
    let s = server().start().await;
    let body = json!({"items":[{"type":"utility","account_number":"100001","postal_code":"93301","amount_cents":1}],"email":"a@example.com"});
    let post = |ip: &'static str, key: String| {
        s.http
            .post(format!("{}/api/v1/payments", s.portal))
            .header("x-forwarded-for", format!("203.0.113.9, {ip}"))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    for i in 0..app::payments::PAYMENT_STARTS_PER_WINDOW {
        assert_eq!(
            post("198.51.100.7", format!("rl-{i}"))
                .await
                .unwrap()
                .status(),
            201,
            "start {i}"
        );
    }
    let res = post("198.51.100.7", "rl-over".into()).await.unwrap();
    assert_eq!(res.status(), 429);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
    // The proxy's last X-Forwarded-For entry is the client: another resident is not affected.
    assert_eq!(
        post("198.51.100.8", "rl-other".into())
            .await
            .unwrap()
            .status(),
        201
    );
    // The audit log names the client, not the proxy.
    let mut c = s.app().store.conn().await.unwrap();
    let rows = store::audit::recent(&mut c, 5).await.unwrap();
    assert!(
        rows.iter().any(|r| r.source_ip == "198.51.100.8"),
        "{:?}",
        rows.iter().map(|r| &r.source_ip).collect::<Vec<_>>()
    );
}
