//! Every route, tried as the wrong user. The routes are read from the web crate's source,
//! so a route added later without a decision here fails this test until it is classified.

use crate::harness::*;
use app::staff::Role;

/// Routes of one listener, as written in `.route("...")` calls of these source files.
fn routes_in(files: &[std::path::PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for part in text.split(".route(").skip(1) {
            let part = part.trim_start();
            if let Some(rest) = part.strip_prefix('"') {
                if let Some(end) = rest.find('"') {
                    out.push(rest[..end].to_owned());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn web_src(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../web/src")
        .join(rel)
}

fn rs_files(dir: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(web_src(dir))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect()
}

/// Portal routes anyone may use (they hold no one's private data, or are reached by an
/// unguessable id: a quick-pay receipt).
const PORTAL_PUBLIC: &[&str] = &[
    "/",
    "/quick-pay",
    "/quick-pay/pay",
    "/login",
    "/login/mfa",
    "/register",
    "/forgot",
    "/reset",
    "/verify",
    "/logout",
    "/payments/{id}/return",
    "/payments/{id}/cancel",
    "/payments/{id}/receipt",
    "/api/v1/openapi.json",
    "/api/v1/payments",
    "/api/v1/payments/{id}",
    // The city systems' endpoints answer 401/403 without a key of the right scope
    // (tests/it/api_keys.rs).
    "/api/v1/payments/{id}/refunds",
    "/api/v1/postings",
    "/api/v1/bills",
    "/api/v1/quick-pay/lookup",
    "/webhooks/processor",
    "/healthz",
    "/readyz",
    "/assets/{*path}",
    "/.well-known/script-inventory.json",
    "/csp-report",
    // Public by design: a permit's status by number and address (no personal data), a
    // licence certificate's check by its code (tests/it/services.rs).
    "/permit-lookup",
    "/licence-check",
    "/licence-check/{code}",
    // A guest pays a permit's or licence's fees by its number and ZIP code.
    "/pay-fees",
    "/pay-fees/pay",
];

/// Staff routes and the least role each needs (`None`: no sign-in needed).
fn staff_rule(route: &str) -> Option<Option<Role>> {
    Some(match route {
        "/login" | "/login/mfa" | "/logout" | "/healthz" | "/assets/{*path}" => None,
        "/" | "/payments/{id}" | "/profile" | "/profile/password" | "/profile/sessions/end" => {
            Some(Role::Auditor)
        }
        "/profile/passkeys"
        | "/profile/passkeys/new"
        | "/profile/passkeys/remove"
        | "/profile/recovery-codes" => Some(Role::Auditor),
        "/audit" => Some(Role::Auditor),
        "/exceptions" | "/exceptions/{id}" => Some(Role::Auditor),
        "/exceptions/{id}/resolve" => Some(Role::Supervisor),
        "/postings"
        | "/postings/{date}"
        | "/postings/{date}/settlement.csv"
        | "/reconciliation"
        | "/reconciliation/{date}" => Some(Role::Auditor),
        "/postings/{date}/export" | "/reconciliation/run" => Some(Role::Supervisor),
        "/imports" | "/imports/{id}" | "/imports/jobs/{job}" => Some(Role::Supervisor),
        "/settings" | "/webhooks" | "/webhooks/resend" => Some(Role::Supervisor),
        "/settings/webhooks" | "/settings/webhooks/remove" => Some(Role::Administrator),
        "/accounts"
        | "/accounts/{account}"
        | "/accounts/{account}/documents"
        | "/documents/{id}/download"
        | "/outbox"
        | "/outbox/{id}" => Some(Role::Clerk),
        "/payments/{id}/refund" | "/refunds" => Some(Role::Clerk),
        "/refunds/{id}/approve" | "/refunds/{id}/reject" => Some(Role::Supervisor),
        "/admin/sessions"
        | "/admin/sessions/resident"
        | "/admin/sessions/staff"
        | "/admin/api-keys"
        | "/admin/api-keys/revoke" => Some(Role::Administrator),
        // Permits and licences. Inspections also admit the inspector role, which is off
        // the ladder (tests/it/services.rs); saving a type needs an administrator.
        "/permit-reviews" | "/permit-reviews/{id}" | "/permit-plans/{plan}" => Some(Role::Clerk),
        "/licences" | "/service-types" => Some(Role::Clerk),
        "/inspections" | "/inspections/{id}" | "/inspections/capacity" => Some(Role::Supervisor),
        "/licences/{id}/status" => Some(Role::Supervisor),
        _ => return None,
    })
}

fn concrete(route: &str, bill: &str) -> String {
    route
        .replace("{account}", "100001")
        .replace("{bill_id}", bill)
        .replace("{id}", "pay_AAAAAAAAAAAAAAAAAAAAAA")
        .replace("{date}", "2026-11-15")
        .replace("{job}", "0000")
        .replace("{*path}", "app.css")
}

fn refused(status: u16) -> bool {
    matches!(status, 303 | 400 | 401 | 403 | 404 | 405)
}

#[tokio::test]
async fn every_portal_route_refuses_the_wrong_user() {
    let s = server().start().await;
    let mut portal_files = rs_files("portal");
    portal_files.extend([
        web_src("api.rs"),
        web_src("integrity.rs"),
        web_src("assets.rs"),
    ]);
    let routes = routes_in(&portal_files);
    assert!(routes.len() >= 25, "found {} portal routes", routes.len());
    let (owner, owner_csrf) = crate::authz::resident(&s, "owner@example.com").await;
    crate::authz::link(&s, &owner, &owner_csrf, "100001").await;
    let (other, other_csrf) = crate::authz::resident(&s, "other@example.com").await;
    let bill = s.app().bills("100001", 1).await.unwrap().remove(0).id;
    let anon = client();
    let anon_csrf = form_token(&anon, &s.portal).await;
    let mut checked = 0;
    for route in routes
        .iter()
        .filter(|r| !PORTAL_PUBLIC.contains(&r.as_str()))
    {
        let url = format!("{}{}", s.portal, concrete(route, &bill));
        // Nobody signed in: never served.
        let get = anon.get(&url).send().await.unwrap().status().as_u16();
        let post = anon
            .post(&url)
            .header("origin", &s.portal)
            .form(&[("csrf", anon_csrf.as_str())])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!(
            refused(get) && refused(post),
            "{route} signed out: GET {get}, POST {post}"
        );
        // Another resident: never someone else's account or bill.
        if route.contains("{account}") || route.contains("{bill_id}") {
            let get = other.get(&url).send().await.unwrap().status().as_u16();
            let post = other
                .post(&url)
                .header("origin", &s.portal)
                .form(&[("csrf", other_csrf.as_str())])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            assert!(
                refused(get) && refused(post),
                "{route} as another resident: GET {get}, POST {post}"
            );
            assert_eq!(
                owner.get(&url).send().await.unwrap().status(),
                200,
                "{route} for its owner"
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "{checked} protected portal routes");
}

#[tokio::test]
async fn every_staff_route_declares_and_enforces_its_role() {
    let s = server().start().await;
    let mut files = rs_files("staff_pages");
    files.extend(rs_files("staff"));
    let routes = routes_in(&files);
    let unclassified: Vec<_> = routes.iter().filter(|r| staff_rule(r).is_none()).collect();
    assert!(
        unclassified.is_empty(),
        "staff routes with no role decided in this test: {unclassified:?}"
    );
    let pw = "ledger-harbor-quiet-42";
    let mut users = vec![];
    for (name, role) in [
        ("aud1", Role::Auditor),
        ("clerk1", Role::Clerk),
        ("super1", Role::Supervisor),
        ("admin1", Role::Administrator),
    ] {
        s.app().create_staff(name, name, pw, role).await.unwrap();
        let c = client();
        let res = crate::staff::staff_login_full(&s, &c, name, pw).await;
        assert!(
            res.status().is_success() || res.status().is_redirection(),
            "{name} signs in"
        );
        // Signed in, pages carry the session's token (the logout form in the navigation).
        let page = c
            .get(format!("{}/", s.staff))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let token = crate::journeys::hidden_value(&page, "csrf");
        users.push((role, c, token));
    }
    let anon = client();
    let anon_csrf = form_token(&anon, &s.staff).await;
    let bill = s.app().bills("100001", 1).await.unwrap().remove(0).id;
    for route in &routes {
        let Some(Some(need)) = staff_rule(route) else {
            continue;
        };
        let url = format!("{}{}", s.staff, concrete(route, &bill));
        let get = anon.get(&url).send().await.unwrap().status().as_u16();
        let post = anon
            .post(&url)
            .header("origin", &s.staff)
            .form(&[("csrf", anon_csrf.as_str())])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!(
            refused(get) && refused(post),
            "{route} signed out: GET {get}, POST {post}"
        );
        for (role, c, token) in &users {
            // The audit log is read by auditors and administrators only (PCI DSS 10.3.1).
            let allowed = if *route == "/audit" {
                matches!(role, Role::Auditor | Role::Administrator)
            } else {
                *role >= need
            };
            if allowed {
                continue;
            }
            let get = c.get(&url).send().await.unwrap().status().as_u16();
            let post = c
                .post(&url)
                .header("origin", &s.staff)
                .form(&[("csrf", token.as_str())])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            assert!(
                (403..=405).contains(&get) && (403..=405).contains(&post),
                "{route} as {role:?} (needs {need:?}): GET {get}, POST {post}"
            );
        }
    }
}
