//! Crash safety with two nodes: two `strongroom serve` processes on one PostgreSQL
//! database take 200 payments side by side, every processor webhook is delivered to both,
//! and one node is killed with SIGKILL halfway. After its restart and the reconciliation
//! jobs, every payment the processor captured is `succeeded` and posted once, every bill
//! balance is right to the cent, and each receipt was sent once.

use crate::cli::{as_service_user, is_root};
use crate::harness::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PAYMENTS: usize = 200;
const AT_ONCE: usize = 24;
const CENTS: i64 = 100;
const ACCOUNTS: u32 = 60;

/// One `strongroom serve` process and where it answers.
struct Node {
    config: PathBuf,
    portal: String,
    log: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Node {
    fn spawn(&self) {
        let log = std::fs::File::create(&self.log).expect("node log");
        let child = as_service_user(&["serve", "--config", self.config.to_str().expect("path")])
            .env("STRONGROOM_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start node");
        *self.child.lock().expect("lock") = Some(child);
    }

    /// SIGKILL: no shutdown, no flushing, whatever was in flight is lost.
    fn kill(&self) {
        if let Some(mut c) = self.child.lock().expect("lock").take() {
            c.kill().expect("SIGKILL");
            let _ = c.wait();
        }
    }

    async fn ready(&self) {
        let url = format!("{}/readyz", self.portal);
        let http = reqwest::Client::new();
        eventually("the node answers /readyz", || {
            let (http, url) = (http.clone(), url.clone());
            async move { http.get(&url).send().await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Receives the processor's webhooks and hands each to both nodes at once, as two
/// endpoints would: answers 200 when at least one node took it (a dead node misses it; the
/// other has it), else 503 so the processor tries again.
async fn fan_out(nodes: [String; 2]) -> String {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    let http = reqwest::Client::new();
    let route = move |headers: HeaderMap, body: Bytes| {
        let (http, nodes) = (http.clone(), nodes.clone());
        async move {
            let sig = headers
                .get("stripe-signature")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let send = |n: &String| {
                http.post(format!("{n}/webhooks/processor"))
                    .header("content-type", "application/json")
                    .header("stripe-signature", sig.clone())
                    .body(body.clone())
                    .send()
            };
            let (a, b) = tokio::join!(send(&nodes[0]), send(&nodes[1]));
            if [a, b]
                .into_iter()
                .any(|r| r.is_ok_and(|r| r.status().is_success()))
            {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route("/hook", axum::routing::post(route));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hook")
}

/// What one resident's client did: the payment it paid, on which account.
struct Paid {
    id: String,
    account: String,
}

/// One resident: starts a payment through the API on `first` (the other node when that
/// one does not answer), pays on the processor's page and comes back to the portal.
async fn one_payment(
    nodes: &[Arc<Node>; 2],
    i: usize,
    account: &str,
    zip: &str,
    failovers: &AtomicUsize,
) -> Option<Paid> {
    let http = client();
    // Each resident from their own address (the nodes trust 127.0.0.1 as their proxy).
    let ip = format!("10.9.{}.{}", i / 250, i % 250 + 1);
    let first = i % 2;
    let mut key = app::ids::random_id();
    let mut at = first;
    let (id, checkout) = 'create: {
        for _ in 0..40 {
            let res = http
                .post(format!("{}/api/v1/payments", nodes[at].portal))
                .header("x-forwarded-for", &ip)
                .header("Idempotency-Key", &key)
                .json(&serde_json::json!({"items":[{"type":"utility","account_number":account,"postal_code":zip,"amount_cents":CENTS}],"email":"payer@example.com"}))
                .send()
                .await;
            match res {
                Ok(r) if r.status() == 201 || r.status() == 200 => {
                    let body: serde_json::Value = r.json().await.expect("json");
                    break 'create (
                        body["id"].as_str().expect("id").to_owned(),
                        body["checkout_url"].as_str().expect("url").to_owned(),
                    );
                }
                // The key's first request died with its node: a new attempt, a new key
                // (the orphan, if any, is expired by the processor check later).
                Ok(r) if r.status() == 409 => key = app::ids::random_id(),
                Ok(r) => panic!(
                    "payment refused: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                ),
                Err(_) => {
                    failovers.fetch_add(1, Ordering::SeqCst);
                    at = 1 - at;
                }
            }
            tokio::task::yield_now().await;
        }
        panic!("no node took the payment");
    };
    // The processor's page: card details, then the redirect back to the portal.
    let page = http.get(&checkout).send().await.ok()?;
    assert_eq!(page.status(), 200);
    let year = (time::OffsetDateTime::now_utc().year() + 3) % 100;
    let res = http
        .post(&checkout)
        .form(&[
            ("card_number", "4242 4242 4242 4242"),
            ("expiry", &format!("12/{year:02}")),
            ("cvc", "123"),
            ("name", "Pat Payer"),
            ("zip", "93301"),
        ])
        .send()
        .await
        .expect("card form");
    assert_eq!(res.status(), 303, "captured");
    let back = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_owned();
    // The return page, on the node that made the payment or, if it is dead, the other
    // (as a load balancer would send it).
    let path = back
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, p)| format!("/{p}"))
        .expect("return path");
    for n in [at, 1 - at, at, 1 - at] {
        if let Ok(r) = http.get(format!("{}{path}", nodes[n].portal)).send().await {
            if r.status().is_success() || r.status().is_redirection() {
                break;
            }
        }
        failovers.fetch_add(1, Ordering::SeqCst);
    }
    Some(Paid {
        id,
        account: account.to_owned(),
    })
}

#[tokio::test]
async fn two_nodes_lose_no_captured_payment_when_one_is_killed_mid_load() {
    if std::env::var("STRONGROOM_TEST_DATABASE_URL").map_or(true, |u| u.is_empty()) {
        eprintln!("skipped: two nodes need PostgreSQL (STRONGROOM_TEST_DATABASE_URL)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let secret = |name: &str, value: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, value).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        if is_root() {
            std::os::unix::fs::chown(&p, Some(65534), Some(65534)).expect("chown");
        }
        p
    };
    let (sk, wh, audit, keys) = (
        secret("sk", SK.as_bytes()),
        secret("wh", WEBHOOK_SECRET.as_bytes()),
        secret("audit", AUDIT_KEY),
        secret("data.keys", test_keys().to_file_text().as_bytes()),
    );
    let db = database_url(dir.path()).await;

    // The city's accounts, written before the nodes start.
    let seeder = strongroom::server::offline_app(
        &db,
        AUDIT_KEY.to_vec(),
        "City of Testville",
        test_keys(),
        app::ledger::LedgerConfig::standard().expect("ledger"),
    )
    .await
    .expect("store");
    seeder.seed_demo(ACCOUNTS).await.expect("seed");
    let mut accounts = Vec::new();
    {
        let mut c = seeder.store.conn().await.expect("conn");
        for n in 0..ACCOUNTS {
            let number = format!("{}", 100_001 + n);
            let a = store::accounts::get(&mut c, &number)
                .await
                .expect("read")
                .expect("seeded");
            let before = store::accounts::balance_cents(&mut c, &number)
                .await
                .expect("balance");
            // Payments may not exceed the balance: accounts owing $10 or more.
            if before >= 1_000 {
                accounts.push((number, a.postal_code, before));
            }
        }
    }
    assert!(accounts.len() >= 20, "enough accounts owe money");

    // The processor (its webhooks fanned out to both nodes) and a mail server.
    let ports = [free_port(), free_port()];
    let portals = ports.map(|p| format!("http://127.0.0.1:{p}"));
    let hook = fan_out(portals.clone()).await;
    let sandbox_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sandbox = format!("http://{}", sandbox_listener.local_addr().expect("addr"));
    let mut cfg = processor::sandbox::SandboxConfig::new(SK, sandbox.clone(), WEBHOOK_SECRET);
    cfg.webhook_url = Some(hook);
    cfg.retry_base = Duration::from_millis(100);
    tokio::spawn(processor::sandbox::serve(sandbox_listener, cfg));
    let sink = SmtpSink::start().await;

    let nodes: [Arc<Node>; 2] = [0, 1].map(|i| {
        let config = secret(
            &format!("node{i}.toml"),
            format!(
                "[city]\nname = \"City of Testville\"\n[server]\nportal_addr = \"127.0.0.1:{port}\"\nstaff_addr = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1:{port}\"\nstaff_url = \"http://127.0.0.1\"\ntrusted_proxies = [\"127.0.0.1\"]\n[database]\nurl = \"{db}\"\n[processor]\napi_base = \"{sandbox}\"\nhosted_origin = \"{sandbox}\"\nsecret_key_file = \"{sk}\"\nwebhook_secret_file = \"{wh}\"\n[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {smtp}\nsecurity = \"none\"\nfrom = \"City of Testville <pay@testville.gov>\"\n[security]\naudit_key_file = \"{audit}\"\ndata_keys_file = \"{keys}\"\n",
                port = ports[i],
                sk = sk.display(),
                wh = wh.display(),
                audit = audit.display(),
                keys = keys.display(),
                smtp = sink.port,
            )
            .as_bytes(),
        );
        Arc::new(Node {
            config,
            portal: portals[i].clone(),
            log: artifacts_dir().join(format!("node{i}-{}.log", app::ids::random_id())),
            child: Mutex::new(None),
        })
    });
    std::fs::create_dir_all(artifacts_dir()).expect("artifacts");
    for n in &nodes {
        n.spawn();
        n.ready().await;
    }

    // 200 residents, AT_ONCE at a time, alternating nodes; node 0 dies at the 100th.
    let done = Arc::new(AtomicUsize::new(0));
    let killed_at = Arc::new(AtomicI64::new(0));
    let failovers = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    let mut residents = tokio::task::JoinSet::new();
    for i in 0..PAYMENTS {
        let (nodes, done, gate) = (nodes.clone(), done.clone(), gate.clone());
        let (killed_at, failovers) = (killed_at.clone(), failovers.clone());
        let (account, zip, _) = accounts[i % accounts.len()].clone();
        residents.spawn(async move {
            let _permit = gate.acquire().await.expect("gate");
            let paid = one_payment(&nodes, i, &account, &zip, &failovers).await;
            if done.fetch_add(1, Ordering::SeqCst) + 1 == PAYMENTS / 2 {
                killed_at.store(
                    time::OffsetDateTime::now_utc().unix_timestamp(),
                    Ordering::SeqCst,
                );
                nodes[0].kill();
            }
            paid
        });
    }
    let mut paid = Vec::new();
    while let Some(r) = residents.join_next().await {
        paid.extend(r.expect("resident task"));
    }
    assert_eq!(paid.len(), PAYMENTS, "every resident got to pay");

    // The dead node comes back.
    nodes[0].spawn();
    nodes[0].ready().await;

    // Every webhook the processor raised was taken by a node.
    let http = client();
    eventually("the processor delivered every webhook", || async {
        let v: serde_json::Value = http
            .get(format!("{sandbox}/_sandbox/events"))
            .bearer_auth(SK)
            .send()
            .await
            .expect("events")
            .json()
            .await
            .expect("json");
        v["data"]
            .as_array()
            .is_some_and(|evs| evs.iter().all(|e| e["delivered"] == true))
    })
    .await;

    // The live nodes send every email they can: what stays unsent is what the dead node
    // had claimed (its lease runs to at most the kill + 300 s) and never sent.
    // Paced by the nodes' 5 s worker tick, 50 emails a tick, and slower when the whole
    // suite shares the machine: a longer bound than the default.
    let lease_end = killed_at.load(Ordering::SeqCst) + 300;
    eventually_within(
        "the live nodes sent every email they could",
        Duration::from_secs(90),
        || {
            let store = &seeder.store;
            async move {
                let mut c = store.conn().await.expect("conn");
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let (open,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM outbox_emails WHERE status = 'pending'
                 AND (next_attempt_at <= $1 OR next_attempt_at > $2)",
                )
                .bind(now)
                .bind(lease_end)
                .fetch_one(&mut *c)
                .await
                .expect("outbox");
                open == 0
            }
        },
    )
    .await;

    // Then the jobs that repair what a crash left, as a node runs them later (its clock
    // moved on): emails whose lease ran out are sent, payments still pending past their
    // time to live are asked about at the processor, and the closed business day is
    // reconciled.
    let clock = Arc::new(app::ManualClock::new(time::OffsetDateTime::now_utc()));
    let mut config = seeder.config().clone();
    config.webhook_secret = domain::Secret::new(WEBHOOK_SECRET);
    config.portal_base_url = portals[1].clone();
    let checker = app::App::new(
        store::Store::connect(&db).await.expect("store"),
        Arc::new(processor::client::StripeClient::new(&sandbox, SK).expect("client")),
        clock.clone(),
        config,
    );
    let mailer = sink.mailer();
    clock.advance(time::Duration::seconds(310));
    let resent = checker.deliver_emails(&mailer).await.expect("deliver");
    clock.advance(time::Duration::hours(2));
    checker.expire_stale_payments().await.expect("expiry job");
    while checker.deliver_emails(&mailer).await.expect("deliver") > 0 {}
    clock.advance(time::Duration::days(2));
    let reconciled = checker.reconcile_due_days().await.expect("reconcile");
    assert!(reconciled >= 1, "today's business day was reconciled");

    // What the processor captured.
    let processor = processor::client::StripeClient::new(&sandbox, SK).expect("client");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sessions = processor::Processor::list_checkout_sessions(&processor, now - 86_400, now + 60)
        .await
        .expect("sessions");
    let charges = processor::Processor::list_charges(&processor, now - 86_400, now + 60)
        .await
        .expect("charges");
    let captured_intents: BTreeSet<String> = charges
        .iter()
        .filter(|c| c.paid && c.status == "succeeded")
        .filter_map(|c| c.payment_intent.clone())
        .collect();
    let captured: BTreeSet<String> = sessions
        .iter()
        .filter(|s| {
            s.payment_intent_id
                .as_ref()
                .is_some_and(|pi| captured_intents.contains(pi))
        })
        .filter_map(|s| s.client_reference_id.clone())
        .collect();
    assert_eq!(captured.len(), PAYMENTS, "one capture per resident");
    for p in &paid {
        assert!(captured.contains(&p.id), "{} was captured", p.id);
    }

    // Each captured payment succeeded and was posted once; balances are exact.
    let mut c = checker.store.conn().await.expect("conn");
    let mut paid_on: BTreeMap<&str, i64> = BTreeMap::new();
    for p in &paid {
        *paid_on.entry(p.account.as_str()).or_default() += CENTS;
        let (status,): (String,) = sqlx::query_as("SELECT status FROM payments WHERE id = $1")
            .bind(&p.id)
            .fetch_one(&mut *c)
            .await
            .expect("payment");
        assert_eq!(status, "succeeded", "{}", p.id);
        let (ledger,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM account_ledger WHERE kind = 'payment' AND reference = $1",
        )
        .bind(&p.id)
        .fetch_one(&mut *c)
        .await
        .expect("ledger");
        assert_eq!(ledger, 1, "{} posted to the account once", p.id);
    }
    let (succeeded,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM payments WHERE status = 'succeeded'")
            .fetch_one(&mut *c)
            .await
            .expect("count");
    assert_eq!(
        succeeded as usize, PAYMENTS,
        "no payment succeeded that was not captured"
    );
    let (orphans,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM payments WHERE status <> 'succeeded'")
            .fetch_one(&mut *c)
            .await
            .expect("count");
    eprintln!(
        "{} request(s) failed over to the other node; {orphans} payment(s) left unpaid by the kill, closed by expiry",
        failovers.load(Ordering::SeqCst)
    );
    for (number, _, before) in &accounts {
        let now = store::accounts::balance_cents(&mut c, number)
            .await
            .expect("balance");
        assert_eq!(
            now,
            before - paid_on.get(number.as_str()).copied().unwrap_or(0),
            "balance of {number}"
        );
    }
    // The reconciliation found the processor and the ledger agreeing.
    let runs = checker.reconciliations(10).await.expect("runs");
    let captures: i64 = runs.iter().map(|r| r.processor_capture_count).sum();
    let ours: i64 = runs.iter().map(|r| r.our_payment_count).sum();
    assert_eq!((captures, ours), (PAYMENTS as i64, PAYMENTS as i64));
    for r in &runs {
        assert!(
            r.differences.is_empty() && r.new_exceptions == 0,
            "{} differences on {}",
            r.differences.len(),
            r.business_date
        );
    }

    // Each receipt once.
    // Bodies are quoted-printable: long lines are folded with a trailing `=`.
    let unfolded = || async {
        sink.all()
            .await
            .into_iter()
            .map(|m| m.replace("=\r\n", "").replace("=\n", ""))
            .collect::<Vec<_>>()
    };
    eventually("every receipt arrived", || async {
        let all = unfolded().await;
        paid.iter().all(|p| {
            all.iter()
                .any(|m| m.contains(&format!("/payments/{}/receipt", p.id)))
        })
    })
    .await;
    let all = unfolded().await;
    eprintln!(
        "{} emails for {} payments; {resent} sent after the dead node's lease",
        all.len(),
        paid.len()
    );
    for p in &paid {
        let n = all
            .iter()
            .filter(|m| m.contains(&format!("/payments/{}/receipt", p.id)))
            .count();
        assert_eq!(n, 1, "receipt of {} sent {n} times", p.id);
    }
    // The audit chain is whole, with nothing left queued.
    checker.seal_audit().await.expect("seal");
    assert_eq!(store::audit::pending(&mut c).await.expect("pending"), 0);
    assert!(store::audit::verify(&mut c, AUDIT_KEY)
        .await
        .expect("verify")
        .is_ok());
}
