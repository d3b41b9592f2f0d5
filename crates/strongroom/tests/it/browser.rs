//! Browser journeys in real headless Chromium: starts the real server, then runs
//! `tests/browser/journeys.mjs` (playwright-core + axe-core) against it. The journeys cover
//! quick pay, a declined card, and a resident who registers, confirms the email through
//! the staff outbox, links two accounts and pays both; and passkeys (a virtual
//! authenticator) added and used to sign in, by a staff member and by a resident. The
//! server runs on `localhost` origins, as passkeys need; axe-core checks every page.
//!
//! Needs `tests/browser/node_modules` and `/usr/bin/chromium` (`.ci/run` installs both).
//! Without them the test is skipped loudly, or fails when `CI` is set.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const STAFF_PASSWORD: &str = "copper kettle marching seventeen";

fn browser_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/browser"))
}

fn workspace_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// What is missing to run the journeys, if anything.
fn missing_prerequisites(dir: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    for module in ["playwright-core", "axe-core"] {
        if !dir
            .join("node_modules")
            .join(module)
            .join("package.json")
            .is_file()
        {
            missing.push(format!(
                "{} (npm ci --prefix tests/browser)",
                dir.join("node_modules").join(module).display()
            ));
        }
    }
    if !Path::new(CHROMIUM).is_file() {
        missing.push(format!("{CHROMIUM} (apt-get install -y chromium)"));
    }
    if std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        missing.push("node on PATH".into());
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_journeys_pass_with_no_accessibility_violations_or_console_errors() {
    let dir = browser_dir();
    let missing = missing_prerequisites(&dir);
    if !missing.is_empty() {
        let what = missing.join(", ");
        assert!(std::env::var_os("CI").is_none(), "browser journeys cannot run: missing {what}. Run .ci/run (it installs Chromium and the npm packages).");
        eprintln!("\n{bar}\nSKIPPED: browser journeys (missing {what}).\nRun .ci/run once to install Chromium and tests/browser/node_modules.\n{bar}\n", bar = "!".repeat(78));
        return;
    }

    // Portal and back office on http://localhost:PORT: passkeys (WebAuthn) need a domain name.
    let s = server().named_host().fixed_clock().start().await;
    s.app()
        .create_staff("demo", "Demo", STAFF_PASSWORD, app::staff::Role::Supervisor)
        .await
        .expect("create staff user");
    // Staff sign-in needs a TOTP code: the user is enrolled here and node computes the code
    // at the server's (manual, standing) clock.
    let totp = s
        .app()
        .provision_staff_totp("demo")
        .await
        .expect("enroll staff user in MFA");
    let server_time = app::Clock::now(&*s.clock).unix_timestamp();

    // Quick pay pays 100001 (ZIP 93301, owes its latest bill). The resident journey links
    // and pays two more accounts that owe something: from 100003 on (100004 is paid up in
    // the demo seed), with their ZIP codes read from the database (the seed picks them).
    assert!(
        s.balance("100001").await > 0,
        "the demo seed leaves 100001 owing its latest bill"
    );
    let mut link_accounts = Vec::new();
    for n in 100_003..=100_012 {
        let number = n.to_string();
        if link_accounts.len() == 2 || s.balance(&number).await <= 0 {
            continue;
        }
        let mut c = s.app().store.conn().await.expect("conn");
        let a = store::accounts::get(&mut c, &number)
            .await
            .expect("read account")
            .expect("seeded account exists");
        drop(c);
        let code = s
            .app()
            .linking_code_of(&number)
            .await
            .expect("read linking code")
            .expect("seeded accounts have linking codes");
        link_accounts.push(serde_json::json!({"account_number": a.account_number, "postal_code": a.postal_code, "linking_code": code}));
    }
    assert_eq!(
        link_accounts.len(),
        2,
        "two seeded accounts from 100003 on owe something"
    );
    println!(
        "browser journeys: resident links {}",
        serde_json::Value::Array(link_accounts.clone())
    );

    // The finance pages have something to show: a bill import, a payment of the day
    // (2026-11-16), a capture nobody opened (an exception) and a reconciled day
    // (2026-11-15, closed).
    let mapping =
        app::bill_import::Mapping::parse(include_str!("../../../../deploy/bills-csv.toml"))
            .expect("mapping");
    let file = "BILL_ID,ACCOUNT,SERVICE_ZIP,CUSTOMER_NAME,SERVICE_ADDRESS,SERVICE_CITY,PERIOD_FROM,PERIOD_TO,BILL_DATE,DUE_DATE,PREV_READ,CURR_READ,USAGE_HCF,WEB_CODE,WATER,SEWER,TRASH,LATE_FEE\nBR-1,750001,93301,Sam Roe,1 Main St,Bakersfield,2026-10-01,2026-10-31,2026-11-05,2026-11-26,1,2,1,,10.00,38.75,29.40,\n";
    s.app()
        .import_bills(
            file.as_bytes(),
            file.len() as u64,
            &mapping,
            &app::bill_import::ImportOptions::new("cis-november.csv", "browser-test"),
            &mut app::bill_import::Quiet,
        )
        .await
        .expect("import");
    s.pay_ok("750001", "93301", 2_500, "browser-finance").await;
    s.foreign_capture(1_500).await;
    s.app()
        .reconcile_day(time::macros::date!(2026 - 11 - 15), "system")
        .await
        .expect("reconcile a closed day");

    let screenshots = workspace_dir().join("docs").join("screenshots");
    let failures = artifacts_dir().join("browser-failures");
    let started = Instant::now();
    let child = tokio::process::Command::new("node")
        .arg("journeys.mjs")
        .current_dir(&dir)
        .env("PORTAL_URL", &s.portal)
        .env("STAFF_URL", &s.staff)
        .env("PROCESSOR_URL", &s.processor)
        .env("STAFF_PASSWORD", STAFF_PASSWORD)
        .env("STAFF_TOTP_SECRET", &totp.secret_base32)
        .env("STAFF_TOTP_TIME", server_time.to_string())
        .env(
            "LINK_ACCOUNTS",
            serde_json::Value::Array(link_accounts).to_string(),
        )
        .env("SCREENSHOT_DIR", &screenshots)
        .env("FAILURE_DIR", &failures)
        .env("CHROMIUM_PATH", CHROMIUM)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("browser journeys finish within 5 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "--- node journeys.mjs ({:.1} s) ---\n{stdout}",
        started.elapsed().as_secs_f64()
    );
    if !stderr.trim().is_empty() {
        println!("--- stderr ---\n{stderr}");
    }
    assert!(
        out.status.success(),
        "browser journeys failed ({}); output above; failure screenshots in {}",
        out.status,
        failures.display()
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert!(
        last.ends_with("passed, 0 failed") && !last.starts_with("0 "),
        "unexpected summary line: {last}"
    );
}

/// Permits, licences and the cart (issue 7) in the browser, on their own server: a permit
/// applied for, reviewed, paid with a utility bill in one checkout, issued, inspected
/// (failed, re-inspection fee paid, passed) and looked up; a business licence issued a year
/// ago, the clock moved 40 days past its expiry, renewed with its late penalty and its
/// certificate checked; a permit applied for in Spanish; every new page in both languages
/// with axe and at 320 px.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_services_journeys_pass_with_no_accessibility_violations() {
    let dir = browser_dir();
    let missing = missing_prerequisites(&dir);
    if !missing.is_empty() {
        let what = missing.join(", ");
        assert!(std::env::var_os("CI").is_none(), "browser journeys cannot run: missing {what}. Run .ci/run (it installs Chromium and the npm packages).");
        eprintln!("\nSKIPPED: services browser journeys (missing {what}).\n");
        return;
    }
    let s = server().start().await;
    s.app()
        .create_staff("demo", "Demo", STAFF_PASSWORD, app::staff::Role::Supervisor)
        .await
        .expect("create staff user");
    // Residents registered and verified here (their email links are read from the outbox).
    let (builder, builder_csrf) = crate::authz::resident(&s, "builder@example.com").await;
    crate::authz::link(&s, &builder, &builder_csrf, "100001").await;
    crate::authz::resident(&s, "constructor@example.com").await;
    // A home-occupation licence issued now, paid through the cart...
    let (owner, owner_csrf) = crate::authz::resident(&s, "owner@example.com").await;
    let licence = crate::services::issue_licence(&s, &owner, &owner_csrf).await;
    // ...then a year and 40 days pass: it expired 40 days ago.
    s.clock.advance(time::Duration::days(365 + 40));
    let totp = s
        .app()
        .provision_staff_totp("demo")
        .await
        .expect("enroll staff user in MFA");
    let server_time = app::Clock::now(&*s.clock).unix_timestamp();
    let failures = artifacts_dir().join("browser-failures");
    let child = tokio::process::Command::new("node")
        .arg("journeys.mjs")
        .current_dir(&dir)
        .env("ONLY", "services:")
        .env("PORTAL_URL", &s.portal)
        .env("STAFF_URL", &s.staff)
        .env("PROCESSOR_URL", &s.processor)
        .env("STAFF_PASSWORD", STAFF_PASSWORD)
        .env("STAFF_TOTP_SECRET", &totp.secret_base32)
        .env("STAFF_TOTP_TIME", server_time.to_string())
        .env("LICENCE_ID", &licence)
        .env(
            "SCREENSHOT_DIR",
            artifacts_dir().join("services-screenshots"),
        )
        .env("FAILURE_DIR", &failures)
        .env("CHROMIUM_PATH", CHROMIUM)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("browser journeys finish within 5 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- node journeys.mjs (services) ---\n{stdout}");
    if !stderr.trim().is_empty() {
        println!("--- stderr ---\n{stderr}");
    }
    assert!(
        out.status.success(),
        "services browser journeys failed ({}); output above; failure screenshots in {}",
        out.status,
        failures.display()
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert_eq!(
        last.trim(),
        "3 passed, 0 failed",
        "unexpected summary line: {last}"
    );
}
