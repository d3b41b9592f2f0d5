//! Stylesheets, scripts, fonts and images, compiled into the binary. There is no web root:
//! nothing is ever read from disk to answer a request.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use sha2::{Digest, Sha384};
use std::sync::OnceLock;

#[derive(rust_embed::RustEmbed)]
#[folder = "assets/"]
struct Embedded;

/// A script the pages load, with why it is there (the PCI DSS 6.4.3 inventory).
pub struct Script {
    pub path: &'static str,
    pub reason: &'static str,
}

/// Every script any page loads.
pub const SCRIPTS: &[Script] = &[
    Script {
        path: "uswds/js/uswds.min.js",
        reason: "U.S. Web Design System components (banner, accordions); pages work without it",
    },
    Script {
        path: "passkey.js",
        reason: "passkey (WebAuthn) ceremonies on the sign-in code pages and the add-a-passkey page only; not on payment pages",
    },
];

/// `sha384-...` of an embedded file, for Subresource Integrity.
pub fn integrity(path: &str) -> Option<String> {
    Embedded::get(path).map(|f| {
        format!(
            "sha384-{}",
            base64::engine::general_purpose::STANDARD.encode(Sha384::digest(&f.data))
        )
    })
}

/// The SRI value of the USWDS script, computed once.
pub fn uswds_js_integrity() -> &'static str {
    static SRI: OnceLock<String> = OnceLock::new();
    SRI.get_or_init(|| integrity(SCRIPTS[0].path).unwrap_or_default())
}

/// The SRI value of the passkey script, computed once.
pub fn passkey_js_integrity() -> &'static str {
    static SRI: OnceLock<String> = OnceLock::new();
    SRI.get_or_init(|| integrity(SCRIPTS[1].path).unwrap_or_default())
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "woff2" => "font/woff2",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

async fn serve(Path(path): Path<String>) -> Response {
    match Embedded::get(&path) {
        Some(f) => (
            [
                (header::CONTENT_TYPE, content_type(&path)),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            f.data.into_owned(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/assets/{*path}", get(serve))
}

/// Names of all embedded files (for tests and the script inventory).
pub fn files() -> Vec<String> {
    Embedded::iter().map(|f| f.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_embedded_and_hashed() {
        for s in SCRIPTS {
            assert!(
                integrity(s.path).is_some_and(|i| i.starts_with("sha384-")),
                "{}",
                s.path
            );
        }
        assert!(files().iter().any(|f| f == "uswds/css/uswds.min.css"));
        assert!(files().iter().any(|f| f == "app.css"));
    }
}
