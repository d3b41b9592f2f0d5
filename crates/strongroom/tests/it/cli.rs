//! The binary itself: `demo` starts three listeners that answer; `serve` fails closed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strongroom"))
}

#[tokio::test]
async fn demo_starts_three_listeners_that_answer() {
    let dir = tempfile::tempdir().unwrap();
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
        .arg(dir.path().join("demo"))
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
    child.kill().unwrap();
    let _ = child.wait();
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
    let err = run(&base, &[("STRONGROOM_SERVER__DEBUG", "true")]);
    assert!(err.contains("debug"), "{err}");
    let err = run(
        &base.replace("127.0.0.1:0\"\nstaff", "0.0.0.0:0\"\nstaff"),
        &[],
    );
    // As root (CI) the root check comes first; otherwise the plain-HTTP one.
    assert!(err.contains("root") || err.contains("plain HTTP"), "{err}");
}
