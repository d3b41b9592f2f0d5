//! The staff back office: its own listener and cookie, login with a TOTP second factor
//! and lockout, search, the payment timeline, accounts, the outbox.

use crate::harness::*;
use totp_rs::{Algorithm, Secret, TOTP};

const PW: &str = "ledger-clerk-harbor-42";

/// The password step alone (answers 303 to `/login/mfa` when the password is right).
pub(crate) async fn staff_login(
    s: &Server,
    client: &reqwest::Client,
    user: &str,
    pw: &str,
) -> reqwest::Response {
    let token = crate::harness::form_token(client, &s.staff).await;
    client
        .post(format!("{}/login", s.staff))
        .header("origin", &s.staff)
        .form(&[
            ("username", user),
            ("password", pw),
            ("csrf", token.as_str()),
        ])
        .send()
        .await
        .unwrap()
}

/// The server's clock, in Unix seconds (it does not advance by itself).
pub(crate) fn server_now(s: &Server) -> i64 {
    app::Clock::now(&*s.clock).unix_timestamp()
}

/// The TOTP code of `secret` (base32) at Unix time `at`, computed with totp-rs
/// independently of the server (SHA-1, 6 digits, 30-second steps).
pub(crate) fn totp_code(secret: &str, at: i64) -> String {
    let bytes = Secret::Encoded(secret.to_owned()).to_bytes().unwrap();
    TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes, None, "test".into())
        .unwrap()
        .generate(u64::try_from(at).unwrap())
}

/// The member's stored TOTP state (secret, last used step).
async fn mfa_state(s: &Server, user: &str) -> store::mfa::MfaRow {
    let id = s.app().staff_by_username(user).await.unwrap().unwrap().id;
    let mut c = s.app().store.conn().await.unwrap();
    let mut row = store::mfa::get(&mut c, &id).await.unwrap().unwrap();
    // Sealed at rest (AES-256-GCM): the stored value is not the secret.
    assert!(
        row.totp_secret.starts_with("enc:v1:"),
        "{}",
        row.totp_secret
    );
    row.totp_secret = s
        .app()
        .config()
        .keys
        .open("staff_mfa.totp_secret", &row.totp_secret)
        .unwrap();
    row
}

/// A code the server accepts now for `user`: when the current step's code was used
/// already, the server's clock is moved on 30 seconds first.
pub(crate) async fn fresh_code(s: &Server, user: &str) -> String {
    let m = mfa_state(s, user).await;
    if m.last_used_step >= server_now(s).div_euclid(30) {
        s.clock.advance(time::Duration::seconds(30));
    }
    totp_code(&m.totp_secret, server_now(s))
}

/// Posts a code to the second step.
async fn post_code(s: &Server, client: &reqwest::Client, code: &str) -> reqwest::Response {
    let token = crate::harness::form_token(client, &s.staff).await;
    client
        .post(format!("{}/login/mfa", s.staff))
        .header("origin", &s.staff)
        .form(&[("code", code), ("csrf", token.as_str())])
        .send()
        .await
        .unwrap()
}

/// Posts the enrollment form: the administrator's one-time code and the first TOTP code.
pub(crate) async fn post_enroll(
    s: &Server,
    client: &reqwest::Client,
    enrollment_code: &str,
    code: &str,
) -> reqwest::Response {
    let token = crate::harness::form_token(client, &s.staff).await;
    client
        .post(format!("{}/login/mfa", s.staff))
        .header("origin", &s.staff)
        .form(&[
            ("enrollment_code", enrollment_code),
            ("code", code),
            ("csrf", token.as_str()),
        ])
        .send()
        .await
        .unwrap()
}

/// An enrollment code for `user`, as an administrator would issue it.
pub(crate) async fn enrollment_code(s: &Server, user: &str) -> String {
    s.app()
        .reset_staff_second_factors(None, user, "-")
        .await
        .unwrap()
        .code
}

/// A full staff sign-in: password, then enrollment (first time: the secret is read from the
/// enrollment page) or a TOTP code. Returns the answer to the code form: 303 to `/`, or
/// (right after enrollment) 200 with the recovery codes; or the password step's answer
/// when that is not a 303.
pub(crate) async fn staff_login_full(
    s: &Server,
    client: &reqwest::Client,
    user: &str,
    pw: &str,
) -> reqwest::Response {
    let res = staff_login(s, client, user, pw).await;
    if res.status() != 303 {
        return res;
    }
    assert_eq!(res.headers()["location"], "/login/mfa");
    let page = client
        .get(format!("{}/login/mfa", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let code = if page.contains("id=\"totp-secret\"") {
        let secret: String = page
            .split("id=\"totp-secret\">")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(
            secret,
            mfa_state(s, user).await.totp_secret,
            "page shows the secret"
        );
        let enrollment = enrollment_code(s, user).await;
        return post_enroll(s, client, &enrollment, &totp_code(&secret, server_now(s))).await;
    } else {
        assert!(page.contains("Enter your sign-in code"), "{page}");
        fresh_code(s, user).await
    };
    post_code(s, client, &code).await
}

/// Did this answer to the code form sign the browser in?
pub(crate) fn signed_in(res: &reqwest::Response) -> bool {
    let ok = res.status() == 200
        || (res.status() == 303 && res.headers().get("location").is_some_and(|l| l == "/"));
    ok && set_cookie(res, "sr_staff").is_some_and(|v| !v.is_empty())
}

/// The value a response sets for cookie `name`.
fn set_cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.split(';')
                .next()
                .and_then(|kv| kv.split_once('='))
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
        })
}

/// (event, outcome, detail) of the audit entries about `object`, oldest first.
pub(crate) async fn audit_of(s: &Server, object: &str) -> Vec<(String, String, String)> {
    let mut c = s.app().store.conn().await.unwrap();
    sqlx::query_as("SELECT event, outcome, detail FROM audit_log WHERE object = $1 ORDER BY seq")
        .bind(object)
        .fetch_all(&mut *c)
        .await
        .unwrap()
}

#[tokio::test]
async fn staff_search_and_timeline() {
    let s = server().start().await;
    s.app()
        .create_staff("clerk1", "Clerk One", PW, app::staff::Role::Clerk)
        .await
        .unwrap();
    let id = s.pay_ok("100001", "93301", 2500, "staff-1").await;
    let p = s.app().payment(&id).await.unwrap();
    let staff = client();
    // Not signed in: to the login page.
    let res = staff.get(format!("{}/", s.staff)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let res = staff_login_full(&s, &staff, "clerk1", PW).await;
    assert!(signed_in(&res), "{}", res.status());
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("sr_staff=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    for q in [
        p.confirmation_number.as_str(),
        "100001",
        "payer@example.com",
        &p.confirmation_number.to_lowercase(),
    ] {
        let html = staff
            .get(format!("{}/?q={}", s.staff, q))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains(&p.confirmation_number), "search by {q}");
    }
    let html = staff
        .get(format!("{}/payments/{id}", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for step in ["created", "checkout", "succeeded", "posted"] {
        assert!(html.to_lowercase().contains(step), "timeline shows {step}");
    }
    assert!(html.contains("4242"), "last four");
    let res = staff
        .get(format!("{}/accounts/100001", s.staff))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let outbox = staff
        .get(format!("{}/outbox", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(outbox.contains(&format!("Payment receipt {}", p.confirmation_number)));
    // The staff cookie is worthless on the portal, and the portal's pages do not exist here.
    assert_eq!(
        staff
            .get(format!("{}/dashboard", s.portal))
            .send()
            .await
            .unwrap()
            .status(),
        303,
        "portal wants its own login"
    );
    assert_eq!(
        staff
            .get(format!("{}/quick-pay", s.staff))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Bad ids are 404s, not errors.
    for path in [
        "/payments/pay_nope",
        "/payments/%00",
        "/accounts/abc",
        "/outbox/eml_nope",
    ] {
        let st = staff
            .get(format!("{}{path}", s.staff))
            .send()
            .await
            .unwrap()
            .status();
        assert!(st == 404 || st == 400, "{path}: {st}");
    }
}

#[tokio::test]
async fn staff_lockout_and_generic_failures() {
    let s = server().start().await;
    s.app()
        .create_staff("clerk2", "Clerk Two", PW, app::staff::Role::Clerk)
        .await
        .unwrap();
    let c = client();
    let unknown = staff_login(&s, &c, "nobody", PW).await;
    let wrong = staff_login(&s, &c, "clerk2", "wrong password here").await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(wrong.status(), 401);
    for _ in 0..9 {
        assert_eq!(
            staff_login(&s, &c, "clerk2", "wrong password here")
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        staff_login(&s, &c, "clerk2", PW).await.status(),
        423,
        "locked after 10 failures, even with the right password"
    );
    s.clock.advance(time::Duration::minutes(31));
    assert!(
        signed_in(&staff_login_full(&s, &c, "clerk2", PW).await),
        "unlocked after 30 minutes"
    );
}

#[tokio::test]
async fn staff_roles_and_logout() {
    let s = server().start().await;
    s.app()
        .create_staff("auditor1", "Auditor", PW, app::staff::Role::Auditor)
        .await
        .unwrap();
    let c = client();
    assert!(signed_in(&staff_login_full(&s, &c, "auditor1", PW).await));
    assert_eq!(
        c.get(format!("{}/", s.staff))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("{}/outbox", s.staff))
            .send()
            .await
            .unwrap()
            .status(),
        403,
        "auditors do not read residents' email"
    );
    let page = c
        .get(format!("{}/", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = crate::journeys::hidden_value(&page, "csrf");
    let res = c
        .post(format!("{}/logout", s.staff))
        .header("origin", &s.staff)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = c
        .post(format!("{}/logout", s.staff))
        .header("origin", &s.staff)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        c.get(format!("{}/", s.staff))
            .send()
            .await
            .unwrap()
            .status(),
        303,
        "session ended server-side"
    );
}

#[tokio::test]
async fn outbox_hides_single_use_links_outside_demo_mode() {
    let s = server().smtp().start().await;
    s.app()
        .create_staff("admin1", "Admin", PW, app::staff::Role::Administrator)
        .await
        .unwrap();
    let res = s
        .post_form(
            "/register",
            &[
                ("email", "r@example.com"),
                ("password", "purple elephants juggle quietly"),
            ],
        )
        .await;
    assert!(res.status().is_success() || res.status().is_redirection());
    let mail = s.mail.as_ref().unwrap().wait_for("/verify?token=").await;
    assert!(
        mail.contains("/verify?token="),
        "the resident gets the link"
    );
    let email = s.app().emails_to("r@example.com").await.unwrap().remove(0);
    let c = client();
    assert!(signed_in(&staff_login_full(&s, &c, "admin1", PW).await));
    let html = c
        .get(format!("{}/outbox/{}", s.staff, email.id))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("token="), "staff never see the link");
}

/// A code that is not the member's code for any step the server would accept now.
fn wrong_code(secret: &str, now: i64) -> String {
    let valid: Vec<String> = [-30, 0, 30]
        .iter()
        .map(|d| totp_code(secret, now + d))
        .collect();
    (0..)
        .map(|n| format!("{:06}", 123_456 + n))
        .find(|c| !valid.contains(c))
        .unwrap()
}

#[tokio::test]
async fn staff_mfa_enrollment_then_code_login_and_no_replay() {
    let s = server().start().await;
    let user = s
        .app()
        .create_staff("clerk3", "Clerk Three", PW, app::staff::Role::Clerk)
        .await
        .unwrap();
    let c = client();
    // The right password: no session, a challenge cookie for /login only.
    let res = staff_login(&s, &c, "clerk3", PW).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login/mfa");
    assert!(set_cookie(&res, "sr_staff").is_none(), "no session yet");
    let mfa_cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("sr_staff_mfa="))
        .unwrap();
    for attr in ["Path=/login", "HttpOnly", "SameSite=Strict", "Max-Age=300"] {
        assert!(mfa_cookie.contains(attr), "{mfa_cookie}");
    }
    assert_eq!(
        c.get(format!("{}/", s.staff))
            .send()
            .await
            .unwrap()
            .status(),
        303
    );
    // First login: the enrollment page, with the secret for manual entry and the URI.
    let page = c
        .get(format!("{}/login/mfa", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Set up two-step sign-in"), "{page}");
    assert_eq!(page.matches("<h1").count(), 1);
    assert!(
        page.contains("autocomplete=\"one-time-code\"") && page.contains("inputmode=\"numeric\"")
    );
    let secret = mfa_state(&s, "clerk3").await.totp_secret;
    assert_eq!(secret.len(), 32, "160 bits");
    let grouped: Vec<String> = secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    assert!(
        page.contains(&grouped.join(" ")),
        "secret in groups of four"
    );
    assert!(page.contains(&format!(
        "otpauth://totp/City%20of%20Testville:clerk3?secret={secret}"
    )));
    assert!(page.contains("Enrollment code"), "{page}");
    // The administrator's one-time enrollment code is needed too: knowing the password
    // (and so seeing the secret) first is not enough.
    let res = post_code(&s, &c, &totp_code(&secret, server_now(&s))).await;
    assert_eq!(res.status(), 401, "no enrollment code issued");
    let enrollment = enrollment_code(&s, "clerk3").await;
    let res = post_enroll(
        &s,
        &c,
        "abcd-efgh-jkmn",
        &totp_code(&secret, server_now(&s)),
    )
    .await;
    assert_eq!(res.status(), 401, "a wrong enrollment code");
    assert!(res.text().await.unwrap().contains("enrollment code"));
    // A wrong app code is refused (and counted); the right pair enrolls and signs in.
    let res = post_enroll(&s, &c, &enrollment, &wrong_code(&secret, server_now(&s))).await;
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().contains("not correct"));
    // The wrong tries above used up no time step: the current code still works.
    let now = server_now(&s);
    let res = post_enroll(&s, &c, &enrollment, &totp_code(&secret, now)).await;
    assert!(signed_in(&res));
    assert_eq!(res.status(), 200, "recovery codes shown once");
    let html = res.text().await.unwrap();
    assert!(html.contains("Save your recovery codes"));
    assert_eq!(
        html.matches("<li><code class=\"font-mono-md\">").count(),
        10
    );
    assert_eq!(
        c.get(format!("{}/", s.staff))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let events = audit_of(&s, &user.id).await;
    let has = |e: &str, o: &str, d: &str| {
        events
            .iter()
            .any(|(ev, out, det)| ev == e && out == o && det.contains(d))
    };
    assert!(
        has("staff.mfa_enrolled", "success", "recovery codes"),
        "{events:?}"
    );
    assert!(has("staff.login", "failure", "mfa"), "{events:?}");
    assert!(
        has("staff.login", "failure", "mfa: enrollment code"),
        "{events:?}"
    );
    assert!(has("staff.mfa_reset", "success", "enrollment code issued"));
    assert!(has("staff.login", "success", "totp"), "{events:?}");
    assert_eq!(
        events
            .iter()
            .filter(|(e, o, _)| e == "staff.login" && o == "success")
            .count(),
        1,
        "the password step is not a login"
    );
    // Signing in again: the code form, not enrollment. The code just used is refused.
    let c2 = client();
    assert_eq!(staff_login(&s, &c2, "clerk3", PW).await.status(), 303);
    let page = c2
        .get(format!("{}/login/mfa", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Enter your sign-in code") && !page.contains(&secret));
    let res = post_code(&s, &c2, &totp_code(&secret, now)).await;
    assert_eq!(res.status(), 401, "a code works once");
    // So is the previous step's code, once a later one was used.
    let res = post_code(&s, &c2, &totp_code(&secret, now - 30)).await;
    assert_eq!(res.status(), 401, "no going back");
    // The next step's code works.
    s.clock.advance(time::Duration::seconds(30));
    let res = post_code(&s, &c2, &totp_code(&secret, server_now(&s))).await;
    assert_eq!(res.status(), 303);
    assert!(signed_in(&res));
    assert_eq!(
        c2.get(format!("{}/", s.staff))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn staff_mfa_wrong_codes_end_the_challenge_and_count_toward_lockout() {
    let s = server().start().await;
    s.app()
        .create_staff("clerk4", "Clerk Four", PW, app::staff::Role::Clerk)
        .await
        .unwrap();
    assert!(signed_in(
        &staff_login_full(&s, &client(), "clerk4", PW).await
    ));
    let secret = mfa_state(&s, "clerk4").await.totp_secret;
    let c = client();
    for round in 0..2 {
        let res = staff_login(&s, &c, "clerk4", PW).await;
        assert_eq!(res.status(), 303);
        let token = set_cookie(&res, "sr_staff_mfa").unwrap();
        for attempt in 1..=5 {
            let res = post_code(&s, &c, &wrong_code(&secret, server_now(&s))).await;
            assert_eq!(res.status(), 401);
            let html = res.text().await.unwrap();
            if attempt < 5 {
                assert!(
                    html.contains("Enter your sign-in code"),
                    "{round}/{attempt}"
                );
            } else {
                assert!(
                    html.contains("Staff sign in") && html.contains("expired"),
                    "{html}"
                );
            }
        }
        // The challenge is gone (the browser was told to drop the cookie; one that keeps
        // it anyway): even the right code does not help now.
        let res = reqwest::Client::new()
            .post(format!("{}/login/mfa", s.staff))
            .header("origin", &s.staff)
            .header(
                "cookie",
                format!("sr_staff_mfa={token}; sr_staff_form={}", "a".repeat(64)),
            )
            .form(&[
                ("code", totp_code(&secret, server_now(&s))),
                ("csrf", "a".repeat(64)),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        assert!(set_cookie(&res, "sr_staff").is_none());
        let res = c
            .get(format!("{}/login/mfa", s.staff))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/login");
    }
    // Ten wrong codes: the account is locked, even with the right password.
    assert_eq!(staff_login(&s, &c, "clerk4", PW).await.status(), 423);
    s.clock.advance(time::Duration::minutes(31));
    assert!(signed_in(&staff_login_full(&s, &c, "clerk4", PW).await));
}

#[tokio::test]
async fn staff_recovery_code_works_once() {
    let s = server().start().await;
    let user = s
        .app()
        .create_staff("clerk5", "Clerk Five", PW, app::staff::Role::Clerk)
        .await
        .unwrap();
    let res = staff_login_full(&s, &client(), "clerk5", PW).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let codes: Vec<String> = html
        .split("<li><code class=\"font-mono-md\">")
        .skip(1)
        .map(|r| r.split('<').next().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    assert!(codes
        .iter()
        .all(|c| c.len() == 14 && c.matches('-').count() == 2));
    // Only hashes are stored.
    let mut conn = s.app().store.conn().await.unwrap();
    let stored: Vec<(String,)> =
        sqlx::query_as("SELECT code_hash FROM staff_recovery_codes WHERE staff_id = $1")
            .bind(&user.id)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    drop(conn);
    assert_eq!(stored.len(), 10);
    assert!(stored
        .iter()
        .all(|(h,)| h.len() == 64 && !codes.contains(h)));
    // Typed in capitals with spaces: still accepted, once.
    let c = client();
    assert_eq!(staff_login(&s, &c, "clerk5", PW).await.status(), 303);
    let res = post_code(&s, &c, &format!(" {} ", codes[3].to_uppercase())).await;
    assert!(signed_in(&res));
    assert_eq!(res.status(), 303);
    let c2 = client();
    assert_eq!(staff_login(&s, &c2, "clerk5", PW).await.status(), 303);
    let res = post_code(&s, &c2, &codes[3]).await;
    assert_eq!(res.status(), 401, "a recovery code works once");
    let res = post_code(&s, &c2, &codes[4]).await;
    assert!(signed_in(&res), "another one works");
    let events = audit_of(&s, &user.id).await;
    assert_eq!(
        events
            .iter()
            .filter(|(e, _, _)| e == "staff.recovery_code_used")
            .count(),
        2,
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|(e, _, d)| e == "staff.recovery_code_used" && d == "8 left"));
}

#[tokio::test]
async fn staff_mfa_challenge_expires_after_five_minutes() {
    let s = server().start().await;
    s.app()
        .create_staff("clerk6", "Clerk Six", PW, app::staff::Role::Clerk)
        .await
        .unwrap();
    assert!(signed_in(
        &staff_login_full(&s, &client(), "clerk6", PW).await
    ));
    let c = client();
    assert_eq!(staff_login(&s, &c, "clerk6", PW).await.status(), 303);
    s.clock.advance(time::Duration::minutes(6));
    let code = fresh_code(&s, "clerk6").await;
    let res = post_code(&s, &c, &code).await;
    assert_eq!(res.status(), 401);
    assert!(set_cookie(&res, "sr_staff").is_none());
    assert!(res.text().await.unwrap().contains("expired"));
    let res = c
        .get(format!("{}/login/mfa", s.staff))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login");
    assert_eq!(
        c.get(format!("{}/", s.staff))
            .send()
            .await
            .unwrap()
            .status(),
        303
    );
    // Within five minutes the same code would have done.
    assert_eq!(staff_login(&s, &c, "clerk6", PW).await.status(), 303);
    s.clock.advance(time::Duration::minutes(4));
    let code = fresh_code(&s, "clerk6").await;
    assert!(signed_in(&post_code(&s, &c, &code).await));
}

#[tokio::test]
async fn a_password_alone_never_yields_a_session() {
    let s = server().start().await;
    s.app()
        .create_staff("clerk7", "Clerk Seven", PW, app::staff::Role::Clerk)
        .await
        .unwrap();
    for enrolled in [false, true] {
        if enrolled {
            assert!(signed_in(
                &staff_login_full(&s, &client(), "clerk7", PW).await
            ));
        }
        let res = staff_login(&s, &client(), "clerk7", PW).await;
        assert_eq!(res.status(), 303);
        let token = set_cookie(&res, "sr_staff_mfa").unwrap();
        assert_eq!(token.len(), 64);
        // Sent everywhere by hand, under either name, the challenge opens nothing.
        let bare = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        for path in ["/", "/outbox", "/accounts/100001"] {
            for cookie in [format!("sr_staff_mfa={token}"), format!("sr_staff={token}")] {
                let res = bare
                    .get(format!("{}{path}", s.staff))
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 303, "{path} with {cookie}");
                assert_eq!(res.headers()["location"], "/login");
            }
        }
    }
}

#[tokio::test]
async fn new_recovery_codes_take_the_password_and_replace_the_old_ones() {
    let s = server().start().await;
    s.app()
        .create_staff("clerk6", "Clerk Six", PW, app::staff::Role::Clerk)
        .await
        .unwrap();
    let c = client();
    let res = staff_login_full(&s, &c, "clerk6", PW).await;
    let codes_in = |html: &str| -> Vec<String> {
        html.split("<li><code class=\"font-mono-md\">")
            .skip(1)
            .map(|r| r.split('<').next().unwrap().to_owned())
            .collect()
    };
    let old = codes_in(&res.text().await.unwrap());
    assert_eq!(old.len(), 10);
    let profile = c
        .get(format!("{}/profile", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(profile.contains("Make new recovery codes"));
    let csrf = crate::journeys::hidden_value(&profile, "csrf");
    let renew = |pw: &'static str| {
        c.post(format!("{}/profile/recovery-codes", s.staff))
            .header("origin", &s.staff)
            .form(&[("csrf", csrf.as_str()), ("current_password", pw)])
            .send()
    };
    let res = renew("not the password at all").await.unwrap();
    assert_eq!(res.status(), 400);
    let res = renew(PW).await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("replace your earlier recovery codes"));
    let new = codes_in(&html);
    assert_eq!(new.len(), 10);
    assert!(new.iter().all(|n| !old.contains(n)));
    // An old code no longer signs in; a new one does.
    let c2 = client();
    assert_eq!(staff_login(&s, &c2, "clerk6", PW).await.status(), 303);
    assert_eq!(post_code(&s, &c2, &old[0]).await.status(), 401);
    assert!(signed_in(&post_code(&s, &c2, &new[0]).await));
    let id = s
        .app()
        .staff_by_username("clerk6")
        .await
        .unwrap()
        .unwrap()
        .id;
    assert!(audit_of(&s, &id)
        .await
        .iter()
        .any(|(e, o, _)| e == "staff.recovery_codes_renewed" && o == "success"));
}
