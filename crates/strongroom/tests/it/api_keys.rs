//! The city systems' API: keys made in the back office (shown once, scoped, revocable),
//! bills in, payments and postings out in Stripe's list format, refund requests that wait
//! for a supervisor; every change attributable to its key in the audit log.

use crate::harness::*;
use crate::journeys::hidden_value;
use crate::staff::staff_login_full;

const PW: &str = "ledger-harbor-apikeys-42";

async fn make_key(s: &Server, admin: &reqwest::Client, name: &str, scopes: &[&str]) -> String {
    let page = admin
        .get(format!("{}/admin/api-keys", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut form = vec![
        ("csrf".to_owned(), hidden_value(&page, "csrf")),
        ("name".into(), name.to_owned()),
    ];
    form.extend(scopes.iter().map(|s| ("scope".to_owned(), (*s).to_owned())));
    let res = admin
        .post(format!("{}/admin/api-keys", s.staff))
        .header("origin", &s.staff)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let start = html
        .find("<code id=\"new-key\">")
        .expect("the key is shown once")
        + "<code id=\"new-key\">".len();
    html[start..].split('<').next().unwrap().to_owned()
}

async fn call(
    s: &Server,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = s
        .http
        .request(method, format!("{}{path}", s.portal))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn keys_are_scoped_revocable_and_every_change_is_attributed() {
    let s = server().fixed_clock().start().await;
    s.app()
        .create_staff("admin1", "Admin", PW, app::staff::Role::Administrator)
        .await
        .unwrap();
    let admin = client();
    staff_login_full(&s, &admin, "admin1", PW).await;
    let all = make_key(
        &s,
        &admin,
        "CIS nightly",
        &[
            "bills:write",
            "payments:read",
            "postings:read",
            "refunds:write",
        ],
    )
    .await;
    assert!(all.starts_with("sr_live_"), "{all}");
    let reader = make_key(&s, &admin, "Finance reader", &["payments:read"]).await;
    // Only a hash is stored.
    let mut c = s.app().store.conn().await.unwrap();
    let stored: Vec<(String,)> = sqlx::query_as("SELECT secret_hash FROM api_keys")
        .fetch_all(&mut *c)
        .await
        .unwrap();
    drop(c);
    assert!(stored
        .iter()
        .all(|(h,)| h.len() == 64 && !all.contains(h.as_str())));

    // No key, a wrong key: 401. The wrong scope: 403.
    let (st, _) = call(&s, "", reqwest::Method::GET, "/api/v1/payments", None).await;
    assert_eq!(st, 401);
    let (st, _) = call(
        &s,
        "sr_live_nope_0123456789abcdef0123456789abcdef",
        reqwest::Method::GET,
        "/api/v1/payments",
        None,
    )
    .await;
    assert_eq!(st, 401);
    let (st, v) = call(
        &s,
        &reader,
        reqwest::Method::POST,
        "/api/v1/bills",
        Some(serde_json::json!({"bills": []})),
    )
    .await;
    assert_eq!(st, 403, "{v}");

    // Bills in.
    let bill = |id: &str, acct: &str, water: i64| {
        serde_json::json!({
            "bill_id": id, "account_number": acct, "postal_code": "93308", "holder_name": "Kim Lee",
            "service_street": "5 Pine St", "service_city": "Bakersfield", "period_start": "2026-10-01",
            "period_end": "2026-10-31", "issued_on": "2026-11-05", "due_on": "2026-11-26", "water_cents": water,
            "sewer_cents": 3875, "trash_cents": 2940
        })
    };
    let (st, v) = call(&s, &all, reqwest::Method::POST, "/api/v1/bills", Some(serde_json::json!({"bills": [bill("A-1", "760001", 1000), bill("A-2", "760002", 2000)]}))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["created"], 2);
    let (st, v) = call(
        &s,
        &all,
        reqwest::Method::POST,
        "/api/v1/bills",
        Some(serde_json::json!({"bills": [bill("A-1", "760001", 1000)]})),
    )
    .await;
    assert_eq!(
        (st, v["unchanged"].as_u64()),
        (200, Some(1)),
        "sent again: nothing changes"
    );
    let (st, v) = call(
        &s,
        &all,
        reqwest::Method::POST,
        "/api/v1/bills",
        Some(serde_json::json!({"bills": [bill("A-3", "76", 1000), bill("A-4", "760004", -5)]})),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    let lines: Vec<u64> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["line"].as_u64().unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![1, 2],
        "each bad bill named by its position: {v}"
    );

    // Payments out, a page at a time.
    let mut ids = Vec::new();
    for (i, acct) in ["760001", "760002", "760001"].iter().enumerate() {
        ids.push(
            s.pay_ok(acct, "93308", 500 + i as i64, &format!("api-k-{i}"))
                .await,
        );
        s.clock.advance(time::Duration::seconds(1));
    }
    let (st, p1) = call(
        &s,
        &reader,
        reqwest::Method::GET,
        "/api/v1/payments?limit=2",
        None,
    )
    .await;
    assert_eq!(st, 200, "{p1}");
    assert_eq!(p1["object"], "list");
    assert_eq!(p1["has_more"], true);
    let first: Vec<&str> = p1["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        first,
        vec![ids[2].as_str(), ids[1].as_str()],
        "newest first"
    );
    let (_, p2) = call(
        &s,
        &reader,
        reqwest::Method::GET,
        &format!("/api/v1/payments?limit=2&starting_after={}", ids[1]),
        None,
    )
    .await;
    assert_eq!(p2["has_more"], false);
    assert_eq!(p2["data"][0]["id"], ids[0].as_str());
    let (st, _) = call(
        &s,
        &reader,
        reqwest::Method::GET,
        "/api/v1/payments?limit=500",
        None,
    )
    .await;
    assert_eq!(st, 400);

    // Postings of the day.
    let (st, v) = call(
        &s,
        &all,
        reqwest::Method::GET,
        "/api/v1/postings?business_date=2026-11-16&limit=2",
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["data"].as_array().unwrap().len(), v["has_more"].as_bool()),
        (2, Some(true))
    );

    // A refund request waits for a supervisor, attributed to the key; it needs an
    // Idempotency-Key, and a retry gets the first answer, not a second request.
    let refund = |key: Option<&'static str>| {
        let mut req = s
            .http
            .post(format!("{}/api/v1/payments/{}/refunds", s.portal, ids[0]))
            .bearer_auth(&all)
            .json(&serde_json::json!({"account_number": "760001", "amount_cents": 200, "reason": "Duplicate payment"}));
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        req.send()
    };
    assert_eq!(refund(None).await.unwrap().status(), 400);
    let first = refund(Some("refund-1")).await.unwrap();
    assert_eq!(first.status(), 201);
    let v: serde_json::Value = first.json().await.unwrap();
    assert_eq!(v["status"], "awaiting_approval");
    let again = refund(Some("refund-1")).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let v2: serde_json::Value = again.json().await.unwrap();
    assert_eq!(v2["id"], v["id"]);
    assert_eq!(s.app().refunds_awaiting_approval().await.unwrap().len(), 1);
    let mut c = s.app().store.conn().await.unwrap();
    let actors: Vec<(String, String)> = sqlx::query_as(
        "SELECT actor, event FROM audit_log WHERE actor LIKE '%api_key:%' ORDER BY seq",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap();
    drop(c);
    let key_id = all
        .trim_start_matches("sr_live_")
        .split('_')
        .next()
        .unwrap();
    assert!(
        actors
            .iter()
            .any(|(a, e)| a == &format!("api_key:{key_id}") && e == "bills.imported"),
        "{actors:?}"
    );
    assert!(
        actors
            .iter()
            .any(|(a, e)| a.ends_with(&format!("api_key:{key_id}"))
                && e == "payment.refund_requested"),
        "{actors:?}"
    );

    // Revoked: 401 from then on, audited.
    let page = admin
        .get(format!("{}/admin/api-keys", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let res = admin
        .post(format!("{}/admin/api-keys/revoke", s.staff))
        .header("origin", &s.staff)
        .form(&[
            ("csrf", hidden_value(&page, "csrf").as_str()),
            ("id", key_id),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let (st, _) = call(
        &s,
        &all,
        reqwest::Method::GET,
        "/api/v1/postings?business_date=2026-11-16",
        None,
    )
    .await;
    assert_eq!(st, 401);
}
