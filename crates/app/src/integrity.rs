//! Payment-page integrity (PCI DSS 6.4.3, 11.6.1): browsers' CSP violation reports, and the
//! audit trail of the scheduled tamper check.

use crate::{App, AppError};
use store::StoreError;

/// Reports one client may send per window, and the window.
pub const CSP_REPORTS_PER_WINDOW: i64 = 30;
pub const CSP_REPORT_WINDOW_SECS: i64 = 60;
/// Reports kept from one request (the Reporting API batches them).
pub const MAX_REPORTS_PER_REQUEST: usize = 10;

/// One violation as a browser described it. Reduced before it is stored (see
/// [`App::record_csp_reports`]).
#[derive(Debug, Clone, Default)]
pub struct CspViolation {
    pub document_uri: String,
    pub violated_directive: String,
    pub blocked_uri: String,
}

const FIELD_MAX: usize = 200;

fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(FIELD_MAX)
        .collect()
}

/// `scheme://host[:port]` of an absolute URL, if it is one.
fn split_origin(uri: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = uri.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // Drop any user:password@ part.
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some((scheme, host)).filter(|(_, h)| !h.is_empty())
}

/// The path of the page (no origin, no query string, no fragment).
pub fn document_path(uri: &str) -> String {
    let uri = uri.trim();
    let after_origin = match uri.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => uri,
    };
    let path = after_origin
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .trim();
    if path.starts_with('/') {
        printable(path)
    } else {
        "(unknown)".into()
    }
}

/// What was blocked: a CSP keyword (`inline`, `eval`, ...) or the origin of a URL, never
/// its path or query string.
pub fn blocked_origin(uri: &str) -> String {
    let uri = uri.trim();
    const KEYWORDS: &[&str] = &[
        "inline",
        "eval",
        "wasm-eval",
        "self",
        "data",
        "blob",
        "trusted-types-policy",
        "trusted-types-sink",
    ];
    if uri.is_empty() {
        return "(none)".into();
    }
    let lower = uri.to_ascii_lowercase();
    if KEYWORDS.contains(&lower.as_str()) {
        return lower;
    }
    if let Some((scheme, host)) = split_origin(uri) {
        return printable(&format!(
            "{}://{}",
            scheme.to_ascii_lowercase(),
            host.to_ascii_lowercase()
        ));
    }
    // `data:...`, `blob:...`, `about:blank`: the scheme only.
    match lower.split_once(':') {
        Some((scheme, _))
            if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            printable(scheme)
        }
        _ => "(other)".into(),
    }
}

/// The directive's name and sources, without anything else a browser may append.
pub fn directive(d: &str) -> String {
    let d = printable(d.trim());
    if d.is_empty() {
        "(unknown)".into()
    } else {
        d
    }
}

impl App {
    /// Records CSP violation reports from one client, rate-limited per IP. Keeps only the
    /// page's path, the directive and the blocked origin. Returns how many were stored.
    pub async fn record_csp_reports(
        &self,
        source_ip: &str,
        reports: &[CspViolation],
    ) -> Result<usize, AppError> {
        self.rate_limit(
            &format!("csp-report:{source_ip}"),
            CSP_REPORTS_PER_WINDOW,
            CSP_REPORT_WINDOW_SECS,
        )
        .await?;
        let now = self.now_unix();
        let mut tx = self.store.begin().await?;
        let mut n = 0;
        for r in reports.iter().take(MAX_REPORTS_PER_REQUEST) {
            store::csp_reports::insert(
                &mut tx,
                &store::csp_reports::CspReport {
                    id: crate::ids::random_id(),
                    received_at: now,
                    document_path: document_path(&r.document_uri),
                    violated_directive: directive(&r.violated_directive),
                    blocked_origin: blocked_origin(&r.blocked_uri),
                },
            )
            .await?;
            n += 1;
        }
        tx.commit().await.map_err(StoreError::from)?;
        if n > 0 {
            tracing::warn!(reports = n, "content security policy violation reported");
        }
        Ok(n)
    }

    /// The newest CSP reports (for staff and tests).
    pub async fn recent_csp_reports(
        &self,
        limit: i64,
    ) -> Result<Vec<store::csp_reports::CspReport>, AppError> {
        let mut conn = self.store.conn().await?;
        Ok(store::csp_reports::recent(&mut conn, limit).await?)
    }

    /// Writes the outcome of a payment-page integrity check to the audit log
    /// (`integrity.check`, success or failure, with what differed).
    pub async fn record_integrity_check(&self, ok: bool, detail: &str) -> Result<(), AppError> {
        let detail: String = detail.chars().take(2000).collect();
        let mut tx = self.store.begin().await?;
        self.audit(
            &mut tx,
            "system",
            "integrity.check",
            "portal",
            if ok { "success" } else { "failure" },
            "-",
            &detail,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_path_drops_origin_and_query() {
        assert_eq!(
            document_path("https://pay.city.gov/quick-pay?acct=1#x"),
            "/quick-pay"
        );
        assert_eq!(document_path("https://pay.city.gov"), "/");
        assert_eq!(document_path("/login?next=/x"), "/login");
        assert_eq!(document_path("about:blank"), "(unknown)");
    }

    #[test]
    fn blocked_origin_keeps_only_the_origin() {
        assert_eq!(
            blocked_origin("https://Evil.example:8443/skim.js?card=1"),
            "https://evil.example:8443"
        );
        assert_eq!(
            blocked_origin("https://user:pw@evil.example/x"),
            "https://evil.example"
        );
        assert_eq!(blocked_origin("inline"), "inline");
        assert_eq!(blocked_origin("data:text/javascript,alert(1)"), "data");
        assert_eq!(blocked_origin(""), "(none)");
        assert_eq!(blocked_origin("?? x"), "(other)");
    }
}
