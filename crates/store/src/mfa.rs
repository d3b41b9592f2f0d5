//! Staff multi-factor authentication: TOTP secrets, recovery codes (hashes only) and the
//! login challenges that stand between a right password and a session.

use crate::Result;
use sqlx::AnyConnection;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MfaRow {
    pub staff_id: String,
    /// Base32 (RFC 4648, no padding).
    pub totp_secret: String,
    pub enrolled_at: Option<i64>,
    pub last_used_step: i64,
}

pub async fn get(conn: &mut AnyConnection, staff_id: &str) -> Result<Option<MfaRow>> {
    Ok(sqlx::query_as(
        "SELECT staff_id, totp_secret, enrolled_at, last_used_step FROM staff_mfa WHERE staff_id = $1",
    )
    .bind(staff_id)
    .fetch_optional(conn)
    .await?)
}

/// Stores a fresh not-yet-enrolled secret (a new one at every password step, so a secret
/// seen by someone who only knew the password is gone when the member enrolls); an
/// enrolled member's secret is never replaced here.
pub async fn insert_pending(conn: &mut AnyConnection, staff_id: &str, secret: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO staff_mfa (staff_id, totp_secret, enrolled_at, last_used_step)
         VALUES ($1, $2, NULL, 0)
         ON CONFLICT (staff_id) DO UPDATE SET totp_secret = excluded.totp_secret
         WHERE staff_mfa.enrolled_at IS NULL",
    )
    .bind(staff_id)
    .bind(secret)
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces the member's secret with an enrolled one (provisioning or reset by an
/// administrator); their recovery codes are removed.
pub async fn replace_enrolled(
    conn: &mut AnyConnection,
    staff_id: &str,
    secret: &str,
    now: i64,
) -> Result<()> {
    sqlx::query("DELETE FROM staff_recovery_codes WHERE staff_id = $1")
        .bind(staff_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO staff_mfa (staff_id, totp_secret, enrolled_at, last_used_step)
         VALUES ($1, $2, $3, 0)
         ON CONFLICT (staff_id) DO UPDATE SET totp_secret = $2, enrolled_at = $3, last_used_step = 0",
    )
    .bind(staff_id)
    .bind(secret)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a pending secret enrolled. False if it was enrolled already.
pub async fn mark_enrolled(conn: &mut AnyConnection, staff_id: &str, now: i64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE staff_mfa SET enrolled_at = $1 WHERE staff_id = $2 AND enrolled_at IS NULL",
    )
    .bind(now)
    .bind(staff_id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Records that the code of `step` was used. False (and nothing changes) unless `step` is
/// later than every step used before: this is what makes each code single-use, also when
/// two requests race.
pub async fn use_step(conn: &mut AnyConnection, staff_id: &str, step: i64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE staff_mfa SET last_used_step = $1 WHERE staff_id = $2 AND last_used_step < $1",
    )
    .bind(step)
    .bind(staff_id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Replaces the member's recovery codes with these hashes.
pub async fn replace_recovery_codes(
    conn: &mut AnyConnection,
    staff_id: &str,
    hashes: &[String],
    now: i64,
) -> Result<()> {
    sqlx::query("DELETE FROM staff_recovery_codes WHERE staff_id = $1")
        .bind(staff_id)
        .execute(&mut *conn)
        .await?;
    for h in hashes {
        sqlx::query(
            "INSERT INTO staff_recovery_codes (staff_id, code_hash, created_at, used_at) VALUES ($1, $2, $3, NULL)",
        )
        .bind(staff_id)
        .bind(h)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Uses an unused recovery code. False if there is no such unused code.
pub async fn use_recovery_code(
    conn: &mut AnyConnection,
    staff_id: &str,
    code_hash: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE staff_recovery_codes SET used_at = $1 WHERE staff_id = $2 AND code_hash = $3 AND used_at IS NULL",
    )
    .bind(now)
    .bind(staff_id)
    .bind(code_hash)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn unused_recovery_codes(conn: &mut AnyConnection, staff_id: &str) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM staff_recovery_codes WHERE staff_id = $1 AND used_at IS NULL",
    )
    .bind(staff_id)
    .fetch_one(conn)
    .await?;
    Ok(n)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChallengeRow {
    pub token_hash: String,
    pub staff_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub attempts: i64,
}

/// Starts a login challenge; the member's earlier challenges end.
pub async fn insert_challenge(conn: &mut AnyConnection, c: &ChallengeRow) -> Result<()> {
    sqlx::query("DELETE FROM staff_login_challenges WHERE staff_id = $1 OR expires_at <= $2")
        .bind(&c.staff_id)
        .bind(c.created_at)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO staff_login_challenges (token_hash, staff_id, created_at, expires_at, attempts)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&c.token_hash)
    .bind(&c.staff_id)
    .bind(c.created_at)
    .bind(c.expires_at)
    .bind(c.attempts)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn challenge(conn: &mut AnyConnection, token_hash: &str) -> Result<Option<ChallengeRow>> {
    Ok(sqlx::query_as(
        "SELECT token_hash, staff_id, created_at, expires_at, attempts FROM staff_login_challenges WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(conn)
    .await?)
}

/// Counts a wrong code; returns the attempts made so far.
pub async fn count_attempt(conn: &mut AnyConnection, token_hash: &str) -> Result<i64> {
    sqlx::query("UPDATE staff_login_challenges SET attempts = attempts + 1 WHERE token_hash = $1")
        .bind(token_hash)
        .execute(&mut *conn)
        .await?;
    let n: Option<(i64,)> =
        sqlx::query_as("SELECT attempts FROM staff_login_challenges WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(conn)
            .await?;
    Ok(n.map(|(n,)| n).unwrap_or(i64::MAX))
}

pub async fn delete_challenge(conn: &mut AnyConnection, token_hash: &str) -> Result<()> {
    sqlx::query("DELETE FROM staff_login_challenges WHERE token_hash = $1")
        .bind(token_hash)
        .execute(conn)
        .await?;
    Ok(())
}
