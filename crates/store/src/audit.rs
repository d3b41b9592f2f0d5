//! The audit log: append-only, each row chained to the previous one with a keyed MAC,
//! written in the same transaction as the change it records.

use crate::{backend_of, Backend, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::AnyConnection;

#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub at: i64,
    /// `resident:res_..`, `staff:stf_..`, `api`, `processor`, `system`.
    pub actor: &'a str,
    pub event: &'a str,
    pub object: &'a str,
    /// `success` or `failure`.
    pub outcome: &'a str,
    pub source_ip: &'a str,
    /// Free text; never card data or secrets.
    pub detail: &'a str,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub event: String,
    pub object: String,
    pub outcome: String,
    pub source_ip: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn mac(key: &[u8], seq: i64, prev: &str, e: &AuditEntry<'_>) -> String {
    // Length-prefixed fields, so no two different rows encode the same.
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(), // HMAC accepts keys of any length
    };
    for part in [
        seq.to_string().as_str(),
        prev,
        &e.at.to_string(),
        e.actor,
        e.event,
        e.object,
        e.outcome,
        e.source_ip,
        e.detail,
    ] {
        m.update(&(part.len() as u64).to_be_bytes());
        m.update(part.as_bytes());
    }
    hex::encode(m.finalize().into_bytes())
}

/// Appends one entry after the current head of the chain.
pub async fn append(conn: &mut AnyConnection, key: &[u8], e: &AuditEntry<'_>) -> Result<i64> {
    if backend_of(conn).await == Backend::Postgres {
        // Serialise appenders so the chain never forks (released at commit).
        sqlx::query("SELECT pg_advisory_xact_lock(7120001)")
            .execute(&mut *conn)
            .await?;
    }
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (seq, prev) = match head {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS.to_owned()),
    };
    let hash = mac(key, seq, &prev, e);
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, event, object, outcome, source_ip, detail, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(seq)
    .bind(e.at)
    .bind(e.actor)
    .bind(e.event)
    .bind(e.object)
    .bind(e.outcome)
    .bind(e.source_ip)
    .bind(e.detail)
    .bind(&prev)
    .bind(&hash)
    .execute(conn)
    .await?;
    Ok(seq)
}

pub async fn for_object(conn: &mut AnyConnection, object: &str) -> Result<Vec<AuditRow>> {
    Ok(sqlx::query_as(
        "SELECT seq, at, actor, event, object, outcome, source_ip, detail, prev_hash, hash FROM audit_log WHERE object = $1 ORDER BY seq",
    )
    .bind(object)
    .fetch_all(conn)
    .await?)
}

pub async fn recent(conn: &mut AnyConnection, limit: i64) -> Result<Vec<AuditRow>> {
    Ok(sqlx::query_as(
        "SELECT seq, at, actor, event, object, outcome, source_ip, detail, prev_hash, hash FROM audit_log ORDER BY seq DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// Row `seq` does not follow row `seq - 1` (a row was deleted or reordered).
    Gap { expected: i64, found: i64 },
    /// Row `seq` does not link to the hash of the row before it.
    Link { seq: i64 },
    /// Row `seq`'s content does not match its MAC (edited).
    Edited { seq: i64 },
}

/// Walks the chain from the start; returns the number of rows checked or the first break.
pub async fn verify(conn: &mut AnyConnection, key: &[u8]) -> Result<Result<i64, ChainBreak>> {
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT seq, at, actor, event, object, outcome, source_ip, detail, prev_hash, hash FROM audit_log ORDER BY seq",
    )
    .fetch_all(conn)
    .await?;
    let mut prev = GENESIS.to_owned();
    for (expected, r) in (1i64..).zip(&rows) {
        if r.seq != expected {
            return Ok(Err(ChainBreak::Gap {
                expected,
                found: r.seq,
            }));
        }
        if r.prev_hash != prev {
            return Ok(Err(ChainBreak::Link { seq: r.seq }));
        }
        let e = AuditEntry {
            at: r.at,
            actor: &r.actor,
            event: &r.event,
            object: &r.object,
            outcome: &r.outcome,
            source_ip: &r.source_ip,
            detail: &r.detail,
        };
        if mac(key, r.seq, &r.prev_hash, &e) != r.hash {
            return Ok(Err(ChainBreak::Edited { seq: r.seq }));
        }
        prev.clone_from(&r.hash);
    }
    Ok(Ok(rows.len() as i64))
}
