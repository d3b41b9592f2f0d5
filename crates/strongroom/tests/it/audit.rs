//! The audit log: append-only in the database (triggers), tamper evidence that
//! `strongroom audit verify` names (edited, deleted, reordered, truncated rows), the
//! auditor's viewer and its role rule, and audit entries for sign-out and for views.

use crate::harness::*;
use app::sessions::Realm;
use sqlx::Connection;
use std::path::Path;
use std::process::Command;

fn on_postgres() -> bool {
    std::env::var("STRONGROOM_TEST_DATABASE_URL").is_ok_and(|v| !v.is_empty())
}

/// `strongroom audit verify` on a harness data directory: (exit code, stdout).
fn verify(dir: &Path) -> (i32, String) {
    let key = dir.join("test-audit.key");
    if !key.exists() {
        std::fs::write(&key, AUDIT_KEY).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(["audit", "verify", "--data-dir"])
        .arg(dir)
        .arg("--key-file")
        .arg(&key)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

async fn max_seq(s: &Server) -> i64 {
    let mut c = s.app().store.conn().await.unwrap();
    store::audit::head(&mut c).await.unwrap().map_or(0, |h| h.0)
}

/// Waits until the server's checkpoint file records the newest audit row.
async fn checkpoint_caught_up(s: &Server) {
    let want = max_seq(s).await;
    let path = s.data_dir.join("audit.head");
    eventually("the audit checkpoint reaches the newest row", || {
        let path = path.clone();
        async move {
            std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| store::audit::Checkpoint::decode(AUDIT_KEY, &t))
                .is_some_and(|c| c.seq == want)
        }
    })
    .await;
}

fn checkpoint_seq(s: &Server) -> i64 {
    let text = std::fs::read_to_string(s.data_dir.join("audit.head")).unwrap();
    store::audit::Checkpoint::decode(AUDIT_KEY, &text)
        .unwrap()
        .seq
}

async fn sqlite(s: &Server) -> sqlx::SqliteConnection {
    let url = format!("sqlite://{}", s.data_dir.join("strongroom.db").display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("PRAGMA busy_timeout = 5000")
        .execute(&mut c)
        .await
        .unwrap();
    c
}

async fn exec(c: &mut sqlx::SqliteConnection, sql: &str) {
    sqlx::query(sql).execute(&mut *c).await.unwrap();
}

#[tokio::test]
async fn the_database_refuses_to_change_or_remove_audit_rows() {
    let s = server().start().await;
    s.pay_ok("100001", "93301", 1500, "audit-trig-1").await;
    let n = max_seq(&s).await;
    assert!(n >= 3, "{n}");
    // Through the server's own connection, on either backend.
    let mut c = s.app().store.conn().await.unwrap();
    for sql in [
        "UPDATE audit_log SET detail = 'nothing happened' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 2",
        "DELETE FROM audit_log",
    ] {
        let e = sqlx::query(sql).execute(&mut *c).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    if on_postgres() {
        let e = sqlx::query("TRUNCATE audit_log")
            .execute(&mut *c)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    assert_eq!(count, n, "nothing was removed");
    assert!(store::audit::verify(&mut c, AUDIT_KEY)
        .await
        .unwrap()
        .is_ok());
    drop(c);
    if on_postgres() {
        return;
    }
    // And through a separate connection to the file, as another process would.
    let mut db = sqlite(&s).await;
    let e = sqlx::query("UPDATE audit_log SET outcome = 'failure' WHERE seq = 1")
        .execute(&mut db)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = sqlx::query("DELETE FROM audit_log WHERE seq = 1")
        .execute(&mut db)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
}

/// Breach replay: someone with the database file drops the triggers and rewrites history;
/// `audit verify` names each kind of change. (SQLite: the attacker owns the file.)
#[tokio::test]
async fn audit_verify_names_edited_deleted_reordered_and_truncated_rows() {
    if on_postgres() {
        return;
    }
    let s = server().start().await;
    for i in 0..3 {
        s.pay_ok("100001", "93301", 1000 + i, &format!("audit-tamper-{i}"))
            .await;
    }
    checkpoint_caught_up(&s).await;
    // The server stops writing (as after a breach, the attacker works on the file).
    s.running.stop();
    let rows = max_seq(&s).await;
    assert!(rows >= 7, "{rows}");
    let n = checkpoint_seq(&s);
    assert!(n >= 6 && n <= rows, "{n} {rows}");
    let (code, out) = verify(&s.data_dir);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("audit chain intact: {rows} entries")),
        "{out}"
    );

    let mut db = sqlite(&s).await;
    exec(&mut db, "DROP TRIGGER audit_log_no_update").await;
    exec(&mut db, "DROP TRIGGER audit_log_no_delete").await;

    // Edited: a failed login becomes a success, or a payment's detail is rewritten.
    let (old,): (String,) = sqlx::query_as("SELECT detail FROM audit_log WHERE seq = 4")
        .fetch_one(&mut db)
        .await
        .unwrap();
    exec(
        &mut db,
        "UPDATE audit_log SET detail = 'refund 0 cents' WHERE seq = 4",
    )
    .await;
    let (code, out) = verify(&s.data_dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("row 4 was edited"), "{out}");
    sqlx::query("UPDATE audit_log SET detail = $1 WHERE seq = 4")
        .bind(&old)
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(verify(&s.data_dir).0, 0, "restored");

    // Deleted from the middle.
    exec(
        &mut db,
        "CREATE TABLE saved AS SELECT * FROM audit_log WHERE seq = 5",
    )
    .await;
    exec(&mut db, "DELETE FROM audit_log WHERE seq = 5").await;
    let (code, out) = verify(&s.data_dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("row 5 is missing (deleted)"), "{out}");
    // ... and the later rows renumbered to close the gap.
    exec(&mut db, "UPDATE audit_log SET seq = 1 - seq WHERE seq > 5").await;
    exec(&mut db, "UPDATE audit_log SET seq = -seq WHERE seq < 0").await;
    let (code, out) = verify(&s.data_dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("row 5 is missing (deleted)"), "{out}");
    exec(&mut db, "UPDATE audit_log SET seq = -seq WHERE seq >= 5").await;
    exec(&mut db, "UPDATE audit_log SET seq = 1 - seq WHERE seq < 0").await;
    exec(&mut db, "INSERT INTO audit_log SELECT * FROM saved").await;
    assert_eq!(verify(&s.data_dir).0, 0, "restored");

    // Reordered: two rows swap places.
    for sql in [
        "UPDATE audit_log SET seq = -1 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 6",
        "UPDATE audit_log SET seq = 6 WHERE seq = -1",
    ] {
        exec(&mut db, sql).await;
    }
    let (code, out) = verify(&s.data_dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rows out of order at 3"), "{out}");
    for sql in [
        "UPDATE audit_log SET seq = -1 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 6",
        "UPDATE audit_log SET seq = 6 WHERE seq = -1",
    ] {
        exec(&mut db, sql).await;
    }
    assert_eq!(verify(&s.data_dir).0, 0, "restored");

    // Truncated: the newest rows cut off, which leaves a valid chain; the checkpoint
    // outside the database shows it.
    sqlx::query("DELETE FROM audit_log WHERE seq > $1")
        .bind(n - 2)
        .execute(&mut db)
        .await
        .unwrap();
    let (code, out) = verify(&s.data_dir);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "row {} is missing (truncated: the log ends at row {}, the checkpoint records row {n})",
            n - 1,
            n - 2
        )),
        "{out}"
    );
    // Removing the checkpoint does not hide it: verify refuses to call the log intact.
    let head = s.data_dir.join("audit.head");
    std::fs::remove_file(&head).unwrap();
    let (code, out) = verify(&s.data_dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is missing"), "{out}");
    // Nor does a forged one (no audit key).
    std::fs::write(
        &head,
        format!(
            "strongroom-audit-head v1 {} {} {}\n",
            n - 2,
            "ab".repeat(32),
            "cd".repeat(32)
        ),
    )
    .unwrap();
    let (code, out) = verify(&s.data_dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not authentic"), "{out}");
}

#[tokio::test]
async fn the_server_never_moves_its_checkpoint_back() {
    if on_postgres() {
        return;
    }
    let s = server().start().await;
    s.pay_ok("100001", "93301", 700, "audit-cp-1").await;
    checkpoint_caught_up(&s).await;
    s.running.stop();
    let n = checkpoint_seq(&s);
    let mut db = sqlite(&s).await;
    exec(&mut db, "DROP TRIGGER audit_log_no_delete").await;
    sqlx::query("DELETE FROM audit_log WHERE seq > $1")
        .bind(n - 1)
        .execute(&mut db)
        .await
        .unwrap();
    let step = strongroom::audit::checkpoint_once(s.app(), &s.data_dir.join("audit.head"))
        .await
        .unwrap();
    assert!(
        matches!(&step, strongroom::audit::CheckpointStep::Refused(why) if why.contains("cut off")),
        "{step:?}"
    );
    let cp = store::audit::Checkpoint::decode(
        AUDIT_KEY,
        &std::fs::read_to_string(s.data_dir.join("audit.head")).unwrap(),
    )
    .unwrap();
    assert_eq!(cp.seq, n, "the checkpoint still records the cut-off row");
}

/// A signed-in staff client (a session made directly: the viewer, not the sign-in, is
/// under test here).
async fn staff_client(
    s: &Server,
    username: &str,
    role: app::staff::Role,
) -> (reqwest::Client, String) {
    let user = s
        .app()
        .create_staff(username, username, "ledger-clerk-harbor-42", role)
        .await
        .unwrap();
    let mut tx = s.app().store.begin().await.unwrap();
    let new = s
        .app()
        .create_session(&mut tx, Realm::Staff, &user.id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let url: reqwest::Url = s.staff.parse().unwrap();
    jar.add_cookie_str(&format!("sr_staff={}", new.token), &url);
    let c = reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (c, user.id)
}

async fn events(s: &Server, event: &str) -> Vec<store::audit::AuditRow> {
    let mut c = s.app().store.conn().await.unwrap();
    store::audit::search(
        &mut c,
        &store::audit::AuditFilter {
            event: event.into(),
            ..Default::default()
        },
        None,
        100,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn auditors_and_administrators_read_the_log_and_each_view_is_recorded() {
    let s = server().start().await;
    let id = s.pay_ok("100001", "93301", 1200, "audit-view-1").await;
    let (auditor, auditor_id) = staff_client(&s, "auditor1", app::staff::Role::Auditor).await;
    let res = auditor
        .get(format!("{}/audit", s.staff))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    for needle in [
        "payment.succeeded",
        "payment.created",
        "staff.created",
        "127.0.0.1",
    ] {
        assert!(html.contains(needle), "the log shows {needle}");
    }
    assert!(html.contains("href=\"/audit\""), "nav link");
    // The view itself is in the log, with who, from where and what was asked.
    let viewed = events(&s, "audit.viewed").await;
    assert_eq!(viewed.len(), 1);
    assert_eq!(viewed[0].actor, format!("staff:{auditor_id}"));
    assert_eq!(viewed[0].outcome, "success");
    assert_eq!(viewed[0].source_ip, "127.0.0.1");

    // Filter by object and event.
    let html = auditor
        .get(format!(
            "{}/audit?object={id}&event=payment.succeeded",
            s.staff
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("payment.succeeded"));
    assert!(!html.contains("staff.created"), "filtered out");
    // Filter by actor.
    let html = auditor
        .get(format!("{}/audit?actor=staff:{auditor_id}", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("audit.viewed") && !html.contains("payment.created"));

    // Verify chain, on the page.
    let html = auditor
        .get(format!("{}/audit?verify=1", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"verify-result\""), "{html}");
    assert!(html.contains("The audit chain is intact"), "{html}");
    // In Spanish too.
    let html = auditor
        .get(format!("{}/audit?verify=1&lang=es", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Registro de auditoría") && html.contains("está intacta"));

    // Bad input is refused, not echoed into SQL or the page.
    for q in [
        "before=0",
        "before=abc",
        &format!("event={}", "x".repeat(200)),
    ] {
        let res = auditor
            .get(format!("{}/audit?{q}", s.staff))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{q}");
    }
    let html = auditor
        .get(format!(
            "{}/audit?actor=%3Cscript%3Ealert(1)%3C/script%3E'%20OR%201=1--",
            s.staff
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<script>alert"), "escaped");
    assert!(html.contains("id=\"no-results\""));

    let (admin, _) = staff_client(&s, "admin1", app::staff::Role::Administrator).await;
    let res = admin
        .get(format!("{}/audit", s.staff))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn audit_log_is_paged_newest_first() {
    let s = server().start().await;
    let (auditor, _) = staff_client(&s, "auditor1", app::staff::Role::Auditor).await;
    for i in 0..60 {
        let mut c = s.app().store.conn().await.unwrap();
        store::audit::append(
            &mut c,
            AUDIT_KEY,
            &store::audit::AuditEntry {
                at: 1_700_000_000 + i,
                actor: "system",
                event: "test.filler",
                object: &format!("filler-{i}"),
                outcome: "success",
                source_ip: "-",
                detail: "",
            },
        )
        .await
        .unwrap();
    }
    let html = auditor
        .get(format!("{}/audit?event=test.filler", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("filler-59") && !html.contains("filler-9<"));
    assert!(
        html.find("filler-59") < html.find("filler-58"),
        "newest first"
    );
    let older = html
        .split("id=\"older\"")
        .next()
        .and_then(|h| h.rsplit("href=\"").next())
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    assert!(older.contains("before="), "{older}");
    let html = auditor
        .get(format!("{}{older}", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("filler-9<") && html.contains("filler-0<"),
        "{older} {html}"
    );
    assert!(!html.contains("filler-59"));
    assert!(!html.contains("id=\"older\""), "last page");
}

/// Clerks and supervisors are the people the log watches: they may not read it. The
/// refused attempt is itself recorded.
#[tokio::test]
async fn clerks_and_supervisors_may_not_read_the_log() {
    let s = server().start().await;
    for (name, role) in [
        ("clerk1", app::staff::Role::Clerk),
        ("super1", app::staff::Role::Supervisor),
    ] {
        let (c, id) = staff_client(&s, name, role).await;
        let res = c.get(format!("{}/audit", s.staff)).send().await.unwrap();
        assert_eq!(res.status(), 403, "{name}");
        let html = res.text().await.unwrap();
        assert!(!html.contains("staff.created"), "nothing of the log leaks");
        let refused = events(&s, "audit.viewed").await;
        assert!(
            refused
                .iter()
                .any(|r| r.actor == format!("staff:{id}") && r.outcome == "failure"),
            "{name}'s attempt is recorded"
        );
    }
    // Not signed in: to the login page.
    let res = client()
        .get(format!("{}/audit", s.staff))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    // And the portal listener has no such page.
    let res = s.get("/audit").await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn staff_sign_out_is_recorded() {
    let s = server().start().await;
    let (c, id) = staff_client(&s, "auditor1", app::staff::Role::Auditor).await;
    let page = c
        .get(format!("{}/audit", s.staff))
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
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let out = events(&s, "staff.logout").await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].actor, format!("staff:{id}"));
    assert_eq!(out[0].object, id);
    assert_eq!(out[0].source_ip, "127.0.0.1");
    let mut conn = s.app().store.conn().await.unwrap();
    assert!(store::audit::verify(&mut conn, AUDIT_KEY)
        .await
        .unwrap()
        .is_ok());
}

/// `audit verify --config FILE`: the production layout (database URL, key file and
/// checkpoint file from the configuration); on PostgreSQL too.
#[tokio::test]
async fn audit_verify_reads_a_production_config() {
    let s = server().start().await;
    s.pay_ok("100001", "93301", 900, "audit-config-1").await;
    checkpoint_caught_up(&s).await;
    s.running.stop();
    let dir = &s.data_dir;
    let key = dir.join("config-audit.key");
    std::fs::write(&key, AUDIT_KEY).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url = match std::env::var("STRONGROOM_TEST_DATABASE_URL") {
        Ok(v) if !v.is_empty() => {
            let mut c = s.app().store.conn().await.unwrap();
            let (name,): (String,) = sqlx::query_as("SELECT CAST(current_database() AS TEXT)")
                .fetch_one(&mut *c)
                .await
                .unwrap();
            format!("{}/{name}", v.rsplit_once('/').unwrap().0)
        }
        _ => format!("sqlite://{}", dir.join("strongroom.db").display()),
    };
    let config = |head: Option<&Path>| {
        let head = head
            .map(|h| format!("audit_head_file = \"{}\"\n", h.display()))
            .unwrap_or_default();
        let text = format!(
            r#"[city]
name = "City of Testville"
[server]
portal_addr = "127.0.0.1:8080"
public_url = "https://pay.example.gov"
staff_url = "http://127.0.0.1:8081"
[database]
url = "{url}"
[processor]
api_base = "https://api.stripe.com"
hosted_origin = "https://checkout.stripe.com"
secret_key_file = "/nonexistent/sk"
webhook_secret_file = "/nonexistent/whsec"
[email]
smtp_host = "localhost"
from = "City <pay@example.gov>"
[security]
audit_key_file = "{key}"
{head}"#,
            key = key.display()
        );
        let p = dir.join("verify.toml");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_strongroom"))
            .args(["audit", "verify", "--config"])
            .arg(&p)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = config(Some(&dir.join("audit.head")));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("audit chain intact") && out.contains("checkpoint at row"),
        "{out}"
    );
    let (code, out) = config(None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("truncation not checked"), "{out}");
    // Neither place given: a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
