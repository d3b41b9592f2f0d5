//! The data keys file (personal data at rest, `app::crypto`): create, read, rotate.

use anyhow::{bail, Context};
use app::crypto::KeyRing;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The demo data directory's keys file.
pub const DEMO_FILE: &str = "data.keys";

/// Reads a keys file; refuses group- or world-readable files like every secret.
pub fn load(path: &Path) -> anyhow::Result<KeyRing> {
    let text = crate::config::read_secret(path)?;
    KeyRing::parse(&text).with_context(|| format!("data keys file {}", path.display()))
}

/// Creates a new keys file (mode 600); refuses to overwrite one.
pub fn init(path: &Path) -> anyhow::Result<KeyRing> {
    let ring = KeyRing::generate();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (does it exist already?)", path.display()))?;
    f.write_all(ring.to_file_text().as_bytes())?;
    f.sync_all()?;
    Ok(ring)
}

/// Replaces a keys file atomically: a mode-600 temporary file beside it, then rename.
pub fn write_atomic(path: &Path, ring: &KeyRing) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("the data keys path has no file name")?;
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(ring.to_file_text().as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// Adds a key to the file (it becomes current) and re-encrypts every sealed value under
/// it. Older keys stay in the file, so backups made before still read. Returns the lines
/// to print. Stop the server first: a running server keeps the old ring until restarted.
pub async fn rotate(
    database_url: &str,
    keys_file: &Path,
    audit_key: Vec<u8>,
    city_name: &str,
) -> anyhow::Result<Vec<String>> {
    let old = load(keys_file)?;
    let new = old.rotated();
    if new.current_id() == old.current_id() {
        bail!("no more key ids");
    }
    // The file first: should the pass stop half way, every value still opens.
    write_atomic(keys_file, &new)?;
    let app = crate::server::offline_app(
        database_url,
        audit_key,
        city_name,
        new.clone(),
        app::ledger::LedgerConfig::standard()?,
    )
    .await?;
    let counts = app.sealing_audit(app.reseal_all()).await?;
    let mut lines = vec![format!(
        "added data key {} to {} and made it current",
        new.current_id(),
        keys_file.display()
    )];
    for c in &counts {
        lines.push(format!(
            "{}: {} values, {} re-encrypted",
            c.column, c.values, c.resealed
        ));
    }
    lines.push(format!(
        "older keys ({}) stay in the file so that backups made before this rotation can still be read; restart the server to use key {}",
        old.key_ids()
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        new.current_id()
    ));
    Ok(lines)
}
