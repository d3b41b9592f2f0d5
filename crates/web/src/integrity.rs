//! The payment page's integrity (PCI DSS 6.4.3, 11.6.1): the script inventory at
//! `/.well-known/script-inventory.json`, the build's manifest the tamper check compares
//! with, and the CSP report endpoint.

use crate::error::{Format, WebError};
use crate::AppState;
use app::integrity::CspViolation;
use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// Where the inventory is served.
pub const INVENTORY_PATH: &str = "/.well-known/script-inventory.json";

/// Largest CSP report body accepted.
pub const MAX_REPORT_BODY: usize = 8 * 1024;

/// The GET pages of the payment flow: the ones the tamper check fetches.
pub const PAYMENT_PAGES: &[&str] = &["/", "/login", "/register"];

/// A script a page loads, as the build knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptEntry {
    /// URL path, e.g. `/assets/uswds/js/uswds.min.js`.
    pub path: String,
    /// Subresource Integrity value, `sha384-...`.
    pub sha384: String,
    /// Why the page needs it.
    pub reason: String,
}

/// A payment page and the exact CSP it must carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageEntry {
    pub path: String,
    pub csp: String,
}

/// The build's manifest: every script with its hash and reason, and every payment page
/// with its CSP. Served as the script inventory; computed in-process by the check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub generated_by: String,
    pub scripts: Vec<ScriptEntry>,
    pub pages: Vec<PageEntry>,
}

/// `strongroom <version>` of this build.
pub fn generated_by() -> String {
    format!("strongroom {}", env!("CARGO_PKG_VERSION"))
}

/// The manifest of this build, for a portal whose processor's hosted page is at
/// `processor_origin`.
pub fn manifest(processor_origin: &str) -> Manifest {
    let csp = crate::security::expected_csp(processor_origin);
    Manifest {
        generated_by: generated_by(),
        scripts: crate::assets::SCRIPTS
            .iter()
            .map(|s| ScriptEntry {
                path: format!("/assets/{}", s.path),
                sha384: crate::assets::integrity(s.path).unwrap_or_default(),
                reason: s.reason.to_owned(),
            })
            .collect(),
        pages: PAYMENT_PAGES
            .iter()
            .map(|p| PageEntry {
                path: (*p).to_owned(),
                csp: csp.clone(),
            })
            .collect(),
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(INVENTORY_PATH, get(inventory))
        .route(crate::security::CSP_REPORT_PATH, post(csp_report))
}

async fn inventory(State(st): State<AppState>) -> Json<Manifest> {
    Json(manifest(&st.cfg.processor_origin))
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    WebError::new(status, code, message, Format::Json).into_response()
}

/// Why a report body was refused.
#[derive(Debug)]
enum ReportError {
    Malformed(&'static str),
    UnsupportedType,
}

impl IntoResponse for ReportError {
    fn into_response(self) -> Response {
        match self {
            ReportError::Malformed(what) => refuse(
                StatusCode::BAD_REQUEST,
                "invalid_report",
                format!("The report could not be read: {what}."),
            ),
            ReportError::UnsupportedType => refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send application/csp-report or application/reports+json.",
            ),
        }
    }
}

/// `application/csp-report` (the `report-uri` format).
#[derive(Deserialize)]
struct LegacyEnvelope {
    #[serde(rename = "csp-report")]
    report: LegacyReport,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LegacyReport {
    #[serde(rename = "document-uri")]
    document_uri: Option<String>,
    #[serde(rename = "violated-directive")]
    violated_directive: Option<String>,
    #[serde(rename = "effective-directive")]
    effective_directive: Option<String>,
    #[serde(rename = "blocked-uri")]
    blocked_uri: Option<String>,
}

/// One entry of an `application/reports+json` batch (the Reporting API, `report-to`).
#[derive(Deserialize)]
struct ApiReport {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    body: Option<ApiBody>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ApiBody {
    #[serde(rename = "documentURL")]
    document_url: Option<String>,
    effective_directive: Option<String>,
    #[serde(rename = "blockedURL")]
    blocked_url: Option<String>,
}

fn parse_reports(content_type: &str, body: &[u8]) -> Result<Vec<CspViolation>, ReportError> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/csp-report" | "application/json" => {
            let env: LegacyEnvelope = serde_json::from_slice(body)
                .map_err(|_| ReportError::Malformed("expected {\"csp-report\": {...}}"))?;
            let r = env.report;
            Ok(vec![CspViolation {
                document_uri: r.document_uri.unwrap_or_default(),
                violated_directive: r
                    .effective_directive
                    .or(r.violated_directive)
                    .unwrap_or_default(),
                blocked_uri: r.blocked_uri.unwrap_or_default(),
            }])
        }
        "application/reports+json" => {
            let batch: Vec<ApiReport> = serde_json::from_slice(body)
                .map_err(|_| ReportError::Malformed("expected a JSON array of reports"))?;
            Ok(batch
                .into_iter()
                .filter(|r| r.kind == "csp-violation")
                .map(|r| {
                    let b = r.body.unwrap_or_default();
                    CspViolation {
                        document_uri: b.document_url.or(r.url).unwrap_or_default(),
                        violated_directive: b.effective_directive.unwrap_or_default(),
                        blocked_uri: b.blocked_url.unwrap_or_default(),
                    }
                })
                .collect())
        }
        _ => Err(ReportError::UnsupportedType),
    }
}

/// Records browsers' CSP violation reports: at most 8 KiB, rate-limited per client,
/// reduced to path, directive and blocked origin. 204 when accepted.
async fn csp_report(
    State(st): State<AppState>,
    axum::Extension(client): axum::Extension<crate::security::ClientIp>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("A report may be at most {} KiB.", MAX_REPORT_BODY / 1024),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REPORT_BODY as u64) {
        return too_large();
    }
    let Ok(bytes) = to_bytes(body, MAX_REPORT_BODY).await else {
        return too_large();
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let reports = match parse_reports(content_type, &bytes) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match st
        .app
        .record_csp_reports(&client.0.to_string(), &reports)
        .await
    {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => WebError::from_app(e, Format::Json).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_lists_every_script_and_page() {
        let m = manifest("https://checkout.example");
        assert_eq!(m.scripts.len(), crate::assets::SCRIPTS.len());
        for s in &m.scripts {
            assert!(s.path.starts_with("/assets/"));
            assert!(s.sha384.starts_with("sha384-"));
            assert!(!s.reason.is_empty());
        }
        assert_eq!(m.pages.len(), PAYMENT_PAGES.len());
        assert!(m.pages[0]
            .csp
            .contains("form-action 'self' https://checkout.example;"));
        assert!(m.pages[0].csp.contains("report-uri /csp-report"));
    }

    #[test]
    fn both_report_formats_parse() {
        let legacy = br#"{"csp-report":{"document-uri":"https://pay.example/?a=1","violated-directive":"script-src-elem","blocked-uri":"https://evil.example/x.js"}}"#;
        let r = parse_reports("application/csp-report", legacy)
            .ok()
            .unwrap_or_default();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].violated_directive, "script-src-elem");
        let batch = br#"[{"type":"csp-violation","url":"https://pay.example/login","body":{"documentURL":"https://pay.example/login?x","effectiveDirective":"script-src-elem","blockedURL":"inline"}},{"type":"deprecation","body":{}}]"#;
        let r = parse_reports("application/reports+json", batch)
            .ok()
            .unwrap_or_default();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].blocked_uri, "inline");
        assert!(parse_reports("application/csp-report", b"{").is_err());
        assert!(parse_reports("text/plain", b"{}").is_err());
    }
}
