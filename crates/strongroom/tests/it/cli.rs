//! The binary itself: `demo` starts three listeners that answer; `serve` fails closed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strongroom"))
}

#[tokio::test]
async fn demo_starts_three_listeners_that_answer() {
    // Kept with the other test artifacts, so the post-suite card-number scan covers a demo
    // session's database, WAL and logs too.
    let data_dir = crate::harness::artifacts_dir()
        .join("demo-session")
        .join(app::ids::random_id());
    let mut child = bin()
        .args([
            "demo",
            "--accounts",
            "30",
            "--portal-addr",
            "127.0.0.1:0",
            "--staff-addr",
            "127.0.0.1:0",
            "--processor-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data_dir)
        .env("STRONGROOM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read the banner on a blocking thread; it ends with "Press Ctrl-C".
    let banner = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            text.push_str(&line);
            text.push('\n');
            if line.contains("Ctrl-C") {
                break;
            }
        }
        text
    });
    let banner = tokio::time::timeout(std::time::Duration::from_secs(120), banner)
        .await
        .expect("demo printed its banner")
        .unwrap();
    let url = |label: &str| -> String {
        let line = banner
            .lines()
            .find(|l| l.contains(label))
            .unwrap_or_else(|| panic!("{label} in {banner}"));
        line.split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap()
            .to_owned()
    };
    let client = reqwest::Client::new();
    for label in ["Resident portal", "Staff back office", "Sandbox processor"] {
        let res = client
            .get(format!("{}/healthz", url(label)))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{label}");
    }
    assert!(banner.contains("user: demo, password: "), "{banner}");
    let lookup = client
        .post(format!(
            "{}/api/v1/quick-pay/lookup",
            url("Resident portal")
        ))
        .json(&serde_json::json!({"account_number":"100001","postal_code":"93301"}))
        .send()
        .await
        .unwrap();
    assert_eq!(lookup.status(), 200);
    let portal = url("Resident portal");
    // The demo resident can try all three services at once.
    let pw = banner
        .split("resident@demo.example (password ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .expect("the banner names the demo resident's password")
        .to_owned();
    let resident = crate::harness::client();
    let token = crate::harness::form_token(&resident, &portal).await;
    let login = resident
        .post(format!("{portal}/login"))
        .header("origin", &portal)
        .form(&[
            ("email", "resident@demo.example"),
            ("password", pw.as_str()),
            ("csrf", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303, "the demo resident signs in");
    let page = |path: &'static str| {
        let (resident, portal) = (resident.clone(), portal.clone());
        async move {
            resident
                .get(format!("{portal}{path}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let cart = page("/cart").await;
    assert!(
        cart.contains("Building and Safety")
            && cart.contains("Utilities")
            && cart.contains("Business Licensing"),
        "{cart}"
    );
    let licences = page("/licences").await;
    assert!(
        licences.contains("Expired")
            && licences.contains("Current")
            && licences.contains("Waiting for payment"),
        "{licences}"
    );
    let permits = page("/permits").await;
    assert!(
        permits.contains("Waiting for review")
            && permits.contains("Approved: fees due")
            && permits.contains("Draft"),
        "{permits}"
    );
    // A payment through the demo's own sandbox, as a resident would make it.
    let created: serde_json::Value = client
        .post(format!("{portal}/api/v1/payments"))
        .header("Idempotency-Key", "demo-session-1")
        .json(&serde_json::json!({"items":[{"type":"utility","account_number":"100001","postal_code":"93301","amount_cents":1500}],"email":"demo@example.com"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let checkout = created["checkout_url"].as_str().unwrap().to_owned();
    assert!(checkout.starts_with(&url("Sandbox processor")));
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = no_redirect
        .post(&checkout)
        .form(&[
            ("card_number", "4242 4242 4242 4242"),
            ("expiry", "12/39"),
            ("cvc", "123"),
            ("name", "Demo Payer"),
            ("zip", "93301"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let back = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        no_redirect.get(&back).send().await.unwrap().status(),
        303,
        "return to the portal, then to the receipt"
    );
    let paid: serde_json::Value = client
        .get(format!(
            "{portal}/api/v1/payments/{}",
            created["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(paid["status"], "succeeded");
    child.kill().unwrap();
    let _ = child.wait();

    // The town grows: the demo city moves to another store (PostgreSQL when the suite runs
    // on it, else a new SQLite file) with export and import, counts checked and the audit
    // chain verified there.
    let export = data_dir.join("city.export");
    let out = bin()
        .args(["export", "--data-dir"])
        .arg(&data_dir)
        .arg("--out")
        .arg(&export)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listing.contains("permits") && listing.contains("audit_log"),
        "{listing}"
    );
    let into = match std::env::var("STRONGROOM_TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => {
            use sqlx::Connection;
            let name = format!("sr_move_{}", app::ids::random_id().to_lowercase());
            let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
            sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
                .await
                .unwrap();
            let (prefix, _) = base.rsplit_once('/').unwrap();
            format!("{prefix}/{name}")
        }
        _ => format!("sqlite://{}?mode=rwc", data_dir.join("moved.db").display()),
    };
    let out = bin()
        .args(["import", "--from"])
        .arg(&export)
        .args(["--into", &into, "--key-file"])
        .arg(data_dir.join("audit.key"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("the audit chain verifies"), "{text}");
    for table in [
        "payments", "permits", "licences", "invoices", "postings", "bills",
    ] {
        let exported = listing
            .lines()
            .find(|l| l.starts_with(&format!("{table} ")))
            .unwrap();
        let n = exported.split_whitespace().nth(1).unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{table} "))
                    && l.split_whitespace().nth(1) == Some(n)),
            "{table}: {n} rows exported, imported: {text}"
        );
    }
    // Importing twice is refused: the new store is no longer empty.
    let again = bin()
        .args(["import", "--from"])
        .arg(&export)
        .args(["--into", &into, "--key-file"])
        .arg(data_dir.join("audit.key"))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    let (files, findings) = strongroom::scan::scan(&[data_dir]).unwrap();
    assert!(files >= 3, "database, WAL or log files: {files}");
    assert!(findings.is_empty(), "{findings:?}");
}

#[test]
fn serve_refuses_unknown_keys_and_bad_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "whsec_x").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let base = format!(
        "[city]\nname = \"X\"\n[server]\nportal_addr = \"127.0.0.1:0\"\nstaff_addr = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\nstaff_url = \"http://127.0.0.1\"\n[database]\nurl = \"sqlite://{db}?mode=rwc\"\n[processor]\napi_base = \"http://127.0.0.1:9\"\nhosted_origin = \"http://127.0.0.1:9\"\nsecret_key_file = \"{s}\"\nwebhook_secret_file = \"{s}\"\n[email]\nsmtp_host = \"127.0.0.1\"\nfrom = \"X <x@example.gov>\"\n[security]\naudit_key_file = \"{s}\"\n",
        db = dir.path().join("db.sqlite").display(),
        s = secret.display()
    );
    let run = |config: &str, env: &[(&str, &str)]| {
        let p = dir.path().join("c.toml");
        std::fs::write(&p, config).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let out = bin()
            .arg("serve")
            .arg("--config")
            .arg(&p)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&format!("{base}\n[logging]\nbodies = true\n"), &[]);
    assert!(err.contains("logging"), "{err}");
    // The bench lifts the per-client throttles for its own in-process server; no setting
    // of `serve` does, under any name a city might try.
    let err = run(
        &format!("{base}\n[bench]\nlift_client_throttles = true\n"),
        &[],
    );
    assert!(err.contains("bench"), "{err}");
    let err = run(
        &base.replace("[server]\n", "[server]\nlift_client_throttles = true\n"),
        &[],
    );
    assert!(err.contains("lift_client_throttles"), "{err}");
    let err = run(&base, &[("STRONGROOM_SERVER__DEBUG", "true")]);
    assert!(err.contains("debug"), "{err}");
    for (var, value) in [
        ("RUST_LOG", "debug"),
        ("RUST_LOG", "tower_http=trace"),
        ("STRONGROOM_LOG", "web=debug,info"),
    ] {
        let err = run(&base, &[(var, value)]);
        assert!(
            err.contains("debug or trace logging"),
            "{var}={value}: {err}"
        );
    }
    let err = run(
        &base.replace("127.0.0.1:0\"\nstaff", "0.0.0.0:0\"\nstaff"),
        &[],
    );
    assert!(err.contains("plain HTTP"), "{err}");
    let err = run(
        &base.replace(
            "api_base = \"http://127.0.0.1:9\"",
            "api_base = \"http://processor.example.com\"",
        ),
        &[],
    );
    assert!(err.contains("processor over plain HTTP"), "{err}");
    let sqlite = format!(
        "url = \"sqlite://{}?mode=rwc\"",
        dir.path().join("db.sqlite").display()
    );
    assert!(base.contains(&sqlite));
    let err = run(
        &base.replace(
            &sqlite,
            "url = \"postgres://app@db.example.gov/strongroom\"",
        ),
        &[],
    );
    assert!(
        err.contains("PostgreSQL without a verified TLS certificate"),
        "{err}"
    );
    // Encryption without a certificate check is not enough either.
    let err = run(
        &base.replace(
            &sqlite,
            "url = \"postgres://app@db.example.gov/strongroom?sslmode=require\"",
        ),
        &[],
    );
    assert!(
        err.contains("PostgreSQL without a verified TLS certificate"),
        "{err}"
    );
    // A declared proxy whose address is not listed would make every client one.
    let err = run(
        &base.replace(
            "staff_url = \"http://127.0.0.1\"\n",
            "staff_url = \"http://127.0.0.1\"\nbehind_tls_proxy = true\n",
        ),
        &[],
    );
    assert!(err.contains("server.trusted_proxies is empty"), "{err}");
}

pub fn is_root() -> bool {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}

/// Runs the binary as an unprivileged user (nobody) when the tests run as root (as CI does).
pub fn as_service_user(args: &[&str]) -> Command {
    if is_root() {
        // setpriv execs the binary in its own place (runuser would fork and wait, and
        // killing it would leave the server running).
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            env!("CARGO_BIN_EXE_strongroom"),
        ])
        .args(args);
        c
    } else {
        let mut c = bin();
        c.args(args);
        c
    }
}

#[tokio::test]
async fn serve_starts_from_a_proper_config_and_staff_add_creates_a_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = |name: &str, value: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, value).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    };
    let (sk, wh, audit) = (
        secret("sk", "sk_test_abc"),
        secret("wh", "whsec_abc"),
        secret("audit", "0123456789abcdef0123456789abcdef"),
    );
    let keys = secret(
        "data.keys",
        &app::crypto::KeyRing::generate().to_file_text(),
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = format!(
        "[city]\nname = \"City of Example\"\n[server]\nportal_addr = \"127.0.0.1:{port}\"\nstaff_addr = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1:{port}\"\nstaff_url = \"http://127.0.0.1\"\n[database]\nurl = \"sqlite://{db}?mode=rwc\"\n[processor]\napi_base = \"http://127.0.0.1:9\"\nhosted_origin = \"http://127.0.0.1:9\"\nsecret_key_file = \"{sk}\"\nwebhook_secret_file = \"{wh}\"\n[email]\nsmtp_host = \"127.0.0.1\"\nfrom = \"X <x@example.gov>\"\n[security]\naudit_key_file = \"{audit}\"\ndata_keys_file = \"{keys}\"\n",
        db = dir.path().join("db.sqlite").display(),
        sk = sk.display(),
        wh = wh.display(),
        audit = audit.display(),
        keys = keys.display()
    );
    let cfg = dir.path().join("strongroom.toml");
    std::fs::write(&cfg, config).unwrap();
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    if is_root() {
        let nobody =
            |p: &std::path::Path| std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
        for p in [dir.path(), &sk, &wh, &audit, &keys, &cfg] {
            nobody(p);
        }
    }
    let cfg_s = cfg.to_str().unwrap();
    // staff-add reads the password from stdin.
    let mut add = as_service_user(&[
        "staff-add",
        "--config",
        cfg_s,
        "--username",
        "admin",
        "--name",
        "Admin",
        "--role",
        "administrator",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    {
        use std::io::Write;
        add.stdin
            .take()
            .unwrap()
            .write_all(b"a long harbor passphrase here\n")
            .unwrap();
    }
    let out = add.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("created staff user admin"));
    // The first second factor is enrolled only with the printed one-time code.
    let code = stdout
        .split("one-time enrollment code: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default();
    assert_eq!(code.len(), 14, "{stdout}");

    let mut child = as_service_user(&["serve", "--config", cfg_s])
        .env("STRONGROOM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    crate::harness::eventually("serve answers /readyz", || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    // It never seeds demo data.
    let lookup = client
        .post(format!("http://127.0.0.1:{port}/api/v1/quick-pay/lookup"))
        .json(&serde_json::json!({"account_number":"100001","postal_code":"93301"}))
        .send()
        .await
        .unwrap();
    assert_eq!(lookup.status(), 404);
    // Each start records its configuration's fingerprint in the audit log.
    let db = dir.path().join("db.sqlite");
    let records = || {
        let db = db.clone();
        async move {
            use sqlx::Connection;
            let url = format!("sqlite://{}?mode=ro", db.display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, String>(
                "SELECT detail FROM audit_log WHERE event = 'config.loaded' ORDER BY seq",
            )
            .fetch_all(&mut c)
            .await
            .unwrap()
        }
    };
    crate::harness::eventually("the start is audited", || async {
        records().await.len() == 1
    })
    .await;
    assert!(records().await[0].contains("first start"));
    child.kill().unwrap();
    let _ = child.wait();
    // A changed setting (here an environment override) is recorded as a change.
    let mut child = as_service_user(&["serve", "--config", cfg_s])
        .env("STRONGROOM_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    crate::harness::eventually("the second start is audited", || async {
        records().await.len() == 2
    })
    .await;
    assert!(
        records().await[1].contains("changed since the previous start"),
        "{:?}",
        records().await
    );
    child.kill().unwrap();
    let _ = child.wait();
}

#[tokio::test]
async fn serve_terminates_tls_itself_on_a_public_address() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !made.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is needed to make a test certificate"
        );
        eprintln!("SKIPPED: no openssl to make a test certificate");
        return;
    }
    let secret = |name: &str, value: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, value).unwrap();
        p
    };
    let (sk, wh, audit) = (
        secret("sk", "sk_test_abc"),
        secret("wh", "whsec_abc"),
        secret("audit", "0123456789abcdef0123456789abcdef"),
    );
    let keys = secret(
        "data.keys",
        &app::crypto::KeyRing::generate().to_file_text(),
    );
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    for p in [&sk, &wh, &audit, &key] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "[city]\nname = \"City of Example\"\n[server]\nportal_addr = \"0.0.0.0:{port}\"\nstaff_addr = \"127.0.0.1:0\"\npublic_url = \"https://localhost:{port}\"\nstaff_url = \"https://127.0.0.1\"\ntls_cert_file = \"{cert}\"\ntls_key_file = \"{key}\"\n[database]\nurl = \"sqlite://{db}?mode=rwc\"\n[processor]\napi_base = \"http://127.0.0.1:9\"\nhosted_origin = \"http://127.0.0.1:9\"\nsecret_key_file = \"{sk}\"\nwebhook_secret_file = \"{wh}\"\n[email]\nsmtp_host = \"127.0.0.1\"\nfrom = \"X <x@example.gov>\"\n[security]\naudit_key_file = \"{audit}\"\ndata_keys_file = \"{keys}\"\n",
        cert = cert.display(),
        key = key.display(),
        db = dir.path().join("db.sqlite").display(),
        sk = sk.display(),
        wh = wh.display(),
        audit = audit.display(),
        keys = keys.display()
    );
    let cfg = dir.path().join("strongroom.toml");
    std::fs::write(&cfg, config).unwrap();
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    if is_root() {
        for p in [dir.path(), &sk, &wh, &audit, &keys, &cfg, &cert, &key] {
            std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
        }
    }
    let mut child = as_service_user(&["serve", "--config", cfg.to_str().unwrap()])
        .env("STRONGROOM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/healthz");
    crate::harness::eventually("serve answers over TLS", || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    let res = client
        .get(format!("https://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap();
    assert!(
        res.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age="),
        "HSTS when TLS is on"
    );
    // Plain HTTP on that port gets nowhere.
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true));
    child.kill().unwrap();
    let _ = child.wait();
}

#[tokio::test]
async fn backup_is_encrypted_consistent_and_restores() {
    let s = crate::harness::server().start().await;
    if std::env::var("STRONGROOM_TEST_DATABASE_URL").is_ok_and(|v| !v.is_empty()) {
        eprintln!("SKIPPED on PostgreSQL: backup covers the SQLite store (use pg_dump there)");
        return;
    }
    let paid = s.pay_ok("100001", "93301", 1234, "backup-1").await;
    let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let write_key = |dir: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("backup.key");
        std::fs::write(&p, key).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    write_key(&s.data_dir);
    let out = s.data_dir.join("backup.srb");
    // Taken while the server is running.
    let res = bin()
        .args(["backup", "--data-dir"])
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
    let bytes = std::fs::read(&out).unwrap();
    assert!(bytes.starts_with(b"SRBACKUP1"));
    let p = s.app().payment(&paid).await.unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.contains(&p.confirmation_number)
            && !text.contains("payer@example.com")
            && !text.contains("CREATE TABLE"),
        "encrypted"
    );
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&out).unwrap().permissions())
            & 0o777,
        0o600
    );

    // Restore into a fresh directory and find the payment there.
    let target = tempfile::tempdir().unwrap();
    write_key(target.path());
    let res = bin()
        .args(["restore", "--data-dir"])
        .arg(target.path())
        .arg("--from")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let restored = store::Store::connect(&format!(
        "sqlite://{}",
        target.path().join("strongroom.db").display()
    ))
    .await
    .unwrap();
    let mut c = restored.conn().await.unwrap();
    assert_eq!(
        store::payments::get(&mut c, &paid)
            .await
            .unwrap()
            .unwrap()
            .status,
        "succeeded"
    );
    drop(c);
    // Refuses to overwrite without --force; refuses tampered, truncated or wrongly keyed files.
    let again = bin()
        .args(["restore", "--data-dir"])
        .arg(target.path())
        .arg("--from")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let other = tempfile::tempdir().unwrap();
    write_key(other.path());
    for (name, damaged) in [
        ("tampered", {
            let mut b = bytes.clone();
            let i = b.len() / 2;
            b[i] ^= 1;
            b
        }),
        ("truncated", bytes[..bytes.len() - 10].to_vec()),
    ] {
        let f = other.path().join(name);
        std::fs::write(&f, damaged).unwrap();
        let res = bin()
            .args(["restore", "--data-dir"])
            .arg(other.path())
            .arg("--from")
            .arg(&f)
            .output()
            .unwrap();
        assert!(!res.status.success(), "{name}");
        assert!(
            String::from_utf8_lossy(&res.stderr).contains("damaged"),
            "{name}"
        );
        assert!(
            !other.path().join("strongroom.db").exists(),
            "{name}: nothing installed"
        );
    }
    std::fs::write(other.path().join("backup.key"), "ff".repeat(32)).unwrap();
    let res = bin()
        .args(["restore", "--data-dir"])
        .arg(other.path())
        .arg("--from")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!res.status.success(), "wrong key");
}
