//! Server-side sessions. The cookie carries a random token; only its SHA-256 is stored.

use crate::Result;
use sqlx::AnyConnection;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub token_hash: String,
    pub realm: String,
    pub user_id: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

pub async fn insert(conn: &mut AnyConnection, s: &SessionRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO sessions (token_hash, realm, user_id, csrf_token, created_at, last_seen_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&s.token_hash)
    .bind(&s.realm)
    .bind(&s.user_id)
    .bind(&s.csrf_token)
    .bind(s.created_at)
    .bind(s.last_seen_at)
    .bind(s.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// A session with whether its owner's account may still sign in.
#[derive(sqlx::FromRow)]
struct LiveRow {
    #[sqlx(flatten)]
    session: SessionRow,
    /// The owner's `disabled` flag; NULL when the account is gone.
    owner_disabled: Option<i64>,
}

/// How stale a session's `last_seen_at` may grow before a request writes it again. Reading
/// a page costs no write (on PostgreSQL a durable commit, on SQLite a turn of the one
/// writer) unless the idle clock is a minute behind; a session can therefore end up to a
/// minute before its idle timeout.
pub const TOUCH_EVERY_SECS: i64 = 60;

/// What a request's session token finds.
#[derive(Debug)]
pub enum Found {
    /// A live session; `stale` when its idle clock is [`TOUCH_EVERY_SECS`] behind and the
    /// caller should write it ([`seen`]).
    Live {
        session: SessionRow,
        stale: bool,
    },
    /// Expired, or its account disabled or removed: the caller removes it ([`delete`]).
    Dead,
    Missing,
}

/// Looks a session of `realm` up without writing (a read connection will do). Expired
/// ones, and those of a disabled or removed account, are [`Found::Dead`]: disabling an
/// account ends its sessions anyway, and this is the same rule at the one place every
/// request passes.
pub async fn find(
    conn: &mut AnyConnection,
    token_hash: &str,
    realm: &str,
    now: i64,
    idle_secs: i64,
) -> Result<Found> {
    let row: Option<LiveRow> = sqlx::query_as(
        "SELECT s.token_hash, s.realm, s.user_id, s.csrf_token, s.created_at, s.last_seen_at, s.expires_at,
                CASE WHEN s.realm = 'staff'
                     THEN (SELECT u.disabled FROM staff_users u WHERE u.id = s.user_id)
                     ELSE (SELECT r.disabled FROM residents r WHERE r.id = s.user_id)
                END AS owner_disabled
         FROM sessions s WHERE s.token_hash = $1 AND s.realm = $2",
    )
    .bind(token_hash)
    .bind(realm)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(LiveRow {
            session: s,
            owner_disabled: Some(0),
        }) if s.expires_at > now && s.last_seen_at + idle_secs > now => Found::Live {
            stale: now - s.last_seen_at >= TOUCH_EVERY_SECS,
            session: s,
        },
        Some(_) => Found::Dead,
        None => Found::Missing,
    })
}

/// Moves a session's idle clock to `now`.
pub async fn seen(conn: &mut AnyConnection, token_hash: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
        .bind(now)
        .bind(token_hash)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete(conn: &mut AnyConnection, token_hash: &str) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete_for_user(conn: &mut AnyConnection, realm: &str, user_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE realm = $1 AND user_id = $2")
        .bind(realm)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends every session of one user except the one whose hash is `keep`. Returns how many
/// were ended.
pub async fn delete_for_user_except(
    conn: &mut AnyConnection,
    realm: &str,
    user_id: &str,
    keep: &str,
) -> Result<u64> {
    let done =
        sqlx::query("DELETE FROM sessions WHERE realm = $1 AND user_id = $2 AND token_hash <> $3")
            .bind(realm)
            .bind(user_id)
            .bind(keep)
            .execute(conn)
            .await?;
    Ok(done.rows_affected())
}

/// Every session row of one user of `realm` (live or not), oldest first (ties by last use).
pub async fn for_user(
    conn: &mut AnyConnection,
    realm: &str,
    user_id: &str,
) -> Result<Vec<SessionRow>> {
    Ok(sqlx::query_as(
        "SELECT token_hash, realm, user_id, csrf_token, created_at, last_seen_at, expires_at FROM sessions
         WHERE realm = $1 AND user_id = $2 ORDER BY created_at, last_seen_at, token_hash",
    )
    .bind(realm)
    .bind(user_id)
    .fetch_all(conn)
    .await?)
}

/// Ends one session of one user; the realm and user are part of the match, so a caller
/// can only end sessions of the user it names. True if a row was removed.
pub async fn delete_of_user(
    conn: &mut AnyConnection,
    realm: &str,
    user_id: &str,
    token_hash: &str,
) -> Result<bool> {
    let done =
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1 AND realm = $2 AND user_id = $3")
            .bind(token_hash)
            .bind(realm)
            .bind(user_id)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() > 0)
}
