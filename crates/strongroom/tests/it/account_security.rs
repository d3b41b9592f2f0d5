//! Account security: changing the password (ASVS 6.2.2, 6.2.3), seeing and ending one's
//! own sessions (7.5.2), the cap on parallel sessions, and administrators ending another
//! user's sessions (7.4.5).

use crate::harness::*;
use crate::journeys::hidden_value;

const PW: &str = "purple elephants juggle quietly";
const NEW_PW: &str = "violet otters paddle home silently";
const STAFF_PW: &str = "ledger-clerk-harbor-42";

/// Logs `email` in on a fresh cookie jar; returns the login answer and the client.
async fn login(s: &Server, email: &str, pw: &str) -> (reqwest::Response, reqwest::Client) {
    let c = client();
    let token = form_token(&c, &s.portal).await;
    let res = c
        .post(format!("{}/login", s.portal))
        .header("origin", &s.portal)
        .form(&[("email", email), ("password", pw), ("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    (res, c)
}

/// Is this client signed in on the portal?
async fn signed_in(s: &Server, c: &reqwest::Client) -> bool {
    let res = c
        .get(format!("{}/dashboard", s.portal))
        .send()
        .await
        .unwrap();
    res.status() == 200
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

async fn security_page(s: &Server, c: &reqwest::Client) -> String {
    let res = c
        .get(format!("{}/account/security", s.portal))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

/// (reference, this device?) of each session row on the page.
fn session_rows(html: &str) -> Vec<(String, bool)> {
    html.split("<tr>")
        .skip(1)
        .filter(|row| row.contains("name=\"session\""))
        .map(|row| (hidden_value(row, "session"), row.contains("This device")))
        .collect()
}

/// (event, outcome) of the audit entries about `object`, oldest first.
async fn audit_of(s: &Server, object: &str) -> Vec<(String, String)> {
    let mut c = s.app().store.conn().await.unwrap();
    sqlx::query_as("SELECT event, outcome FROM audit_log WHERE object = $1 ORDER BY seq")
        .bind(object)
        .fetch_all(&mut *c)
        .await
        .unwrap()
}

#[tokio::test]
async fn resident_changes_password() {
    let s = server().start().await;
    let email = "pw@example.com";
    let (a, csrf) = crate::authz::resident(&s, email).await;
    let (res, b) = login(&s, email, PW).await;
    assert_eq!(res.status(), 303);
    assert!(signed_in(&s, &b).await);

    let page = security_page(&s, &a).await;
    assert!(page.contains("autocomplete=\"current-password\""));
    assert!(page.contains("autocomplete=\"new-password\""));
    assert!(
        page.contains("At least 15 characters"),
        "the rules are shown"
    );
    assert_eq!(page.matches("<h1").count(), 1);
    let dash = a
        .get(format!("{}/dashboard", s.portal))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        dash.contains("href=\"/account/security\""),
        "linked from the dashboard"
    );

    // Wrong current password: refused, nothing changes.
    let res = post(
        &s,
        &a,
        "/account/password",
        &[
            ("csrf", &csrf),
            ("current_password", "not my password at all"),
            ("password", NEW_PW),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Your current password is not correct."));
    assert!(signed_in(&s, &b).await, "a refused change ends nothing");

    // A weak new password: refused with the rule.
    let res = post(
        &s,
        &a,
        "/account/password",
        &[
            ("csrf", &csrf),
            ("current_password", PW),
            ("password", "short one"),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("at least 15 characters"));

    // Without the form token: refused.
    let res = post(
        &s,
        &a,
        "/account/password",
        &[("current_password", PW), ("password", NEW_PW)],
    )
    .await;
    assert_eq!(res.status(), 403);

    // Success: other sessions end, this one stays; the old password stops working.
    let res = post(
        &s,
        &a,
        "/account/password",
        &[
            ("csrf", &csrf),
            ("current_password", PW),
            ("password", NEW_PW),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Your password was changed."));
    assert!(signed_in(&s, &a).await, "this session is kept");
    assert!(!signed_in(&s, &b).await, "the other session was ended");
    let (res, _) = login(&s, email, PW).await;
    assert_ne!(res.status(), 303, "the old password no longer logs in");
    let (res, _) = login(&s, email, NEW_PW).await;
    assert_eq!(res.status(), 303, "the new one does");

    let id = s.resident_id(email).await;
    let events = audit_of(&s, &id).await;
    assert!(events.contains(&("resident.password_changed".into(), "failure".into())));
    assert!(events.contains(&("resident.password_changed".into(), "success".into())));
}

#[tokio::test]
async fn resident_lists_and_ends_sessions() {
    let s = server().start().await;
    let email = "sess@example.com";
    let (a, csrf) = crate::authz::resident(&s, email).await;
    s.clock.advance(time::Duration::seconds(1));
    let (_, b) = login(&s, email, PW).await;
    s.clock.advance(time::Duration::seconds(1));
    let (_, c) = login(&s, email, PW).await;

    let page = security_page(&s, &a).await;
    let rows = session_rows(&page);
    assert_eq!(rows.len(), 3, "{page}");
    assert_eq!(rows.iter().filter(|(_, me)| *me).count(), 1);
    for (r, _) in &rows {
        assert_eq!(r.len(), 16);
        assert!(!page.contains(&app::ids::token_hash(r)), "no token hashes");
    }
    // Newest first: the first row is `c`, the last is `a` (this device).
    assert!(rows[2].1);
    // Ending a session asks for the password again.
    let res = post(
        &s,
        &a,
        "/account/sessions/end",
        &[
            ("csrf", &csrf),
            ("session", &rows[0].0),
            ("current_password", "not my password at all"),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(signed_in(&s, &c).await, "a wrong password ends nothing");
    let res = post(
        &s,
        &a,
        "/account/sessions/end",
        &[
            ("csrf", &csrf),
            ("session", &rows[0].0),
            ("current_password", PW),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert!(!signed_in(&s, &c).await, "that client is signed out");
    assert!(signed_in(&s, &b).await);
    assert!(signed_in(&s, &a).await);

    // A reference of nobody's session ends nothing.
    let res = post(
        &s,
        &a,
        "/account/sessions/end",
        &[
            ("csrf", &csrf),
            ("session", "abcdefghijklmnop"),
            ("current_password", PW),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert!(signed_in(&s, &b).await);

    // Another resident cannot end this one's sessions with a reference they saw.
    let (d, dcsrf) = crate::authz::resident(&s, "other@example.com").await;
    let b_ref = session_rows(&security_page(&s, &a).await)
        .into_iter()
        .find(|(_, me)| !me)
        .unwrap()
        .0;
    post(
        &s,
        &d,
        "/account/sessions/end",
        &[
            ("csrf", &dcsrf),
            ("session", &b_ref),
            ("current_password", PW),
        ],
    )
    .await;
    assert!(
        signed_in(&s, &b).await,
        "only one's own sessions can be ended"
    );

    let res = post(
        &s,
        &a,
        "/account/sessions/end",
        &[
            ("csrf", &csrf),
            ("session", "others"),
            ("current_password", PW),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert!(!signed_in(&s, &b).await);
    assert!(signed_in(&s, &a).await);
    assert_eq!(session_rows(&security_page(&s, &a).await).len(), 1);
}

#[tokio::test]
async fn the_eleventh_session_ends_the_oldest() {
    let s = server().start().await;
    let email = "many@example.com";
    let (first, _) = crate::authz::resident(&s, email).await;
    let mut others = Vec::new();
    for i in 0..10 {
        if i == 5 {
            // A new rate-limit window for the logins (10 per 15 minutes per address);
            // 16 minutes is within the 30-minute idle timeout.
            s.clock.advance(time::Duration::minutes(16));
        }
        s.clock.advance(time::Duration::seconds(1));
        let (res, c) = login(&s, email, PW).await;
        assert_eq!(res.status(), 303, "login {i}");
        others.push(c);
    }
    assert!(!signed_in(&s, &first).await, "the oldest session was ended");
    for c in &others {
        assert!(signed_in(&s, c).await);
    }
    let rows = session_rows(&security_page(&s, &others[9]).await);
    assert_eq!(rows.len(), app::sessions::MAX_SESSIONS_PER_USER);
}

#[tokio::test]
async fn administrator_ends_a_residents_sessions() {
    let s = server().start().await;
    let email = "victim@example.com";
    let (a, _) = crate::authz::resident(&s, email).await;
    s.app()
        .create_staff("admin9", "Admin", STAFF_PW, app::staff::Role::Administrator)
        .await
        .unwrap();
    let staff = client();
    crate::staff::staff_login_full(&s, &staff, "admin9", STAFF_PW).await;
    let page = staff
        .get(format!("{}/admin/sessions", s.staff))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csrf = hidden_value(&page.text().await.unwrap(), "csrf");
    let res = staff
        .post(format!("{}/admin/sessions/resident", s.staff))
        .header("origin", &s.staff)
        .form(&[("csrf", csrf.as_str()), ("email", email)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Sessions ended: 1."));
    assert!(!signed_in(&s, &a).await, "the resident is signed out");
    let id = s.resident_id(email).await;
    assert!(audit_of(&s, &id)
        .await
        .contains(&("sessions.revoked".into(), "success".into())));

    // An unknown address: said so, nothing ended.
    let res = staff
        .post(format!("{}/admin/sessions/resident", s.staff))
        .header("origin", &s.staff)
        .form(&[("csrf", csrf.as_str()), ("email", "nobody@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn only_administrators_may_end_others_sessions() {
    let s = server().start().await;
    s.app()
        .create_staff("clerk9", "Clerk", STAFF_PW, app::staff::Role::Clerk)
        .await
        .unwrap();
    let staff = client();
    crate::staff::staff_login_full(&s, &staff, "clerk9", STAFF_PW).await;
    let res = staff
        .get(format!("{}/admin/sessions", s.staff))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // The clerk's own profile works, and its form token cannot be used on the admin form.
    let profile = staff
        .get(format!("{}/profile", s.staff))
        .send()
        .await
        .unwrap();
    assert_eq!(profile.status(), 200);
    let csrf = hidden_value(&profile.text().await.unwrap(), "csrf");
    let res = staff
        .post(format!("{}/admin/sessions/staff", s.staff))
        .header("origin", &s.staff)
        .form(&[("csrf", csrf.as_str()), ("username", "clerk9")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn staff_change_their_password_and_see_their_sessions() {
    let s = server().start().await;
    s.app()
        .create_staff("clerk8", "Clerk", STAFF_PW, app::staff::Role::Clerk)
        .await
        .unwrap();
    let one = client();
    crate::staff::staff_login_full(&s, &one, "clerk8", STAFF_PW).await;
    let two = client();
    crate::staff::staff_login_full(&s, &two, "clerk8", STAFF_PW).await;
    let page = one
        .get(format!("{}/profile", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(session_rows(&page).len(), 2);
    let csrf = hidden_value(&page, "csrf");
    let change = |current: &'static str, new: &'static str| {
        one.post(format!("{}/profile/password", s.staff))
            .header("origin", &s.staff)
            .form(&[
                ("csrf", csrf.as_str()),
                ("current_password", current),
                ("password", new),
            ])
            .send()
    };
    let res = change("wrong-password-here", "harbor-ledger-quiet-77")
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Your current password is not correct."));
    let res = change(STAFF_PW, "clerk8-is-my-name-ok").await.unwrap();
    assert_eq!(res.status(), 400, "the user name may not be in it");
    let res = change(STAFF_PW, "harbor-ledger-quiet-77").await.unwrap();
    assert_eq!(res.status(), 200);
    let profile_of = |c: &reqwest::Client| c.get(format!("{}/profile", s.staff)).send();
    assert_eq!(profile_of(&one).await.unwrap().status(), 200, "kept");
    assert_eq!(profile_of(&two).await.unwrap().status(), 303, "ended");
}

#[tokio::test]
async fn disabling_an_account_ends_its_sessions_at_once_and_stops_sign_in() {
    let s = server().start().await;
    let email = "disabled.resident@example.com";
    let (resident, _) = crate::authz::resident(&s, email).await;
    for (name, role) in [
        ("admin7", app::staff::Role::Administrator),
        ("clerk7", app::staff::Role::Clerk),
    ] {
        s.app()
            .create_staff(name, name, STAFF_PW, role)
            .await
            .unwrap();
    }
    let admin = client();
    crate::staff::staff_login_full(&s, &admin, "admin7", STAFF_PW).await;
    let clerk = client();
    crate::staff::staff_login_full(&s, &clerk, "clerk7", STAFF_PW).await;
    let page = admin
        .get(format!("{}/admin/sessions", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden_value(&page, "csrf");
    let act = |path: &'static str, field: &'static str, who: &'static str, action: &'static str| {
        admin
            .post(format!("{}{path}", s.staff))
            .header("origin", &s.staff)
            .form(&[("csrf", csrf.as_str()), (field, who), ("action", action)])
            .send()
    };
    let clerk_signed_in = || async {
        clerk
            .get(format!("{}/", s.staff))
            .send()
            .await
            .unwrap()
            .status()
            == 200
    };

    // A resident: signed out on their very next request, and a right password no longer
    // signs in (the same answer as a wrong one).
    let res = act("/admin/sessions/resident", "email", email, "disable")
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("The account is disabled. Sessions ended: 1."));
    assert!(!signed_in(&s, &resident).await);
    let (res, _) = login(&s, email, PW).await;
    assert_eq!(res.status(), 401);
    // Enabled again: the password works.
    let res = act("/admin/sessions/resident", "email", email, "enable")
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (res, _) = login(&s, email, PW).await;
    assert_eq!(res.status(), 303);

    // A staff member: the same, and no administrator disables their own account.
    assert!(clerk_signed_in().await);
    let res = act("/admin/sessions/staff", "username", "clerk7", "disable")
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(!clerk_signed_in().await, "the clerk is signed out at once");
    let again = client();
    let res = crate::staff::staff_login(&s, &again, "clerk7", STAFF_PW).await;
    assert_eq!(res.status(), 401);
    let res = act("/admin/sessions/staff", "username", "admin7", "disable")
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("cannot disable, reset or change the role of your own account"));
    // An unknown action is a bad request and changes nothing.
    let res = act("/admin/sessions/staff", "username", "clerk7", "delete")
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let id = s.resident_id(email).await;
    let events = audit_of(&s, &id).await;
    assert!(events.contains(&("account.disabled".into(), "success".into())));
    assert!(events.contains(&("account.enabled".into(), "success".into())));
}

#[tokio::test]
async fn an_administrator_resets_a_lost_second_factor_with_a_one_time_enrollment_code() {
    let s = server().start().await;
    for (name, role) in [
        ("admin6", app::staff::Role::Administrator),
        ("member6", app::staff::Role::Supervisor),
    ] {
        s.app()
            .create_staff(name, name, STAFF_PW, role)
            .await
            .unwrap();
    }
    let admin = client();
    crate::staff::staff_login_full(&s, &admin, "admin6", STAFF_PW).await;
    let member = client();
    crate::staff::staff_login_full(&s, &member, "member6", STAFF_PW).await;
    let page = admin
        .get(format!("{}/admin/sessions", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Reset sign-in factors"), "{page}");
    let csrf = hidden_value(&page, "csrf");
    let reset = |who: &'static str| {
        admin
            .post(format!("{}/admin/sessions/staff", s.staff))
            .header("origin", &s.staff)
            .form(&[
                ("csrf", csrf.as_str()),
                ("username", who),
                ("action", "reset"),
            ])
            .send()
    };
    let res = reset("member6").await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let code = html
        .split("not by email: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert_eq!(code.len(), 14, "{html}");
    // The member's session ended; their old authenticator no longer counts: the next
    // sign-in is an enrollment, which takes the code.
    assert_eq!(
        member
            .get(format!("{}/", s.staff))
            .send()
            .await
            .unwrap()
            .status(),
        303
    );
    let again = client();
    let res = crate::staff::staff_login(&s, &again, "member6", STAFF_PW).await;
    assert_eq!(res.status(), 303);
    let page = again
        .get(format!("{}/login/mfa", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let secret: String = page
        .split("id=\"totp-secret\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap()
        .split_whitespace()
        .collect();
    let totp = crate::staff::totp_code(&secret, crate::staff::server_now(&s));
    let res = crate::staff::post_enroll(&s, &again, &code, &totp).await;
    assert_eq!(
        res.status(),
        200,
        "enrolled again; new recovery codes shown"
    );
    // The code worked once.
    s.clock.advance(time::Duration::seconds(30));
    let other = client();
    crate::staff::staff_login(&s, &other, "member6", STAFF_PW).await;
    let page = other
        .get(format!("{}/login/mfa", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("Enrollment code"), "enrolled: the code form");
    // Nobody resets their own factors.
    let res = reset("admin6").await.unwrap();
    assert_eq!(res.status(), 403);
    let id = s
        .app()
        .staff_by_username("member6")
        .await
        .unwrap()
        .unwrap()
        .id;
    let events = audit_of(&s, &id).await;
    assert!(events.contains(&("staff.mfa_reset".into(), "success".into())));
}

#[tokio::test]
async fn an_administrator_changes_a_role_which_ends_the_members_sessions() {
    let s = server().start().await;
    for (name, role) in [
        ("admin5", app::staff::Role::Administrator),
        ("member5", app::staff::Role::Auditor),
    ] {
        s.app()
            .create_staff(name, name, STAFF_PW, role)
            .await
            .unwrap();
    }
    let admin = client();
    crate::staff::staff_login_full(&s, &admin, "admin5", STAFF_PW).await;
    let member = client();
    crate::staff::staff_login_full(&s, &member, "member5", STAFF_PW).await;
    let outbox = |c: &reqwest::Client| {
        let url = format!("{}/outbox", s.staff);
        let c = c.clone();
        async move { c.get(url).send().await.unwrap().status() }
    };
    assert_eq!(
        outbox(&member).await,
        403,
        "an auditor may not read the outbox"
    );
    let page = admin
        .get(format!("{}/admin/sessions", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden_value(&page, "csrf");
    let change = |who: &'static str, role: &'static str| {
        admin
            .post(format!("{}/admin/sessions/staff", s.staff))
            .header("origin", &s.staff)
            .form(&[
                ("csrf", csrf.as_str()),
                ("username", who),
                ("action", "role"),
                ("role", role),
            ])
            .send()
    };
    let res = change("member5", "clerk").await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("The role was changed"));
    // The privilege change took the old session away; the new role applies at sign-in.
    assert_eq!(outbox(&member).await, 303);
    let again = client();
    crate::staff::staff_login_full(&s, &again, "member5", STAFF_PW).await;
    assert_eq!(outbox(&again).await, 200, "a clerk reads the outbox");
    // Refused: an unknown role, one's own role.
    assert_eq!(change("member5", "root").await.unwrap().status(), 400);
    assert_eq!(change("admin5", "clerk").await.unwrap().status(), 403);
    let id = s
        .app()
        .staff_by_username("member5")
        .await
        .unwrap()
        .unwrap()
        .id;
    assert!(audit_of(&s, &id)
        .await
        .contains(&("staff.role_changed".into(), "success".into())));
}
