//! `strongroom bench`, the server's hot paths: the real server (`server::start`, every
//! middleware, the sandbox processor in-process) on a fresh store, loaded by clients in
//! the same process, each measure beside its ceiling measured in the same run:
//!
//! - pages (resident dashboard and bill history signed in, the quick-pay page and the
//!   lookup anonymous) against a bare 2 KB static route served by the same process and
//!   runtime without any middleware, at the same number of connections;
//! - payments end to end (create through the API, the processor's page, the return page,
//!   the processor's webhook, posting, audit; timed until the last webhook is taken)
//!   against durable single-row commits per second through the same pool, divided by
//!   the durable commits one payment needs (counted with PostgreSQL's `pg_stat_wal`);
//! - memory: the server process alone (`strongroom demo` as a child process), idle and at
//!   its peak under page load ([`server_memory`]).
//!
//! The bench lifts the per-client throttles for its own server
//! (`App::lift_client_throttles_for_bench`): all its load comes from one address. `serve`
//! cannot: its configuration has no such setting and refuses unknown keys.

use anyhow::Context;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bench::Measure;

const RESIDENT: &str = "bench@example.com";
const PASSWORD: &str = "a long bench passphrase";
const WEBHOOK_SECRET: &str = "whsec_bench";
const SK: &str = "sk_test_bench";
/// How long each page load runs (after a warm-up of a quarter of it).
const PAGE_SECS: f64 = 3.0;
const PAY_SECS: f64 = 6.0;

/// Requests per second and latency of one load.
pub struct Load {
    pub rps: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

#[derive(Clone)]
enum Req {
    Get(String),
    Json(String, serde_json::Value),
}

/// `conns` connections, each its own client sending one request after another for
/// `secs`; a quarter of that first as warm-up, not counted.
async fn load(req: Req, cookie: Option<String>, conns: usize, secs: f64) -> Load {
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_secs_f64(secs / 4.0);
    let end = start + Duration::from_secs_f64(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let (req, cookie, errors) = (req.clone(), cookie.clone(), errors.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let Ok(http) = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(1)
                .build()
            else {
                return lat;
            };
            loop {
                let t = Instant::now();
                if t >= end {
                    return lat;
                }
                let mut r = match &req {
                    Req::Get(u) => http.get(u),
                    Req::Json(u, body) => http.post(u).json(body),
                };
                if let Some(c) = &cookie {
                    r = r.header("cookie", c);
                }
                let ok = match r.send().await {
                    Ok(res) => {
                        let good = res.status().is_success();
                        res.bytes().await.is_ok() && good
                    }
                    Err(_) => false,
                };
                if t >= start {
                    if ok {
                        lat.push(t.elapsed().as_micros() as u32);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    let mut all = Vec::new();
    while let Some(Ok(l)) = tasks.join_next().await {
        all.extend(l);
    }
    all.sort_unstable();
    let p99 = all
        .get((all.len() as f64 * 0.99) as usize)
        .or(all.last())
        .copied()
        .unwrap_or(0);
    Load {
        rps: all.len() as f64 / secs,
        p99_ms: f64::from(p99) / 1000.0,
        errors: errors.load(Ordering::Relaxed),
    }
}

/// The bare route: 2 KB from memory, no middleware, on the same runtime.
async fn static_route() -> anyhow::Result<String> {
    static BODY: [u8; 2048] = [b'x'; 2048];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = axum::Router::new().route("/static", axum::routing::get(|| async { &BODY[..] }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(format!("http://{addr}/static"))
}

/// A process's (`/proc/<pid>`) resident set and its peak, in MiB.
fn memory_of(pid: &str) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Durable single-row commits per second through the store's pool, `clients` at once.
async fn commits_per_sec(store: &store::Store, clients: usize) -> anyhow::Result<f64> {
    {
        let mut c = store.conn().await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_commits (id TEXT PRIMARY KEY, at BIGINT NOT NULL)",
        )
        .execute(&mut *c)
        .await?;
    }
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(2);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (store, done) = (store.clone(), done.clone());
        tasks.spawn(async move {
            while Instant::now() < end {
                let Ok(mut c) = store.conn().await else {
                    return;
                };
                let r = sqlx::query("INSERT INTO bench_commits (id, at) VALUES ($1, $2)")
                    .bind(app::ids::random_id())
                    .bind(0i64)
                    .execute(&mut *c)
                    .await;
                if r.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// PostgreSQL's count of WAL flushes to disk (each durable commit, or a group of them).
async fn wal_syncs(store: &store::Store) -> Option<i64> {
    let mut c = store.conn().await.ok()?;
    sqlx::query_as::<_, (i64,)>("SELECT wal_sync FROM pg_stat_wal")
        .fetch_one(&mut *c)
        .await
        .ok()
        .map(|r| r.0)
}

struct Bench {
    running: crate::server::Running,
    portal: String,
    processor: String,
    /// Accounts with enough owing for many $1.00 payments, with their ZIP codes.
    payable: Vec<(String, String)>,
}

async fn start(database_url: &str) -> anyhow::Result<Bench> {
    let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
    let running = crate::server::start(crate::server::Options {
        database_url: database_url.to_owned(),
        portal_listener: bind().await?,
        staff_listener: bind().await?,
        portal_origin: None,
        staff_origin: None,
        city_name: "Bench City".into(),
        sandbox: Some(crate::server::SandboxOptions {
            listener: bind().await?,
            retry_base: Duration::from_millis(200),
        }),
        processor_api_base: String::new(),
        processor_hosted_origin: String::new(),
        processor_secret_key: SK.into(),
        webhook_secret: WEBHOOK_SECRET.into(),
        audit_key: b"bench-audit-key-0123456789abcdef".to_vec(),
        data_keys: app::crypto::KeyRing::generate(),
        audit_head_file: None,
        clock: Arc::new(app::SystemClock),
        mailer: app::email::Mailer::OutboxOnly,
        secure_cookies: false,
        hsts: false,
        allowed_return_origins: vec![],
        trusted_proxies: vec![],
        tls: None,
        worker_interval: Some(Duration::from_secs(5)),
        payment_ttl_secs: 3600,
        ledger: app::ledger::LedgerConfig::standard()?,
        services: app::services::ServicesConfig::demo().map_err(anyhow::Error::msg)?,
        pool: store::PoolSettings::default(),
    })
    .await?;
    let app = &running.app;
    app.lift_client_throttles_for_bench();
    app.seed_demo(600).await?;
    app.seed_demo_resident(RESIDENT, PASSWORD).await?;
    let mut payable = Vec::new();
    {
        let mut c = app.store.conn().await?;
        for n in 0..600u32 {
            let number = (100_001 + n).to_string();
            if store::accounts::balance_cents(&mut c, &number).await? >= 5_000 {
                if let Some(a) = store::accounts::get(&mut c, &number).await? {
                    payable.push((number, a.postal_code));
                }
            }
        }
    }
    anyhow::ensure!(payable.len() > 100, "too few accounts owe money");
    Ok(Bench {
        portal: running.portal_origin.clone(),
        processor: running.processor_origin.clone(),
        running,
        payable,
    })
}

/// Signs the bench resident in; the session cookie (`name=value`).
async fn sign_in(portal: &str) -> anyhow::Result<String> {
    sign_in_as(portal, RESIDENT, PASSWORD).await
}

/// Signs a resident in; the session cookie (`name=value`).
async fn sign_in_as(portal: &str, email: &str, password: &str) -> anyhow::Result<String> {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let page = http
        .get(format!("{portal}/login"))
        .send()
        .await?
        .text()
        .await?;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .context("no form token on /login")?
        .to_owned();
    let res = http
        .post(format!("{portal}/login"))
        .header("origin", portal)
        .form(&[("email", email), ("password", password), ("csrf", &csrf)])
        .send()
        .await?;
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sr_resident="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .context("signing in set no session cookie")
}

/// A redirect's target.
fn location(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// One resident's payment: create, the processor's page, back to the portal.
async fn pay_once(
    http: &reqwest::Client,
    b: (&str, &str),
    account: &(String, String),
) -> anyhow::Result<()> {
    let (portal, processor) = b;
    let res = http
        .post(format!("{portal}/api/v1/payments"))
        .header("Idempotency-Key", app::ids::random_id())
        .json(&serde_json::json!({"items":[{"type":"utility","account_number":account.0,"postal_code":account.1,"amount_cents":100}],"email":"payer@example.com"}))
        .send()
        .await?;
    anyhow::ensure!(res.status() == 201, "create: {}", res.status());
    let body: serde_json::Value = res.json().await?;
    let checkout = body["checkout_url"]
        .as_str()
        .context("checkout url")?
        .to_owned();
    http.get(&checkout).send().await?.bytes().await?;
    let res = http
        .post(&checkout)
        .header("origin", processor)
        .form(&[
            ("card_number", "4242 4242 4242 4242"),
            ("expiry", "12/39"),
            ("cvc", "123"),
            ("name", "Pat Payer"),
            ("zip", "93301"),
        ])
        .send()
        .await?;
    anyhow::ensure!(res.status() == 303, "card form: {}", res.status());
    let back = location(&res).context("no return location")?;
    let mut res = http.get(&back).send().await?;
    // The return page sends the browser on to the payment's page.
    if res.status().is_redirection() {
        let next = location(&res).context("no location after the return page")?;
        let next = if next.starts_with("http") {
            next
        } else {
            format!("{portal}{next}")
        };
        res = http.get(&next).send().await?;
    }
    anyhow::ensure!(res.status().is_success(), "return page: {}", res.status());
    res.bytes().await?;
    Ok(())
}

/// Payments per second with `clients` residents paying one after another, timed until
/// the processor has delivered every webhook they raised.
async fn payments(b: &Bench, clients: usize) -> anyhow::Result<(f64, u64)> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(PAY_SECS);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..clients {
        let (done, failed) = (done.clone(), failed.clone());
        let (portal, processor) = (b.portal.clone(), b.processor.clone());
        let accounts = b.payable.clone();
        tasks.spawn(async move {
            let Ok(http) = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
            else {
                return;
            };
            let mut i = k;
            while Instant::now() < end {
                let a = &accounts[i % accounts.len()];
                i += clients;
                match pay_once(&http, (&portal, &processor), a).await {
                    Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("bench: a payment failed: {e:#}");
                        }
                        0
                    }
                };
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    // Until every webhook was taken (posting and audit done on that path too).
    let http = reqwest::Client::new();
    for _ in 0..600 {
        let v: serde_json::Value = http
            .get(format!("{}/_sandbox/events", b.processor))
            .bearer_auth(SK)
            .send()
            .await?
            .json()
            .await?;
        if v["data"]
            .as_array()
            .is_some_and(|evs| evs.iter().all(|e| e["delivered"] == true))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((
        done.load(Ordering::Relaxed) as f64 / secs,
        failed.load(Ordering::Relaxed),
    ))
}

fn row(measure: &str, backend: &str, unit: &str, rate: f64, ceiling: f64, target: f64) -> Measure {
    Measure {
        p99_ms: None,
        measure: measure.into(),
        backend: backend.into(),
        unit: unit.into(),
        rate,
        ceiling,
        ratio: if ceiling > 0.0 { rate / ceiling } else { 0.0 },
        target,
    }
}

/// The server's measures on one store; `backend` names it in the table. On PostgreSQL
/// the durable commits one payment needs are counted (`pg_stat_wal`) and returned without
/// the audit seals; on SQLite, which has no such counter, that count is `sqlite_commits`
/// (else [`SQLITE_COMMITS_PER_PAYMENT`]).
pub async fn run(
    database_url: &str,
    backend: &str,
    pages: bool,
    sqlite_commits: Option<f64>,
) -> anyhow::Result<(Vec<Measure>, Option<f64>)> {
    let mut out = Vec::new();
    let b = start(database_url).await?;
    let store = b.running.app.store.clone();
    if pages {
        let cookie = sign_in(&b.portal).await?;
        let bare = static_route().await?;
        for conns in [64usize, 256] {
            let ceiling = load(Req::Get(bare.clone()), None, conns, PAGE_SECS).await;
            let pages = [
                (
                    "dashboard",
                    Req::Get(format!("{}/dashboard", b.portal)),
                    Some(cookie.clone()),
                    0.4,
                ),
                (
                    "bill history",
                    Req::Get(format!("{}/accounts/100001", b.portal)),
                    Some(cookie.clone()),
                    0.4,
                ),
                (
                    "quick-pay page",
                    Req::Get(format!("{}/", b.portal)),
                    None,
                    0.5,
                ),
                (
                    "quick-pay lookup",
                    Req::Json(
                        format!("{}/api/v1/quick-pay/lookup", b.portal),
                        serde_json::json!({"account_number": "100001", "postal_code": "93301"}),
                    ),
                    None,
                    0.5,
                ),
            ];
            for (name, req, cookie, target) in pages {
                eprintln!("bench:   {name} ({conns} conns)");
                let l = load(req, cookie, conns, PAGE_SECS).await;
                let mut m = row(
                    &format!("{name} ({conns} conns)"),
                    backend,
                    &format!(
                        "req/s, p99 {:.1} ms (bare {:.1} ms), {} errors",
                        l.p99_ms, ceiling.p99_ms, l.errors
                    ),
                    l.rps,
                    ceiling.rps,
                    target,
                );
                m.p99_ms = Some(l.p99_ms);
                out.push(m);
            }
        }
    }
    // Durable commits one payment needs: WAL flushes per payment with one client (no
    // group commit to share them), and how many of those were audit seals.
    let before = (wal_syncs(&store).await, b.running.app.seal_commits());
    let (rate, _) = payments(&b, 1).await?;
    let after = (wal_syncs(&store).await, b.running.app.seal_commits());
    let n = (rate * PAY_SECS).max(1.0);
    let (per_payment, without_seals) = match (before.0, after.0) {
        (Some(x), Some(y)) => {
            let all = (y - x) as f64 / n;
            (all, Some(all - (after.1 - before.1) as f64 / n))
        }
        _ => (sqlite_commits.unwrap_or(SQLITE_COMMITS_PER_PAYMENT), None),
    };
    for clients in [1usize, 8, 32] {
        let commits = commits_per_sec(&store, clients).await?;
        eprintln!("bench:   payments ({clients} clients)");
        let (rate, failed) = payments(&b, clients).await?;
        let per = per_payment;
        out.push(row(
            &format!("payments ({clients} clients)"),
            backend,
            &format!("payments/s; {commits:.0} commits/s / {per:.1} commits each; {failed} failed"),
            rate,
            commits / per,
            if backend == "sqlite" { 0.5 } else { 0.4 },
        ));
    }
    b.running.stop();
    Ok((out, without_seals))
}

/// Durable commits of one payment on SQLite: the PostgreSQL count without its audit
/// seals (one writer chains at once). Counted by hand from the code path, see
/// `docs/ARCHITECTURE.md` ("Measuring").
pub const SQLITE_COMMITS_PER_PAYMENT: f64 = 7.0;

/// A port free now on the loopback.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `strongroom demo` as a child process on `dir`; returns once it serves, with its portal.
/// Its output is drained (it logs every request).
fn spawn_demo(dir: &std::path::Path) -> anyhow::Result<(std::process::Child, String)> {
    use std::io::BufRead;
    let ports = (free_port()?, free_port()?, free_port()?);
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("demo")
        .arg("--data-dir")
        .arg(dir)
        .args(["--accounts", "600"])
        .arg("--portal-addr")
        .arg(format!("127.0.0.1:{}", ports.0))
        .arg("--staff-addr")
        .arg(format!("127.0.0.1:{}", ports.1))
        .arg("--processor-addr")
        .arg(format!("127.0.0.1:{}", ports.2))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let out = child.stdout.take().context("the demo's output")?;
    let (ready, serving) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.contains("Strongroom demo is running") {
                let _ = ready.send(());
            }
        }
    });
    if serving.recv_timeout(Duration::from_secs(300)).is_err() {
        let _ = child.kill();
        anyhow::bail!("the demo server did not start");
    }
    Ok((child, format!("http://127.0.0.1:{}", ports.0)))
}

/// The server's own memory, apart from any load generator: `strongroom demo` (the server
/// with its sandbox processor, on SQLite) as a child process. It is started once to seed
/// its data, killed, and started again, so "idle" is a freshly started server on an
/// existing store; then the resident dashboard and bill history are loaded at 256
/// connections while its resident set is sampled every 20 ms.
pub async fn server_memory(dir: &std::path::Path) -> anyhow::Result<Vec<Measure>> {
    let dir = dir.join("memory");
    let (mut seeding, _) = spawn_demo(&dir)?;
    seeding.kill()?;
    seeding.wait()?;
    let (mut child, portal) = spawn_demo(&dir)?;
    let pid = child.id().to_string();
    let measured = async {
        let (idle, _) = memory_of(&pid);
        let password = std::fs::read_to_string(dir.join("demo-resident-password"))?;
        let cookie = sign_in_as(&portal, "resident@demo.example", password.trim()).await?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let (pid, stop) = (pid.clone(), stop.clone());
            tokio::spawn(async move {
                let mut peak: f64 = 0.0;
                while !stop.load(Ordering::Relaxed) {
                    peak = peak.max(memory_of(&pid).0);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                peak
            })
        };
        let dashboard = load(
            Req::Get(format!("{portal}/dashboard")),
            Some(cookie.clone()),
            256,
            PAGE_SECS,
        )
        .await;
        let history = load(
            Req::Get(format!("{portal}/accounts/100001")),
            Some(cookie),
            256,
            PAGE_SECS,
        )
        .await;
        stop.store(true, Ordering::Relaxed);
        let peak = sampler.await?;
        anyhow::Ok((idle, peak, dashboard.rps, history.rps))
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let (idle, peak, dashboard, history) = measured?;
    let row = |measure: &str, rss: f64, target: f64| {
        Measure {
        ratio: rss / target,
        ..row(
            measure,
            "sqlite",
            &format!(
                "MiB resident of a budget (lower is better), the server process alone (demo; pages {dashboard:.0} + {history:.0} req/s)"
            ),
            rss,
            target,
            1.0,
        )
    }
    };
    Ok(vec![
        row("memory idle", idle, 40.0),
        row("memory peak, 256 conns", peak, 150.0),
    ])
}
