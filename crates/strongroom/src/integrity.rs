//! The payment-page tamper check (PCI DSS 11.6.1): fetches the portal's payment pages, its
//! script inventory and its scripts, and compares them with what THIS build computes
//! in-process (never with what the server claims), so that a server, proxy or CDN that
//! injects a script, drops an SRI attribute or weakens the CSP is noticed.
//!
//! Used by `strongroom integrity check URL` and by the server's scheduled self-check.

use base64::Engine;
use sha2::{Digest, Sha384};
use std::collections::BTreeMap;
use std::time::Duration;
use web::integrity::{Manifest, INVENTORY_PATH};

/// What the check found.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Checks that matched.
    pub passed: Vec<String>,
    /// Differences from the build: each one is a problem.
    pub findings: Vec<String>,
    /// Remarks that are not problems (how the expectation was formed).
    pub notes: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }

    fn pass(&mut self, s: impl Into<String>) {
        self.passed.push(s.into());
    }

    fn fail(&mut self, s: impl Into<String>) {
        self.findings.push(s.into());
    }

    /// One line per check, findings marked `FAIL`.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(self.notes.iter().map(|n| format!("note  {n}")));
        out.extend(self.passed.iter().map(|p| format!("ok    {p}")));
        out.extend(self.findings.iter().map(|f| format!("FAIL  {f}")));
        out
    }

    /// A one-paragraph summary (for the audit log).
    pub fn summary(&self, portal: &str) -> String {
        if self.ok() {
            format!("{portal}: all {} checks match the build", self.passed.len())
        } else {
            format!(
                "{portal}: {} finding(s): {}",
                self.findings.len(),
                self.findings.join("; ")
            )
        }
    }
}

fn sri(bytes: &[u8]) -> String {
    format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha384::digest(bytes))
    )
}

fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .user_agent(format!(
            "strongroom-integrity-check/{}",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
}

/// The origins after `'self'` in a CSP's `form-action` directive.
fn form_action_origin(csp: &str) -> Option<String> {
    csp.split(';')
        .map(str::trim)
        .find_map(|d| d.strip_prefix("form-action "))
        .map(|d| {
            d.split_whitespace()
                .filter(|t| *t != "'self'")
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|o| !o.is_empty())
}

/// Checks the portal at `portal` (`https://pay.city.gov`) against this build.
/// `processor_origin` pins the payment processor's origin allowed in `form-action`; without
/// it, the origin is read from the server's inventory and the report says so.
pub async fn check(portal: &str, processor_origin: Option<&str>) -> Report {
    let mut r = Report::default();
    let portal = portal.trim_end_matches('/');
    let base = match reqwest::Url::parse(portal) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
        _ => {
            r.fail(format!("{portal} is not an http(s) URL"));
            return r;
        }
    };
    let http = match client() {
        Ok(c) => c,
        Err(e) => {
            r.fail(format!("cannot build an HTTP client: {e}"));
            return r;
        }
    };

    // The inventory the server serves: compared with the build's, never trusted.
    let served: Option<Manifest> = match fetch(&http, &format!("{portal}{INVENTORY_PATH}")).await {
        Ok((200, _, body)) => match serde_json::from_slice(&body) {
            Ok(m) => Some(m),
            Err(e) => {
                r.fail(format!("{INVENTORY_PATH} is not a script inventory: {e}"));
                None
            }
        },
        Ok((status, _, _)) => {
            r.fail(format!("{INVENTORY_PATH} answered {status}"));
            None
        }
        Err(e) => {
            r.fail(format!("cannot fetch {INVENTORY_PATH}: {e}"));
            None
        }
    };

    let processor_origin = match processor_origin {
        Some(o) => o.trim_end_matches('/').to_owned(),
        None => {
            let claimed = served
                .as_ref()
                .and_then(|m| m.pages.first())
                .and_then(|p| form_action_origin(&p.csp));
            match claimed {
                Some(o) => {
                    r.notes.push(format!(
                        "processor origin {o} taken from the server's inventory; pin it with --processor-origin"
                    ));
                    o
                }
                None => {
                    r.fail("cannot tell the processor origin: pass --processor-origin");
                    String::new()
                }
            }
        }
    };
    let expected = web::integrity::manifest(&processor_origin);

    if let Some(served) = &served {
        compare_inventory(&mut r, served, &expected);
    }

    // Every script of the build, fetched and hashed.
    let mut script_bytes_ok: BTreeMap<String, bool> = BTreeMap::new();
    for s in &expected.scripts {
        let ok = match fetch(&http, &format!("{portal}{}", s.path)).await {
            Ok((200, _, body)) => {
                let got = sri(&body);
                if got == s.sha384 {
                    r.pass(format!("{} hashes to the build's {}", s.path, s.sha384));
                    true
                } else {
                    r.fail(format!(
                        "{} served bytes hash to {got}, the build has {}",
                        s.path, s.sha384
                    ));
                    false
                }
            }
            Ok((status, _, _)) => {
                r.fail(format!("{} answered {status}", s.path));
                false
            }
            Err(e) => {
                r.fail(format!("cannot fetch {}: {e}", s.path));
                false
            }
        };
        script_bytes_ok.insert(s.path.clone(), ok);
    }

    for page in &expected.pages {
        let url = format!("{portal}{}", page.path);
        match fetch(&http, &url).await {
            Ok((200, headers, body)) => {
                check_headers(&mut r, &page.path, &headers, &page.csp, base.scheme());
                let html = String::from_utf8_lossy(&body);
                check_scripts(&mut r, &page.path, &base, &html, &expected);
            }
            Ok((status, _, _)) => r.fail(format!("page {} answered {status}", page.path)),
            Err(e) => r.fail(format!("cannot fetch page {}: {e}", page.path)),
        }
    }
    r
}

async fn fetch(
    http: &reqwest::Client,
    url: &str,
) -> reqwest::Result<(u16, reqwest::header::HeaderMap, Vec<u8>)> {
    let res = http.get(url).send().await?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.bytes().await?.to_vec();
    Ok((status, headers, body))
}

fn compare_inventory(r: &mut Report, served: &Manifest, expected: &Manifest) {
    if served.generated_by == expected.generated_by {
        r.pass(format!("inventory generated by {}", expected.generated_by));
    } else {
        r.fail(format!(
            "inventory generated by {:?}, this check is {:?}",
            served.generated_by, expected.generated_by
        ));
    }
    for s in &expected.scripts {
        match served.scripts.iter().find(|x| x.path == s.path) {
            Some(x) if x == s => r.pass(format!("inventory lists {} as built", s.path)),
            Some(x) => r.fail(format!(
                "inventory entry for {} differs from the build (sha384 {}, reason {:?})",
                s.path, x.sha384, x.reason
            )),
            None => r.fail(format!("inventory does not list {}", s.path)),
        }
    }
    for x in &served.scripts {
        if !expected.scripts.iter().any(|s| s.path == x.path) {
            r.fail(format!(
                "inventory lists a script this build does not have: {}",
                x.path
            ));
        }
    }
    for p in &expected.pages {
        match served.pages.iter().find(|x| x.path == p.path) {
            Some(x) if x.csp == p.csp => {}
            Some(x) => r.fail(format!(
                "inventory's CSP for page {} differs from the build: {:?}",
                p.path, x.csp
            )),
            None => r.fail(format!("inventory does not list page {}", p.path)),
        }
    }
}

fn check_headers(
    r: &mut Report,
    page: &str,
    headers: &reqwest::header::HeaderMap,
    csp: &str,
    scheme: &str,
) {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    let served_csp = values("content-security-policy");
    match served_csp.as_slice() {
        [one] if one == csp => r.pass(format!("page {page}: Content-Security-Policy as built")),
        [] => r.fail(format!("page {page}: no Content-Security-Policy header")),
        [one] => r.fail(format!(
            "page {page}: Content-Security-Policy differs from the build: served {one:?}, expected {csp:?}"
        )),
        many => r.fail(format!(
            "page {page}: {} Content-Security-Policy headers, expected one: {many:?}",
            many.len()
        )),
    }
    let mut expect = |name: &str, want: &str| {
        let got = values(name);
        if got.len() == 1 && got[0] == want {
            r.pass(format!("page {page}: {name}: {want}"));
        } else {
            r.fail(format!("page {page}: {name} is {got:?}, expected {want:?}"));
        }
    };
    for (name, value) in web::security::FIXED_HEADERS {
        expect(name, value);
    }
    expect("reporting-endpoints", web::security::REPORTING_ENDPOINTS);
    expect("cache-control", "no-store");
    if scheme == "https" {
        let hsts = values("strict-transport-security");
        if hsts.len() == 1 && hsts[0].starts_with("max-age=") && !hsts[0].starts_with("max-age=0") {
            r.pass(format!("page {page}: Strict-Transport-Security"));
        } else {
            r.fail(format!(
                "page {page}: Strict-Transport-Security is {hsts:?} on an https portal"
            ));
        }
    }
}

fn check_scripts(r: &mut Report, page: &str, base: &reqwest::Url, html: &str, m: &Manifest) {
    let mut scripts = 0;
    for tag in scan_tags(html) {
        for (name, value) in &tag.attrs {
            if name.starts_with("on") {
                r.fail(format!(
                    "page {page}: inline event handler {name}= on <{}>",
                    tag.name
                ));
            }
            if matches!(name.as_str(), "href" | "src" | "action" | "formaction")
                && value
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("javascript:")
            {
                r.fail(format!(
                    "page {page}: javascript: URL in {name}= on <{}>",
                    tag.name
                ));
            }
        }
        if tag.name != "script" {
            continue;
        }
        scripts += 1;
        let Some(src) = tag.attr("src") else {
            let len = tag.content.as_deref().unwrap_or_default().trim().len();
            r.fail(format!(
                "page {page}: inline <script> ({len} characters): the build has no inline script"
            ));
            continue;
        };
        let resolved = base.join(src).ok();
        let path = resolved
            .as_ref()
            .filter(|u| u.origin() == base.origin() && u.query().is_none())
            .map(|u| u.path().to_owned());
        let Some(entry) = path
            .as_ref()
            .and_then(|p| m.scripts.iter().find(|s| &s.path == p))
        else {
            r.fail(format!(
                "page {page}: unexpected script {src:?}: not in the build's inventory"
            ));
            continue;
        };
        if tag.content.as_deref().is_some_and(|c| !c.trim().is_empty()) {
            r.fail(format!(
                "page {page}: <script src={src:?}> also carries inline code"
            ));
        }
        match tag.attr("integrity") {
            Some(i) if i == entry.sha384 => {
                r.pass(format!("page {page}: {src} integrity matches the build"))
            }
            Some(i) => r.fail(format!(
                "page {page}: integrity of {src} is {i:?}, the build has {:?}",
                entry.sha384
            )),
            None => r.fail(format!("page {page}: {src} has no integrity attribute")),
        }
    }
    if scripts == 0 && !m.scripts.is_empty() {
        r.notes.push(format!("page {page} loads no script"));
    }
}

/// A start tag as the check sees it.
struct Tag {
    name: String,
    attrs: Vec<(String, String)>,
    /// The text up to `</script>`, for scripts.
    content: Option<String>,
}

impl Tag {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(rest.get(..i).unwrap_or_default());
        let after = rest.get(i + 1..).unwrap_or_default();
        let decoded = after.find(';').and_then(|end| {
            let ent = after.get(..end)?;
            let c = match ent {
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "lt" => Some('<'),
                "gt" => Some('>'),
                _ => {
                    let n = if let Some(h) = ent.strip_prefix("#x").or(ent.strip_prefix("#X")) {
                        u32::from_str_radix(h, 16).ok()
                    } else {
                        ent.strip_prefix('#').and_then(|d| d.parse().ok())
                    };
                    n.and_then(char::from_u32)
                }
            }?;
            Some((c, end + 1))
        });
        match decoded {
            Some((c, used)) => {
                out.push(c);
                rest = after.get(used..).unwrap_or_default();
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Start tags of an HTML document with their attributes (enough to find every script and
/// inline handler; comments and end tags are skipped).
fn scan_tags(html: &str) -> Vec<Tag> {
    let bytes = html.as_bytes();
    let lower = html.to_ascii_lowercase();
    let find_from = |hay: &str, from: usize, needle: &str| -> usize {
        hay.get(from..)
            .and_then(|s| s.find(needle))
            .map_or(hay.len(), |i| from + i)
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let lt = find_from(html, i, "<");
        if lt >= bytes.len() {
            break;
        }
        let rest = html.get(lt + 1..).unwrap_or_default();
        if rest.starts_with("!--") {
            i = (find_from(html, lt + 4, "-->") + 3).min(bytes.len());
            continue;
        }
        if rest.starts_with(['!', '/', '?']) {
            i = (find_from(html, lt, ">") + 1).min(bytes.len());
            continue;
        }
        let name_len = rest
            .bytes()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == b'-')
            .count();
        if name_len == 0 {
            i = lt + 1;
            continue;
        }
        let name = rest
            .get(..name_len)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let (attrs, end) = parse_attrs(html, lt + 1 + name_len);
        let mut content = None;
        i = end;
        if name == "script" {
            let close = find_from(&lower, end, "</script");
            content = Some(html.get(end..close).unwrap_or_default().to_owned());
            i = (find_from(html, close, ">") + 1).min(bytes.len());
        }
        out.push(Tag {
            name,
            attrs,
            content,
        });
    }
    out
}

/// Attributes from `pos` to the end of the tag; returns them and the index after `>`.
fn parse_attrs(html: &str, mut pos: usize) -> (Vec<(String, String)>, usize) {
    let b = html.as_bytes();
    let at = |p: usize| b.get(p).copied();
    let mut attrs = Vec::new();
    loop {
        while at(pos).is_some_and(|c| c.is_ascii_whitespace() || c == b'/') {
            pos += 1;
        }
        match at(pos) {
            None => return (attrs, b.len()),
            Some(b'>') => return (attrs, pos + 1),
            _ => {}
        }
        let start = pos;
        while at(pos).is_some_and(|c| !c.is_ascii_whitespace() && !matches!(c, b'=' | b'>' | b'/'))
        {
            pos += 1;
        }
        let name = html
            .get(start..pos)
            .unwrap_or_default()
            .to_ascii_lowercase();
        while at(pos).is_some_and(|c| c.is_ascii_whitespace()) {
            pos += 1;
        }
        let mut value = String::new();
        if at(pos) == Some(b'=') {
            pos += 1;
            while at(pos).is_some_and(|c| c.is_ascii_whitespace()) {
                pos += 1;
            }
            match at(pos) {
                Some(q @ (b'"' | b'\'')) => {
                    let vs = pos + 1;
                    pos = vs;
                    while at(pos).is_some_and(|c| c != q) {
                        pos += 1;
                    }
                    value = html.get(vs..pos).unwrap_or_default().to_owned();
                    if at(pos).is_some() {
                        pos += 1;
                    }
                }
                _ => {
                    let vs = pos;
                    while at(pos).is_some_and(|c| !c.is_ascii_whitespace() && c != b'>') {
                        pos += 1;
                    }
                    value = html.get(vs..pos).unwrap_or_default().to_owned();
                }
            }
        }
        if name.is_empty() {
            // A stray character: step over it.
            pos += 1;
            continue;
        }
        attrs.push((name, decode_entities(&value)));
    }
}

/// The server's scheduled self-check: checks the portal as residents reach it and writes
/// the outcome to the audit log (`integrity.check`).
pub async fn scheduled_check(
    app: &app::App,
    portal: &str,
    processor_origin: &str,
) -> anyhow::Result<Report> {
    let report = check(portal, Some(processor_origin)).await;
    if report.ok() {
        tracing::info!(
            checks = report.passed.len(),
            "payment page integrity check passed"
        );
    } else {
        for f in &report.findings {
            tracing::error!(finding = %f, "payment page integrity check failed");
        }
    }
    app.sealing_audit(app.record_integrity_check(report.ok(), &report.summary(portal)))
        .await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_scripts_and_handlers() {
        let html = r#"<!DOCTYPE html><html><!-- <script>no</script> --><body onload="x()">
<a href='javascript:alert(1)'>x</a>
<script src="/assets/a.js" integrity="sha384-AB&#43;c/=" crossorigin></script>
<SCRIPT>alert(1)</SCRIPT >
<script type=module src=/b.js></script></body></html>"#;
        let tags = scan_tags(html);
        let scripts: Vec<&Tag> = tags.iter().filter(|t| t.name == "script").collect();
        assert_eq!(scripts.len(), 3);
        assert_eq!(scripts[0].attr("src"), Some("/assets/a.js"));
        assert_eq!(scripts[0].attr("integrity"), Some("sha384-AB+c/="));
        assert_eq!(scripts[0].attr("crossorigin"), Some(""));
        assert_eq!(scripts[1].attr("src"), None);
        assert_eq!(scripts[1].content.as_deref(), Some("alert(1)"));
        assert_eq!(scripts[2].attr("src"), Some("/b.js"));
        let body = tags.iter().find(|t| t.name == "body");
        assert_eq!(body.and_then(|t| t.attr("onload")), Some("x()"));
    }

    #[test]
    fn finds_the_processor_origin() {
        let csp = web::security::expected_csp("https://checkout.example");
        assert_eq!(
            form_action_origin(&csp).as_deref(),
            Some("https://checkout.example")
        );
    }

    #[test]
    fn decodes_entities() {
        assert_eq!(decode_entities("a&amp;b&#x2F;&#47;&bogus"), "a&b//&bogus");
    }
}
