//! `strongroom`: the city's payment portal in one binary.

use anyhow::{bail, Context};
use app::email::Mailer;
use app::SystemClock;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use strongroom::{config, logging, server};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "strongroom",
    version,
    about = "A self-hosted payment portal for city governments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the portal with demo data, the sandbox processor and a demo staff user.
    Demo {
        #[arg(long, default_value = "./strongroom-demo")]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        portal_addr: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:8081")]
        staff_addr: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:8082")]
        processor_addr: SocketAddr,
        /// Number of demo utility accounts (seeded once, on first start).
        #[arg(long, default_value_t = 1000)]
        accounts: u32,
        /// Serve the portal and back office as `http://HOST:PORT` (e.g. `localhost`)
        /// instead of their numeric address: passkeys (WebAuthn) need a domain name.
        #[arg(long)]
        host_name: Option<String>,
    },
    /// Run in production from a configuration file. Never seeds data.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Create a staff user (the password is read from standard input, never from arguments).
    StaffAdd {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        username: String,
        /// The name shown in the back office.
        #[arg(long)]
        name: String,
        /// clerk, supervisor, administrator or auditor.
        #[arg(long)]
        role: String,
    },
    /// Write an encrypted, consistent backup of the SQLite store (safe while serving).
    Backup {
        #[command(flatten)]
        place: Place,
        /// The backup file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore an encrypted backup (stop the server first).
    Restore {
        #[command(flatten)]
        place: Place,
        #[arg(long)]
        from: PathBuf,
        /// Replace an existing database.
        #[arg(long)]
        force: bool,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Write every table of a store (a town's SQLite file, say) to one file, to move the
    /// city to another store with `import`. The audit key and data keys go with it.
    Export {
        #[command(flatten)]
        place: AuditPlace,
        /// Where to write the export (JSON lines).
        #[arg(long)]
        out: PathBuf,
    },
    /// Load an export into a new, empty store (PostgreSQL, say), check every table's row
    /// count, and verify the audit chain there with the city's audit key.
    Import {
        /// The export file.
        #[arg(long)]
        from: PathBuf,
        /// The new store's database URL (migrated first; must be empty).
        #[arg(long)]
        into: String,
        /// The city's audit key file (the chain is verified with it).
        #[arg(long)]
        key_file: PathBuf,
    },
    /// Keys of personal data at rest (names, emails, addresses).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Scan files or directories for card numbers; exits 1 if any is found.
    ScanPan {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Payment-page integrity (PCI DSS 11.6.1).
    Integrity {
        #[command(subcommand)]
        command: IntegrityCommand,
    },
    /// Write a closed business day's ledger postings in the layout the city's CIS imports.
    /// The first export of a day marks its postings as exported; later exports of the day
    /// give the same postings, so the same mapping gives the same file byte for byte.
    ExportPostings {
        #[command(flatten)]
        store: StoreArgs,
        /// The business day, YYYY-MM-DD.
        #[arg(long)]
        business_date: String,
        /// The layout (TOML mapping file; see deploy/postings-*.toml). Default: the
        /// built-in CSV layout.
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Import a bill file from the city's billing system (CSV or fixed width, described by
    /// a mapping file). The whole file is one transaction: an invalid line rolls it back
    /// unless --skip-invalid is given. Importing a file again changes nothing twice.
    ImportBills {
        #[command(flatten)]
        store: StoreArgs,
        /// The bill file.
        file: PathBuf,
        /// The mapping (TOML; see deploy/bills-*.toml).
        #[arg(long)]
        mapping: PathBuf,
        /// Import the valid lines and report the invalid ones instead of rolling back.
        #[arg(long)]
        skip_invalid: bool,
        /// Where to write the lines skipped (CSV: line, field, error). Default:
        /// FILE.skipped.csv beside the file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// The largest file imported, in MiB.
        #[arg(long, default_value_t = 1024)]
        max_mib: u64,
    },
    /// Write every account's linking code (CSV: account_number, linking_code) for the bill
    /// printer; accounts without one get one first.
    ExportLinkingCodes {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// Measure hot paths against ceilings measured in the same run (not a test): prints a
    /// table and writes JSON. Bill import on SQLite, and on PostgreSQL with --postgres.
    Bench {
        /// Bills in the generated import file.
        #[arg(long, default_value_t = 200_000)]
        bills: u64,
        /// A PostgreSQL server URL (a fresh database is made and dropped on it), e.g.
        /// postgres://postgres@127.0.0.1:5432/postgres. Default: $STRONGROOM_BENCH_DATABASE_URL.
        #[arg(long)]
        postgres: Option<String>,
        /// Where to write the results as JSON.
        #[arg(long, default_value = "bench.json")]
        json: PathBuf,
    },
    /// Run only the sandbox payment processor.
    SandboxProcessor {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        webhook_url: String,
        #[arg(long)]
        webhook_secret: String,
        /// The API key callers must present.
        #[arg(long, default_value = "sk_test_sandbox")]
        secret_key: String,
    },
}

#[derive(Subcommand)]
enum IntegrityCommand {
    /// Fetch the portal's payment pages, script inventory and scripts and compare headers
    /// and script hashes with this build; exits 1 on any difference.
    Check {
        /// The portal's origin, e.g. https://pay.city.gov
        url: String,
        /// The payment processor's hosted-page origin the CSP must allow as a form target
        /// (default: as the server's inventory says, which a tampered server could change).
        #[arg(long)]
        processor_origin: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a new data keys file (mode 600) for security.data_keys_file.
    Init {
        #[arg(long)]
        out: PathBuf,
    },
    /// Add a new key, make it current and re-encrypt every stored value with it (stop the
    /// server first). Older keys stay in the file.
    Rotate {
        /// Production configuration file (database.url, security.data_keys_file).
        #[arg(
            long,
            conflicts_with = "data_dir",
            required_unless_present = "data_dir"
        )]
        config: Option<PathBuf>,
        /// Demo data directory (strongroom.db, data.keys).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain and name the first edited, deleted, reordered or truncated row;
    /// exits 1 if the log is not intact.
    Verify {
        #[command(flatten)]
        place: AuditPlace,
    },
}

/// Where the audit log, its key and its checkpoint are.
#[derive(clap::Args)]
struct AuditPlace {
    /// Production configuration file (database.url, security.audit_key_file,
    /// security.audit_head_file).
    #[arg(
        long,
        conflicts_with = "data_dir",
        required_unless_present = "data_dir"
    )]
    config: Option<PathBuf>,
    /// Demo data directory (strongroom.db, audit.key, audit.head).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The audit key file, instead of the one the config or data directory names.
    #[arg(long)]
    key_file: Option<PathBuf>,
}

async fn audit_verify(place: &AuditPlace) -> anyhow::Result<bool> {
    let (url, key_file, head) = match (&place.config, &place.data_dir) {
        (Some(c), _) => {
            let cfg = config::load(c, std::env::vars())?;
            (
                cfg.database.url,
                cfg.security.audit_key_file,
                cfg.security.audit_head_file,
            )
        }
        (None, Some(d)) => {
            let (url, key, head) = strongroom::audit::demo_paths(d);
            (url, key, Some(head))
        }
        (None, None) => bail!("pass --config or --data-dir"),
    };
    let key = config::read_secret(place.key_file.as_ref().unwrap_or(&key_file))?;
    let report = strongroom::audit::verify(&url, key.as_bytes(), head.as_deref()).await?;
    for line in &report.lines {
        println!("{line}");
    }
    Ok(report.intact)
}

/// Where the store is, for commands that open it without serving: a production config,
/// or a demo data directory.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct StoreArgs {
    /// Production configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Demo data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl StoreArgs {
    /// The application on that store, with no listener and no processor.
    async fn open(&self) -> anyhow::Result<app::App> {
        match (&self.config, &self.data_dir) {
            (Some(c), _) => {
                let cfg = config::load(c, std::env::vars())?;
                let audit_key = config::read_secret(&cfg.security.audit_key_file)?;
                server::offline_app(
                    &cfg.database.url,
                    audit_key.into_bytes(),
                    &cfg.city.name,
                    data_keys(&cfg)?,
                    config::ledger(&cfg)?,
                )
                .await
            }
            (None, Some(d)) => {
                let (url, audit_key_file, _) = strongroom::audit::demo_paths(d);
                server::offline_app(
                    &url,
                    config::read_secret(&audit_key_file)?.into_bytes(),
                    DEMO_CITY,
                    strongroom::keys::load(&d.join(strongroom::keys::DEMO_FILE))?,
                    app::ledger::LedgerConfig::standard()?,
                )
                .await
            }
            (None, None) => bail!("pass --config or --data-dir"),
        }
    }
}

/// The demo city's name.
const DEMO_CITY: &str = "City of Bakersfield";

fn parse_day(s: &str) -> anyhow::Result<time::Date> {
    time::Date::parse(
        s,
        &time::macros::format_description!("[year]-[month]-[day]"),
    )
    .with_context(|| format!("--business-date {s:?} is not a date like 2026-12-04"))
}

/// `import-bills`: the engine with a progress bar; prints the report; false if the file
/// was refused.
async fn import_bills(
    store: &StoreArgs,
    file: &Path,
    mapping: &Path,
    skip_invalid: bool,
    report: Option<PathBuf>,
    max_mib: u64,
) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(mapping)
        .with_context(|| format!("cannot read mapping {}", mapping.display()))?;
    let mapping = app::bill_import::Mapping::parse(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let size = f.metadata()?.len();
    let app = store.open().await?;
    let mut opts = app::bill_import::ImportOptions::new(
        &file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        "cli",
    );
    opts.skip_invalid = skip_invalid;
    opts.max_bytes = max_mib.saturating_mul(1 << 20);
    let skipped_path = report.unwrap_or_else(|| {
        let mut p = file.as_os_str().to_owned();
        p.push(".skipped.csv");
        PathBuf::from(p)
    });
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {msg} ({elapsed}, about {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut cli = CliImport {
        bar: bar.clone(),
        skipped: if skip_invalid {
            let mut w = csv::Writer::from_path(&skipped_path)
                .with_context(|| format!("cannot write {}", skipped_path.display()))?;
            w.write_record(["line", "field", "error"])?;
            Some(w)
        } else {
            None
        },
        failed: None,
    };
    let started = std::time::Instant::now();
    let r = app
        .import_bills(
            std::io::BufReader::with_capacity(1 << 16, f),
            size,
            &mapping,
            &opts,
            &mut cli,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    bar.finish_and_clear();
    if let Some(e) = cli.failed {
        bail!("cannot write {}: {e}", skipped_path.display());
    }
    if let Some(mut w) = cli.skipped {
        w.flush()?;
    }
    let secs = started.elapsed().as_secs_f64();
    if !skip_invalid {
        for e in &r.errors {
            eprintln!("{e}");
        }
        if r.more_errors > 0 {
            eprintln!("... and {} more error(s)", r.more_errors);
        }
    }
    if r.rolled_back {
        eprintln!(
            "nothing imported: {} error(s) (fix the file, or pass --skip-invalid to import the valid lines)",
            r.errors.len() as u64 + r.more_errors
        );
        return Ok(false);
    }
    if skip_invalid {
        println!(
            "{} line(s) skipped, listed in {}",
            r.skipped,
            skipped_path.display()
        );
    }
    println!(
        "import {}: {} line(s) in {secs:.1} s ({:.0} lines/s): {} bill(s) created, {} updated, {} unchanged, {} skipped; {} account(s) created",
        r.import_id,
        r.lines,
        r.lines as f64 / secs.max(0.001),
        r.created,
        r.updated,
        r.unchanged,
        r.skipped,
        r.accounts_created
    );
    Ok(true)
}

/// The command line's view of an import: a progress bar, and the skipped lines written
/// to the report file as they come.
struct CliImport {
    bar: indicatif::ProgressBar,
    skipped: Option<csv::Writer<std::fs::File>>,
    failed: Option<csv::Error>,
}

impl app::bill_import::Observer for CliImport {
    fn progress(&mut self, bytes: u64, lines: u64) {
        self.bar.set_position(bytes);
        self.bar.set_message(format!("{lines} lines"));
    }

    fn skipped(&mut self, e: &app::bill_import::LineError) {
        if let Some(w) = &mut self.skipped {
            if let Err(err) =
                w.write_record([e.line.to_string(), e.field.clone(), e.message.clone()])
            {
                self.failed.get_or_insert(err);
            }
        }
    }
}

async fn export_postings(
    store: &StoreArgs,
    day: &str,
    mapping: Option<&Path>,
    out: &Path,
) -> anyhow::Result<()> {
    let day = parse_day(day)?;
    let layout = match mapping {
        Some(m) => config::read_layout(m)?,
        None => app::ledger::ExportLayout::standard(),
    };
    let app = store.open().await?;
    let e = app
        .sealing_audit(app.export_postings(day, &layout, "cli"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(out, &e.bytes).with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "{} {} posting(s) of business day {day}, net {}, to {} (sha256 {})",
        if e.first {
            "exported"
        } else {
            "exported again"
        },
        e.rows,
        e.total,
        out.display(),
        e.sha256
    );
    Ok(())
}

/// Where the store and its keys are: a production config, or a demo data directory.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct Place {
    /// Production configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Demo data directory (strongroom.db, backup.key).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl Place {
    /// The database URL and the backup key.
    fn resolve(&self) -> anyhow::Result<(String, [u8; 32])> {
        match (&self.config, &self.data_dir) {
            (Some(c), _) => {
                let cfg = config::load(c, std::env::vars())?;
                let key_file = cfg
                    .security
                    .backup_key_file
                    .context("set security.backup_key_file in the configuration")?;
                Ok((
                    cfg.database.url,
                    strongroom::backup::parse_key(&config::read_secret(&key_file)?)?,
                ))
            }
            (None, Some(d)) => {
                let key = config::read_secret(&d.join("backup.key"))?;
                Ok((
                    format!("sqlite://{}", d.join("strongroom.db").display()),
                    strongroom::backup::parse_key(&key)?,
                ))
            }
            (None, None) => bail!("pass --config or --data-dir"),
        }
    }
}

/// Every refusal and failure ends as one line on stderr saying what is wrong (with its
/// causes, `a: b: c`), and exit status 1.
fn main() {
    if let Err(e) = run() {
        eprintln!("strongroom: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Demo {
                data_dir,
                portal_addr,
                staff_addr,
                processor_addr,
                accounts,
                host_name,
            } => {
                let addrs = DemoAddrs {
                    portal: portal_addr,
                    staff: staff_addr,
                    processor: processor_addr,
                    host_name,
                };
                demo(data_dir, addrs, accounts).await
            }
            Command::Serve { config } => serve(&config).await,
            Command::ImportBills {
                store,
                file,
                mapping,
                skip_invalid,
                report,
                max_mib,
            } => {
                let ok =
                    import_bills(&store, &file, &mapping, skip_invalid, report, max_mib).await?;
                if !ok {
                    std::process::exit(1);
                }
                Ok(())
            }
            Command::ExportLinkingCodes { store, out } => {
                let app = store.open().await?;
                let issued = app.sealing_audit(app.issue_missing_linking_codes()).await?;
                let mut w = csv::Writer::from_path(&out)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                w.write_record(["account_number", "linking_code"])?;
                // A page at a time: a million accounts never sit in memory at once.
                let mut after = String::new();
                let mut written = 0usize;
                loop {
                    let page = app.linking_codes_after(&after, 1000).await?;
                    let Some((last, _)) = page.last() else { break };
                    after = last.clone();
                    for (a, c) in &page {
                        w.write_record([a, c])?;
                    }
                    written += page.len();
                }
                w.flush()?;
                println!(
                    "wrote {written} linking code(s) to {} ({issued} newly issued)",
                    out.display()
                );
                Ok(())
            }
            Command::Bench {
                bills,
                postgres,
                json,
            } => {
                let pg = postgres.or_else(|| std::env::var("STRONGROOM_BENCH_DATABASE_URL").ok());
                strongroom::bench::run(bills, pg, &json).await
            }
            Command::ExportPostings {
                store,
                business_date,
                mapping,
                out,
            } => export_postings(&store, &business_date, mapping.as_deref(), &out).await,
            Command::StaffAdd {
                config,
                username,
                name,
                role,
            } => staff_add(&config, &username, &name, &role).await,
            Command::Backup { place, out } => {
                let (url, key) = place.resolve()?;
                let bytes = strongroom::backup::backup(&url, &key, &out).await?;
                println!(
                    "backup written to {} ({bytes} bytes of database, encrypted)",
                    out.display()
                );
                Ok(())
            }
            Command::Export { place, out } => {
                let url = match (&place.config, &place.data_dir) {
                    (Some(c), _) => config::load(c, std::env::vars())?.database.url,
                    (None, Some(d)) => strongroom::audit::demo_paths(d).0,
                    (None, None) => bail!("pass --config or --data-dir"),
                };
                let file = std::fs::File::create(&out)
                    .with_context(|| format!("cannot create {}", out.display()))?;
                let mut w = std::io::BufWriter::new(file);
                let counts = strongroom::migrate::export(&url, &mut w).await?;
                std::io::Write::flush(&mut w)?;
                for (t, n) in &counts {
                    println!("{t:<28} {n:>9} rows");
                }
                println!("exported {} tables to {}", counts.len(), out.display());
                Ok(())
            }
            Command::Import {
                from,
                into,
                key_file,
            } => {
                let file = std::fs::File::open(&from)
                    .with_context(|| format!("cannot read {}", from.display()))?;
                let report =
                    strongroom::migrate::import(std::io::BufReader::new(file), &into).await?;
                for (t, n) in &report.tables {
                    println!("{t:<28} {n:>9} rows (counted again in the new store)");
                }
                let key = config::read_secret(&key_file)?;
                let audit = strongroom::audit::verify(&into, key.as_bytes(), None).await?;
                for line in &audit.lines {
                    println!("{line}");
                }
                if !audit.intact {
                    bail!("the audit chain does not verify on the new store");
                }
                println!(
                    "imported {} tables into the new store; the audit chain verifies",
                    report.tables.len()
                );
                Ok(())
            }
            Command::Restore { place, from, force } => {
                let (url, key) = place.resolve()?;
                strongroom::backup::restore(&url, &key, &from, force).await?;
                println!("restored {} into {url}", from.display());
                Ok(())
            }
            Command::Audit {
                command: AuditCommand::Verify { place },
            } => {
                if !audit_verify(&place).await? {
                    std::process::exit(1);
                }
                Ok(())
            }
            Command::Keys {
                command: KeysCommand::Init { out },
            } => {
                let ring = strongroom::keys::init(&out)?;
                println!(
                    "created data keys file {} (key {}); set security.data_keys_file to it",
                    out.display(),
                    ring.current_id()
                );
                Ok(())
            }
            Command::Keys {
                command: KeysCommand::Rotate { config, data_dir },
            } => {
                let (url, keys_file, audit_key, city) = match (config, data_dir) {
                    (Some(c), _) => {
                        let cfg = config::load(&c, std::env::vars())?;
                        let keys = cfg
                            .security
                            .data_keys_file
                            .context("set security.data_keys_file in the configuration")?;
                        let audit_key = config::read_secret(&cfg.security.audit_key_file)?;
                        (cfg.database.url, keys, audit_key, cfg.city.name)
                    }
                    (None, Some(d)) => {
                        let (url, audit_key_file, _) = strongroom::audit::demo_paths(&d);
                        (
                            url,
                            d.join(strongroom::keys::DEMO_FILE),
                            config::read_secret(&audit_key_file)?,
                            DEMO_CITY.to_owned(),
                        )
                    }
                    (None, None) => bail!("pass --config or --data-dir"),
                };
                let lines =
                    strongroom::keys::rotate(&url, &keys_file, audit_key.into_bytes(), &city)
                        .await?;
                for l in lines {
                    println!("{l}");
                }
                Ok(())
            }
            Command::ScanPan { paths } => {
                let (files, findings) = strongroom::scan::scan(&paths)?;
                for f in &findings {
                    println!(
                        "card number found: {} (near byte {})",
                        f.path.display(),
                        f.offset
                    );
                }
                println!(
                    "scanned {files} files: {} with card numbers",
                    findings.len()
                );
                if !findings.is_empty() {
                    std::process::exit(1);
                }
                Ok(())
            }
            Command::Integrity {
                command:
                    IntegrityCommand::Check {
                        url,
                        processor_origin,
                    },
            } => {
                let report = strongroom::integrity::check(&url, processor_origin.as_deref()).await;
                for line in report.lines() {
                    println!("{line}");
                }
                if report.ok() {
                    println!(
                        "integrity check of {url}: {} checks match this build",
                        report.passed.len()
                    );
                    Ok(())
                } else {
                    println!(
                        "integrity check of {url}: {} finding(s)",
                        report.findings.len()
                    );
                    std::process::exit(1);
                }
            }
            Command::SandboxProcessor {
                addr,
                webhook_url,
                webhook_secret,
                secret_key,
            } => {
                logging::init(None)?;
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                let mut cfg = processor::sandbox::SandboxConfig::new(
                    &secret_key,
                    format!("http://{addr}"),
                    &webhook_secret,
                );
                cfg.webhook_url = Some(webhook_url);
                println!("Sandbox processor on http://{addr}");
                processor::sandbox::serve(listener, cfg).await?;
                Ok(())
            }
        }
    })
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} for the {what} (is something else using it? pick another with --{what}-addr)"))
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads a per-data-dir secret, creating it (mode 600) on first use.
fn demo_secret(dir: &Path, name: &str, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    let p = dir.join(name);
    if p.exists() {
        return config::read_secret(&p);
    }
    let v = make();
    write_private(&p, &v)?;
    Ok(v)
}

fn write_private(p: &Path, v: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
        .with_context(|| format!("cannot create {}", p.display()))?;
    f.write_all(v.as_bytes())?;
    Ok(())
}

/// Where the demo listens, and the host name its origins use (if not the address).
struct DemoAddrs {
    portal: SocketAddr,
    staff: SocketAddr,
    processor: SocketAddr,
    host_name: Option<String>,
}

async fn demo(data_dir: PathBuf, addrs: DemoAddrs, accounts: u32) -> anyhow::Result<()> {
    let DemoAddrs {
        portal: portal_addr,
        staff: staff_addr,
        processor: processor_addr,
        host_name,
    } = addrs;
    if let Some(h) = &host_name {
        anyhow::ensure!(
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "--host-name must be a plain host name such as localhost"
        );
    }
    let origin = |a: SocketAddr| {
        host_name
            .as_ref()
            .map(|h| format!("http://{h}:{}", a.port()))
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    logging::init(Some(&data_dir.join("logs").join("strongroom.log")))?;
    if is_root() {
        tracing::warn!("demo is running as root; `strongroom serve` refuses to");
    }
    let audit_key = demo_secret(&data_dir, "audit.key", || random_hex(32))?;
    demo_secret(&data_dir, "backup.key", || random_hex(32))?;
    let keys_path = data_dir.join(strongroom::keys::DEMO_FILE);
    let data_keys = if keys_path.exists() {
        strongroom::keys::load(&keys_path)?
    } else {
        strongroom::keys::init(&keys_path)?
    };
    let staff_password = demo_secret(&data_dir, "demo-staff-password", || random_hex(10))?;
    let resident_password = demo_secret(&data_dir, "demo-resident-password", || random_hex(10))?;
    // The demo's clock: the system time, set back a day while yesterday's payments are
    // seeded.
    let clock = Arc::new(app::OffsetClock::default());
    let processor_key = format!("sk_test_{}", random_hex(12));
    let db = data_dir.join("strongroom.db");
    let database_url = format!("sqlite://{}?mode=rwc", db.display());
    let running = server::start(server::Options {
        database_url,
        portal_listener: bind(portal_addr, "portal").await?,
        staff_listener: bind(staff_addr, "staff").await?,
        portal_origin: origin(portal_addr),
        staff_origin: origin(staff_addr),
        city_name: DEMO_CITY.into(),
        sandbox: Some(server::SandboxOptions {
            listener: bind(processor_addr, "processor").await?,
            retry_base: Duration::from_secs(1),
        }),
        processor_api_base: String::new(),
        processor_hosted_origin: String::new(),
        processor_secret_key: processor_key.clone().into(),
        webhook_secret: format!("whsec_{}", random_hex(16)).into(),
        audit_key: audit_key.into_bytes(),
        data_keys,
        audit_head_file: Some(data_dir.join("audit.head")),
        clock: clock.clone(),
        mailer: Mailer::OutboxOnly,
        secure_cookies: false,
        hsts: false,
        allowed_return_origins: vec![],
        tls: None,
        trusted_proxies: vec![],
        worker_interval: Some(Duration::from_secs(2)),
        payment_ttl_secs: 3600,
        ledger: app::ledger::LedgerConfig::standard()?,
        services: app::services::ServicesConfig::demo().map_err(|e| anyhow::anyhow!(e))?,
        pool: store::PoolSettings::default(),
    })
    .await?;
    let started = std::time::Instant::now();
    let seeded = running.app.seed_demo(accounts).await?;
    if running.app.staff_by_username("demo").await?.is_none() {
        running
            .app
            .create_staff(
                "demo",
                "Demo Administrator",
                &staff_password,
                app::staff::Role::Administrator,
            )
            .await?;
    }
    // Staff sign-in needs a TOTP code too: the demo user is enrolled once, and the secret
    // kept beside the password (mode 600) so later starts print the same one.
    let totp_path = data_dir.join("demo-staff-totp");
    let totp_secret = if totp_path.exists() {
        config::read_secret(&totp_path)?
    } else {
        let e = running.app.provision_staff_totp("demo").await?;
        write_private(&totp_path, &e.secret_base32)?;
        e.secret_base32
    };
    let totp_uri = app::mfa::otpauth_uri(&totp_secret, &running.app.config().city_name, "demo")?;
    if seeded {
        strongroom::demo_finance::seed(
            &running.app,
            &clock,
            &running.processor_origin,
            &processor_key,
        )
        .await
        .context("cannot seed the demo's business day")?;
        strongroom::demo_services::seed(&running.app, &clock, &resident_password)
            .await
            .context("cannot seed the demo's permits and licences")?;
        tracing::info!(
            accounts,
            ms = started.elapsed().as_millis() as u64,
            "seeded demo data"
        );
    }
    let web_code = running
        .app
        .linking_code_of("100001")
        .await?
        .unwrap_or_default();
    println!(
        "\nStrongroom demo is running (data in {dir}).\n\n  Resident portal:    {portal}\n  Staff back office:  {staff}   (user: demo, password: {pw})\n                      sign-in codes: add TOTP secret {totp} to an authenticator app,\n                      or import {totp_uri}\n  Sandbox processor:  {proc}\n\nTry: quick pay account 100001 with ZIP 93301 (it has an open balance; 100002 owes nothing),\n     pay with card 4242 4242 4242 4242 (any future expiry, any CVC); 4000 0000 0000 0002 is declined,\n     4000 0000 0000 9995 has insufficient funds. Emails (receipts, verification links) appear in\n     the staff back office under \"Email outbox\". Create a resident account and link 100001\n     with the web code printed on its bill: {web_code}.\n     Finance: yesterday's payments wait under \"Postings\" to be exported, its reconciliation\n     under \"Reconciliation\", and one capture nobody can explain under \"Exceptions\".\n     Permits and licences: log in to the portal as {resident_email} (password {resident_pw}):\n     a permit's fees wait in the cart beside a utility bill, one licence is due for renewal\n     and one expired (its renewal adds a late penalty); staff review permits under \"Permits\".\n     Press Ctrl-C to stop.\n",
        dir = data_dir.display(),
        portal = running.portal_origin,
        staff = running.staff_origin,
        pw = staff_password,
        resident_email = strongroom::demo_services::RESIDENT_EMAIL,
        resident_pw = resident_password,
        totp = totp_secret,
        totp_uri = totp_uri,
        proc = running.processor_origin,
    );
    tokio::signal::ctrl_c().await?;
    running.stop();
    Ok(())
}

/// A URL whose host is this machine: loopback, `localhost`, or a Unix socket (an empty host
/// with `?host=/path`). An empty host naming another machine in `?host=` is not local.
fn is_local_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host_port = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host_port.rsplit_once('@').map_or(host_port, |(_, h)| h);
    let host = host
        .trim_start_matches('[')
        .split(']')
        .next()
        .unwrap_or(host);
    let host = host
        .rsplit_once(':')
        .filter(|(h, p)| !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let local = |h: &str| {
        h == "localhost"
            || h.starts_with('/')
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    if host.is_empty() {
        return query_param(url, "host").is_none_or(|h| local(&h));
    }
    local(host)
}

/// The value of `name` in a URL's query string.
fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

async fn staff_add(path: &Path, username: &str, name: &str, role: &str) -> anyhow::Result<()> {
    let cfg = config::load(path, std::env::vars())?;
    let role = app::staff::Role::parse(role).with_context(|| {
        format!("unknown role {role:?}: use clerk, supervisor, administrator or auditor")
    })?;
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    let audit_key = config::read_secret(&cfg.security.audit_key_file)?;
    let data_keys = data_keys(&cfg)?;
    let app = server::offline_app(
        &cfg.database.url,
        audit_key.into_bytes(),
        &cfg.city.name,
        data_keys,
        config::ledger(&cfg)?,
    )
    .await?;
    if app.staff_by_username(username).await?.is_some() {
        bail!("a staff user named {username:?} already exists");
    }
    let (user, enrollment) = app
        .sealing_audit(async {
            let user = app.create_staff(username, name, password, role).await?;
            let enrollment = app
                .reset_staff_second_factors(None, &user.username, "-")
                .await?;
            anyhow::Ok((user, enrollment))
        })
        .await?;
    println!(
        "created staff user {} ({})",
        user.username,
        user.role.as_str()
    );
    println!(
        "one-time enrollment code: {} (valid for 72 hours; give it to them in person or by phone, not by email; they enter it with their first authenticator code)",
        enrollment.code
    );
    Ok(())
}

/// The production data keys (personal data at rest); refuses to go on without them.
fn data_keys(cfg: &config::Config) -> anyhow::Result<app::crypto::KeyRing> {
    let p = cfg.security.data_keys_file.as_ref().context(
        "refusing to start: set security.data_keys_file (create the file with `strongroom keys init --out FILE`)",
    )?;
    strongroom::keys::load(p)
}

/// SHA-256 of the configuration file and of every `STRONGROOM_` variable (overrides and
/// log settings; their values are hashed, never logged).
fn config_fingerprint(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?);
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("STRONGROOM_"))
        .collect();
    vars.sort();
    for (k, v) in vars {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([b'=']);
        h.update(v.as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

async fn serve(path: &Path) -> anyhow::Result<()> {
    let cfg = config::load(path, std::env::vars())?;
    // Verbose levels are where the 2018 breach began (a debug switch that logged card
    // data): production refuses them, whichever variable asks.
    for var in ["STRONGROOM_LOG", "RUST_LOG"] {
        if let Ok(v) = std::env::var(var) {
            if let Some(d) = logging::verbose_directive(&v) {
                bail!("refusing to start: {var} asks for debug or trace logging ({d:?}), which production never allows; unset it or use info, warn or error");
            }
        }
    }
    logging::init(None)?;
    let https = cfg.server.public_url.starts_with("https://");
    let tls = match (&cfg.server.tls_cert_file, &cfg.server.tls_key_file) {
        (Some(c), Some(k)) => {
            // The key is a secret: same permission rule as the others.
            config::read_secret(k)?;
            Some((c.clone(), k.clone()))
        }
        (None, None) => None,
        _ => bail!("set both server.tls_cert_file and server.tls_key_file, or neither"),
    };
    // Outbound connections are encrypted too (card-adjacent data and keys travel on them):
    // the processor over https, PostgreSQL with TLS, unless the peer is on this machine.
    if !cfg.processor.api_base.starts_with("https://") && !is_local_url(&cfg.processor.api_base) {
        bail!("refusing to call the payment processor over plain HTTP: processor.api_base must start with https://");
    }
    if (cfg.database.url.starts_with("postgres://")
        || cfg.database.url.starts_with("postgresql://"))
        && !is_local_url(&cfg.database.url)
        && !query_param(&cfg.database.url, "sslmode")
            .is_some_and(|m| matches!(m.as_str(), "verify-ca" | "verify-full"))
    {
        // `require` encrypts but accepts any certificate: anyone on the path could
        // stand in for the database.
        bail!("refusing to reach PostgreSQL without a verified TLS certificate: add ?sslmode=verify-full (with sslrootcert=FILE if the CA is private) to database.url");
    }
    if cfg.server.behind_tls_proxy && cfg.server.trusted_proxies.is_empty() {
        bail!("refusing to start: server.behind_tls_proxy is set but server.trusted_proxies is empty; list the proxy's address (e.g. [\"127.0.0.1\"]) so clients are told apart by X-Forwarded-For");
    }
    for (what, addr) in [
        ("portal", cfg.server.portal_addr),
        ("staff back office", cfg.server.staff_addr),
    ] {
        if !addr.ip().is_loopback() && !cfg.server.behind_tls_proxy && tls.is_none() {
            bail!("refusing to serve the {what} over plain HTTP on the public address {addr}: set server.tls_cert_file and server.tls_key_file, or put a TLS proxy in front and set server.behind_tls_proxy = true");
        }
    }
    if is_root() {
        bail!("refusing to run as root: create a dedicated user (the systemd unit does) and run as that user");
    }
    let secret_key = config::read_secret(&cfg.processor.secret_key_file)?;
    let webhook_secret = config::read_secret(&cfg.processor.webhook_secret_file)?;
    let audit_key = config::read_secret(&cfg.security.audit_key_file)?;
    let data_keys = data_keys(&cfg)?;
    let ledger = config::ledger(&cfg)?;
    let running = server::start(server::Options {
        database_url: cfg.database.url.clone(),
        portal_listener: bind(cfg.server.portal_addr, "portal").await?,
        staff_listener: bind(cfg.server.staff_addr, "staff").await?,
        portal_origin: Some(cfg.server.public_url.trim_end_matches('/').to_owned()),
        staff_origin: Some(cfg.server.staff_url.trim_end_matches('/').to_owned()),
        city_name: cfg.city.name.clone(),
        sandbox: None,
        processor_api_base: cfg.processor.api_base.clone(),
        processor_hosted_origin: cfg.processor.hosted_origin.clone(),
        processor_secret_key: secret_key.into(),
        webhook_secret: webhook_secret.into(),
        audit_key: audit_key.into_bytes(),
        data_keys,
        audit_head_file: cfg.security.audit_head_file.clone(),
        clock: Arc::new(SystemClock),
        mailer: Mailer::smtp(
            &cfg.email.smtp_host,
            cfg.email.smtp_port,
            &cfg.email.from,
            &cfg.email.security,
        )?,
        secure_cookies: https,
        hsts: https,
        allowed_return_origins: cfg.api.return_url_origins.clone(),
        tls,
        trusted_proxies: cfg.server.trusted_proxies.clone(),
        worker_interval: Some(Duration::from_secs(5)),
        payment_ttl_secs: 3600,
        ledger,
        services: config::services(&cfg)?,
        pool: cfg.database.pool(),
    })
    .await?;
    // Configuration changes are audited: a fingerprint of the file and the overrides,
    // compared with the previous start's.
    let fingerprint = config_fingerprint(path)?;
    if running
        .app
        .sealing_audit(running.app.record_configuration(&fingerprint))
        .await?
    {
        tracing::warn!(sha256 = %fingerprint, "configuration changed since the previous start (audited config.loaded)");
    }
    tracing::info!(portal = %running.portal_addr, staff = %running.staff_addr, "serving");
    tokio::signal::ctrl_c().await?;
    running.stop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_local_url;

    #[test]
    fn local_urls() {
        for url in [
            "http://127.0.0.1:9",
            "postgres://u:p@localhost/db",
            "postgres://u@[::1]:5432/db",
            "postgres:///db?host=/var/run/postgresql",
            "postgres:///db",
        ] {
            assert!(is_local_url(url), "{url}");
        }
        for url in [
            "https://api.stripe.com",
            "postgres://u:p@db.example.gov/db",
            "postgres://u:p@/db?host=db.remote",
            "postgres://u@10.0.0.5:5432/db",
        ] {
            assert!(!is_local_url(url), "{url}");
        }
    }
}
