//! The back-office settings page (administrators): the business-day cut-off and the refund
//! approval threshold, checked with every error at once, stored, audited with before and
//! after, and in force for the next refund.

use crate::harness::*;
use crate::journeys::hidden_value;
use crate::staff::{audit_of, staff_login_full};

const PW: &str = "ledger-harbor-settings-42";

async fn post_settings(
    s: &Server,
    c: &reqwest::Client,
    cutoff: &str,
    threshold: &str,
) -> (u16, String) {
    let page = c
        .get(format!("{}/admin/settings", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden_value(&page, "csrf");
    let res = c
        .post(format!("{}/admin/settings", s.staff))
        .header("origin", &s.staff)
        .form(&[
            ("csrf", csrf.as_str()),
            ("business_day_cutoff", cutoff),
            ("refund_approval_threshold", threshold),
        ])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn administrators_change_the_settings_with_all_errors_at_once_and_an_audit() {
    let s = server().start().await;
    for (name, role) in [
        ("admin1", app::staff::Role::Administrator),
        ("super1", app::staff::Role::Supervisor),
    ] {
        s.app().create_staff(name, name, PW, role).await.unwrap();
    }
    let admin = client();
    staff_login_full(&s, &admin, "admin1", PW).await;
    let sup = client();
    staff_login_full(&s, &sup, "super1", PW).await;

    // The defaults from the deployment file.
    let defaults = s.app().settings().await.unwrap();
    assert_eq!(defaults.business_day_cutoff, (17, 0));
    assert_eq!(defaults.refund_approval_threshold_cents, 50_000);
    let page = admin
        .get(format!("{}/admin/settings", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("value=\"17:00\"") && page.contains("value=\"500.00\""),
        "{page}"
    );
    // Supervisors may not see or change it.
    let res = sup
        .get(format!("{}/admin/settings", s.staff))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // Every problem at once, in a summary; nothing stored.
    for (cutoff, threshold, want) in [
        ("25:00", "-5", &["24-hour time", "cannot be negative"][..]),
        ("5pm", "five hundred", &["24-hour time", "in dollars"][..]),
        ("17:0", "1.234", &["24-hour time", "in dollars"][..]),
    ] {
        let (status, html) = post_settings(&s, &admin, cutoff, threshold).await;
        assert_eq!(status, 400, "{cutoff} {threshold}");
        assert!(html.contains("id=\"error-summary\""));
        for w in want {
            assert!(html.contains(w), "{cutoff} {threshold}: {w}");
        }
        assert!(html.contains(&format!("value=\"{cutoff}\"")), "input kept");
        assert_eq!(s.app().settings().await.unwrap(), defaults);
    }
    assert!(audit_of(&s, "business_day_cutoff").await.is_empty());

    // A good change: stored, audited with before and after.
    let (status, html) = post_settings(&s, &admin, "16:30", "$50").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("id=\"settings-saved\""));
    let now = s.app().settings().await.unwrap();
    assert_eq!(now.business_day_cutoff, (16, 30));
    assert_eq!(now.refund_approval_threshold_cents, 5_000);
    let cut = audit_of(&s, "business_day_cutoff").await;
    assert_eq!(cut.len(), 1);
    assert_eq!(cut[0].0, "settings.changed");
    assert_eq!(cut[0].2, "17:00 -> 16:30");
    let thr = audit_of(&s, "refund_approval_threshold_cents").await;
    assert_eq!(thr.len(), 1);
    assert_eq!(thr[0].2, "$500.00 -> $50.00");
    // Saving the same values again changes nothing and audits nothing.
    let (status, _) = post_settings(&s, &admin, "16:30", "50.00").await;
    assert_eq!(status, 200);
    assert_eq!(audit_of(&s, "business_day_cutoff").await.len(), 1);
    assert_eq!(
        audit_of(&s, "refund_approval_threshold_cents").await.len(),
        1
    );

    // The new threshold is in force: a supervisor's $60 refund now waits for approval.
    let id = s.pay_ok("100001", "93301", 10_000, "settings-1").await;
    let url = format!("{}/payments/{id}", s.staff);
    let html = sup.get(&url).send().await.unwrap().text().await.unwrap();
    let csrf = hidden_value(&html, "csrf");
    let res = sup
        .post(format!("{url}/refund"))
        .header("origin", &s.staff)
        .form(&[
            ("csrf", csrf.as_str()),
            ("account", "100001"),
            ("amount", "60.00"),
            ("reason", "billing error"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(s.app().refunds_awaiting_approval().await.unwrap().len(), 1);
}
