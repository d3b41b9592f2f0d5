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

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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

/// Records one entry in the caller's transaction.
///
/// On SQLite (one writer, so nothing could overlap anyway) the entry is chained at once.
/// On PostgreSQL it is queued in `audit_pending` without any lock, so audited writes
/// from many connections and nodes commit side by side; [`seal`] chains it after the
/// commit. Returns true when the entry waits for [`seal`].
pub async fn append(conn: &mut AnyConnection, key: &[u8], e: &AuditEntry<'_>) -> Result<bool> {
    if backend_of(conn).await == Backend::Postgres {
        sqlx::query(
            "INSERT INTO audit_pending (id, at, actor, event, object, outcome, source_ip, detail)
             VALUES (nextval('audit_pending_id'), $1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.at)
        .bind(e.actor)
        .bind(e.event)
        .bind(e.object)
        .bind(e.outcome)
        .bind(e.source_ip)
        .bind(e.detail)
        .execute(conn)
        .await?;
        return Ok(true);
    }
    let head = head(&mut *conn).await?;
    chain(conn, key, head, e).await?;
    Ok(false)
}

/// Inserts `e` as the entry after `head`; returns the new head.
async fn chain(
    conn: &mut AnyConnection,
    key: &[u8],
    head: Option<(i64, String)>,
    e: &AuditEntry<'_>,
) -> Result<(i64, String)> {
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
    Ok((seq, hash))
}

/// How many entries one sealing transaction chains at most.
pub const SEAL_BATCH: i64 = 500;

#[derive(sqlx::FromRow)]
struct Pending {
    id: i64,
    at: i64,
    actor: String,
    event: String,
    object: String,
    outcome: String,
    source_ip: String,
    detail: String,
}

/// Chains every committed entry waiting in `audit_pending`, oldest first, in batches of
/// [`SEAL_BATCH`]; returns how many it chained.
///
/// Each batch is one short transaction under a PostgreSQL advisory lock that only sealers
/// take (never the transactions that write entries): read the head, insert the batch with
/// consecutive `seq`s, delete exactly those pending rows, commit. A sealer that waited for
/// the lock reads the queue again after it (read committed), so the chain never forks and
/// has no gaps; an entry whose transaction has not committed yet is simply sealed later.
pub async fn seal(conn: &mut AnyConnection, key: &[u8]) -> Result<usize> {
    use sqlx::Connection;
    let mut total = 0;
    loop {
        // A cheap look first: most calls find nothing and take no lock.
        let waiting: Option<(i64,)> = sqlx::query_as("SELECT id FROM audit_pending LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
        if waiting.is_none() {
            return Ok(total);
        }
        let mut tx = conn.begin().await?;
        if backend_of(&mut tx).await == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7120001)")
                .execute(&mut *tx)
                .await?;
        }
        let batch: Vec<Pending> = sqlx::query_as(
            "SELECT id, at, actor, event, object, outcome, source_ip, detail
             FROM audit_pending ORDER BY id LIMIT $1",
        )
        .bind(SEAL_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let mut h = head(&mut tx).await?;
        for p in &batch {
            let e = AuditEntry {
                at: p.at,
                actor: &p.actor,
                event: &p.event,
                object: &p.object,
                outcome: &p.outcome,
                source_ip: &p.source_ip,
                detail: &p.detail,
            };
            h = Some(chain(&mut tx, key, h, &e).await?);
        }
        for ids in batch.chunks(100) {
            let sql = format!(
                "DELETE FROM audit_pending WHERE id IN ({})",
                crate::placeholders(ids.len())
            );
            let mut q = sqlx::query(&sql);
            for p in ids {
                q = q.bind(p.id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        total += batch.len();
        if (batch.len() as i64) < SEAL_BATCH {
            return Ok(total);
        }
    }
}

/// Entries written but not yet chained (normally none for more than a moment).
pub async fn pending(conn: &mut AnyConnection) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_pending")
        .fetch_one(conn)
        .await?;
    Ok(n)
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

/// What to show of the log: each filter is an exact match, empty means any.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub event: String,
    pub actor: String,
    pub object: String,
}

/// Entries matching `f`, newest first, with `seq < before` (`None`: from the newest).
pub async fn search(
    conn: &mut AnyConnection,
    f: &AuditFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRow>> {
    Ok(sqlx::query_as(
        "SELECT seq, at, actor, event, object, outcome, source_ip, detail, prev_hash, hash FROM audit_log
         WHERE ($1 = '' OR event = $1) AND ($2 = '' OR actor = $2) AND ($3 = '' OR object = $3) AND seq < $4
         ORDER BY seq DESC LIMIT $5",
    )
    .bind(&f.event)
    .bind(&f.actor)
    .bind(&f.object)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// The newest entry's `(seq, hash)`, if any.
pub async fn head(conn: &mut AnyConnection) -> Result<Option<(i64, String)>> {
    Ok(
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(conn)
            .await?,
    )
}

/// A single connection to an existing database, without migrations or side effects
/// (for `strongroom audit verify`, which must not change what it checks).
pub async fn open(url: &str) -> Result<AnyConnection> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    Ok(AnyConnection::connect(url).await?)
}

/// The first place where the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// Row `seq`'s content does not match its MAC under any position (edited).
    Edited { seq: i64 },
    /// Row `seq` is absent: a gap in the sequence, or later rows were renumbered to close
    /// the gap (their content authenticates only at a later position).
    Missing { seq: i64 },
    /// The chain is out of order at `seq`: the authentic entry written as row `entry` is
    /// stored as row `stored_as` (rows swapped or moved).
    Reordered {
        seq: i64,
        entry: i64,
        stored_as: i64,
    },
    /// Row `seq` is authentic but does not link to the row before it.
    Link { seq: i64 },
    /// The log ends before row `seq`, but the checkpoint records row `recorded`.
    Truncated { seq: i64, recorded: i64 },
    /// Row `seq` is not the row the checkpoint records (the chain was rebuilt).
    Rewritten { seq: i64 },
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainBreak::Edited { seq } => write!(f, "row {seq} was edited"),
            ChainBreak::Missing { seq } => write!(f, "row {seq} is missing (deleted)"),
            ChainBreak::Reordered {
                seq,
                entry,
                stored_as,
            } => write!(
                f,
                "rows out of order at {seq} (the entry written as row {entry} is stored as row {stored_as})"
            ),
            ChainBreak::Link { seq } => {
                write!(f, "row {seq} does not link to row {}", seq - 1)
            }
            ChainBreak::Truncated { seq, recorded } => write!(
                f,
                "row {seq} is missing (truncated: the log ends at row {}, the checkpoint records row {recorded})",
                seq - 1
            ),
            ChainBreak::Rewritten { seq } => {
                write!(f, "row {seq} does not match the checkpoint (rewritten)")
            }
        }
    }
}

/// An intact chain: how many entries, and the newest one's `(seq, hash)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: i64,
    pub head: Option<(i64, String)>,
}

/// How far past a row's position `verify` looks for the position it was written at, when
/// deciding whether rows were renumbered after a deletion.
const RENUMBER_SEARCH: i64 = 10_000;

fn entry_of(r: &AuditRow) -> AuditEntry<'_> {
    AuditEntry {
        at: r.at,
        actor: &r.actor,
        event: &r.event,
        object: &r.object,
        outcome: &r.outcome,
        source_ip: &r.source_ip,
        detail: &r.detail,
    }
}

fn authentic_at(key: &[u8], seq: i64, r: &AuditRow) -> bool {
    mac(key, seq, &r.prev_hash, &entry_of(r)) == r.hash
}

/// Names what happened at the first row that fails (`r`, at position `at`).
fn classify(key: &[u8], rows: &[AuditRow], at: i64, r: &AuditRow) -> ChainBreak {
    if authentic_at(key, at, r) {
        return ChainBreak::Link { seq: at };
    }
    // The position this entry was written for, if its content is authentic at all.
    let last = rows.last().map_or(0, |x| x.seq).max(rows.len() as i64);
    let Some(written) =
        (1..=last.saturating_add(RENUMBER_SEARCH)).find(|o| authentic_at(key, *o, r))
    else {
        return ChainBreak::Edited { seq: at };
    };
    // An authentic entry in the wrong place: if the entry it follows is still in the log,
    // rows were swapped or moved; if that one is gone, rows were deleted and the rest
    // renumbered to close the gap.
    let predecessor_present = r.prev_hash == GENESIS || rows.iter().any(|x| x.hash == r.prev_hash);
    if predecessor_present {
        ChainBreak::Reordered {
            seq: at,
            entry: written,
            stored_as: at,
        }
    } else {
        ChainBreak::Missing { seq: at }
    }
}

/// Walks the chain from the start; returns the number of entries checked or the first
/// break. (Truncation of the tail needs a [`Checkpoint`]: see [`verify_rows`].)
pub async fn verify(
    conn: &mut AnyConnection,
    key: &[u8],
) -> Result<std::result::Result<i64, ChainBreak>> {
    Ok(verify_streamed(conn, key).await?.map(|v| v.entries))
}

/// [`verify_rows`] over the log as a stream: an intact chain is checked one row at a time,
/// in memory that does not grow with the log. Only when a row does not follow is the log
/// read whole, to tell what kind of break it is (moved, altered, missing).
pub async fn verify_streamed(
    conn: &mut AnyConnection,
    key: &[u8],
) -> Result<std::result::Result<Verified, ChainBreak>> {
    use futures_util::TryStreamExt;
    let mut entries = 0i64;
    let mut head: Option<(i64, String)> = None;
    let mut intact = true;
    {
        let mut rows = sqlx::query_as::<_, AuditRow>(ALL_ROWS).fetch(&mut *conn);
        while let Some(r) = rows.try_next().await? {
            let prev = head.as_ref().map_or(GENESIS, |(_, h)| h.as_str());
            if r.seq != entries + 1 || r.prev_hash != prev || !authentic_at(key, r.seq, &r) {
                intact = false;
                break;
            }
            entries = r.seq;
            head = Some((r.seq, r.hash));
        }
    }
    if intact {
        return Ok(Ok(Verified { entries, head }));
    }
    let rows = all_rows(conn).await?;
    Ok(verify_rows(key, &rows))
}

/// [`verify`] over rows already read, in `seq` order.
pub fn verify_rows(key: &[u8], rows: &[AuditRow]) -> std::result::Result<Verified, ChainBreak> {
    let mut prev = GENESIS;
    for (expected, r) in (1i64..).zip(rows) {
        if r.seq != expected {
            // A gap. If the missing row's authentic content sits elsewhere, it was moved.
            if let Some(moved) = rows
                .iter()
                .find(|x| x.prev_hash == prev && authentic_at(key, expected, x))
            {
                return Err(ChainBreak::Reordered {
                    seq: expected,
                    entry: expected,
                    stored_as: moved.seq,
                });
            }
            return Err(ChainBreak::Missing { seq: expected });
        }
        if r.prev_hash != prev || !authentic_at(key, r.seq, r) {
            return Err(classify(key, rows, expected, r));
        }
        prev = &r.hash;
    }
    Ok(Verified {
        entries: rows.len() as i64,
        head: rows.last().map(|r| (r.seq, r.hash.clone())),
    })
}

/// The head of the chain as last seen by the server, kept outside the database (a file
/// next to it) and MACed with the audit key, so that cutting rows off the end of the log
/// (which leaves a valid chain) is detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// 0 when the log was empty.
    pub seq: i64,
    pub hash: String,
}

const CHECKPOINT_TAG: &str = "strongroom-audit-head v1";

fn checkpoint_mac(key: &[u8], seq: i64, hash: &str) -> Option<Hmac<Sha256>> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    for part in [CHECKPOINT_TAG, &seq.to_string(), hash] {
        m.update(&(part.len() as u64).to_be_bytes());
        m.update(part.as_bytes());
    }
    Some(m)
}

impl Checkpoint {
    /// The checkpoint of a verified chain.
    pub fn of(v: &Verified) -> Checkpoint {
        match &v.head {
            Some((seq, hash)) => Checkpoint {
                seq: *seq,
                hash: hash.clone(),
            },
            None => Checkpoint {
                seq: 0,
                hash: GENESIS.to_owned(),
            },
        }
    }

    /// One line: tag, seq, hash and the MAC over them.
    pub fn encode(&self, key: &[u8]) -> String {
        let mac = checkpoint_mac(key, self.seq, &self.hash)
            .map(|m| hex::encode(m.finalize().into_bytes()))
            .unwrap_or_default();
        format!("{CHECKPOINT_TAG} {} {} {mac}\n", self.seq, self.hash)
    }

    /// Parses and authenticates a checkpoint; `None` if malformed or not made with `key`.
    pub fn decode(key: &[u8], text: &str) -> Option<Checkpoint> {
        let rest = text.trim_end().strip_prefix(CHECKPOINT_TAG)?;
        let mut parts = rest.split_whitespace();
        let (seq, hash, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let seq: i64 = seq.parse().ok().filter(|s| *s >= 0)?;
        let mac = hex::decode(mac).ok()?;
        checkpoint_mac(key, seq, hash)?.verify_slice(&mac).ok()?;
        Some(Checkpoint {
            seq,
            hash: hash.to_owned(),
        })
    }

    /// Checks a verified chain against this checkpoint: the chain must reach at least the
    /// recorded row, and hold the recorded hash there.
    /// `stored` is the hash the log holds at the checkpoint's row ([`hash_at`]).
    pub fn check(&self, stored: Option<&str>, v: &Verified) -> std::result::Result<(), ChainBreak> {
        if v.entries < self.seq {
            return Err(ChainBreak::Truncated {
                seq: v.entries + 1,
                recorded: self.seq,
            });
        }
        if self.seq > 0 && stored != Some(self.hash.as_str()) {
            return Err(ChainBreak::Rewritten { seq: self.seq });
        }
        Ok(())
    }
}

/// The hash of the row at `seq`, if there is one.
pub async fn hash_at(conn: &mut AnyConnection, seq: i64) -> Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as("SELECT hash FROM audit_log WHERE seq = $1")
        .bind(seq)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|(h,)| h))
}

/// Every row, in `seq` order (for verification).
const ALL_ROWS: &str = "SELECT seq, at, actor, event, object, outcome, source_ip, detail, prev_hash, hash FROM audit_log ORDER BY seq";

pub async fn all_rows(conn: &mut AnyConnection) -> Result<Vec<AuditRow>> {
    Ok(sqlx::query_as(ALL_ROWS).fetch_all(conn).await?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const KEY: &[u8] = b"unit-test-key";

    fn chain(n: i64) -> Vec<AuditRow> {
        let mut prev = GENESIS.to_owned();
        let mut rows = Vec::new();
        for seq in 1..=n {
            let detail = format!("entry {seq}");
            let e = AuditEntry {
                at: 1_700_000_000 + seq,
                actor: "system",
                event: "test.event",
                object: "obj",
                outcome: "success",
                source_ip: "-",
                detail: &detail,
            };
            let hash = mac(KEY, seq, &prev, &e);
            rows.push(AuditRow {
                seq,
                at: e.at,
                actor: e.actor.into(),
                event: e.event.into(),
                object: e.object.into(),
                outcome: e.outcome.into(),
                source_ip: e.source_ip.into(),
                detail,
                prev_hash: prev.clone(),
                hash: hash.clone(),
            });
            prev = hash;
        }
        rows
    }

    #[test]
    fn intact() {
        let rows = chain(5);
        let v = verify_rows(KEY, &rows).unwrap();
        assert_eq!(v.entries, 5);
        assert!(verify_rows(KEY, &[]).is_ok());
        assert!(verify_rows(b"other key", &rows).is_err());
    }

    #[test]
    fn edited() {
        for col in 0..3 {
            let mut rows = chain(6);
            match col {
                0 => rows[3].detail = "changed".into(),
                1 => rows[3].hash = "00".repeat(32),
                _ => rows[3].prev_hash = "11".repeat(32),
            }
            assert_eq!(
                verify_rows(KEY, &rows),
                Err(ChainBreak::Edited { seq: 4 }),
                "{col}"
            );
        }
    }

    #[test]
    fn deleted() {
        let mut rows = chain(6);
        rows.remove(2);
        assert_eq!(verify_rows(KEY, &rows), Err(ChainBreak::Missing { seq: 3 }));
        // Renumbered to close the gap.
        for r in rows.iter_mut().skip(2) {
            r.seq -= 1;
        }
        assert_eq!(verify_rows(KEY, &rows), Err(ChainBreak::Missing { seq: 3 }));
        let mut rows = chain(3);
        rows.remove(0);
        assert_eq!(verify_rows(KEY, &rows), Err(ChainBreak::Missing { seq: 1 }));
    }

    #[test]
    fn reordered() {
        for (a, b) in [(1usize, 2usize), (1, 4), (0, 5)] {
            let mut rows = chain(6);
            let (sa, sb) = (rows[a].seq, rows[b].seq);
            rows.swap(a, b);
            rows[a].seq = sa;
            rows[b].seq = sb;
            assert_eq!(
                verify_rows(KEY, &rows),
                Err(ChainBreak::Reordered {
                    seq: sa,
                    entry: sb,
                    stored_as: sa
                }),
                "{a} {b}"
            );
        }
        // Moved past the end.
        let mut rows = chain(4);
        let mut r = rows.remove(1);
        r.seq = 9;
        rows.push(r);
        assert_eq!(
            verify_rows(KEY, &rows),
            Err(ChainBreak::Reordered {
                seq: 2,
                entry: 2,
                stored_as: 9
            })
        );
    }

    #[test]
    fn checkpoint_catches_truncation() {
        let rows = chain(6);
        let cp = Checkpoint::of(&verify_rows(KEY, &rows).unwrap());
        let line = cp.encode(KEY);
        assert_eq!(Checkpoint::decode(KEY, &line), Some(cp.clone()));
        assert_eq!(Checkpoint::decode(b"other", &line), None);
        assert_eq!(Checkpoint::decode(KEY, &line.replace(" 6 ", " 5 ")), None);
        let short = &rows[..4];
        let v = verify_rows(KEY, short).unwrap();
        let at = |rows: &[AuditRow]| {
            rows.iter()
                .find(|r| r.seq == cp.seq)
                .map(|r| r.hash.clone())
        };
        assert_eq!(
            cp.check(at(short).as_deref(), &v),
            Err(ChainBreak::Truncated {
                seq: 5,
                recorded: 6
            })
        );
        let v = verify_rows(KEY, &rows).unwrap();
        assert_eq!(cp.check(at(&rows).as_deref(), &v), Ok(()));
        let longer = chain(8);
        let v = verify_rows(KEY, &longer).unwrap();
        assert_eq!(cp.check(at(&longer).as_deref(), &v), Ok(()));
        let empty = Checkpoint::of(&verify_rows(KEY, &[]).unwrap());
        assert_eq!(empty.seq, 0);
        assert_eq!(Checkpoint::decode(KEY, &empty.encode(KEY)), Some(empty));
    }
}
