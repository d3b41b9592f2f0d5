//! Wiring: store, processor client, app, the listeners and the background workers.

use anyhow::Context;
use app::email::Mailer;
use app::{App, Clock};
use processor::client::StripeClient;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The in-process sandbox processor (demo and tests).
pub struct SandboxOptions {
    pub listener: TcpListener,
    pub retry_base: Duration,
}

pub struct Options {
    pub database_url: String,
    pub portal_listener: TcpListener,
    pub staff_listener: TcpListener,
    /// Origins as browsers reach them (`http://127.0.0.1:8080`); `None` derives them from
    /// the listeners.
    pub portal_origin: Option<String>,
    pub staff_origin: Option<String>,
    pub city_name: String,
    /// `Some`: run the sandbox processor in-process and point the client at it.
    pub sandbox: Option<SandboxOptions>,
    /// Used when there is no in-process sandbox.
    pub processor_api_base: String,
    pub processor_hosted_origin: String,
    pub processor_secret_key: domain::Secret,
    pub webhook_secret: domain::Secret,
    pub audit_key: Vec<u8>,
    /// Keys of personal data at rest.
    pub data_keys: app::crypto::KeyRing,
    /// Where the server keeps the audit chain's checkpoint (truncation detection), updated
    /// about every second; `None`: no checkpoint.
    pub audit_head_file: Option<std::path::PathBuf>,
    pub clock: Arc<dyn Clock>,
    pub mailer: Mailer,
    pub secure_cookies: bool,
    pub hsts: bool,
    pub allowed_return_origins: Vec<String>,
    /// Proxies trusted to name the client in `X-Forwarded-For`.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Certificate and key (PEM) to terminate TLS on both listeners.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Interval of the email worker; `None` runs no workers (tests drive them).
    pub worker_interval: Option<Duration>,
    pub payment_ttl_secs: i64,
    /// Business days, chart of accounts and export layouts.
    pub ledger: app::ledger::LedgerConfig,
    /// Permit and licence types, inspection capacity, partial payments, card fees.
    pub services: app::services::ServicesConfig,
    /// The database pool's size and timeouts.
    pub pool: store::PoolSettings,
}

/// How often the server checks its own payment pages against the build.
pub const INTEGRITY_CHECK_EVERY: Duration = Duration::from_secs(15 * 60);
/// The first check, shortly after start (once the listeners answer).
pub const INTEGRITY_CHECK_FIRST: Duration = Duration::from_secs(30);

pub struct Running {
    pub app: App,
    pub portal_addr: SocketAddr,
    pub staff_addr: SocketAddr,
    pub processor_addr: Option<SocketAddr>,
    pub portal_origin: String,
    pub staff_origin: String,
    pub processor_origin: String,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops the listeners and workers.
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

pub async fn start(o: Options) -> anyhow::Result<Running> {
    let store = store::Store::connect_with(&o.database_url, o.pool)
        .await
        .context("cannot open the database")?;
    let portal_addr = o.portal_listener.local_addr()?;
    let staff_addr = o.staff_listener.local_addr()?;
    let portal_origin = o
        .portal_origin
        .unwrap_or_else(|| format!("http://{portal_addr}"));
    let staff_origin = o
        .staff_origin
        .unwrap_or_else(|| format!("http://{staff_addr}"));
    let mut tasks = Vec::new();

    let (processor_base, processor_origin, processor_addr) = match o.sandbox {
        Some(sb) => {
            let addr = sb.listener.local_addr()?;
            let base = format!("http://{addr}");
            let clock = o.clock.clone();
            let cfg = processor::sandbox::SandboxConfig {
                secret_key: o.processor_secret_key.expose().to_owned(),
                public_base_url: base.clone(),
                webhook_url: Some(format!("{portal_origin}/webhooks/processor")),
                webhook_secret: o.webhook_secret.expose().to_owned(),
                retry_base: sb.retry_base,
                now: Arc::new(move || clock.now().unix_timestamp()),
            };
            tasks.push(tokio::spawn(async move {
                if let Err(e) = processor::sandbox::serve(sb.listener, cfg).await {
                    tracing::error!(error = %e, "sandbox processor stopped");
                }
            }));
            (base.clone(), base, Some(addr))
        }
        None => (
            o.processor_api_base.clone(),
            o.processor_hosted_origin.clone(),
            None,
        ),
    };
    let client = StripeClient::new(&processor_base, o.processor_secret_key.expose().to_owned())
        .context("processor client")?;

    let app = App::new(
        store,
        Arc::new(client),
        o.clock.clone(),
        app::Config {
            portal_base_url: portal_origin.clone(),
            staff_base_url: staff_origin.clone(),
            city_name: o.city_name.clone(),
            currency: domain::Currency::Usd,
            webhook_secret: o.webhook_secret.clone(),
            webhook_tolerance_secs: 300,
            payment_ttl_secs: o.payment_ttl_secs,
            audit_key: o.audit_key.clone(),
            allowed_return_origins: o.allowed_return_origins.clone(),
            outbox_shows_links: matches!(o.mailer, Mailer::OutboxOnly),
            keys: Arc::new(o.data_keys.clone()),
            ledger: o.ledger.clone(),
            services: o.services.clone(),
        },
    );
    // The config file's permit and licence types, written where they changed (audited).
    app.sync_service_types()
        .await
        .context("cannot store the permit and licence types")?;
    // TOTP secrets are sealed at rest; a database from before that seals its old ones now.
    let sealed = app
        .seal_plaintext_mfa_secrets()
        .await
        .context("cannot seal the stored TOTP secrets")?;
    // Accounts not yet in the staff search index (sealed names and streets) are indexed.
    while app
        .index_accounts_for_search(500)
        .await
        .context("cannot index accounts for search")?
        > 0
    {}
    // Settings changed in the back office override the configuration's.
    app.load_settings()
        .await
        .context("cannot read the stored settings")?;
    // Accounts from before linking codes (or seeded without them) get one.
    let issued = app
        .issue_missing_linking_codes()
        .await
        .context("cannot issue linking codes")?;
    if issued > 0 {
        tracing::info!(issued, "linking codes issued to accounts without one");
    }
    if sealed > 0 {
        tracing::info!(sealed, "TOTP secrets written in clear were sealed");
    }
    // What the start wrote to the audit log, and anything a node that died left queued.
    app.seal_audit()
        .await
        .context("cannot chain the queued audit entries")?;
    let web_cfg = web::WebConfig {
        portal_origin: portal_origin.clone(),
        staff_origin: staff_origin.clone(),
        processor_origin: processor_origin.clone(),
        secure_cookies: o.secure_cookies,
        hsts: o.hsts,
        trusted_proxies: o.trusted_proxies.clone(),
    };
    let state = web::AppState::new(app.clone(), web_cfg);
    let portal =
        web::portal_router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let staff = web::staff_router(state).into_make_service_with_connect_info::<SocketAddr>();
    let tls = match &o.tls {
        Some((cert, key)) => {
            // One crypto provider for the process: ring (as reqwest uses).
            let _ = rustls::crypto::ring::default_provider().install_default();
            Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .with_context(|| {
                        format!(
                            "cannot load the TLS certificate {} and key {}",
                            cert.display(),
                            key.display()
                        )
                    })?,
            )
        }
        None => None,
    };
    for (listener, service, what) in [
        (o.portal_listener, portal, "portal"),
        (o.staff_listener, staff, "staff"),
    ] {
        let tls = tls.clone();
        tasks.push(tokio::spawn(async move {
            let result = match tls {
                Some(cfg) => match listener
                    .into_std()
                    .and_then(|l| axum_server::from_tcp_rustls(l, cfg))
                {
                    Ok(server) => server.serve(service).await,
                    Err(e) => Err(e),
                },
                None => axum::serve(listener, service).await,
            };
            if let Err(e) = result {
                tracing::error!(error = %e, listener = what, "listener stopped");
            }
        }));
    }

    if let Some(path) = o.audit_head_file.clone() {
        let every = o
            .worker_interval
            .map_or(Duration::from_secs(1), |w| w.min(Duration::from_secs(1)));
        tasks.push(tokio::spawn(crate::audit::checkpoint_loop(
            app.clone(),
            path,
            every,
        )));
    }

    if let Some(every) = o.worker_interval {
        let (a, mailer) = (app.clone(), o.mailer.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                // Audit entries written outside a request (jobs, commands run beside
                // the server) are chained here within one tick.
                a.seal_audit_logged().await;
                // Settings an administrator changed on another node.
                if let Err(e) = a.load_settings().await {
                    tracing::warn!(error = %e, "settings reload");
                }
                if let Err(e) = a.deliver_emails(&mailer).await {
                    tracing::warn!(error = %e, "email worker");
                }
                if let Err(e) = a.deliver_city_webhooks().await {
                    tracing::warn!(error = %e, "city webhook worker");
                }
            }
        }));
        let a = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                // Each task runs on one node at a time (a job lease in the database): with
                // several nodes, each still runs once a minute, not once per node.
                if let Err(e) = a
                    .run_job("expire_payments", 55, 600, a.expire_stale_payments())
                    .await
                {
                    tracing::warn!(error = %e, "expiry worker");
                }
                if let Err(e) = a
                    .run_job("resume_refunds", 55, 600, a.resume_stuck_refunds())
                    .await
                {
                    tracing::warn!(error = %e, "refund worker");
                }
                if let Err(e) = a
                    .run_job(
                        "index_accounts",
                        55,
                        600,
                        a.index_accounts_for_search(5_000),
                    )
                    .await
                {
                    tracing::warn!(error = %e, "account search index worker");
                }
                match a
                    .run_job("reconcile_days", 55, 1800, a.reconcile_due_days())
                    .await
                {
                    Ok(None | Some(0)) => {}
                    Ok(Some(days)) => tracing::info!(days, "reconciled closed business days"),
                    Err(e) => tracing::warn!(error = %e, "reconciliation worker"),
                }
                match a
                    .run_job("renewal_notices", 55, 600, a.send_renewal_notices())
                    .await
                {
                    Ok(None | Some(0)) => {}
                    Ok(Some(n)) => tracing::info!(notices = n, "licence renewal notices queued"),
                    Err(e) => tracing::warn!(error = %e, "licence renewal notice worker"),
                }
            }
        }));
        // The payment pages' tamper check (PCI DSS 11.6.1) against the portal as residents
        // reach it; each outcome goes to the audit log.
        let (a, portal, processor) = (app.clone(), portal_origin.clone(), processor_origin.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + INTEGRITY_CHECK_FIRST,
                INTEGRITY_CHECK_EVERY,
            );
            loop {
                tick.tick().await;
                if let Err(e) = crate::integrity::scheduled_check(&a, &portal, &processor).await {
                    tracing::warn!(error = %e, "integrity check worker");
                }
            }
        }));
    }

    Ok(Running {
        app,
        portal_addr,
        staff_addr,
        processor_addr,
        portal_origin,
        staff_origin,
        processor_origin,
        tasks,
    })
}

/// The application without listeners or a reachable processor, for administrative
/// commands (creating staff users) that only touch the database.
pub async fn offline_app(
    database_url: &str,
    audit_key: Vec<u8>,
    city_name: &str,
    data_keys: app::crypto::KeyRing,
    ledger: app::ledger::LedgerConfig,
) -> anyhow::Result<App> {
    let store = store::Store::connect(database_url)
        .await
        .context("cannot open the database")?;
    let client = StripeClient::new("http://127.0.0.1:9", "sk_offline")?;
    Ok(App::new(
        store,
        Arc::new(client),
        Arc::new(app::SystemClock),
        app::Config {
            portal_base_url: String::new(),
            staff_base_url: String::new(),
            city_name: city_name.to_owned(),
            currency: domain::Currency::Usd,
            webhook_secret: domain::Secret::default(),
            webhook_tolerance_secs: 300,
            payment_ttl_secs: 3600,
            audit_key,
            allowed_return_origins: vec![],
            outbox_shows_links: false,
            keys: Arc::new(data_keys),
            ledger,
            services: app::services::ServicesConfig::standard(),
        },
    ))
}
