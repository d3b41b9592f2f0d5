//! Persistence for Strongroom: SQL for SQLite and PostgreSQL through one portable subset,
//! migrations, the audit chain, the email outbox and rate-limit state.
//!
//! Functions take `&mut AnyConnection`, so a caller decides what runs in one transaction:
//! `let mut tx = store.begin().await?; payments::insert(&mut tx, ..).await?; audit::append(&mut tx, ..)`.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod bill_import;
pub mod city_webhooks;
pub mod csp_reports;
pub mod documents;
pub mod exceptions;
pub mod idempotency;
pub mod jobs;
pub mod mfa;
pub mod outbox;
pub mod passkeys;
pub mod payments;
pub mod pii;
pub mod postings;
pub mod ratelimit;
pub mod reconciliation;
pub mod refunds;
pub mod residents;
pub mod services;
pub mod sessions;
pub mod staff;
pub mod webhooks;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, Pool, Transaction};
use std::str::FromStr;

pub use sqlx::AnyConnection as Conn;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (use sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("the database does not make commits durable: {0}")]
    NotDurable(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A pool of connections to one database.
/// How the store's connection pool behaves (`[database]` in the configuration).
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    /// PostgreSQL connections per node (SQLite always has its one writer).
    pub max_connections: u32,
    /// How long a request waits for a connection before it fails (a 503, not a hang).
    pub acquire_timeout: std::time::Duration,
    /// PostgreSQL: statements running longer are cancelled (0: no limit).
    pub statement_timeout_ms: u64,
    /// SQLite: read-only connections beside the one writer ([`Store::read`]).
    pub sqlite_readers: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 10,
            acquire_timeout: std::time::Duration::from_secs(10),
            statement_timeout_ms: 30_000,
            sqlite_readers: 4,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool<Any>,
    backend: Backend,
    /// SQLite: read-only connections, so reads do not queue behind the one writer (WAL
    /// lets readers and the writer work at once). PostgreSQL reads use the one pool.
    reader: Option<Pool<Any>>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Connects and applies the checked-in migrations.
    ///
    /// SQLite runs in WAL mode through a single connection: SQLite allows one writer, and a
    /// single connection turns lock contention (and `SQLITE_BUSY` on upgrade) into queueing.
    pub async fn connect(url: &str) -> Result<Store> {
        Store::connect_with(url, PoolSettings::default()).await
    }

    /// [`Store::connect`] with the pool's size and timeouts.
    pub async fn connect_with(url: &str, settings: PoolSettings) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let opts = AnyConnectOptions::from_str(url)?;
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    // An in-process file has no link to test: the ping sqlx sends before
                    // handing out a connection is a round trip to the connection's thread,
                    // 11% of a signed-in page's time by perf.
                    .test_before_acquire(false)
                    .acquire_timeout(settings.acquire_timeout)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            for pragma in [
                                "PRAGMA journal_mode = WAL",
                                // FULL: in WAL mode every commit syncs the WAL, so a
                                // committed payment survives a power cut, not only a
                                // crash of the process (NORMAL may lose the last commits).
                                "PRAGMA synchronous = FULL",
                                "PRAGMA foreign_keys = ON",
                                "PRAGMA busy_timeout = 5000",
                                "PRAGMA secure_delete = ON",
                            ] {
                                sqlx::query(pragma).execute(&mut *conn).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(settings.max_connections.max(1))
                    .acquire_timeout(settings.acquire_timeout)
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            // A role or database default of `off` would acknowledge commits
                            // before they reach the disk: every connection asks for `on`.
                            sqlx::query("SET synchronous_commit = on")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query(&format!(
                                "SET statement_timeout = {}",
                                settings.statement_timeout_ms
                            ))
                            .execute(&mut *conn)
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await?
            }
        };
        let store = Store {
            pool,
            backend,
            reader: None,
        };
        store.require_durable().await?;
        let pool = store.pool;
        MIGRATOR.run(&pool).await?;
        let mut tx = pool.begin().await?;
        if backend == Backend::Postgres {
            // Two processes starting at once must not race on CREATE OR REPLACE.
            sqlx::query("SELECT pg_advisory_xact_lock(7120002)")
                .execute(&mut *tx)
                .await?;
        }
        for ddl in append_only_ddl(backend) {
            sqlx::query(ddl).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let reader = match backend {
            Backend::Sqlite => Some(
                AnyPoolOptions::new()
                    .max_connections(settings.sqlite_readers.max(1))
                    .min_connections(0)
                    .test_before_acquire(false)
                    .acquire_timeout(settings.acquire_timeout)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            for pragma in ["PRAGMA query_only = ON", "PRAGMA busy_timeout = 5000"] {
                                sqlx::query(pragma).execute(&mut *conn).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect_lazy_with(AnyConnectOptions::from_str(url)?),
            ),
            Backend::Postgres => None,
        };
        Ok(Store {
            pool,
            backend,
            reader,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The settings that decide whether a commit survives a power cut, as the database
    /// reports them on a pooled connection: SQLite `journal_mode` and `synchronous`;
    /// PostgreSQL `synchronous_commit`, `fsync` and `full_page_writes`.
    pub async fn durability(&self) -> Result<Vec<(String, String)>> {
        let mut c = self.conn().await?;
        let names: &[&str] = match self.backend {
            Backend::Sqlite => &["journal_mode", "synchronous"],
            Backend::Postgres => &["synchronous_commit", "fsync", "full_page_writes"],
        };
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let value = match self.backend {
                Backend::Sqlite => {
                    // `synchronous` reads back as a number: 2 is FULL, 3 EXTRA.
                    let row = sqlx::query(&format!("PRAGMA {name}"))
                        .fetch_one(&mut *c)
                        .await?;
                    let v: std::result::Result<String, _> = sqlx::Row::try_get(&row, 0);
                    match v {
                        Ok(s) => s,
                        Err(_) => {
                            let n: i64 = sqlx::Row::try_get(&row, 0)?;
                            match n {
                                0 => "off".into(),
                                1 => "normal".into(),
                                2 => "full".into(),
                                3 => "extra".into(),
                                other => other.to_string(),
                            }
                        }
                    }
                }
                Backend::Postgres => {
                    let (v,): (String,) = sqlx::query_as(&format!("SHOW {name}"))
                        .fetch_one(&mut *c)
                        .await?;
                    v
                }
            };
            out.push(((*name).to_owned(), value.to_ascii_lowercase()));
        }
        Ok(out)
    }

    /// Refuses a database that would acknowledge a commit a power cut can take back: money
    /// that the processor captured must never be recorded only in a cache.
    async fn require_durable(&self) -> Result<()> {
        let wanted: &[(&str, &[&str])] = match self.backend {
            Backend::Sqlite => &[
                ("journal_mode", &["wal"]),
                ("synchronous", &["full", "extra"]),
            ],
            Backend::Postgres => &[
                (
                    "synchronous_commit",
                    &["on", "local", "remote_write", "remote_apply"],
                ),
                ("fsync", &["on"]),
                ("full_page_writes", &["on"]),
            ],
        };
        let have = self.durability().await?;
        for (name, ok) in wanted {
            let value = have
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("unknown");
            if !ok.contains(&value) {
                return Err(StoreError::NotDurable(format!("{name} is {value}")));
            }
        }
        Ok(())
    }

    pub async fn begin(&self) -> Result<Transaction<'static, Any>> {
        Ok(self.pool.begin().await?)
    }

    pub async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Any>> {
        Ok(self.pool.acquire().await?)
    }

    /// A connection for reading only. On SQLite one of the read-only connections, which
    /// see every committed write and never wait for the writer; on PostgreSQL the pool's.
    /// A write through it fails (`query_only`).
    pub async fn read(&self) -> Result<sqlx::pool::PoolConnection<Any>> {
        match &self.reader {
            Some(r) => Ok(r.acquire().await?),
            None => self.conn().await,
        }
    }

    /// A cheap query that proves the database answers.
    pub async fn ping(&self) -> Result<()> {
        let mut c = self.conn().await?;
        sqlx::query("SELECT 1").execute(&mut *c).await?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(r) = &self.reader {
            r.close().await;
        }
        self.pool.close().await;
    }
}

/// `$1, $2, ..., $n`: the placeholders of an `IN (...)` list of `n` values.
pub(crate) fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows of `sql` for every one of `ids` in one query; `sql` has `{ids}` where the
/// `IN` list goes.
pub(crate) async fn fetch_for_ids<T>(
    conn: &mut sqlx::AnyConnection,
    sql: &str,
    ids: &[&str],
) -> Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = sql.replace("{ids}", &placeholders(ids.len()));
    let mut q = sqlx::query_as(&sql);
    for id in ids {
        q = q.bind(*id);
    }
    Ok(q.fetch_all(conn).await?)
}

/// True when the error is a unique-constraint violation (both backends).
pub fn is_unique_violation(e: &StoreError) -> bool {
    match e {
        StoreError::Db(sqlx::Error::Database(d)) => d.is_unique_violation(),
        _ => false,
    }
}

/// Triggers that make `audit_log` append-only in the database itself: UPDATE and DELETE
/// (and, on PostgreSQL, TRUNCATE) are refused. Backend-specific, so applied after the
/// shared migrations; idempotent. Someone with the database file or owner rights can
/// still drop them: the hash chain and `strongroom audit verify` catch what follows.
fn append_only_ddl(backend: Backend) -> &'static [&'static str] {
    match backend {
        Backend::Sqlite => &[
            "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
             BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
            "CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
             BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        ],
        Backend::Postgres => &[
            "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger
             LANGUAGE plpgsql AS $$
             BEGIN
                 RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
             END
             $$",
            "CREATE OR REPLACE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
             FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
            "CREATE OR REPLACE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
             FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
            // Ids of entries waiting to be chained (see `audit::seal`).
            "CREATE SEQUENCE IF NOT EXISTS audit_pending_id",
        ],
    }
}

pub(crate) async fn backend_of(conn: &mut AnyConnection) -> Backend {
    if conn.backend_name().eq_ignore_ascii_case("postgresql") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}
