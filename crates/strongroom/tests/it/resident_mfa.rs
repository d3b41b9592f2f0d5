//! Resident two-step sign-in (opt-in): turned on from /account/security with a first code
//! (recovery codes shown once), then a right password yields only a challenge
//! (`sr_resident_mfa`) until a code or a recovery code; codes are single use; turning it
//! off needs the password and a current code. Residents without it log in as before.

use crate::harness::*;
use crate::journeys::hidden_value;
use crate::staff::{server_now, totp_code};

const PW: &str = "purple elephants juggle quietly";
const EMAIL: &str = "two.step@example.com";

async fn secret_of(s: &Server, id: &str) -> String {
    let mut c = s.app().store.conn().await.unwrap();
    let stored = store::mfa::get_in(&store::mfa::RESIDENT, &mut c, id)
        .await
        .unwrap()
        .unwrap()
        .totp_secret;
    s.app()
        .config()
        .keys
        .open("resident_mfa.totp_secret", &stored)
        .unwrap()
}

/// The code of the next 30-second step (the server's clock moved on first).
fn next_code(s: &Server, secret: &str) -> String {
    s.clock.advance(time::Duration::seconds(30));
    totp_code(secret, server_now(s))
}

async fn post(
    s: &Server,
    c: &reqwest::Client,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    c.post(format!("{}{path}", s.portal))
        .header("origin", &s.portal)
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn security_csrf(s: &Server, c: &reqwest::Client) -> String {
    let page = c
        .get(format!("{}/account/security", s.portal))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    hidden_value(&page, "csrf")
}

/// The password step on a fresh cookie jar.
async fn password_step(s: &Server) -> (reqwest::Response, reqwest::Client) {
    let c = client();
    let token = form_token(&c, &s.portal).await;
    let res = post(
        s,
        &c,
        "/login",
        &[("email", EMAIL), ("password", PW), ("csrf", token.as_str())],
    )
    .await;
    (res, c)
}

async fn dashboard_status(s: &Server, c: &reqwest::Client) -> (u16, String) {
    let res = c
        .get(format!("{}/dashboard", s.portal))
        .send()
        .await
        .unwrap();
    let loc = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (res.status().as_u16(), loc)
}

async fn post_code(s: &Server, c: &reqwest::Client, code: &str) -> reqwest::Response {
    let token = form_token(c, &s.portal).await;
    post(
        s,
        c,
        "/login/mfa",
        &[("code", code), ("csrf", token.as_str())],
    )
    .await
}

async fn events(s: &Server, id: &str) -> Vec<(String, String, String)> {
    let mut c = s.app().store.conn().await.unwrap();
    sqlx::query_as("SELECT event, outcome, detail FROM audit_log WHERE object = $1 ORDER BY seq")
        .bind(id)
        .fetch_all(&mut *c)
        .await
        .unwrap()
}

#[tokio::test]
async fn resident_turns_on_totp_and_signs_in_with_a_code() {
    let s = server().start().await;
    let (c, _) = crate::authz::resident(&s, EMAIL).await;
    let id = s.resident_id(EMAIL).await;

    // Off by default; turning it on shows a fresh secret and an otpauth URI.
    let csrf = security_csrf(&s, &c).await;
    let page = c
        .get(format!("{}/account/security", s.portal))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Turn on two-step sign-in"), "{page}");
    // A session alone is not enough: the password is asked again.
    let res = post(&s, &c, "/account/mfa/start", &[("csrf", csrf.as_str())]).await;
    assert_eq!(res.status(), 400);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("current password is not correct"));
    let res = post(
        &s,
        &c,
        "/account/mfa/start",
        &[("csrf", csrf.as_str()), ("current_password", PW)],
    )
    .await;
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    let secret = secret_of(&s, &id).await;
    assert!(page.contains("otpauth://totp/"), "{page}");
    assert!(
        page.contains(&crate_grouped(&secret)),
        "secret shown grouped"
    );
    assert!(!s.app().resident_mfa_enabled(&id).await.unwrap());

    // A wrong first code does not turn it on.
    let res = post(
        &s,
        &c,
        "/account/mfa/confirm",
        &[("csrf", csrf.as_str()), ("code", "000000")],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(!s.app().resident_mfa_enabled(&id).await.unwrap());

    // The right one does; ten recovery codes are shown once.
    let code = totp_code(&secret, server_now(&s));
    let res = post(
        &s,
        &c,
        "/account/mfa/confirm",
        &[("csrf", csrf.as_str()), ("code", code.as_str())],
    )
    .await;
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    let recovery: Vec<String> = page
        .split("<code class=\"font-mono-md\">")
        .skip(1)
        .filter_map(|p| p.split('<').next())
        .map(str::to_owned)
        .collect();
    assert_eq!(recovery.len(), 10, "{page}");
    assert!(s.app().resident_mfa_enabled(&id).await.unwrap());

    // Sign out.
    let res = post(&s, &c, "/logout", &[("csrf", csrf.as_str())]).await;
    assert_eq!(res.status(), 303);

    // The password alone gives a challenge cookie, no session.
    let (res, c) = password_step(&s).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login/mfa");
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sr_resident_mfa="))
        .unwrap()
        .to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/login"), "{cookie}");
    assert!(
        !res.headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap_or_default().starts_with("sr_resident=")),
        "no session cookie"
    );
    assert_eq!(dashboard_status(&s, &c).await, (303, "/login".into()));
    let page = c
        .get(format!("{}/login/mfa", s.portal))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Enter your sign-in code"), "{page}");

    // A wrong code: still no session.
    let res = post_code(&s, &c, "123456").await;
    assert_eq!(res.status(), 401);
    assert_eq!(dashboard_status(&s, &c).await.0, 303);

    // The right code: the session.
    let code = next_code(&s, &secret);
    let res = post_code(&s, &c, &code).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/dashboard");
    assert_eq!(dashboard_status(&s, &c).await.0, 200);

    // The same code again (new password step) is refused.
    let (res, c2) = password_step(&s).await;
    assert_eq!(res.status(), 303);
    let res = post_code(&s, &c2, &code).await;
    assert_eq!(res.status(), 401, "replayed code");
    assert_eq!(dashboard_status(&s, &c2).await.0, 303);

    // A recovery code works (any case, with or without dashes) ...
    let res = post_code(&s, &c2, &recovery[0].to_uppercase()).await;
    assert_eq!(res.status(), 303);
    assert_eq!(dashboard_status(&s, &c2).await.0, 200);
    // ... once.
    let (_, c3) = password_step(&s).await;
    let res = post_code(&s, &c3, &recovery[0]).await;
    assert_eq!(res.status(), 401, "used recovery code");
    assert_eq!(dashboard_status(&s, &c3).await.0, 303);

    // Without a session the API of the page refuses too: a resident_login without the
    // second step never yields a session.
    assert!(s
        .app()
        .resident_login(EMAIL, PW, "127.0.0.30")
        .await
        .is_err());

    let ev = events(&s, &id).await;
    let has = |e: &str, o: &str, d: &str| {
        ev.iter()
            .any(|(a, b, c)| a == e && b == o && (d.is_empty() || c == d))
    };
    assert!(has("resident.mfa_enabled", "success", ""), "{ev:?}");
    assert!(has("resident.mfa_enabled", "failure", "mfa"), "{ev:?}");
    assert!(has("resident.login", "failure", "mfa"), "{ev:?}");
    assert!(has("resident.login", "success", "mfa: totp"), "{ev:?}");
    assert!(
        has("resident.login", "success", "mfa: recovery code"),
        "{ev:?}"
    );
    assert!(
        has("resident.recovery_code_used", "success", "9 left"),
        "{ev:?}"
    );
}

fn crate_grouped(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn turning_totp_off_needs_password_and_code() {
    let s = server().start().await;
    let (c, _) = crate::authz::resident(&s, EMAIL).await;
    let id = s.resident_id(EMAIL).await;
    let csrf = security_csrf(&s, &c).await;
    post(
        &s,
        &c,
        "/account/mfa/start",
        &[("csrf", csrf.as_str()), ("current_password", PW)],
    )
    .await;
    let secret = secret_of(&s, &id).await;
    let code = totp_code(&secret, server_now(&s));
    let res = post(
        &s,
        &c,
        "/account/mfa/confirm",
        &[("csrf", csrf.as_str()), ("code", code.as_str())],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(s.app().resident_mfa_enabled(&id).await.unwrap());

    // Wrong password with a right code: still on.
    let code = next_code(&s, &secret);
    let res = post(
        &s,
        &c,
        "/account/mfa/disable",
        &[
            ("csrf", csrf.as_str()),
            ("current_password", "not the password at all"),
            ("code", code.as_str()),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(s.app().resident_mfa_enabled(&id).await.unwrap());
    // Right password with a wrong code: still on.
    let res = post(
        &s,
        &c,
        "/account/mfa/disable",
        &[
            ("csrf", csrf.as_str()),
            ("current_password", PW),
            ("code", "000000"),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(s.app().resident_mfa_enabled(&id).await.unwrap());
    // Both right: off.
    let code = next_code(&s, &secret);
    let res = post(
        &s,
        &c,
        "/account/mfa/disable",
        &[
            ("csrf", csrf.as_str()),
            ("current_password", PW),
            ("code", code.as_str()),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Two-step sign-in is off."));
    assert!(!s.app().resident_mfa_enabled(&id).await.unwrap());

    // And the password alone signs in again.
    let (res, c) = password_step(&s).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/dashboard");
    assert_eq!(dashboard_status(&s, &c).await.0, 200);

    let ev = events(&s, &id).await;
    assert!(ev
        .iter()
        .any(|(e, o, d)| e == "resident.mfa_disabled" && o == "failure" && d == "mfa"));
    assert!(ev
        .iter()
        .any(|(e, o, _)| e == "resident.mfa_disabled" && o == "success"));
}
