//! The finance office's side: ledger postings on business days, the settlement report,
//! idempotent day exports (back office and command line), and reconciliation with the
//! processor that turns every difference into an exception.

use crate::harness::*;
use crate::journeys::hidden_value;
use crate::staff::staff_login_full;

const PW: &str = "ledger-harbor-finance-42";
/// The fixed clock starts 2026-11-16 15:00 UTC: 07:00 in Los Angeles, business day
/// 2026-11-16, which closes at 17:00 local = 2026-11-17 01:00 UTC.
const DAY: &str = "2026-11-16";

fn day() -> time::Date {
    time::macros::date!(2026 - 11 - 16)
}

fn close_the_day(s: &Server) {
    s.clock.set(time::macros::datetime!(2026-11-17 02:00 UTC));
}

async fn sum_postings(s: &Server) -> i64 {
    let mut c = s.app().store.conn().await.unwrap();
    let (n,): (i64,) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) FROM postings WHERE business_date = $1",
    )
    .bind(DAY)
    .fetch_one(&mut *c)
    .await
    .unwrap();
    n
}

async fn staff(
    s: &Server,
    name: &str,
    role: app::staff::Role,
) -> (reqwest::Client, String, app::staff::StaffUser) {
    let user = s.app().create_staff(name, name, PW, role).await.unwrap();
    let c = client();
    staff_login_full(s, &c, name, PW).await;
    let page = c
        .get(format!("{}/", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden_value(&page, "csrf");
    (c, csrf, user)
}

#[tokio::test]
async fn a_day_is_posted_settled_exported_once_and_reconciled() {
    let s = server().fixed_clock().start().await;
    let zip3 = s.zip_of("100003").await;
    let a = s.pay_ok("100001", "93301", 1500, "fin-1").await;
    let b = s.pay_ok("100003", &zip3, 2200, "fin-2").await;
    let (sup, csrf, sup_user) = staff(&s, "super1", app::staff::Role::Supervisor).await;
    s.app()
        .refund_payment(&sup_user, &a, "100001", "5.00", "Billed twice", "127.0.0.1")
        .await
        .unwrap();
    s.webhooks_settled().await;

    // Postings: one line per payment item and a reversing line for the refund.
    assert_eq!(sum_postings(&s).await, 1500 + 2200 - 500);
    let settlement = s.app().settlement(day()).await.unwrap();
    assert_eq!(settlement.total.cents(), 1500 + 2200 - 500);
    assert_eq!(settlement.postings, 3);
    let line = &settlement.lines[0];
    assert_eq!(
        (line.department.as_str(), line.payment_method.as_str()),
        ("UTILITIES", "visa")
    );
    assert_eq!((line.receipts.cents(), line.refunds.cents()), (3700, -500));

    // The day is open until 17:00 Los Angeles time: no export yet.
    let export_url = format!("{}/postings/{DAY}/export", s.staff);
    let res = sup
        .post(&export_url)
        .header("origin", &s.staff)
        .form(&[("csrf", csrf.as_str()), ("layout", "standard")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("still open"));
    let not_yet = s.app().reconcile_day(day(), "test").await.unwrap_err();
    assert_eq!(not_yet.code(), "invalid_request");

    close_the_day(&s);
    // Eleven hours later the supervisor signs in again (staff sessions time out).
    staff_login_full(&s, &sup, "super1", PW).await;
    let csrf = hidden_value(
        &sup.get(format!("{}/", s.staff))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "csrf",
    );
    // A payment after the cut-off belongs to the next business day.
    s.pay_ok("100001", "93301", 100, "fin-3").await;
    assert_eq!(sum_postings(&s).await, 3200);

    // Exported from the back office: twice, the same bytes; postings marked once.
    let download = || async {
        let res = sup
            .post(&export_url)
            .header("origin", &s.staff)
            .form(&[("csrf", csrf.as_str()), ("layout", "standard")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment"));
        res.bytes().await.unwrap().to_vec()
    };
    let first = download().await;
    let again = download().await;
    assert_eq!(first, again, "the same file byte for byte");
    let text = String::from_utf8(first.clone()).unwrap();
    assert_eq!(
        text.lines().count(),
        4,
        "header and three postings:\n{text}"
    );
    assert!(text.contains(",15.00\n") && text.contains(",22.00\n") && text.contains(",-5.00\n"));
    let settlement = s.app().settlement(day()).await.unwrap();
    assert!(settlement.exported.is_some());
    assert_eq!(settlement.total.cents(), 3200, "totals equal the postings");

    // The settlement report as CSV, with the same total.
    let csv = sup
        .get(format!("{}/postings/{DAY}/settlement.csv", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.contains("TOTAL,,3,,,32.00"), "{csv}");

    // The command line gives the same bytes (SQLite demo-style data directory).
    if std::env::var("STRONGROOM_TEST_DATABASE_URL").map_or(true, |v| v.is_empty()) {
        s.write_audit_key();
        let out = s.data_dir.join("postings.csv");
        let res = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
            .args(["export-postings", "--business-date", DAY, "--data-dir"])
            .arg(&s.data_dir)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        assert!(String::from_utf8_lossy(&res.stdout).contains("exported again 3 posting(s)"));
        assert_eq!(std::fs::read(&out).unwrap(), first);
        let res = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
            .args([
                "export-postings",
                "--business-date",
                "2099-01-01",
                "--data-dir",
            ])
            .arg(&s.data_dir)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(!res.status.success(), "a day to come is still open");
        assert!(String::from_utf8_lossy(&res.stderr).contains("still open"));
    }

    // Reconciliation: the processor, our payments and the postings agree.
    let res = sup
        .post(format!("{}/reconciliation/run", s.staff))
        .header("origin", &s.staff)
        .form(&[("csrf", csrf.as_str()), ("business_date", DAY)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let page = sup
        .get(format!("{}/reconciliation/{DAY}", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Everything matches"), "{page}");
    let run = s.app().reconciliation_runs(day()).await.unwrap().remove(0);
    assert!(run.differences.is_empty(), "{:?}", run.differences);
    assert_eq!(run.processor_captures.cents(), 3700);
    assert_eq!(run.our_payments.cents(), 3700);
    assert_eq!(run.posted.cents(), 3700);
    assert_eq!(
        (run.processor_refunds.cents(), run.our_refunds.cents()),
        (500, 500)
    );
    assert!(run.exported);
    let open = s.app().exceptions(true).await.unwrap();
    assert!(open.is_empty(), "{open:?}");
    let _ = b;
}

#[tokio::test]
async fn reconciliation_raises_a_payment_lost_on_our_side_and_a_capture_we_never_created() {
    let s = server().fixed_clock().start().await;
    let kept = s.pay_ok("100001", "93301", 1500, "rec-1").await;
    let lost = s.pay_ok("100001", "93301", 700, "rec-2").await;
    let foreign = s.foreign_capture(999).await;
    // Behind the system's back: a payment vanishes from our side.
    {
        let mut c = s.app().store.conn().await.unwrap();
        for sql in [
            "DELETE FROM postings WHERE source_id = $1",
            "DELETE FROM payment_items WHERE payment_id = $1",
            "DELETE FROM payment_events WHERE payment_id = $1",
            "DELETE FROM payments WHERE id = $1",
        ] {
            sqlx::query(sql).bind(&lost).execute(&mut *c).await.unwrap();
        }
    }
    close_the_day(&s);
    let run = s.app().reconcile_day(day(), "test").await.unwrap();
    let kinds: Vec<&str> = run.differences.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec!["missing_ours", "missing_ours"],
        "{:?}",
        run.differences
    );
    assert!(run.differences.iter().all(|d| d.exception_id.is_some()));
    assert_eq!(run.processor_captures.cents(), 1500 + 700 + 999);
    assert_eq!(run.our_payments.cents(), 1500);
    // Both are in the exceptions queue; the foreign capture's exception is the one its
    // webhook raised (one capture, one exception).
    let open = s.app().exceptions(true).await.unwrap();
    assert_eq!(open.len(), 2, "{open:?}");
    let amounts: Vec<i64> = open
        .iter()
        .filter_map(|e| e.amount.map(|m| m.cents()))
        .collect();
    assert!(
        amounts.contains(&700) && amounts.contains(&999),
        "{amounts:?}"
    );
    assert!(open.iter().any(|e| e.kind.as_str() == "unknown_session"
        && e.processor_ref.as_deref() == Some(foreign.as_str())));
    // Running the day again adds no exception.
    let again = s.app().reconcile_day(day(), "test").await.unwrap();
    assert_eq!((again.differences.len(), again.new_exceptions), (2, 0));
    assert_eq!(s.app().exceptions(true).await.unwrap().len(), 2);

    // Resolved (attached), the capture no longer counts as a difference.
    let (_, _, sup) = staff(&s, "super1", app::staff::Role::Supervisor).await;
    let lost_exc = open
        .iter()
        .find(|e| e.amount.map(|m| m.cents()) == Some(700))
        .unwrap();
    s.app()
        .resolve_exception(
            &sup,
            &lost_exc.id,
            app::exceptions::Resolution::Attach("100001".into()),
            "Payment record restored from the processor",
            "127.0.0.1",
        )
        .await
        .unwrap();
    let third = s.app().reconcile_day(day(), "test").await.unwrap();
    assert_eq!(third.differences.len(), 1);
    let _ = kept;
}
