//! The one configuration file (TOML) with `STRONGROOM_SECTION__KEY` environment overrides.
//! Unknown keys, in the file or the environment, are errors (fail closed).

use anyhow::{bail, Context};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub city: City,
    pub server: Server,
    pub database: Database,
    pub processor: Processor,
    pub email: Email,
    pub security: Security,
    #[serde(default)]
    pub api: Api,
    #[serde(default)]
    pub ledger: Ledger,
    #[serde(default)]
    pub services: Services,
}

/// Permits, licences, inspections, partial payments and card fees.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// Permit and licence types (TOML; see `deploy/services.toml`).
    #[serde(default)]
    pub types_file: Option<PathBuf>,
    /// Inspections a day takes unless staff set the day otherwise (default 4).
    #[serde(default)]
    pub inspection_capacity: Option<i64>,
    /// Item types residents may pay part of (default `["utility"]`).
    #[serde(default)]
    pub partial_payments: Option<Vec<String>>,
    /// Card fees, checked against the card networks' rules at start.
    #[serde(default)]
    pub card_fees: Vec<domain::fees::CardFeeRule>,
}

/// The services configuration: the types file read and checked, the card fees checked
/// against the networks' rules (a violation stops the server and cites the rule).
pub fn services(cfg: &Config) -> anyhow::Result<app::services::ServicesConfig> {
    let mut s = app::services::ServicesConfig::standard();
    if let Some(path) = &cfg.services.types_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read services.types_file {}", path.display()))?;
        let (p, l) = app::services::parse_types(&text)
            .map_err(|e| anyhow::anyhow!("services.types_file {}: {e}", path.display()))?;
        s.permit_types = p;
        s.licence_types = l;
    }
    if let Some(c) = cfg.services.inspection_capacity {
        s.inspection_capacity = c;
    }
    if let Some(p) = &cfg.services.partial_payments {
        s.partial_payments = p.clone();
    }
    s.card_fees = cfg.services.card_fees.clone();
    s.check().map_err(|e| anyhow::anyhow!("services: {e}"))?;
    Ok(s)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct City {
    pub name: String,
    /// IANA time zone of the city: business days close at `ledger.cutoff` there.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "America/Los_Angeles".into()
}

/// Postings to the city's ledger.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    /// When a business day closes, `HH:MM` city time (default 17:00).
    #[serde(default)]
    pub cutoff: Option<String>,
    /// Fund, department and ledger account of each item type (`utility`, ...); types not
    /// named keep the built-in defaults.
    #[serde(default)]
    pub accounts: std::collections::BTreeMap<String, LedgerAccount>,
    /// Export layouts the back office offers, by name: mapping files (TOML).
    #[serde(default)]
    pub export_mappings: std::collections::BTreeMap<String, PathBuf>,
    /// Refunds above this amount (dollars, e.g. "500.00") wait for a second staff member's
    /// approval; clerks' refund requests always do. Default 500.00.
    #[serde(default)]
    pub refund_approval_threshold: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerAccount {
    pub fund: String,
    pub department: String,
    pub ledger_account: String,
}

/// The ledger configuration the app runs with: the time zone and cut-off checked, every
/// export mapping read and checked (a bad one stops the server, fail closed).
pub fn ledger(cfg: &Config) -> anyhow::Result<app::ledger::LedgerConfig> {
    let mut l = app::ledger::LedgerConfig::standard()?;
    l.time_zone = jiff::tz::TimeZone::get(&cfg.city.time_zone)
        .map_err(|e| anyhow::anyhow!("city.time_zone {:?}: {e}", cfg.city.time_zone))?;
    if let Some(c) = &cfg.ledger.cutoff {
        l.cutoff = app::ledger::parse_cutoff(c)
            .with_context(|| format!("ledger.cutoff {c:?} is not a time like 17:00"))?;
    }
    if let Some(t) = &cfg.ledger.refund_approval_threshold {
        let m = domain::Money::parse_dollars(t, domain::Currency::Usd).map_err(|e| {
            anyhow::anyhow!("ledger.refund_approval_threshold {t:?} is not an amount: {e}")
        })?;
        l.refund_approval_threshold_cents = m.cents();
    }
    for (item, a) in &cfg.ledger.accounts {
        l.accounts.insert(
            item.clone(),
            app::ledger::GlAccount {
                fund: a.fund.clone(),
                department: a.department.clone(),
                ledger_account: a.ledger_account.clone(),
            },
        );
    }
    for (name, path) in &cfg.ledger.export_mappings {
        l.layouts.insert(name.clone(), read_layout(path)?);
    }
    Ok(l)
}

/// Reads and checks an export mapping file.
pub fn read_layout(path: &Path) -> anyhow::Result<app::ledger::ExportLayout> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read mapping {}", path.display()))?;
    app::ledger::ExportLayout::parse(&text)
        .map_err(|e| anyhow::anyhow!("mapping {}: {e}", path.display()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub portal_addr: SocketAddr,
    #[serde(default = "default_staff_addr")]
    pub staff_addr: SocketAddr,
    /// The portal's public origin, e.g. `https://pay.city.gov`.
    pub public_url: String,
    /// The staff back office's origin as staff browsers reach it.
    pub staff_url: String,
    /// A TLS-terminating proxy is in front of the listeners.
    #[serde(default)]
    pub behind_tls_proxy: bool,
    /// Addresses of that proxy: their `X-Forwarded-For` names the client, so rate limits and
    /// the audit log see residents, not the proxy.
    #[serde(default)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Terminate TLS here (PEM files), for cities without a proxy. Both or neither.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

fn default_staff_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// `sqlite:///var/lib/strongroom/strongroom.db` or `postgres://...`.
    pub url: String,
    /// PostgreSQL connections per node (default 10; SQLite has its one writer).
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// Seconds a request waits for a connection before it fails (default 10).
    #[serde(default)]
    pub acquire_timeout_secs: Option<u64>,
    /// PostgreSQL: seconds after which a statement is cancelled (default 30; 0 = none).
    #[serde(default)]
    pub statement_timeout_secs: Option<u64>,
    /// SQLite: read-only connections beside the one writer (default 4).
    #[serde(default)]
    pub sqlite_readers: Option<u32>,
}

impl Database {
    /// The pool's settings, defaults where the file says nothing.
    pub fn pool(&self) -> store::PoolSettings {
        let d = store::PoolSettings::default();
        store::PoolSettings {
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            acquire_timeout: self
                .acquire_timeout_secs
                .map_or(d.acquire_timeout, std::time::Duration::from_secs),
            statement_timeout_ms: self
                .statement_timeout_secs
                .map_or(d.statement_timeout_ms, |s| s.saturating_mul(1000)),
            sqlite_readers: self.sqlite_readers.unwrap_or(d.sqlite_readers),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Processor {
    /// `https://api.stripe.com` or the sandbox's URL.
    pub api_base: String,
    /// Origin of the hosted payment page, e.g. `https://checkout.stripe.com`.
    pub hosted_origin: String,
    pub secret_key_file: PathBuf,
    pub webhook_secret_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    pub smtp_host: String,
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    pub from: String,
    /// `starttls` (default), `tls`, or `none` (only for a relay on localhost).
    #[serde(default = "default_smtp_security")]
    pub security: String,
}

fn default_smtp_security() -> String {
    "starttls".into()
}

fn default_smtp_port() -> u16 {
    587
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// Key of the audit log's hash chain (32+ random bytes, any encoding).
    pub audit_key_file: PathBuf,
    /// The audit chain's checkpoint, kept by the server and read by `audit verify` to
    /// detect rows cut off the end of the log. Best outside the database's directory,
    /// writable only by the service user. Unset: truncation is not checked.
    #[serde(default)]
    pub audit_head_file: Option<PathBuf>,
    /// Key of `strongroom backup` files: 32 random bytes as 64 hex characters.
    pub backup_key_file: Option<PathBuf>,
    /// Keys of personal data at rest (`strongroom keys init --out FILE` creates it;
    /// `strongroom keys rotate` adds keys). Required by `serve`.
    #[serde(default)]
    pub data_keys_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// Origins API clients may name in `return_url`.
    #[serde(default)]
    pub return_url_origins: Vec<String>,
}

/// Reads the file, applies `STRONGROOM_SECTION__KEY=value` overrides, and checks the
/// result against the schema.
pub fn load(path: &Path, env: impl Iterator<Item = (String, String)>) -> anyhow::Result<Config> {
    refuse_loose_permissions(path, "config file")?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let mut value: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("STRONGROOM_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            // Variables of the binary itself, not configuration keys.
            if ["LOG", "TEST_DATABASE_URL", "CI_FUZZ"].contains(&rest) {
                continue;
            }
            bail!("{k}: not a configuration override (write STRONGROOM_SECTION__KEY, with two underscores, e.g. STRONGROOM_DATABASE__URL)");
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let table = value
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(table) = table.as_table_mut() else {
            bail!("{k}: [{section}] is not a table")
        };
        let parsed = v
            .parse::<i64>()
            .map(toml::Value::Integer)
            .or_else(|_| v.parse::<bool>().map(toml::Value::Boolean))
            .unwrap_or(toml::Value::String(v));
        table.insert(key, parsed);
    }
    let cfg: Config = toml::Value::Table(value)
        .try_into()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("configuration error: {}", e.message()))?;
    Ok(cfg)
}

/// Refuses a file that group or others may read or write.
fn refuse_loose_permissions(path: &Path, what: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("{what} {} is missing", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{what} {} is readable or writable by group or others (mode {:o}); run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

/// Reads a secret file, refusing one that others may read or write.
pub fn read_secret(path: &Path) -> anyhow::Result<String> {
    refuse_loose_permissions(path, "secret file")?;
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read secret file {}", path.display()))?;
    let s = s.trim().to_owned();
    if s.is_empty() {
        bail!("secret file {} is empty", path.display());
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[city]
name = "City of Example"
[server]
portal_addr = "127.0.0.1:8080"
public_url = "https://pay.example.gov"
staff_url = "http://127.0.0.1:8081"
[database]
url = "sqlite:///tmp/x.db"
[processor]
api_base = "https://api.stripe.com"
hosted_origin = "https://checkout.stripe.com"
secret_key_file = "/etc/strongroom/sk"
webhook_secret_file = "/etc/strongroom/whsec"
[email]
smtp_host = "localhost"
from = "City <pay@example.gov>"
[security]
audit_key_file = "/etc/strongroom/audit"
"#;

    fn load_str(s: &str, env: Vec<(&str, &str)>) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("c.toml");
        std::fs::write(&p, s)?;
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        load(
            &p,
            env.into_iter().map(|(a, b)| (a.to_owned(), b.to_owned())),
        )
    }

    #[test]
    fn good_config_loads_and_env_overrides() {
        let c = load_str(
            GOOD,
            vec![
                ("STRONGROOM_SERVER__PORTAL_ADDR", "127.0.0.1:9999"),
                ("STRONGROOM_TEST_DATABASE_URL", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(c.server.portal_addr.port(), 9999);
    }

    #[test]
    fn the_deployment_example_loads_and_names_its_proxy() {
        let c = load_str(
            include_str!("../../../deploy/strongroom.toml.example"),
            vec![],
        )
        .unwrap();
        assert!(c.server.behind_tls_proxy);
        assert!(!c.server.trusted_proxies.is_empty());
        assert!(c.security.data_keys_file.is_some());
        assert!(c.security.audit_head_file.is_some());
    }

    #[test]
    fn a_misspelt_override_is_an_error() {
        let e = load_str(GOOD, vec![("STRONGROOM_SECURITY_AUDIT_HEAD_FILE", "/x")]).unwrap_err();
        assert!(e.to_string().contains("two underscores"), "{e}");
        assert!(load_str(GOOD, vec![("STRONGROOM_LOG", "info")]).is_ok());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = load_str(
            &GOOD.replace("[email]", "[email]\nlog_bodies = true"),
            vec![],
        )
        .unwrap_err();
        assert!(e.to_string().contains("log_bodies"), "{e}");
        let e = load_str(GOOD, vec![("STRONGROOM_SERVER__DEBUG", "true")]).unwrap_err();
        assert!(e.to_string().contains("debug"), "{e}");
        assert!(load_str(&format!("{GOOD}\n[debug]\nverbose = true\n"), vec![]).is_err());
    }

    #[test]
    fn group_readable_config_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, GOOD).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = load(&p, std::iter::empty()).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[test]
    fn world_readable_secret_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "whsec_x").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_secret(&p)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret(&p).unwrap(), "whsec_x");
    }
}
