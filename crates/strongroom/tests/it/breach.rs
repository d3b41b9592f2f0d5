//! The 2017-2019 breach, replayed step by step against Strongroom. Each test is one step
//! of the attack chain (SECURITY.md) and shows the control that stops it. Some steps have
//! their detailed cases in other modules (named below); this module is the narrative.

use crate::harness::*;
use serde_json::json;

/// Step 1: an unpatched application server is exploited. There is no application server
/// to patch; what the attacker reaches is one binary whose only surface is the routes it
/// defines. Unknown paths, methods and debug/console/metrics routes answer 404/405.
#[tokio::test]
async fn step1_no_admin_debug_or_console_surface_on_the_public_listener() {
    let s = server().start().await;
    for path in [
        "/console",
        "/debug",
        "/metrics",
        "/admin",
        "/manager/html",
        "/wls-wsat/CoordinatorPortType",
        "/_async/AsyncResponseService",
        "/server-status",
        "/.env",
        "/.git/config",
        "/WEB-INF/web.xml",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/Cargo.toml",
        "/outbox",
        "/audit",
        "/login/../outbox",
    ] {
        let st = s
            .http
            .get(format!("{}{path}", s.portal))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!(st == 404 || st == 400, "{path}: {st}");
    }
    let st = s
        .http
        .request(
            reqwest::Method::from_bytes(b"TRACE").unwrap(),
            format!("{}/", s.portal),
        )
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st, 405, "TRACE refused");
}

/// Step 2: a webshell uploaded into the web root. There is no web root (assets are
/// compiled in), nothing uploaded is ever served inline, and the upload pipeline refuses
/// every disguise (cases in `uploads.rs`). Here: nothing written to disk is reachable.
#[tokio::test]
async fn step2_nothing_on_disk_is_served() {
    let s = server().start().await;
    std::fs::write(
        s.data_dir.join("shell.jsp"),
        "<% Runtime.getRuntime().exec(request.getParameter(\"c\")); %>",
    )
    .unwrap();
    for path in [
        "/shell.jsp",
        "/assets/shell.jsp",
        "/assets/../shell.jsp",
        "/strongroom.db",
        "/assets/strongroom.db",
        "/logs/strongroom.log",
    ] {
        let res = s
            .http
            .get(format!("{}{path}", s.portal))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{path}");
        assert!(!res.text().await.unwrap().contains("Runtime.getRuntime"));
    }
}

/// Step 3: through the webshell, debug logging is switched on. No setting exists: unknown
/// config keys and environment overrides stop the server, and debug/trace levels are
/// refused in production (cases in `cli.rs`: `serve_refuses_unknown_keys_and_bad_secrets`).
/// Here: whatever is sent, the log never holds a body, a query string or a card number.
#[tokio::test]
async fn step3_logs_never_hold_request_data() {
    let s = server().start().await;
    let marker = format!("canary{}", app::ids::random_id());
    let _ = s
        .post_form(
            "/quick-pay",
            &[
                ("account_number", marker.as_str()),
                ("postal_code", "93301"),
            ],
        )
        .await;
    let _ = s.get(&format!("/?q={marker}")).await;
    let _ = s
        .http
        .get(format!("{}/", s.portal))
        .header("x-debug", marker.as_str())
        .header("cookie", format!("sr_resident={marker}"))
        .send()
        .await
        .unwrap();
    let _ = s
        .api(
            reqwest::Method::POST,
            "/api/v1/quick-pay/lookup",
            Some(json!({"account_number": marker, "postal_code": "93301"})),
            None,
        )
        .await;
    let logs = std::fs::read_dir(artifacts_dir().join("logs"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(!logs.is_empty(), "the suite logs somewhere");
    assert!(!logs.contains(&marker), "request data reached the logs");
}

/// Steps 3-4: card data in logs, and tools that read them. Card numbers are refused at the
/// edge (every field and header: `security.rs`), and after 500 payments through the
/// processor's hosted page nothing in the data directory (database, WAL) or the logs holds
/// a card number.
#[tokio::test]
async fn step4_five_hundred_payments_leave_no_card_number_anywhere() {
    let s = server().start().await;
    let accounts: Vec<(String, String)> = {
        let mut c = s.app().store.conn().await.unwrap();
        let mut out = vec![];
        for n in 100_001..=100_012 {
            let a = store::accounts::get(&mut c, &n.to_string())
                .await
                .unwrap()
                .unwrap();
            if store::accounts::balance_cents(&mut c, &a.account_number)
                .await
                .unwrap()
                > 600
            {
                out.push((a.account_number, a.postal_code));
            }
        }
        out
    };
    assert!(!accounts.is_empty());
    let cards = [
        "4242 4242 4242 4242",
        "4242424242424242",
        "4000 0000 0000 0002",
        "4000-0000-0000-9995",
    ];
    let mut succeeded = 0;
    for i in 0..500 {
        let (acct, zip) = &accounts[i % accounts.len()];
        let (id, url) = s.api_payment(acct, zip, 1, &format!("breach-{i}")).await;
        let card = cards[i % cards.len()];
        let res = s.pay_hosted(&url, card).await;
        if res.status() == 303 {
            s.follow(res).await;
            succeeded += 1;
        } else {
            let _ = s.get(&format!("/payments/{id}/cancel")).await;
            let _ = s.post_form(&format!("/payments/{id}/cancel"), &[]).await;
        }
    }
    assert_eq!(succeeded, 250, "two of the four cards succeed");
    let (files, findings) =
        strongroom::scan::scan(&[s.data_dir.clone(), artifacts_dir().join("logs")]).unwrap();
    assert!(files >= 2);
    assert!(findings.is_empty(), "card numbers found: {findings:?}");
}

/// Step 5: the same cities were hit again a year later. Tampering leaves traces: the audit
/// chain is keyed and verified (cases in `audit.rs`), and the payment pages are checked
/// against the build (cases in `integrity.rs`). Here: the chain of a busy day verifies.
#[tokio::test]
async fn step5_the_audit_chain_of_a_busy_day_verifies() {
    let s = server().start().await;
    for i in 0..5 {
        s.pay_ok("100001", "93301", 10, &format!("busy-{i}")).await;
    }
    let mut c = s.app().store.conn().await.unwrap();
    let n = store::audit::verify(&mut c, AUDIT_KEY)
        .await
        .unwrap()
        .expect("intact");
    assert!(n >= 11, "{n} entries");
}
