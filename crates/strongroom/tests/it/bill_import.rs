//! Bills in from the city's billing system: CSV and fixed width, idempotent re-imports,
//! corrections that keep payments, and every kind of bad file refused with its line and
//! field and nothing half imported.

use crate::harness::*;
use app::bill_import::{ImportOptions, ImportReport, Mapping, Quiet};

fn mapping(name: &str) -> Mapping {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(name);
    Mapping::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const HEADER: &str = "BILL_ID,ACCOUNT,SERVICE_ZIP,CUSTOMER_NAME,SERVICE_ADDRESS,SERVICE_CITY,PERIOD_FROM,PERIOD_TO,BILL_DATE,DUE_DATE,PREV_READ,CURR_READ,USAGE_HCF,WEB_CODE,WATER,SEWER,TRASH,LATE_FEE";

/// A CSV line of the demo mapping: (bill id, account, water dollars).
fn csv_line(bill: &str, account: &str, water: &str) -> String {
    format!("{bill},{account},93305,Rosa Diaz,\"12 Oak St, Apt 2\",Bakersfield,2026-10-01,2026-10-31,2026-11-05,2026-11-26,100,112,12,,{water},38.75,29.40,")
}

async fn import(s: &Server, text: &str, m: &Mapping, skip: bool) -> ImportReport {
    let mut opts = ImportOptions::new("test.csv", "test");
    opts.skip_invalid = skip;
    s.app()
        .import_bills(text.as_bytes(), text.len() as u64, m, &opts, &mut Quiet)
        .await
        .unwrap()
}

async fn count(s: &Server, sql: &str) -> i64 {
    let mut c = s.app().store.conn().await.unwrap();
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&mut *c).await.unwrap();
    n
}

async fn snapshot(s: &Server) -> (i64, i64, i64, i64, i64) {
    (
        count(s, "SELECT COUNT(*) FROM bills").await,
        count(s, "SELECT COUNT(*) FROM bill_lines").await,
        count(s, "SELECT COUNT(*) FROM utility_accounts").await,
        count(s, "SELECT COUNT(*) FROM account_ledger").await,
        count(
            s,
            "SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) FROM account_ledger",
        )
        .await,
    )
}

#[tokio::test]
async fn a_csv_file_imports_once_and_corrections_keep_payments() {
    let s = server().start().await;
    let m = mapping("bills-csv.toml");
    let file = [
        HEADER.to_owned(),
        csv_line("CIS-1001", "700001", "41.10"),
        csv_line("CIS-1002", "700002", "12.00"),
        csv_line("CIS-1003", "100001", "20.00"),
    ]
    .join("\n");
    let before = s.balance("100001").await;
    let r = import(&s, &file, &m, false).await;
    assert!(!r.rolled_back, "{:?}", r.errors);
    assert_eq!((r.lines, r.created, r.accounts_created), (3, 3, 2));
    // 41.10 + 38.75 + 29.40
    assert_eq!(s.balance("700001").await, 10925);
    assert_eq!(s.balance("100001").await, before + 2000 + 3875 + 2940);
    let summary = s.app().account_summary("700001").await.unwrap();
    assert_eq!(summary.service_street, "12 Oak St, Apt 2");
    // Holder and street are sealed at rest, and the new account has a linking code.
    let raw: (String,) = {
        let mut c = s.app().store.conn().await.unwrap();
        sqlx::query_as(
            "SELECT service_street FROM utility_accounts WHERE account_number = '700001'",
        )
        .fetch_one(&mut *c)
        .await
        .unwrap()
    };
    assert!(raw.0.starts_with("enc:v1:"), "{}", raw.0);
    let code = s.app().linking_code_of("700001").await.unwrap().unwrap();
    assert!(app::bill_import::valid_linking_code(&code), "{code}");

    // The same file again: nothing changes.
    let snap = snapshot(&s).await;
    let again = import(&s, &file, &m, false).await;
    assert_eq!((again.created, again.updated, again.unchanged), (0, 0, 3));
    assert_eq!(snapshot(&s).await, snap);

    // A payment on 700002, then an overlapping file that corrects both 700001 (unpaid)
    // and 700002 (partly paid) and adds a bill.
    let zip = s.zip_of("700002").await;
    s.pay_ok("700002", &zip, 3000, "imp-pay").await;
    let paid_before = s.balance("700002").await;
    assert_eq!(paid_before, 1200 + 3875 + 2940 - 3000);
    let overlap = [
        HEADER.to_owned(),
        csv_line("CIS-1001", "700001", "40.10"),
        csv_line("CIS-1002", "700002", "15.00"),
        csv_line("CIS-1004", "700001", "5.00"),
    ]
    .join("\n");
    let r = import(&s, &overlap, &m, false).await;
    assert_eq!(
        (r.created, r.updated, r.unchanged),
        (1, 2, 0),
        "{:?}",
        r.errors
    );
    assert_eq!(s.balance("700001").await, 10925 - 100 + 500 + 3875 + 2940);
    // The payment still counts: the balance moved by the correction only.
    assert_eq!(s.balance("700002").await, paid_before + 300);
    let changes = count(
        &s,
        "SELECT COUNT(*) FROM audit_log WHERE event = 'bill.amount_changed'",
    )
    .await;
    assert_eq!(changes, 2);
}

#[tokio::test]
async fn a_fixed_width_file_imports() {
    let s = server().start().await;
    let m = mapping("bills-fixed.toml");
    let rec = |bill: &str, account: &str, water: i64| {
        format!(
            "{bill:<12}{account:<10}{zip:<5}{name:<30}{street:<30}{city:<16}{pf}{pt}{iss}{due}{usage:>6}{water:09}{sewer:09}{trash:09}",
            zip = "93301",
            name = "Ana Ortiz",
            street = "400 Truxtun Ave",
            city = "Bakersfield",
            pf = "20261001",
            pt = "20261031",
            iss = "20261105",
            due = "20261126",
            usage = 9,
            sewer = 3875,
            trash = 2940,
        )
    };
    let file = format!(
        "{}\r\n{}\r\n",
        rec("F-1", "800001", 3000),
        rec("F-2", "800002", 1000)
    );
    let r = import(&s, &file, &m, false).await;
    assert!(!r.rolled_back, "{:?}", r.errors);
    assert_eq!((r.created, r.accounts_created), (2, 2));
    assert_eq!(s.balance("800001").await, 3000 + 3875 + 2940);
    let bills = s.app().bills("800001", 5).await.unwrap();
    assert_eq!(bills[0].lines.len(), 3);
    assert_eq!(bills[0].due_on, "2026-11-26");
    // A truncated record names the field it cuts.
    let short = &rec("F-3", "800003", 1)[..150];
    let r = import(&s, &format!("{short}\n"), &m, false).await;
    assert!(r.rolled_back);
    assert_eq!(r.errors[0].line, 1);
    assert_eq!(r.errors[0].field, "sewer");
    assert!(r.errors[0].message.contains("truncated"), "{}", r.errors[0]);
}

/// The file with a third line whose name is written in Latin-1 ("José"), not UTF-8.
fn latin1(good: &str) -> Vec<u8> {
    let mut v = format!("{HEADER}\n{good}\n").into_bytes();
    let l = csv_line("CIS-2", "700002", "1.00").replace("Rosa Diaz", "JosX");
    v.extend(l.bytes().map(|b| if b == b'X' { 0xE9 } else { b }));
    v.push(b'\n');
    v
}

#[tokio::test]
async fn bad_files_are_refused_whole_naming_line_and_field() {
    let s = server().start().await;
    let m = mapping("bills-csv.toml");
    let before = snapshot(&s).await;
    let good = csv_line("CIS-1", "700001", "10.00");
    let cases: Vec<(&str, Vec<u8>, u64, &str, &str)> = vec![
        (
            "wrong encoding (Latin-1)",
            latin1(&good),
            3,
            "holder_name",
            "UTF-8",
        ),
        (
            "a truncated line",
            format!("{HEADER}\n{good}\nCIS-3,700003,93305,Ann\n").into_bytes(),
            3,
            "",
            "expected 18 columns",
        ),
        (
            "a negative amount",
            format!(
                "{HEADER}\n{good}\n{}\n",
                csv_line("CIS-4", "700004", "-3.00")
            )
            .into_bytes(),
            3,
            "water",
            "negative",
        ),
        (
            "an unknown account-number format",
            format!("{HEADER}\n{good}\n{}\n", csv_line("CIS-5", "AB-12", "3.00")).into_bytes(),
            3,
            "account_number",
            "not an account number",
        ),
        (
            "a duplicate bill id within the file",
            format!(
                "{HEADER}\n{good}\n{}\n",
                csv_line("CIS-1", "700009", "3.00")
            )
            .into_bytes(),
            3,
            "bill_id",
            "twice",
        ),
        (
            "a card number in a field",
            format!(
                "{HEADER}\n{}\n",
                good.replace("Rosa Diaz", "4242 4242 4242 4242")
            )
            .into_bytes(),
            2,
            "holder_name",
            "card number",
        ),
    ];
    for (what, bytes, line, field, message) in cases {
        let opts = ImportOptions::new("bad.csv", "test");
        let r = s
            .app()
            .import_bills(&bytes[..], bytes.len() as u64, &m, &opts, &mut Quiet)
            .await
            .unwrap();
        assert!(r.rolled_back, "{what}: {r:?}");
        let e = &r.errors[0];
        assert_eq!((e.line, e.field.as_str()), (line, field), "{what}: {e}");
        assert!(e.message.contains(message), "{what}: {e}");
        assert!(
            !e.message.contains("4242"),
            "a card number is never repeated back"
        );
        assert_eq!(snapshot(&s).await, before, "{what}: nothing half imported");
    }

    // A mapping that names a column the file does not have.
    let mut wrong = m.clone();
    wrong.fields.due_on = app::bill_import::Loc::Column("PAY_BY".into());
    let text = format!("{HEADER}\n{good}\n");
    let r = s
        .app()
        .import_bills(
            text.as_bytes(),
            text.len() as u64,
            &wrong,
            &ImportOptions::new("x", "t"),
            &mut Quiet,
        )
        .await
        .unwrap();
    assert!(r.rolled_back);
    assert_eq!(
        (r.errors[0].line, r.errors[0].field.as_str()),
        (1, "due_on")
    );
    assert!(
        r.errors[0].message.contains("\"PAY_BY\""),
        "{}",
        r.errors[0]
    );

    // A 2 GB file is refused before a byte is read (a sparse file: instant here).
    s.write_audit_key();
    let big = s.data_dir.join("huge.csv");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(2 << 30).unwrap();
    let res = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(["import-bills", "--data-dir"])
        .arg(&s.data_dir)
        .arg(&big)
        .arg("--mapping")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/bills-csv.toml"))
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&big);
    if std::env::var("STRONGROOM_TEST_DATABASE_URL").map_or(true, |v| v.is_empty()) {
        assert!(!res.status.success());
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(
            err.contains("2048 MiB") && err.contains("1024 MiB"),
            "{err}"
        );
    }
    assert_eq!(snapshot(&s).await, before);

    // Every error in one report (up to the limit), not one at a time.
    let many = format!(
        "{HEADER}\n{}\n{}\n{}\n",
        csv_line("A", "1", "1.00"),
        csv_line("B", "2", "1.00"),
        csv_line("C", "700001", "x")
    );
    let r = import(&s, &many, &m, false).await;
    assert_eq!(
        r.errors.iter().map(|e| e.line).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
}

#[tokio::test]
async fn skip_invalid_imports_the_valid_lines_and_reports_the_rest() {
    let s = server().start().await;
    let dir = s.data_dir.clone();
    let file = dir.join("bills.csv");
    std::fs::write(
        &file,
        [
            HEADER.to_owned(),
            csv_line("S-1", "710001", "10.00"),
            csv_line("S-2", "bad", "10.00"),
            csv_line("S-3", "710003", "-1.00"),
            csv_line("S-1", "710001", "10.00"),
            csv_line("S-4", "710004", "10.00"),
        ]
        .join("\n"),
    )
    .unwrap();
    if std::env::var("STRONGROOM_TEST_DATABASE_URL").is_ok_and(|v| !v.is_empty()) {
        // The command line runs on the SQLite data directory only here.
        let m = mapping("bills-csv.toml");
        let text = std::fs::read_to_string(&file).unwrap();
        let r = import(&s, &text, &m, true).await;
        assert_eq!((r.created, r.skipped), (2, 3));
        return;
    }
    s.write_audit_key();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
            .args(["import-bills", "--data-dir"])
            .arg(&dir)
            .arg(&file)
            .arg("--mapping")
            .arg(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../deploy/bills-csv.toml"),
            )
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = run(&[]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("line 3, field account_number") && err.contains("nothing imported"),
        "{err}"
    );
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) FROM bills WHERE cis_bill_id LIKE 'S-%'"
        )
        .await,
        0
    );
    let ok = run(&["--skip-invalid"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.contains("2 bill(s) created") && out.contains("3 line(s) skipped"),
        "{out}"
    );
    let report = std::fs::read_to_string(dir.join("bills.csv.skipped.csv")).unwrap();
    assert_eq!(report.lines().count(), 4, "{report}");
    assert!(
        report.contains("3,account_number,")
            && report.contains("4,water,")
            && report.contains("5,bill_id,")
    );
}

#[tokio::test]
async fn the_back_office_imports_a_file_in_the_background_and_shows_its_errors() {
    let s = server().start().await;
    s.app()
        .create_staff(
            "super1",
            "s",
            "ledger-harbor-import-42",
            app::staff::Role::Supervisor,
        )
        .await
        .unwrap();
    let c = client();
    crate::staff::staff_login_full(&s, &c, "super1", "ledger-harbor-import-42").await;
    let page = c
        .get(format!("{}/imports", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = crate::journeys::hidden_value(&page, "csrf");
    let upload = |name: &'static str, body: String, mapping: &'static str| {
        let form = reqwest::multipart::Form::new()
            .text("csrf", csrf.clone())
            .text("mapping", mapping)
            .part(
                "file",
                reqwest::multipart::Part::bytes(body.into_bytes()).file_name(name),
            );
        c.post(format!("{}/imports", s.staff))
            .header("origin", &s.staff)
            .multipart(form)
            .send()
    };
    // No file and no layout: both said at once.
    let res = c
        .post(format!("{}/imports", s.staff))
        .header("origin", &s.staff)
        .multipart(
            reqwest::multipart::Form::new()
                .text("csrf", csrf.clone())
                .text("mapping", "nope"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("href=\"#mapping\"") && html.contains("href=\"#file\""),
        "{html}"
    );

    let good = [
        HEADER.to_owned(),
        csv_line("W-1", "740001", "10.00"),
        csv_line("W-2", "740002", "11.00"),
    ]
    .join("\n");
    let res = upload("cis-nov.csv", good, "csv").await.unwrap();
    assert_eq!(res.status(), 303);
    let job = res.headers()["location"].to_str().unwrap().to_owned();
    // The job page shows progress until the import ends, then sends to its result.
    let result = finished(&s, &c, &job).await;
    let html = c
        .get(format!("{}{result}", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("The file was imported."), "{html}");
    assert_eq!(s.balance("740002").await, 1100 + 3875 + 2940);

    let bad = [HEADER.to_owned(), csv_line("W-3", "74x", "10.00")].join("\n");
    let res = upload("cis-bad.csv", bad, "csv").await.unwrap();
    let job = res.headers()["location"].to_str().unwrap().to_owned();
    let result = finished(&s, &c, &job).await;
    let html = c
        .get(format!("{}{result}", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("nothing was imported") && html.contains("account_number"),
        "{html}"
    );
}

/// Waits for a back-office import job to end; returns where its page then sends.
async fn finished(s: &Server, c: &reqwest::Client, job: &str) -> String {
    let url = format!("{}{job}", s.staff);
    crate::harness::eventually("the import ends", || async {
        let status = c.get(&url).send().await.unwrap().status();
        assert!(status == 200 || status == 303, "{status}");
        status == 303
    })
    .await;
    let r = c.get(&url).send().await.unwrap();
    r.headers()["location"].to_str().unwrap().to_owned()
}
/// The code printed on the bill links the account: the file's code for a new account, and
/// for an account we had (the billing system's code replaces ours, audited). A wrong code
/// links nothing; the old code stops working; `export-linking-codes` gives the printer the
/// codes in force.
#[tokio::test]
async fn linking_takes_the_code_the_bill_file_carries() {
    let s = server().start().await;
    let m = mapping("bills-csv.toml");
    let with_code = |bill: &str, account: &str, code: &str| {
        csv_line(bill, account, "20.00").replacen(",12,,", &format!(",12,{code},"), 1)
    };
    let old = s.app().linking_code_of("100001").await.unwrap().unwrap();
    let file = [
        HEADER.to_owned(),
        with_code("L-1", "100001", "HJK2345MNP"),
        with_code("L-2", "760001", "PQRS6789TV"),
    ]
    .join("\n");
    let r = import(&s, &file, &m, false).await;
    assert_eq!((r.created, r.accounts_created), (2, 1), "{:?}", r.errors);
    let code_of = |a: &'static str| {
        let s = &s;
        async move { s.app().linking_code_of(a).await.unwrap().unwrap() }
    };
    assert_eq!(code_of("760001").await, "PQRS6789TV");
    assert_eq!(code_of("100001").await, "HJK2345MNP");
    let replaced = "SELECT COUNT(*) FROM audit_log WHERE event = 'account.linking_code_replaced'";
    assert_eq!(count(&s, replaced).await, 1);
    // Sealed at rest, and never written to the audit log.
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) FROM account_linking_codes WHERE code LIKE '%PQRS6789TV%' OR code LIKE '%HJK2345MNP%'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) FROM audit_log WHERE detail LIKE '%HJK2345MNP%'"
        )
        .await,
        0
    );
    // The same file again changes no code.
    import(&s, &file, &m, false).await;
    assert_eq!(count(&s, replaced).await, 1);

    let (c, csrf) = crate::authz::resident(&s, "holder@example.com").await;
    let link = |account: &'static str, code: String| {
        let (c, csrf, s) = (&c, &csrf, &s);
        async move {
            c.post(format!("{}/accounts/link", s.portal))
                .header("origin", &s.portal)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("account_number", account),
                    ("linking_code", code.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let linked = "SELECT COUNT(*) FROM resident_accounts";
    assert_eq!(link("760001", "PQRS6789TW".into()).await, 400);
    assert_eq!(link("100001", old).await, 400, "the replaced code");
    assert_eq!(count(&s, linked).await, 0, "a wrong code links nothing");
    assert!(link("760001", "PQRS6789TV".into()).await.is_redirection());
    assert!(link("100001", "hjk2345mnp".into()).await.is_redirection());
    assert_eq!(count(&s, linked).await, 2);

    if std::env::var("STRONGROOM_TEST_DATABASE_URL").is_ok_and(|v| !v.is_empty()) {
        return; // The command line runs on the SQLite data directory only here.
    }
    s.write_audit_key();
    let out = s.data_dir.join("codes.csv");
    let res = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(["export-linking-codes", "--data-dir"])
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
    let csv = std::fs::read_to_string(&out).unwrap();
    assert!(csv.starts_with("account_number,linking_code\n"), "{csv}");
    assert!(
        csv.contains("\n760001,PQRS6789TV\n") && csv.contains("\n100001,HJK2345MNP\n"),
        "{csv}"
    );
}

#[tokio::test]
async fn residents_who_ask_are_emailed_when_a_new_bill_arrives() {
    let s = server().start().await;
    let (c, csrf) = crate::authz::resident(&s, "notify@example.com").await;
    crate::authz::link(&s, &c, &csrf, "100001").await;
    let page = c
        .get(format!("{}/account/notices", s.portal))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("checked"), "off until asked for");
    let m = mapping("bills-csv.toml");
    let file = |id: &str| [HEADER.to_owned(), csv_line(id, "100001", "12.00")].join("\n");
    import(&s, &file("N-1"), &m, false).await;
    let count = || async {
        s.app()
            .emails_to("notify@example.com")
            .await
            .unwrap()
            .iter()
            .filter(|e| e.kind == "bill_ready")
            .count()
    };
    assert_eq!(count().await, 0);
    let res = c
        .post(format!("{}/account/notices", s.portal))
        .header("origin", &s.portal)
        .form(&[("csrf", csrf.as_str()), ("bill_ready", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    import(&s, &file("N-2"), &m, false).await;
    assert_eq!(count().await, 1, "one email for the new bill");
    import(&s, &file("N-2"), &m, false).await;
    assert_eq!(count().await, 1, "a re-import sends nothing again");
}
