//! `strongroom bench`: measures a hot path against a ceiling measured in the same run on
//! the same machine, and prints the ratio. Not a test: run it by hand (`cargo run
//! --release -- bench`), and track the JSON it writes.
//!
//! Bill import: a generated CSV of N bills (each on its own new account, so an import
//! creates N accounts, N bills, 3N bill lines, N ledger rows and N linking codes) is
//! imported through the real engine (`App::import_bills`: parsing, checks, sealing,
//! look-ups, bulk statements, one transaction) into a fresh database. The ceiling writes
//! the same rows with the least work the database allows: prepared multi-row INSERTs in
//! one transaction on SQLite, `COPY` on PostgreSQL, with values prepared (and sealed) in
//! memory before the clock starts.

use anyhow::Context;
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct Measure {
    pub measure: String,
    pub backend: String,
    pub unit: String,
    pub rate: f64,
    pub ceiling: f64,
    pub ratio: f64,
    pub target: f64,
    /// Pages: the 99th percentile of response times.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

/// Writes a bill file of `n` bills (mapping `deploy/bills-csv.toml`).
pub fn write_bills_csv(path: &Path, n: u64) -> anyhow::Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    writeln!(w, "BILL_ID,ACCOUNT,SERVICE_ZIP,CUSTOMER_NAME,SERVICE_ADDRESS,SERVICE_CITY,PERIOD_FROM,PERIOD_TO,BILL_DATE,DUE_DATE,PREV_READ,CURR_READ,USAGE_HCF,WEB_CODE,WATER,SEWER,TRASH,LATE_FEE")?;
    for i in 0..n {
        let account = 200_000_000 + i;
        let usage = 4 + i % 12;
        writeln!(
            w,
            "B{i:09},{account},93301,Customer {i},{} Truxtun Ave,Bakersfield,2026-10-01,2026-10-31,2026-11-05,2026-11-26,{},{},{usage},,{}.{:02},38.75,29.40,",
            100 + i % 9800,
            10_000 + i,
            10_000 + i + usage,
            21 + usage * 3,
            (i * 7) % 100
        )?;
    }
    w.flush()?;
    Ok(())
}

/// The rows an import of `write_bills_csv(n)` writes, ready to insert (the ceiling's input).
struct Rows {
    accounts: Vec<[String; 7]>,
    bills: Vec<[String; 13]>,
    lines: Vec<[String; 5]>,
    ledger: Vec<[String; 7]>,
    codes: Vec<[String; 3]>,
}

fn rows(n: u64, keys: &app::crypto::KeyRing) -> anyhow::Result<Rows> {
    let mut r = Rows {
        accounts: Vec::with_capacity(n as usize),
        bills: Vec::with_capacity(n as usize),
        lines: Vec::with_capacity(3 * n as usize),
        ledger: Vec::with_capacity(n as usize),
        codes: Vec::with_capacity(n as usize),
    };
    for i in 0..n {
        let account = (200_000_000 + i).to_string();
        let usage = 4 + i % 12;
        let water = (21 + usage * 3) * 100 + (i * 7) % 100;
        let total = water + 3875 + 2940;
        let bill = format!("bill_bench{i:012}");
        r.accounts.push([
            account.clone(),
            "93301".into(),
            keys.seal(
                app::crypto::columns::ACCOUNT_HOLDER_NAME,
                &format!("Customer {i}"),
            )?,
            keys.seal(
                app::crypto::columns::ACCOUNT_SERVICE_STREET,
                &format!("{} Truxtun Ave", 100 + i % 9800),
            )?,
            "Bakersfield".into(),
            "usd".into(),
            "0".into(),
        ]);
        r.bills.push([
            bill.clone(),
            account.clone(),
            "2026-10-01".into(),
            "2026-10-31".into(),
            "2026-11-05".into(),
            "2026-11-26".into(),
            total.to_string(),
            (10_000 + i).to_string(),
            (10_000 + i + usage).to_string(),
            usage.to_string(),
            "0".into(),
            format!("B{i:09}"),
            "imp_bench".into(),
        ]);
        for (k, (kind, cents)) in [("water", water), ("sewer", 3875), ("trash", 2940)]
            .into_iter()
            .enumerate()
        {
            r.lines.push([
                bill.clone(),
                (k + 1).to_string(),
                kind.into(),
                kind.into(),
                cents.to_string(),
            ]);
        }
        r.ledger.push([
            format!("l{i:020}"),
            account.clone(),
            "bill".into(),
            bill,
            total.to_string(),
            "Bill".into(),
            "0".into(),
        ]);
        r.codes.push([
            account,
            keys.seal(app::crypto::columns::ACCOUNT_LINKING_CODE, "ABCDEFGHJK")?,
            "0".into(),
        ]);
    }
    Ok(r)
}

const INTS: &[&str] = &[
    "created_at",
    "amount_cents",
    "meter_previous",
    "meter_current",
    "usage_units",
    "line_no",
    "posted_at",
];

/// The ceiling on SQLite: prepared INSERTs of every row in one transaction, 50 rows a
/// statement, the best size through this driver (single-row statements were slower than
/// the engine itself, so they would be no ceiling; larger ones pay the driver's quadratic
/// parameter lookup, see `store::bill_import`).
async fn sqlite_ceiling(url: &str, r: &Rows) -> anyhow::Result<f64> {
    use sqlx::Connection;
    store::Store::connect(url).await?.close().await;
    let mut c = sqlx::SqliteConnection::connect(url).await?;
    sqlx::query("PRAGMA synchronous = FULL")
        .execute(&mut c)
        .await?;
    let started = Instant::now();
    let mut tx = c.begin().await?;
    async fn put<const K: usize>(
        tx: &mut sqlx::SqliteConnection,
        table: &str,
        cols: [&str; K],
        rows: &[[String; K]],
    ) -> anyhow::Result<()> {
        for chunk in rows.chunks(50) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let marks: Vec<String> = (1..=K).map(|k| format!("?{}", i * K + k)).collect();
                    format!("({})", marks.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES {}",
                cols.join(", "),
                values.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for row in chunk {
                for (col, v) in cols.iter().zip(row) {
                    q = if INTS.contains(col) {
                        q.bind(v.parse::<i64>().unwrap_or(0))
                    } else {
                        q.bind(v.as_str())
                    };
                }
            }
            q.execute(&mut *tx).await?;
        }
        Ok(())
    }
    put(
        &mut tx,
        "utility_accounts",
        [
            "account_number",
            "postal_code",
            "holder_name",
            "service_street",
            "service_city",
            "currency",
            "created_at",
        ],
        &r.accounts,
    )
    .await?;
    put(
        &mut tx,
        "account_linking_codes",
        ["account_number", "code", "created_at"],
        &r.codes,
    )
    .await?;
    put(
        &mut tx,
        "bills",
        [
            "id",
            "account_number",
            "period_start",
            "period_end",
            "issued_on",
            "due_on",
            "amount_cents",
            "meter_previous",
            "meter_current",
            "usage_units",
            "created_at",
            "cis_bill_id",
            "import_id",
        ],
        &r.bills,
    )
    .await?;
    put(
        &mut tx,
        "bill_lines",
        ["bill_id", "line_no", "kind", "description", "amount_cents"],
        &r.lines,
    )
    .await?;
    put(
        &mut tx,
        "account_ledger",
        [
            "id",
            "account_number",
            "kind",
            "reference",
            "amount_cents",
            "description",
            "posted_at",
        ],
        &r.ledger,
    )
    .await?;
    tx.commit().await?;
    Ok(r.bills.len() as f64 / started.elapsed().as_secs_f64())
}

/// The ceiling on PostgreSQL: `COPY ... FROM STDIN` of every row, one transaction.
async fn postgres_ceiling(url: &str, r: &Rows) -> anyhow::Result<f64> {
    use sqlx::Connection;
    store::Store::connect(url).await?.close().await;
    let mut c = sqlx::PgConnection::connect(url).await?;
    fn text<const K: usize>(rows: &[[String; K]]) -> Vec<u8> {
        let mut out = Vec::new();
        for row in rows {
            out.extend(row.join("\t").into_bytes());
            out.push(b'\n');
        }
        out
    }
    let data = [
        ("utility_accounts (account_number, postal_code, holder_name, service_street, service_city, currency, created_at)", text(&r.accounts)),
        ("account_linking_codes (account_number, code, created_at)", text(&r.codes)),
        ("bills (id, account_number, period_start, period_end, issued_on, due_on, amount_cents, meter_previous, meter_current, usage_units, created_at, cis_bill_id, import_id)", text(&r.bills)),
        ("bill_lines (bill_id, line_no, kind, description, amount_cents)", text(&r.lines)),
        ("account_ledger (id, account_number, kind, reference, amount_cents, description, posted_at)", text(&r.ledger)),
    ];
    let started = Instant::now();
    let mut tx = c.begin().await?;
    for (target, bytes) in &data {
        let mut copy = tx.copy_in_raw(&format!("COPY {target} FROM STDIN")).await?;
        for chunk in bytes.chunks(1 << 20) {
            copy.send(chunk).await?;
        }
        copy.finish().await?;
    }
    tx.commit().await?;
    Ok(r.bills.len() as f64 / started.elapsed().as_secs_f64())
}

/// The engine: `App::import_bills` of the file into a fresh store.
async fn engine(url: &str, file: &Path, keys: app::crypto::KeyRing) -> anyhow::Result<f64> {
    let app = crate::server::offline_app(
        url,
        b"bench-audit-key-0123456789abcdef".to_vec(),
        "Bench City",
        keys,
        app::ledger::LedgerConfig::standard()?,
    )
    .await?;
    let mapping = app::bill_import::Mapping::parse(include_str!("../../../deploy/bills-csv.toml"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let f = std::fs::File::open(file)?;
    let size = f.metadata()?.len();
    let mut opts = app::bill_import::ImportOptions::new("bench.csv", "bench");
    opts.max_bytes = u64::MAX;
    let started = Instant::now();
    let r = app
        .import_bills(
            std::io::BufReader::with_capacity(1 << 16, f),
            size,
            &mapping,
            &opts,
            &mut app::bill_import::Quiet,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        !r.rolled_back && r.created == r.lines,
        "bench import failed: {:?}",
        r.errors.first()
    );
    app.store.close().await;
    Ok(r.created as f64 / secs)
}

async fn fresh_postgres(base: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let name = format!("sr_bench_{}", app::ids::random_id().to_lowercase());
    let mut admin = sqlx::PgConnection::connect(base).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let (prefix, _) = base
        .rsplit_once('/')
        .context("the PostgreSQL URL needs a database path")?;
    Ok(format!("{prefix}/{name}"))
}

async fn drop_postgres(base: &str, url: &str) {
    use sqlx::Connection;
    if let (Ok(mut admin), Some((_, name))) = (
        sqlx::PgConnection::connect(base).await,
        url.rsplit_once('/'),
    ) {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
    }
}

/// Runs the bench; prints the table; writes the JSON.
pub async fn run(bills: u64, postgres: Option<String>, json: &Path) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("strongroom-bench-{}", app::ids::random_id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("bills.csv");
    eprintln!("bench: writing {bills} bills to {}", file.display());
    write_bills_csv(&file, bills)?;
    let keys = app::crypto::KeyRing::generate();
    let prepared = rows(bills, &keys)?;
    let mut out = Vec::new();
    let measure = |backend: &str, rate: f64, ceiling: f64| Measure {
        measure: "bill import".into(),
        backend: backend.into(),
        unit: "bills/s".into(),
        rate,
        ceiling,
        ratio: rate / ceiling,
        target: 0.5,
        p99_ms: None,
    };
    eprintln!("bench: SQLite ceiling (prepared INSERTs, one transaction)");
    let ceiling = sqlite_ceiling(
        &format!("sqlite://{}?mode=rwc", dir.join("ceiling.db").display()),
        &prepared,
    )
    .await?;
    eprintln!("bench: SQLite import");
    let rate = engine(
        &format!("sqlite://{}?mode=rwc", dir.join("import.db").display()),
        &file,
        keys.clone(),
    )
    .await?;
    out.push(measure("sqlite", rate, ceiling));
    let postgres = postgres.filter(|u| !u.is_empty());
    if let Some(base) = &postgres {
        eprintln!("bench: PostgreSQL ceiling (COPY)");
        let url = fresh_postgres(base).await?;
        let ceiling = postgres_ceiling(&url, &prepared).await;
        drop_postgres(base, &url).await;
        let ceiling = ceiling?;
        eprintln!("bench: PostgreSQL import");
        let url = fresh_postgres(base).await?;
        let rate = engine(&url, &file, keys.clone()).await;
        drop_postgres(base, &url).await;
        out.push(measure("postgres", rate?, ceiling));
    }
    for m in &mut out {
        m.unit = format!("{}, {bills} bills", m.unit);
    }
    // The server's hot paths: PostgreSQL first, where the commits of a payment are counted.
    let mut commits = None;
    if let Some(base) = &postgres {
        eprintln!("bench: the server on PostgreSQL (pages, payments)");
        let url = fresh_postgres(base).await?;
        let r = crate::bench_web::run(&url, "postgres", true, None).await;
        drop_postgres(base, &url).await;
        let (measures, counted) = r?;
        commits = counted;
        out.extend(measures);
    }
    eprintln!("bench: the server on SQLite (pages, payments)");
    let (measures, _) = crate::bench_web::run(
        &format!("sqlite://{}?mode=rwc", dir.join("server.db").display()),
        "sqlite",
        true,
        commits,
    )
    .await?;
    out.extend(measures);
    eprintln!("bench: the server's memory (strongroom demo as a child process)");
    out.extend(crate::bench_web::server_memory(&dir).await?);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{:<30} {:<9} {:>10} {:>10} {:>6} {:>6}",
        "measure", "backend", "rate", "ceiling", "ratio", "target"
    );
    for m in &out {
        println!(
            "{:<30} {:<9} {:>10.1} {:>10.1} {:>5.0}% {:>5.0}%   {}",
            m.measure,
            m.backend,
            m.rate,
            m.ceiling,
            m.ratio * 100.0,
            m.target * 100.0,
            m.unit
        );
    }
    std::fs::write(json, serde_json::to_string_pretty(&out)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    eprintln!("bench: wrote {}", json.display());
    Ok(())
}
