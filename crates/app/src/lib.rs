//! Strongroom's use cases: look up and pay bills, settle payments exactly once, resident
//! and staff accounts, the email outbox. Knows nothing about HTML or HTTP.

pub mod account_search;
pub mod account_security;
pub mod api_keys;
pub mod audit;
pub mod bill_import;
pub mod billing;
pub mod city_webhooks;
pub mod clock;
pub mod crypto;
pub mod demo;
pub mod documents;
pub mod email;
mod error;
pub mod exceptions;
pub mod ids;
pub mod integrity;
pub mod ledger;
pub mod licences;
pub mod limiter;
pub mod mail_text;
pub mod mfa;
pub mod passkeys;
pub mod passwords;
pub mod payments;
pub mod permits;
pub mod reconciliation;
pub mod refunds;
pub mod resident_mfa;
pub mod residents;
pub mod services;
pub mod sessions;
pub mod settings;
pub mod staff;

use std::sync::Arc;

pub use clock::{Clock, ManualClock, OffsetClock, SystemClock};
pub use error::{AppError, FieldProblem};
pub use processor;
pub use store;

use domain::Currency;
use processor::Processor;
use store::Store;

/// Settings the use cases need. Built by the binary from its configuration.
#[derive(Clone)]
pub struct Config {
    /// The resident portal's public origin, e.g. `https://pay.city.gov` (no trailing slash):
    /// used in processor return URLs and in emailed links.
    pub portal_base_url: String,
    /// The back office's origin, e.g. `https://staff.pay.city.gov`: its passkeys' relying
    /// party.
    pub staff_base_url: String,
    pub city_name: String,
    pub currency: Currency,
    /// Shared secret of the processor's webhook signatures (`whsec_...`).
    pub webhook_secret: domain::Secret,
    /// How far a webhook's timestamp may be from now.
    pub webhook_tolerance_secs: i64,
    /// A pending payment older than this is expired (its checkout session too).
    pub payment_ttl_secs: i64,
    /// Key of the audit chain's MAC.
    pub audit_key: Vec<u8>,
    /// Origins an API client may name in `return_url`, besides the portal's own.
    pub allowed_return_origins: Vec<String>,
    /// Staff may read emails that carry single-use links (verification, password reset).
    /// Only in demo mode, where the outbox is the only mailbox: in production such a link
    /// would let any clerk take over a resident's account.
    pub outbox_shows_links: bool,
    /// Keys that seal personal data at rest and key its blind indexes (`crypto`).
    pub keys: Arc<crypto::KeyRing>,
    /// Business days, the chart of accounts of postings, export layouts (`ledger`).
    pub ledger: ledger::LedgerConfig,
    /// Permit and licence types, inspection capacity, partial payments, card fees.
    pub services: services::ServicesConfig,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("portal_base_url", &self.portal_base_url)
            .field("city_name", &self.city_name)
            .field("webhook_secret", &"***")
            .field("audit_key", &"***")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// The application: cheap to clone, shared by every request handler and worker.
#[derive(Clone)]
pub struct App {
    pub store: Store,
    processor: Arc<dyn Processor>,
    clock: Arc<dyn Clock>,
    cfg: Arc<Config>,
    rps: Arc<passkeys::RelyingParties>,
    /// Settings staff changed in the back office, over the configuration's (`settings`).
    live: Arc<std::sync::RwLock<settings::Live>>,
    /// This process's name in job leases (random per start).
    node_id: Arc<str>,
    /// Per-client throttles, counted in this node's memory (`limiter`).
    limiter: Arc<limiter::Limiter>,
    seal_commits: Arc<std::sync::atomic::AtomicU64>,
}

impl App {
    pub fn new(
        store: Store,
        processor: Arc<dyn Processor>,
        clock: Arc<dyn Clock>,
        cfg: Config,
    ) -> App {
        let rps = passkeys::RelyingParties::new(
            &cfg.portal_base_url,
            &cfg.staff_base_url,
            &cfg.city_name,
        );
        let live = settings::Live::from_config(&cfg.ledger);
        App {
            store,
            processor,
            clock,
            cfg: Arc::new(cfg),
            rps: Arc::new(rps),
            live: Arc::new(std::sync::RwLock::new(live)),
            node_id: Arc::from(format!("node_{}", ids::random_id()).as_str()),
            limiter: Arc::new(limiter::Limiter::default()),
            seal_commits: Arc::default(),
        }
    }

    /// Lifts the per-client throttles counted in memory, for `strongroom bench` only (its
    /// load comes from one address). Limits kept in the database (per account, per user)
    /// still hold. `serve` has no setting that reaches this.
    pub fn lift_client_throttles_for_bench(&self) {
        self.limiter.lift_for_bench();
    }

    /// This process's name in job leases.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Runs scheduled task `name` if it is due and no node holds it: claims it with a lease
    /// of `lease_secs` (another node takes over if this one dies), runs `work`, and makes
    /// it due again `every_secs` later. `None` when another node has it or it is not due.
    pub async fn run_job<T>(
        &self,
        name: &str,
        every_secs: i64,
        lease_secs: i64,
        work: impl std::future::Future<Output = Result<T, AppError>>,
    ) -> Result<Option<T>, AppError> {
        let now = self.now_unix();
        {
            let mut conn = self.store.conn().await?;
            if !store::jobs::claim(&mut conn, name, &self.node_id, now, lease_secs).await? {
                return Ok(None);
            }
        }
        let result = work.await;
        self.seal_audit_logged().await;
        let mut conn = self.store.conn().await?;
        let done = self.now_unix();
        if !store::jobs::finish(&mut conn, name, &self.node_id, done, done + every_secs).await? {
            tracing::warn!(
                job = name,
                "the job's lease ran out before it finished; another node may have run it too"
            );
        }
        result.map(Some)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Chains audit entries waiting after their commit (PostgreSQL; see
    /// `store::audit::seal`). Returns how many it chained.
    pub async fn seal_audit(&self) -> Result<usize, AppError> {
        let mut conn = self.store.conn().await?;
        let n = store::audit::seal(&mut conn, &self.cfg.audit_key).await?;
        if n > 0 {
            let batches = n.div_ceil(store::audit::SEAL_BATCH as usize) as u64;
            self.seal_commits
                .fetch_add(batches, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(n)
    }

    /// Sealing transactions this node committed (for `strongroom bench`'s commit count).
    pub fn seal_commits(&self) -> u64 {
        self.seal_commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// [`App::seal_audit`] where a failure must not fail the caller's finished work: the
    /// entries stay queued and the next seal (the worker's, within seconds) chains them.
    pub async fn seal_audit_logged(&self) {
        if let Err(e) = self.seal_audit().await {
            tracing::warn!(error = %e, "audit entries left queued for the next seal");
        }
    }

    /// Runs `work` (one request) and then, if it wrote audit entries that wait to be
    /// chained, chains them before returning, so a request's entries are in the chain by
    /// the time its answer is sent.
    pub async fn sealing_audit<F: std::future::Future>(&self, work: F) -> F::Output {
        let (out, queued) = AUDIT_QUEUED
            .scope(std::cell::Cell::new(false), async {
                let out = work.await;
                (out, AUDIT_QUEUED.with(std::cell::Cell::get))
            })
            .await;
        if queued {
            self.seal_audit_logged().await;
        }
        out
    }

    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    pub(crate) fn now_unix(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    // The audit entry's fields, spelled out at each call site so none is forgotten.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn audit(
        &self,
        conn: &mut store::Conn,
        actor: &str,
        event: &str,
        object: &str,
        outcome: &str,
        source_ip: &str,
        detail: &str,
    ) -> Result<(), AppError> {
        let queued = store::audit::append(
            conn,
            &self.cfg.audit_key,
            &store::audit::AuditEntry {
                at: self.now_unix(),
                actor,
                event,
                object,
                outcome,
                source_ip,
                detail,
            },
        )
        .await?;
        if queued {
            // Outside a request's scope (workers, commands) nothing is marked: those
            // seal when their work ends (`run_job`, the worker's tick, the CLI).
            let _ = AUDIT_QUEUED.try_with(|q| q.set(true));
        }
        Ok(())
    }
}

tokio::task_local! {
    /// Set when the current request wrote an audit entry that waits to be chained.
    static AUDIT_QUEUED: std::cell::Cell<bool>;
}
