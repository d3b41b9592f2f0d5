//! The staff back office: its own listener and cookie, login with lockout, search, the
//! payment timeline, accounts, the outbox.

use crate::harness::*;

const PW: &str = "ledger-clerk-harbor-42";

async fn staff_login(
    s: &Server,
    client: &reqwest::Client,
    user: &str,
    pw: &str,
) -> reqwest::Response {
    client
        .post(format!("{}/login", s.staff))
        .header("origin", &s.staff)
        .form(&[("username", user), ("password", pw)])
        .send()
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
    let res = staff_login(&s, &staff, "clerk1", PW).await;
    assert_eq!(res.status(), 303);
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
    assert_eq!(
        staff_login(&s, &c, "clerk2", PW).await.status(),
        303,
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
    assert_eq!(staff_login(&s, &c, "auditor1", PW).await.status(), 303);
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
    assert_eq!(staff_login(&s, &c, "admin1", PW).await.status(), 303);
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
