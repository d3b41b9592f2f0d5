//! `strongroom audit verify` and the audit checkpoint.
//!
//! The hash chain shows an edited, deleted or reordered row, but not rows cut off the end:
//! what remains is still a valid chain. So the server keeps a checkpoint of the chain's head
//! (seq, hash, MAC with the audit key) in a file outside the database (`audit.head` next to
//! the demo database; `security.audit_head_file` in production) and logs each new head.
//! `audit verify` requires the chain to reach the checkpoint. The checkpoint only moves
//! forward: a server that finds the log shorter than its checkpoint logs an error and keeps
//! the checkpoint.

use anyhow::Context;
use app::App;
use std::path::{Path, PathBuf};
use std::time::Duration;
use store::audit::{self as au, ChainBreak, Checkpoint};

/// The outcome of `audit verify`, as the lines to print and whether the log is intact.
pub struct Report {
    pub intact: bool,
    pub lines: Vec<String>,
}

/// Reads the checkpoint file; `Ok(None)` if it does not exist.
fn read_checkpoint(path: &Path, key: &[u8]) -> anyhow::Result<Option<Option<Checkpoint>>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(Checkpoint::decode(key, &text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Verifies the chain in the database at `url` (opened without migrations or writes) and,
/// when `head_file` is given, that the chain reaches the checkpoint recorded there.
pub async fn verify(url: &str, key: &[u8], head_file: Option<&Path>) -> anyhow::Result<Report> {
    let mut conn = au::open(url)
        .await
        .with_context(|| "cannot open the database".to_string())?;
    let verified = au::verify_streamed(&mut conn, key)
        .await
        .context("cannot read the audit log")?;
    let broken = |b: ChainBreak| Report {
        intact: false,
        lines: vec![format!("audit chain broken: {b}")],
    };
    let v = match verified {
        Ok(v) => v,
        Err(b) => return Ok(broken(b)),
    };
    let mut lines = vec![format!("audit chain intact: {} entries", v.entries)];
    // Entries written on PostgreSQL wait a moment before a running node chains them.
    let queued = au::pending(&mut conn)
        .await
        .context("cannot read the audit queue")?;
    if queued > 0 {
        lines.push(format!(
            "{queued} newer entries are committed and waiting to be chained by a running node"
        ));
    }
    match head_file {
        None => lines.push(
            "truncation not checked: no checkpoint file is configured (security.audit_head_file)"
                .into(),
        ),
        Some(p) => match read_checkpoint(p, key)? {
            None => {
                return Ok(Report {
                    intact: false,
                    lines: vec![format!(
                        "audit checkpoint {} is missing: cannot rule out rows cut off the end",
                        p.display()
                    )],
                })
            }
            Some(None) => {
                return Ok(Report {
                    intact: false,
                    lines: vec![format!(
                        "audit checkpoint {} is not authentic (altered, or made with another key)",
                        p.display()
                    )],
                })
            }
            Some(Some(cp)) => {
                let stored = au::hash_at(&mut conn, cp.seq)
                    .await
                    .context("cannot read the audit log")?;
                if let Err(b) = cp.check(stored.as_deref(), &v) {
                    return Ok(broken(b));
                }
                lines.push(format!(
                    "checkpoint at row {} ({}) matches",
                    cp.seq,
                    p.display()
                ));
            }
        },
    }
    Ok(Report {
        intact: true,
        lines,
    })
}

/// Where `audit verify --data-dir DIR` looks: the demo layout.
pub fn demo_paths(dir: &Path) -> (String, PathBuf, PathBuf) {
    (
        format!("sqlite://{}?mode=rw", dir.join("strongroom.db").display()),
        dir.join("audit.key"),
        dir.join("audit.head"),
    )
}

/// Writes `text` to `path` atomically (a private temporary file renamed over it).
fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("head.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// What the checkpoint writer did on one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointStep {
    Unchanged,
    Advanced(Checkpoint),
    /// The log no longer reaches the checkpoint, or the checkpoint file is not authentic:
    /// the file is left as it is and the problem reported.
    Refused(String),
}

/// One pass: records the chain's current head if it is ahead of the checkpoint.
pub async fn checkpoint_once(app: &App, path: &Path) -> anyhow::Result<CheckpointStep> {
    let key = &app.config().audit_key;
    let head = {
        let mut conn = app.store.conn().await?;
        au::head(&mut conn).await?
    };
    let now = match head {
        Some((seq, hash)) => Checkpoint { seq, hash },
        None => Checkpoint {
            seq: 0,
            hash: au::GENESIS.to_owned(),
        },
    };
    match read_checkpoint(path, key)? {
        Some(None) => {
            return Ok(CheckpointStep::Refused(format!(
                "audit checkpoint {} is not authentic; leaving it for investigation",
                path.display()
            )))
        }
        Some(Some(old)) if old == now => return Ok(CheckpointStep::Unchanged),
        Some(Some(old)) if old.seq > now.seq => {
            return Ok(CheckpointStep::Refused(format!(
                "the audit log ends at row {} but its checkpoint records row {}: rows were cut off",
                now.seq, old.seq
            )))
        }
        Some(Some(old)) if old.seq == now.seq => {
            return Ok(CheckpointStep::Refused(format!(
                "audit row {} no longer matches its checkpoint",
                old.seq
            )))
        }
        _ => {}
    }
    write_atomic(path, &now.encode(key))?;
    Ok(CheckpointStep::Advanced(now))
}

/// Keeps the checkpoint file up to date (every `every`); logs each new head, so a log
/// shipped off the machine is a second record of it.
pub async fn checkpoint_loop(app: App, path: PathBuf, every: Duration) {
    let mut tick = tokio::time::interval(every);
    let mut last_problem = String::new();
    loop {
        tick.tick().await;
        match checkpoint_once(&app, &path).await {
            Ok(CheckpointStep::Advanced(cp)) => {
                tracing::info!(seq = cp.seq, hash = %cp.hash, "audit checkpoint advanced");
                last_problem.clear();
            }
            Ok(CheckpointStep::Unchanged) => {}
            Ok(CheckpointStep::Refused(why)) => {
                if why != last_problem {
                    tracing::error!(problem = %why, "audit log tampering suspected");
                    last_problem = why;
                }
            }
            Err(e) => tracing::warn!(error = %e, "audit checkpoint"),
        }
    }
}
