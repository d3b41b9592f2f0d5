//! A city's day end to end: its bills imported, residents paying some (quick pay, the
//! dashboard, part of a bill), a large refund asked by a clerk and approved by a
//! supervisor, the day closed, its postings exported, reconciliation with no difference;
//! then a payment removed from our side behind the system's back and a capture made at the
//! processor for a session we never created: reconciliation raises both as exceptions.

use crate::harness::*;
use crate::journeys::hidden_value;
use crate::staff::staff_login_full;
use app::bill_import::{ImportOptions, Mapping, Quiet};

const PW: &str = "ledger-harbor-cityday-42";

#[tokio::test]
async fn a_city_s_day_from_bill_file_to_reconciliation() {
    let s = server().fixed_clock().start().await;
    let day = time::macros::date!(2026 - 11 - 16);

    // 1. The billing system's file: three new accounts.
    let mapping = Mapping::parse(include_str!("../../../../deploy/bills-csv.toml")).unwrap();
    let header = "BILL_ID,ACCOUNT,SERVICE_ZIP,CUSTOMER_NAME,SERVICE_ADDRESS,SERVICE_CITY,PERIOD_FROM,PERIOD_TO,BILL_DATE,DUE_DATE,PREV_READ,CURR_READ,USAGE_HCF,WEB_CODE,WATER,SEWER,TRASH,LATE_FEE";
    let line = |bill: &str, acct: &str, water: &str| {
        format!("{bill},{acct},93309,Lee Park,9 Elm St,Bakersfield,2026-10-01,2026-10-31,2026-11-05,2026-11-26,1,2,1,,{water},38.75,29.40,")
    };
    let file = [
        header.to_owned(),
        line("D-1", "730001", "31.85"),
        line("D-2", "730002", "81.85"),
        line("D-3", "730003", "631.85"),
    ]
    .join("\n");
    let r = s
        .app()
        .import_bills(
            file.as_bytes(),
            file.len() as u64,
            &mapping,
            &ImportOptions::new("cis.csv", "cis"),
            &mut Quiet,
        )
        .await
        .unwrap();
    assert_eq!((r.created, r.accounts_created), (3, 3), "{:?}", r.errors);
    assert_eq!(s.balance("730001").await, 10_000);

    // 2. Residents pay. Quick pay, the whole bill of 730001.
    let page = s
        .post_form(
            "/quick-pay",
            &[("account_number", "730001"), ("postal_code", "93309")],
        )
        .await
        .text()
        .await
        .unwrap();
    let res = s
        .post_form(
            "/quick-pay/pay",
            &[
                ("account_number", "730001"),
                ("postal_code", "93309"),
                ("amount", "100.00"),
                ("email", "lee@example.com"),
                ("form_key", &hidden_value(&page, "form_key")),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    let checkout = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        s.pay_hosted(&checkout, "4242424242424242").await.status(),
        303
    );
    // The dashboard: a resident links 730002 with the web code on the paper bill and pays
    // part of it.
    let (resident, csrf) = crate::authz::resident(&s, "park@example.com").await;
    crate::authz::link(&s, &resident, &csrf, "730002").await;
    let dash = resident
        .get(format!("{}/dashboard", s.portal))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let res = resident
        .post(format!("{}/pay", s.portal))
        .header("origin", &s.portal)
        .form(&[
            ("csrf", csrf.as_str()),
            ("form_key", &hidden_value(&dash, "form_key")),
            ("pay_730002", "on"),
            ("amount_730002", "60.00"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let checkout = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        s.pay_hosted(&checkout, "4242424242424242").await.status(),
        303
    );
    // The city's IVR pays 730003 in full through the API.
    let big = s.pay_ok("730003", "93309", 70_000, "ivr-1").await;
    s.webhooks_settled().await;
    assert_eq!(s.balance("730001").await, 0);
    assert_eq!(s.balance("730002").await, 15_000 - 6_000);
    assert_eq!(s.balance("730003").await, 0);

    // 3. A refund above the threshold: a clerk asks, a supervisor approves.
    s.app()
        .create_staff("clerk1", "Clerk", PW, app::staff::Role::Clerk)
        .await
        .unwrap();
    s.app()
        .create_staff("super1", "Supervisor", PW, app::staff::Role::Supervisor)
        .await
        .unwrap();
    let clerk = client();
    staff_login_full(&s, &clerk, "clerk1", PW).await;
    let sup = client();
    staff_login_full(&s, &sup, "super1", PW).await;
    let pay_page = clerk
        .get(format!("{}/payments/{big}", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let res = clerk
        .post(format!("{}/payments/{big}/refund", s.staff))
        .header("origin", &s.staff)
        .form(&[
            ("csrf", hidden_value(&pay_page, "csrf").as_str()),
            ("account", "730003"),
            ("amount", "600.00"),
            ("reason", "Leak adjustment approved by council"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (waiting, _) = s.app().refunds_awaiting_approval().await.unwrap().remove(0);
    let queue = sup
        .get(format!("{}/refunds", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let res = sup
        .post(format!("{}/refunds/{}/approve", s.staff, waiting.id))
        .header("origin", &s.staff)
        .form(&[("csrf", hidden_value(&queue, "csrf").as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    s.webhooks_settled().await;
    assert_eq!(s.balance("730003").await, 60_000);

    // 4. The day closes; its postings are exported; everything reconciles.
    s.clock.set(time::macros::datetime!(2026-11-17 02:00 UTC));
    let before_close = s.app().settlement(day).await.unwrap();
    assert_eq!(before_close.total.cents(), 10_000 + 6_000 + 70_000 - 60_000);
    let standard = app::ledger::ExportLayout::standard();
    let export = s
        .app()
        .export_postings(day, &standard, "test")
        .await
        .unwrap();
    assert_eq!(export.rows, 4);
    assert_eq!(export.total.cents(), 26_000);
    let again = s
        .app()
        .export_postings(day, &standard, "test")
        .await
        .unwrap();
    assert_eq!(again.bytes, export.bytes);
    let run = s.app().reconcile_day(day, "test").await.unwrap();
    assert!(run.differences.is_empty(), "{:?}", run.differences);
    assert_eq!(run.processor_captures.cents(), 86_000);
    assert_eq!(
        (run.processor_refunds.cents(), run.our_refunds.cents()),
        (60_000, 60_000)
    );
    assert!(s.app().exceptions(true).await.unwrap().is_empty());

    // 5. Behind the system's back: the quick-pay payment vanishes from our side, and
    // someone captures money at the processor for a session we never created (that day).
    let lost = {
        let mut c = s.app().store.conn().await.unwrap();
        let (id,): (String,) = sqlx::query_as(
            "SELECT p.id FROM payments p JOIN payment_items i ON i.payment_id = p.id WHERE i.account_number = '730001'",
        )
        .fetch_one(&mut *c)
        .await
        .unwrap();
        for sql in [
            "DELETE FROM postings WHERE source_id = $1",
            "DELETE FROM payment_items WHERE payment_id = $1",
            "DELETE FROM payment_events WHERE payment_id = $1",
            "DELETE FROM payments WHERE id = $1",
        ] {
            sqlx::query(sql).bind(&id).execute(&mut *c).await.unwrap();
        }
        id
    };
    s.clock.set(time::macros::datetime!(2026-11-16 23:30 UTC));
    let foreign = s.foreign_capture(1_234).await;
    s.clock.set(time::macros::datetime!(2026-11-17 03:00 UTC));
    let run = s.app().reconcile_day(day, "test").await.unwrap();
    let kinds: Vec<&str> = run.differences.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec!["missing_ours", "missing_ours"],
        "{:?}",
        run.differences
    );
    let open = s.app().exceptions(true).await.unwrap();
    assert_eq!(open.len(), 2, "{open:?}");
    assert!(
        open.iter()
            .any(|e| e.amount.map(|m| m.cents()) == Some(10_000)),
        "the lost payment {lost}"
    );
    assert!(open
        .iter()
        .any(|e| e.processor_ref.as_deref() == Some(foreign.as_str())));
    // The staff see them on the reconciliation page (signed in again: hours have passed).
    staff_login_full(&s, &sup, "super1", PW).await;
    let page = sup
        .get(format!("{}/reconciliation/2026-11-16", s.staff))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Differences found: 2"), "{html}");
}
