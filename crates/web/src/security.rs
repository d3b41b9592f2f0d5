//! Middleware every request passes through: the access log (no bodies, no query strings,
//! no cookies, no headers), security headers, body limits, the card-number guard, and the
//! cross-site request check.

use crate::error::{Format, WebError};
use crate::AppState;
use app::sessions::Realm;
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
/// `content-type` too: a multipart boundary is random digits and dashes (reqwest writes four
/// dash-separated 16-hex-digit groups), which can look like a card number by chance.
const UNSCANNED_HEADERS: &[&str] = &[
    "cookie",
    "stripe-signature",
    "authorization",
    "content-type",
];

fn format_for(path: &str) -> Format {
    // CSP reports come from browsers without cookies or a page's form; they take JSON
    // errors and are not subject to the same-origin form check.
    if path.starts_with("/api/")
        || path.starts_with("/webhooks/")
        || path.starts_with("/.well-known/")
        || path == CSP_REPORT_PATH
    {
        Format::Json
    } else {
        Format::Html
    }
}

/// The client's address as far as we can trust it (see `resolve_client_ip`).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub std::net::IpAddr);

/// The TCP peer; or, when the peer is one of the configured trusted proxies, the address that
/// proxy reports: the last `X-Forwarded-For` entry, the one it appended itself. Rate limits
/// and the audit log are per client, not per proxy.
async fn resolve_client_ip(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = match peer {
        Some(p) if st.cfg.trusted_proxies.contains(&p) => req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or(p),
        Some(p) => p,
        None => std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    };
    req.extensions_mut().insert(ClientIp(ip));
    next.run(req).await
}

pub fn public_layers(r: Router<AppState>, state: AppState) -> Router<AppState> {
    r.layer(middleware::from_fn_with_state(state.clone(), seal_audit))
        .layer(middleware::from_fn(rejections_as_errors))
        .layer(middleware::from_fn_with_state(
            (state.clone(), Realm::Resident),
            csrf_guard,
        ))
        .layer(middleware::from_fn_with_state(
            (state.clone(), Realm::Resident),
            same_origin_guard,
        ))
        .layer(middleware::from_fn(staff_card_number_guard))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            portal_headers,
        ))
        .layer(middleware::from_fn_with_state(state, resolve_client_ip))
        .layer(middleware::from_fn(crate::portal::localize_error_page))
        .layer(middleware::from_fn(access_log))
}

pub fn staff_layers(r: Router<AppState>, state: AppState) -> Router<AppState> {
    r.layer(middleware::from_fn_with_state(state.clone(), seal_audit))
        .layer(middleware::from_fn(rejections_as_errors))
        .layer(middleware::from_fn_with_state(
            (state.clone(), Realm::Staff),
            csrf_guard,
        ))
        .layer(middleware::from_fn_with_state(
            (state.clone(), Realm::Staff),
            same_origin_guard,
        ))
        .layer(middleware::from_fn(staff_card_number_guard))
        .layer(middleware::from_fn_with_state(state.clone(), staff_headers))
        .layer(middleware::from_fn_with_state(state, resolve_client_ip))
        .layer(middleware::from_fn(crate::portal::localize_error_page))
        .layer(middleware::from_fn(access_log))
}

/// Chains the audit entries a request wrote (queued on PostgreSQL so audited writes
/// overlap) before its answer goes out: see `App::sealing_audit`.
async fn seal_audit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    state.app.sealing_audit(next.run(req)).await
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
    // A download (`Content-Disposition: attachment`) keeps the stricter policy its handler
    // set (`default-src 'none'; sandbox`); every other response gets the page policy.
    let own_csp = res.headers().contains_key(header::CONTENT_SECURITY_POLICY)
        && res
            .headers()
            .get(header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|d| d.starts_with("attachment"));
    let ok = res.status().is_success();
    let h = res.headers_mut();
    let mut put = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    if !own_csp {
        put(header::CONTENT_SECURITY_POLICY, csp);
    }
    for (name, value) in FIXED_HEADERS {
        put(header::HeaderName::from_static(name), value);
    }
    // Assets keep their own caching; an error under /assets/ is a page like any other.
    if !(path.starts_with("/assets/") && ok) {
        put(header::CACHE_CONTROL, "no-store");
    }
    if hsts {
        put(
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        );
    }
}

/// Where browsers send CSP violation reports (portal listener).
pub const CSP_REPORT_PATH: &str = "/csp-report";

/// The Reporting API endpoint named by the portal CSP's `report-to`.
pub const REPORTING_ENDPOINTS: &str = "csp=\"/csp-report\"";

/// Headers every response carries with a fixed value (names in lower case). The
/// integrity check compares the payment pages' headers with these.
pub const FIXED_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    ),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

/// The exact CSP of every portal response, for a portal whose payment processor's hosted
/// page is at `processor_origin`. The server sends it and the integrity check expects it.
pub fn expected_csp(processor_origin: &str) -> String {
    format!(
        "{}; report-uri {CSP_REPORT_PATH}; report-to csp",
        csp(&format!("'self' {processor_origin}"))
    )
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
        &expected_csp(&st.cfg.processor_origin),
        st.cfg.hsts,
        &path,
    );
    res.headers_mut().insert(
        header::HeaderName::from_static("reporting-endpoints"),
        HeaderValue::from_static(REPORTING_ENDPOINTS),
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

/// Does a JSON body hold a card number once its escapes are decoded (`"\u0034242..."`)?
/// The raw-text scan cannot see through JSON string escapes; the API's JSON extractor can.
fn json_contains_pan(bytes: &[u8]) -> bool {
    fn walk(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::String(s) => domain::pan::contains_pan(s),
            serde_json::Value::Number(n) => domain::pan::contains_pan(&n.to_string()),
            serde_json::Value::Array(a) => a.iter().any(walk),
            serde_json::Value::Object(o) => o
                .iter()
                .any(|(k, v)| domain::pan::contains_pan(k) || walk(v)),
            _ => false,
        }
    }
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|v| walk(&v))
}

/// Does the path, the query or a (scanned) header look like it holds a card number?
fn head_carries_pan(req: &Request) -> bool {
    let path = req.uri().path();
    if domain::pan::contains_pan(path) || decoded_pairs_contain_pan(format!("p={path}").as_bytes())
    {
        return true;
    }
    if let Some(q) = req.uri().query() {
        if domain::pan::contains_pan(q) || decoded_pairs_contain_pan(q.as_bytes()) {
            return true;
        }
    }
    req.headers().iter().any(|(name, value)| {
        !UNSCANNED_HEADERS.contains(&name.as_str())
            && domain::pan::contains_pan(&String::from_utf8_lossy(value.as_bytes()))
    })
}

/// Refuses (400) any request carrying something that looks like a card number, in the
/// path, the query, a header or the body. The value is never logged or stored.
async fn card_number_guard(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if head_carries_pan(&req) {
        return card_refused(&path);
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
            || json_contains_pan(&bytes)
        {
            return card_refused(&path);
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The route that takes a document (staff listener: attach a document to an account).
pub const UPLOAD_ROUTE: &str = "/accounts/{account}/documents";

/// Largest body of a document upload: the document plus room for the form's other parts.
pub const MAX_UPLOAD_BODY: usize = app::documents::MAX_DOCUMENT_BYTES + MAX_BODY;

/// The route that takes a bill file (staff listener: import bills).
pub const IMPORT_ROUTE: &str = "/imports";

/// Largest bill file the back office takes (about 600,000 bills): the file is held in
/// memory while its parts are checked. Larger files go through `strongroom import-bills`,
/// which streams them.
pub const MAX_IMPORT_FILE: usize = 64 * 1024 * 1024;

/// Largest body of a bill file upload.
pub const MAX_IMPORT_BODY: usize = MAX_IMPORT_FILE + MAX_BODY;

/// The route that takes a permit plan (portal listener: a resident's application).
pub const PLAN_UPLOAD_ROUTE: &str = "/permits/{id}/plans";

/// The routes that take `multipart/form-data` (staff: documents, bill files; portal:
/// permit plans), with the largest body each takes.
const UPLOADS: &[(&str, usize)] = &[
    (UPLOAD_ROUTE, MAX_UPLOAD_BODY),
    (IMPORT_ROUTE, MAX_IMPORT_BODY),
    (PLAN_UPLOAD_ROUTE, MAX_UPLOAD_BODY),
];

/// The upload cap of a matched route, if it takes uploads.
fn upload_cap(req: &Request) -> Option<usize> {
    let m = req.extensions().get::<MatchedPath>()?;
    UPLOADS
        .iter()
        .find(|(route, _)| *route == m.as_str())
        .map(|(_, cap)| *cap)
}

/// How much of an oversized upload is read (and thrown away) beyond its cap before the
/// 413 is sent, so the client sees the answer instead of a reset connection.
const UPLOAD_DRAIN_EXTRA: usize = 3 * MAX_UPLOAD_BODY;

/// Both listeners' card-number guard: [`card_number_guard`], except for a
/// `multipart/form-data` POST to an upload route, which may be up to its cap
/// and whose file content is not scanned (a plan or a scan may hold any digits). Its path,
/// query and headers are scanned as usual, and so is every part's headers (the file
/// name) and every part that is not a file (the CSRF field).
async fn staff_card_number_guard(req: Request, next: Next) -> Response {
    let cap = (req.method() == Method::POST)
        .then(|| upload_cap(&req))
        .flatten();
    let boundary = cap
        .is_some()
        .then(|| multipart_boundary(req.headers()))
        .flatten();
    let Some(boundary) = boundary else {
        return card_number_guard(req, next).await;
    };
    let path = req.uri().path().to_owned();
    if head_carries_pan(&req) {
        return card_refused(&path);
    }
    let cap = cap.unwrap_or(MAX_UPLOAD_BODY);
    let (parts, body) = req.into_parts();
    let Some(bytes) = read_capped(body, cap).await else {
        return WebError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "The upload is larger than {} MB.",
                (cap - MAX_BODY) / (1024 * 1024)
            ),
            Format::Html,
        )
        .into_response();
    };
    match multipart_text_carries_pan(&bytes, &boundary) {
        Some(false) => {}
        Some(true) => return card_refused(&path),
        None => {
            return WebError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The upload could not be read.",
                Format::Html,
            )
            .into_response()
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The boundary of a `multipart/form-data` body, from its Content-Type.
fn multipart_boundary(headers: &axum::http::HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let (kind, params) = ct.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        let v = v.trim().trim_matches('"');
        (k.trim().eq_ignore_ascii_case("boundary") && !v.is_empty() && v.len() <= 70)
            .then(|| v.to_owned())
    })
}

/// Reads a body of at most `limit` bytes. A longer one is read on (up to a cap) and
/// thrown away, and `None` returned.
async fn read_capped(mut body: Body, limit: usize) -> Option<axum::body::Bytes> {
    use axum::body::HttpBody;
    let mut buf: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let Ok(data) = frame.ok()?.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > limit {
            buf = Vec::new();
            if seen > limit.saturating_add(UPLOAD_DRAIN_EXTRA) {
                return None;
            }
            continue;
        }
        buf.extend_from_slice(&data);
    }
    (seen <= limit).then(|| axum::body::Bytes::from(buf))
}

fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Scans a multipart body's text for card numbers: every part's headers (raw and
/// percent-decoded: the file name) and the content of every part that is not a file.
/// `None` when the body is not well-formed multipart (the request is then refused).
fn multipart_text_carries_pan(body: &[u8], boundary: &str) -> Option<bool> {
    let delimiter = format!("\r\n--{boundary}");
    let delimiter = delimiter.as_bytes();
    // The first delimiter may open the body without the CRLF before it.
    let mut pos = if body.starts_with(&delimiter[2..]) {
        delimiter.len() - 2
    } else {
        find_bytes(body, delimiter)? + delimiter.len()
    };
    loop {
        let rest = body.get(pos..)?;
        if rest.starts_with(b"--") {
            return Some(false);
        }
        let rest = rest.strip_prefix(b"\r\n")?;
        let end = find_bytes(rest, delimiter)?;
        let part = &rest[..end];
        let (head, content) = if part.starts_with(b"\r\n") {
            (&part[..0], &part[2..])
        } else {
            let split = find_bytes(part, b"\r\n\r\n")?;
            (&part[..split], &part[split + 4..])
        };
        let head = String::from_utf8_lossy(head);
        if domain::pan::contains_pan(&head)
            || decoded_pairs_contain_pan(format!("p={head}").as_bytes())
        {
            return Some(true);
        }
        let is_file = head.lines().any(|line| {
            let line = line.to_ascii_lowercase();
            line.starts_with("content-disposition:") && line.contains("filename")
        });
        if !is_file && domain::pan::contains_pan(&String::from_utf8_lossy(content)) {
            return Some(true);
        }
        pos = pos + 2 + end + delimiter.len();
    }
}

/// Refuses state-changing browser requests from another origin (CSRF defence in depth;
/// pages also carry per-session tokens). The API and the webhook take no cookies, so they
/// are exempt.
async fn same_origin_guard(
    State((st, realm)): State<(AppState, Realm)>,
    req: Request,
    next: Next,
) -> Response {
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
        // Each listener accepts only its own origin: the portal never takes a post made by a
        // staff page, nor the other way round.
        let ours = [match realm {
            Realm::Resident => st.cfg.portal_origin.as_str(),
            Realm::Staff => st.cfg.staff_origin.as_str(),
        }];
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

/// The browser's form token: every page's forms carry it, every form post must return it.
/// Before sign-in it is a random value in its own cookie (double submit); after sign-in
/// the session's token is accepted too (pages then carry that one).
#[derive(Debug, Clone)]
pub struct FormToken(pub String);

/// One form cookie per listener: cookies ignore ports, so the two listeners on one host
/// name would otherwise share it.
pub fn form_cookie_name(secure: bool, realm: Realm) -> &'static str {
    match (secure, realm) {
        (true, Realm::Resident) => "__Host-sr_form",
        (false, Realm::Resident) => "sr_form",
        (true, Realm::Staff) => "__Host-sr_staff_form",
        (false, Realm::Staff) => "sr_staff_form",
    }
}

fn plausible_token(t: &str) -> bool {
    t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

fn csrf_refused() -> Response {
    WebError::new(
        StatusCode::FORBIDDEN,
        "csrf_token_invalid",
        "This form has expired or was not sent from our page. Go back, reload the page and try again.",
        Format::Html,
    )
    .into_response()
}

/// Every state-changing browser request carries the form token (CSRF protection on top of
/// the Origin check). Multipart uploads are checked by their handler (session token).
async fn csrf_guard(
    State((st, realm)): State<(AppState, Realm)>,
    mut req: Request,
    next: Next,
) -> Response {
    let name = form_cookie_name(st.cfg.secure_cookies, realm);
    let existing = crate::cookies::get(req.headers(), name).filter(|t| plausible_token(t));
    let token = existing.clone().unwrap_or_else(app::ids::random_token);
    req.extensions_mut().insert(FormToken(token.clone()));
    let path = req.uri().path().to_owned();
    // Forms only ever POST; other methods are not routed for pages (405).
    let unsafe_method = *req.method() == Method::POST;
    // Only the upload routes take multipart bodies (their handlers check the session's
    // token in the form); anywhere else a multipart post is not a form of ours.
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("multipart/form-data"))
        && upload_cap(&req).is_some();
    if unsafe_method && format_for(&path) == Format::Html && !multipart {
        let (parts, body) = req.into_parts();
        let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
            return WebError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("The request body is larger than {} KiB.", MAX_BODY / 1024),
                Format::Html,
            )
            .into_response();
        };
        let sent = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .ok()
            .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v));
        let Some(sent) = sent else {
            return csrf_refused();
        };
        let mut ok = existing
            .as_deref()
            .is_some_and(|t| domain::secret::constant_time_eq(t, &sent));
        if !ok {
            let session_cookie = match realm {
                Realm::Resident => crate::portal::resident_cookie_name(&st),
                Realm::Staff => crate::staff::staff_cookie_name(&st),
            };
            if let Some(tok) = crate::cookies::get(&parts.headers, session_cookie) {
                if let Ok(Some(session)) = st.app.session(realm, &tok).await {
                    ok = domain::secret::constant_time_eq(&session.csrf_token, &sent);
                }
            }
        }
        if !ok {
            return csrf_refused();
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    let mut res = next.run(req).await;
    // Only pages carry forms: no token cookie on assets (publicly cacheable), JSON or
    // health answers, where a shared cache could hand one token to many browsers.
    let is_page = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/html"));
    if existing.is_none() && is_page {
        let cookie = crate::cookies::set(name, &token, "Strict", st.cfg.secure_cookies, None);
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
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
    // A 405's `Allow` (the methods the route has) is added by axum's method router around
    // this layer.
    WebError::new(status, code, message, format_for(&path)).into_response()
}

#[cfg(test)]
mod upload_guard_tests {
    use super::*;

    fn body(file_name: &str, csrf: &str, content: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n");
        b.extend_from_slice(csrf.as_bytes());
        b.extend_from_slice(
            b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"",
        );
        b.extend_from_slice(file_name.as_bytes());
        b.extend_from_slice(b"\"\r\nContent-Type: application/pdf\r\n\r\n");
        b.extend_from_slice(content);
        b.extend_from_slice(b"\r\n--XyZ--\r\n");
        b
    }

    #[test]
    fn scans_text_parts_but_not_file_content() {
        let pan = "4242 4242 4242 4242";
        let scan = |b: &[u8]| multipart_text_carries_pan(b, "XyZ");
        assert_eq!(scan(&body("plan.pdf", "tok", b"%PDF-1.4")), Some(false));
        assert_eq!(scan(&body("plan.pdf", "tok", pan.as_bytes())), Some(false));
        assert_eq!(
            scan(&body(&format!("{pan}.pdf"), "tok", b"%PDF")),
            Some(true)
        );
        assert_eq!(
            scan(&body("4242%204242%204242%204242.pdf", "t", b"x")),
            Some(true)
        );
        assert_eq!(scan(&body("plan.pdf", pan, b"%PDF")), Some(true));
        assert_eq!(scan(b"not multipart"), None);
        assert_eq!(
            scan(b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end"),
            None
        );
    }

    #[test]
    fn boundary_from_content_type() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data; boundary=\"abc\""),
        );
        assert_eq!(multipart_boundary(&h).as_deref(), Some("abc"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(multipart_boundary(&h), None);
    }
}
