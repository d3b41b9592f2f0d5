//! Encrypted, consistent online backups of the SQLite store, and restore.
//!
//! The backup is taken with `VACUUM INTO` (a consistent snapshot while the server runs),
//! then encrypted with AES-256-GCM in the STREAM construction (1 MiB segments, each
//! authenticated with its position and whether it is the last), so a backup cannot be
//! read, edited, truncated or reordered without the key. File layout:
//! `b"SRBACKUP1"` + 7-byte nonce prefix + segments (ciphertext + 16-byte tag each).

use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::aead::KeyInit;
use aes_gcm::Aes256Gcm;
use anyhow::{bail, Context};
use rand::RngCore;
use sqlx::Connection;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"SRBACKUP1";
const SEGMENT: usize = 1 << 20;
const TAG: usize = 16;

/// Parses a 32-byte key written as 64 hex characters.
pub fn parse_key(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(text.trim()).context("the backup key must be 64 hex characters")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("the backup key must be 32 bytes (64 hex characters)"))
}

fn sqlite_path(database_url: &str) -> anyhow::Result<PathBuf> {
    let Some(rest) = database_url.strip_prefix("sqlite://") else {
        bail!("backup covers the embedded SQLite store; for PostgreSQL use pg_dump with your usual encryption");
    };
    Ok(PathBuf::from(rest.split('?').next().unwrap_or(rest)))
}

fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// Writes an encrypted backup of the database at `database_url` to `out`.
/// Returns the size of the plaintext snapshot.
pub async fn backup(database_url: &str, key: &[u8; 32], out: &Path) -> anyhow::Result<u64> {
    let db = sqlite_path(database_url)?;
    if out.exists() {
        bail!("{} already exists; choose a new file name", out.display());
    }
    let snapshot = out.with_extension("snapshot-tmp");
    let _ = std::fs::remove_file(&snapshot);
    {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .with_context(|| format!("cannot open {}", db.display()))?;
        sqlx::query("VACUUM INTO ?")
            .bind(snapshot.to_string_lossy().into_owned())
            .execute(&mut conn)
            .await
            .context("snapshot failed")?;
        conn.close().await?;
    }
    let result = encrypt_file(&snapshot, key, out);
    // The plaintext snapshot never outlives the command.
    let _ = std::fs::remove_file(&snapshot);
    result
}

fn encrypt_file(plain: &Path, key: &[u8; 32], out: &Path) -> anyhow::Result<u64> {
    let mut input = std::fs::File::open(plain)?;
    let mut output = create_private(out)?;
    let mut nonce = [0u8; 7];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    output.write_all(MAGIC)?;
    output.write_all(&nonce)?;
    let cipher = Aes256Gcm::new(key.into());
    let mut enc = EncryptorBE32::from_aead(cipher, (&nonce).into());
    let mut total = 0u64;
    let mut buf = vec![0u8; SEGMENT];
    let mut filled = read_full(&mut input, &mut buf)?;
    loop {
        let mut next = vec![0u8; SEGMENT];
        let next_filled = if filled == SEGMENT {
            read_full(&mut input, &mut next)?
        } else {
            0
        };
        total += filled as u64;
        if next_filled == 0 {
            let ct = enc
                .encrypt_last(&buf[..filled])
                .map_err(|_| anyhow::anyhow!("encryption failed"))?;
            output.write_all(&ct)?;
            break;
        }
        let ct = enc
            .encrypt_next(&buf[..filled])
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        output.write_all(&ct)?;
        buf = next;
        filled = next_filled;
    }
    output.sync_all()?;
    Ok(total)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Decrypts `from` and installs it as the database at `database_url`. Refuses to replace
/// an existing database unless `force`.
pub async fn restore(
    database_url: &str,
    key: &[u8; 32],
    from: &Path,
    force: bool,
) -> anyhow::Result<()> {
    let db = sqlite_path(database_url)?;
    if db.exists() && !force {
        bail!(
            "{} exists; stop the server and pass --force to replace it",
            db.display()
        );
    }
    let mut input =
        std::fs::File::open(from).with_context(|| format!("cannot open {}", from.display()))?;
    let mut header = [0u8; 9 + 7];
    input
        .read_exact(&mut header)
        .context("not a Strongroom backup (too short)")?;
    if &header[..9] != MAGIC {
        bail!("not a Strongroom backup");
    }
    let nonce: [u8; 7] = header[9..].try_into()?;
    let cipher = Aes256Gcm::new(key.into());
    let mut dec = DecryptorBE32::from_aead(cipher, (&nonce).into());
    let staged = db.with_extension("restore-tmp");
    let _ = std::fs::remove_file(&staged);
    let mut out = create_private(&staged)?;
    let mut buf = vec![0u8; SEGMENT + TAG];
    let mut filled = read_full(&mut input, &mut buf)?;
    let outcome: anyhow::Result<()> = (|| loop {
        let mut next = vec![0u8; SEGMENT + TAG];
        let next_filled = if filled == SEGMENT + TAG {
            read_full(&mut input, &mut next)?
        } else {
            0
        };
        if next_filled == 0 {
            let pt = dec.decrypt_last(&buf[..filled]).map_err(|_| {
                anyhow::anyhow!("the backup is damaged, truncated or the key is wrong")
            })?;
            out.write_all(&pt)?;
            return Ok(());
        }
        let pt = dec
            .decrypt_next(&buf[..filled])
            .map_err(|_| anyhow::anyhow!("the backup is damaged, truncated or the key is wrong"))?;
        out.write_all(&pt)?;
        buf = next;
        filled = next_filled;
    })();
    if let Err(e) = outcome {
        let _ = std::fs::remove_file(&staged);
        return Err(e);
    }
    out.sync_all()?;
    drop(out);
    {
        let mut conn =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}", staged.display())).await?;
        let (ok,): (String,) = sqlx::query_as("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        if ok != "ok" {
            let _ = std::fs::remove_file(&staged);
            bail!("the restored database fails its integrity check: {ok}");
        }
    }
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::rename(&staged, &db)?;
    Ok(())
}
