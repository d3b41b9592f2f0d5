//! Personal data at rest: names, emails and street addresses are sealed (AES-256-GCM, key
//! id, column-bound), found by keyed blind indexes, and re-encrypted by `keys rotate`.

use crate::harness::*;
use sqlx::Row;
use strongroom::server;

const EMAIL: &str = "Pat.Resident@Example.com";
const PASSWORD: &str = "purple elephants juggle quietly";
const PAYER: &str = "payer@example.com";
/// As stored: the domain is lower-cased, the local part kept.
const STORED: &str = "Pat.Resident@example.com";

/// Every text value of the tables that could carry personal data, read raw.
async fn raw_texts(app: &app::App) -> Vec<(String, String)> {
    let queries = [
        ("residents", "SELECT id, email, email_key FROM residents"),
        (
            "utility_accounts",
            "SELECT account_number, holder_name, service_street, service_city FROM utility_accounts",
        ),
        ("payments", "SELECT id, email, email_index FROM payments"),
        (
            "outbox_emails",
            "SELECT id, to_addr, subject, body_text, to_index FROM outbox_emails",
        ),
        ("rate_limits", "SELECT bucket, bucket FROM rate_limits"),
        ("audit_log", "SELECT actor, object, detail FROM audit_log"),
        ("payment_events", "SELECT kind, detail FROM payment_events"),
    ];
    let mut c = app.store.conn().await.unwrap();
    let mut out = vec![];
    for (table, q) in queries {
        for r in sqlx::query(q).fetch_all(&mut *c).await.unwrap() {
            for i in 0..r.len() {
                if let Ok(Some(v)) = r.try_get::<Option<String>, _>(i) {
                    out.push((table.to_owned(), v));
                }
            }
        }
    }
    out
}

async fn sealed(app: &app::App, sql: &str, key: &str) -> String {
    let mut c = app.store.conn().await.unwrap();
    sqlx::query(sql)
        .bind(key)
        .fetch_one(&mut *c)
        .await
        .unwrap()
        .try_get::<String, _>(0)
        .unwrap()
}

async fn set_payment_email(app: &app::App, id: &str, v: &str) {
    let mut c = app.store.conn().await.unwrap();
    sqlx::query("UPDATE payments SET email = $1 WHERE id = $2")
        .bind(v)
        .bind(id)
        .execute(&mut *c)
        .await
        .unwrap();
}

#[tokio::test]
async fn personal_data_is_sealed_searchable_and_rotates() {
    let s = server().start().await;
    let keys = test_keys();
    crate::authz::resident(&s, EMAIL).await;
    let paid = s.pay_ok("100001", "93301", 1500, "pii-1").await;
    eventually("receipt queued", || async {
        s.app()
            .emails_to(PAYER)
            .await
            .unwrap()
            .iter()
            .any(|m| m.kind == "receipt")
    })
    .await;

    // The plaintexts we must not find, recovered with the test keys.
    let name = keys
        .open(
            "utility_accounts.holder_name",
            &sealed(
                s.app(),
                "SELECT holder_name FROM utility_accounts WHERE account_number = $1",
                "100001",
            )
            .await,
        )
        .unwrap();
    let street = keys
        .open(
            "utility_accounts.service_street",
            &sealed(
                s.app(),
                "SELECT service_street FROM utility_accounts WHERE account_number = $1",
                "100001",
            )
            .await,
        )
        .unwrap();
    assert!(
        name.contains(' ') && street.contains(' '),
        "{name} / {street}"
    );
    let needles = [
        EMAIL.to_lowercase(),
        "pat.resident".to_owned(),
        PAYER.to_owned(),
        name.to_lowercase(),
        street.to_lowercase(),
    ];
    let texts = raw_texts(s.app()).await;
    assert!(texts.iter().any(|(t, _)| t == "outbox_emails"));
    for (table, v) in &texts {
        let v = v.to_lowercase();
        for n in &needles {
            assert!(!v.contains(n.as_str()), "{table} holds {n:?} in clear: {v}");
        }
    }
    // On SQLite, not in the database file or its WAL either (no plaintext ever written).
    if s.database_url.starts_with("sqlite:") {
        for f in ["strongroom.db", "strongroom.db-wal"] {
            let Ok(bytes) = std::fs::read(s.data_dir.join(f)) else {
                continue;
            };
            let lower = bytes.to_ascii_lowercase();
            for n in &needles {
                assert!(
                    !lower.windows(n.len()).any(|w| w == n.as_bytes()),
                    "{f} holds {n:?}"
                );
            }
        }
    }
    // Every sealed value names key 1.
    for (table, v) in &texts {
        if v.starts_with("enc:") {
            assert!(v.starts_with("enc:v1:1:"), "{table}: {v}");
        }
    }

    // Reads go through the app, which opens them.
    let summary = s.app().account_summary("100001").await.unwrap();
    assert_eq!(summary.service_street, street);
    assert_eq!(s.app().payment(&paid).await.unwrap().email, PAYER);
    // Login by email: the blind index, case-insensitive.
    let (r, _) = s
        .app()
        .resident_login(" PAT.resident@example.COM ", PASSWORD, "127.0.0.9")
        .await
        .unwrap();
    assert_eq!(r.email, STORED);
    assert_eq!(s.app().resident(&r.id).await.unwrap().email, STORED);
    // Staff search by email finds the payment (any case).
    let found = s
        .app()
        .search_payments("PAYER@Example.com", 10)
        .await
        .unwrap();
    assert!(found.iter().any(|p| p.id == paid));
    let outbox = s.app().outbox(50).await.unwrap();
    assert!(outbox.iter().any(|m| m.to_addr == PAYER));

    // A tampered value is an error, not garbage; a value moved to another column too.
    let original = sealed(s.app(), "SELECT email FROM payments WHERE id = $1", &paid).await;
    let mut bytes = original.clone().into_bytes();
    let i = bytes.len() - 5;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    set_payment_email(s.app(), &paid, &String::from_utf8(bytes).unwrap()).await;
    assert!(s.app().payment(&paid).await.is_err());
    let resident_email = sealed(s.app(), "SELECT email FROM residents WHERE id = $1", &r.id).await;
    set_payment_email(s.app(), &paid, &resident_email).await;
    assert!(s.app().payment(&paid).await.is_err());
    set_payment_email(s.app(), &paid, &original).await;
    assert_eq!(s.app().payment(&paid).await.unwrap().email, PAYER);

    // Rotation: stop the workers, add key 2, re-encrypt everything.
    s.running.stop();
    // A copy outside the data dir: the suite's card-number scan reads the data dir, and
    // random keys are no business of that test.
    let kd = tempfile::tempdir().unwrap();
    let keys_file = kd.path().join(strongroom::keys::DEMO_FILE);
    std::fs::copy(s.data_dir.join(strongroom::keys::DEMO_FILE), &keys_file).unwrap();
    let lines = strongroom::keys::rotate(
        &s.database_url,
        &keys_file,
        AUDIT_KEY.to_vec(),
        "City of Testville",
    )
    .await
    .unwrap();
    let out = lines.join("\n");
    assert!(out.contains("added data key 2"), "{out}");
    assert!(out.contains("older keys (1) stay"), "{out}");
    assert!(
        out.contains("utility_accounts.holder_name: 12 values, 12 re-encrypted"),
        "{out}"
    );
    let ring = strongroom::keys::load(&keys_file).unwrap();
    assert_eq!(ring.key_ids(), vec![1, 2]);
    assert_eq!(ring.current_id(), 2);
    let sealed_values: Vec<String> = raw_texts(s.app())
        .await
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v.starts_with("enc:"))
        .collect();
    assert!(sealed_values.len() > 20);
    assert!(sealed_values.iter().all(|v| v.starts_with("enc:v1:2:")));
    // The old ring no longer reads them; the new one reads everything.
    assert!(s.app().payment(&paid).await.is_err());
    let rotated = server::offline_app(
        &s.database_url,
        AUDIT_KEY.to_vec(),
        "City of Testville",
        ring,
        app::ledger::LedgerConfig::standard().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(rotated.payment(&paid).await.unwrap().email, PAYER);
    assert_eq!(
        rotated.account_summary("100001").await.unwrap().masked_name,
        summary.masked_name
    );
    let (r2, _) = rotated
        .resident_login(EMAIL, PASSWORD, "127.0.0.10")
        .await
        .unwrap();
    assert_eq!(r2.email, STORED);
    assert!(rotated
        .search_payments(PAYER, 10)
        .await
        .unwrap()
        .iter()
        .any(|p| p.id == paid));
    assert!(rotated
        .emails_to(PAYER)
        .await
        .unwrap()
        .iter()
        .any(|m| m.kind == "receipt"));
    // A second rotation re-encrypts again; nothing is left under older keys.
    let out = strongroom::keys::rotate(
        &s.database_url,
        &keys_file,
        AUDIT_KEY.to_vec(),
        "City of Testville",
    )
    .await
    .unwrap()
    .join("\n");
    assert!(out.contains("older keys (1, 2) stay"), "{out}");
    assert!(raw_texts(s.app())
        .await
        .iter()
        .filter(|(_, v)| v.starts_with("enc:"))
        .all(|(_, v)| v.starts_with("enc:v1:3:")));
}

#[test]
fn keys_init_creates_a_private_file_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("data.keys");
    let bin = || std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"));
    let out = bin()
        .args(["keys", "init", "--out"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let ring = strongroom::keys::load(&p).unwrap();
    assert_eq!(ring.current_id(), 1);
    let text = std::fs::read_to_string(&p).unwrap();
    let key1 = text.lines().last().unwrap().split_once(' ').unwrap().1;
    assert_eq!(key1.len(), 64);
    assert!(!format!("{ring:?}").contains(&key1[..16]));
    let again = bin()
        .args(["keys", "init", "--out"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(!again.status.success());
}

/// TOTP secrets are sealed at rest; a database from before that (secrets in clear) has
/// them sealed at start, and sign-in with the same authenticator still works.
#[tokio::test]
async fn totp_secrets_in_clear_are_sealed_and_keep_working() {
    let s = server().start().await;
    s.app()
        .create_staff(
            "legacy1",
            "Legacy",
            "ledger-harbor-quiet-42",
            app::staff::Role::Clerk,
        )
        .await
        .unwrap();
    let secret = s
        .app()
        .provision_staff_totp("legacy1")
        .await
        .unwrap()
        .secret_base32;
    let id = s
        .app()
        .staff_by_username("legacy1")
        .await
        .unwrap()
        .unwrap()
        .id;
    // As an older version wrote it: the secret itself.
    {
        let mut c = s.app().store.conn().await.unwrap();
        sqlx::query("UPDATE staff_mfa SET totp_secret = $1 WHERE staff_id = $2")
            .bind(&secret)
            .bind(&id)
            .execute(&mut *c)
            .await
            .unwrap();
    }
    assert_eq!(s.app().seal_plaintext_mfa_secrets().await.unwrap(), 1);
    assert_eq!(
        s.app().seal_plaintext_mfa_secrets().await.unwrap(),
        0,
        "once"
    );
    let mut c = s.app().store.conn().await.unwrap();
    let stored = store::mfa::get(&mut c, &id)
        .await
        .unwrap()
        .unwrap()
        .totp_secret;
    drop(c);
    assert!(stored.starts_with("enc:v1:") && !stored.contains(&secret));
    let client = client();
    let res =
        crate::staff::staff_login_full(&s, &client, "legacy1", "ledger-harbor-quiet-42").await;
    assert_eq!(res.status(), 303, "the same authenticator still signs in");
}
