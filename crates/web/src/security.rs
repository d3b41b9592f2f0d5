//! Middleware every request passes through: the access log (no bodies, no query strings,
//! no cookies, no headers), security headers, body limits, the card-number guard, and the
//! cross-site request check.

use crate::error::{Format, WebError};
use crate::AppState;
use axum::body::{to_bytes, Body};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::time::Instant;

/// Largest request body accepted anywhere (forms and JSON are small).
pub const MAX_BODY: usize = 64 * 1024;

/// Headers never inspected for card numbers: our own random tokens and signatures.
const UNSCANNED_HEADERS: &[&str] = &["cookie", "stripe-signature", "authorization"];

fn format_for(path: &str) -> Format {
    if path.starts_with("/api/") || path.starts_with("/webhooks/") {
        Format::Json
    } else {
        Format::Html
    }
}

pub fn public_layers(r: Router<AppState>, state: AppState) -> Router<AppState> {
    r.layer(middleware::from_fn(rejections_as_errors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            same_origin_guard,
        ))
        .layer(middleware::from_fn(card_number_guard))
        .layer(middleware::from_fn_with_state(state, portal_headers))
        .layer(middleware::from_fn(access_log))
}

pub fn staff_layers(r: Router<AppState>, state: AppState) -> Router<AppState> {
    r.layer(middleware::from_fn(rejections_as_errors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            same_origin_guard,
        ))
        .layer(middleware::from_fn(card_number_guard))
        .layer(middleware::from_fn_with_state(state, staff_headers))
        .layer(middleware::from_fn(access_log))
}

/// One line per request: method, route template, status, time. The route template (not
/// the raw path) so that nothing a client typed is logged.
async fn access_log(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "(unmatched)".into());
    let res = next.run(req).await;
    tracing::info!(target: "access", method = %method, route = %route, status = res.status().as_u16(), ms = start.elapsed().as_millis() as u64, "request");
    res
}

fn set_common(res: &mut Response, csp: &str, hsts: bool, path: &str) {
    let h = res.headers_mut();
    let mut put = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    put(header::CONTENT_SECURITY_POLICY, csp);
    put(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    put(header::X_FRAME_OPTIONS, "DENY");
    put(header::REFERRER_POLICY, "same-origin");
    put(
        header::HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    );
    put(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    put(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    if !path.starts_with("/assets/") {
        put(header::CACHE_CONTROL, "no-store");
    }
    if hsts {
        put(
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        );
    }
}

fn csp(form_targets: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
         form-action {form_targets}; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )
}

async fn portal_headers(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let mut res = next.run(req).await;
    set_common(
        &mut res,
        &csp(&format!("'self' {}", st.cfg.processor_origin)),
        st.cfg.hsts,
        &path,
    );
    res
}

async fn staff_headers(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let mut res = next.run(req).await;
    set_common(&mut res, &csp("'self'"), st.cfg.hsts, &path);
    res
}

fn card_refused(path: &str) -> Response {
    WebError::new(
        StatusCode::BAD_REQUEST,
        "card_number_refused",
        "This looks like a card number. Never type card details on this site: you enter them only on the payment processor's secure page.",
        format_for(path),
    )
    .into_response()
}

fn decoded_pairs_contain_pan(bytes: &[u8]) -> bool {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes)
        .map(|pairs| {
            pairs
                .iter()
                .any(|(k, v)| domain::pan::contains_pan(k) || domain::pan::contains_pan(v))
        })
        .unwrap_or(false)
}

/// Refuses (400) any request carrying something that looks like a card number, in the
/// path, the query, a header or the body. The value is never logged or stored.
async fn card_number_guard(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if domain::pan::contains_pan(&path) || decoded_pairs_contain_pan(format!("p={path}").as_bytes())
    {
        return card_refused(&path);
    }
    if let Some(q) = req.uri().query() {
        if domain::pan::contains_pan(q) || decoded_pairs_contain_pan(q.as_bytes()) {
            return card_refused(&path);
        }
    }
    for (name, value) in req.headers() {
        if UNSCANNED_HEADERS.contains(&name.as_str()) {
            continue;
        }
        if domain::pan::contains_pan(&String::from_utf8_lossy(value.as_bytes())) {
            return card_refused(&path);
        }
    }
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return WebError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("The request body is larger than {} KiB.", MAX_BODY / 1024),
                format_for(&path),
            )
            .into_response();
        }
    };
    if !bytes.is_empty() {
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if domain::pan::contains_pan(&String::from_utf8_lossy(&bytes))
            || (is_form && decoded_pairs_contain_pan(&bytes))
        {
            return card_refused(&path);
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Refuses state-changing browser requests from another origin (CSRF defence in depth;
/// pages also carry per-session tokens). The API and the webhook take no cookies, so they
/// are exempt.
async fn same_origin_guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method && format_for(path) == Format::Html {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        let site = req
            .headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok());
        let ours = [st.cfg.portal_origin.as_str(), st.cfg.staff_origin.as_str()];
        // Browsers send `Origin: null` on some same-origin form posts (privacy settings,
        // referrer policies); then the browser's own Sec-Fetch-Site decides.
        let origin_ok = match origin {
            Some("null") | None => {
                site.is_none_or(|s| s == "same-origin" || s == "none")
                    && !(origin == Some("null") && site.is_none())
            }
            Some(o) => ours.contains(&o),
        };
        if !origin_ok {
            return WebError::new(
                StatusCode::FORBIDDEN,
                "cross_site_request",
                "This form was sent from another site and was refused.",
                Format::Html,
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Extractor rejections (a malformed form, query or path, a wrong method) come out of axum
/// as plain text. Give them the same shape as every other error: an error page for
/// browsers, `{"error":{..}}` for the API, with a stable code.
async fn rejections_as_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let res = next.run(req).await;
    let status = res.status();
    let plain = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.to_str().is_ok_and(|c| c.starts_with("text/plain")));
    if !(status.is_client_error() && plain) {
        return res;
    }
    let (code, message): (&'static str, String) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "This address does not accept that kind of request.".into(),
        ),
        StatusCode::NOT_FOUND => ("not_found", "There is no page at this address.".into()),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "body_too_large",
            format!("The request body is larger than {} KiB.", MAX_BODY / 1024),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "This form was sent in a format we do not accept.".into(),
        ),
        _ => {
            // axum's text names the field and the problem ("missing field `email`",
            // "invalid digit found in string"); it never contains the submitted value
            // beyond what serde quotes for unknown variants, which the card guard has
            // already screened.
            let bytes = to_bytes(res.into_body(), 4096).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            let detail = text
                .split_once(": ")
                .map(|(_, d)| d)
                .unwrap_or(&text)
                .trim()
                .to_owned();
            (
                "invalid_request",
                format!("The request could not be read: {detail}"),
            )
        }
    };
    let mut out = WebError::new(status, code, message, format_for(&path)).into_response();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        out.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
    }
    out
}
