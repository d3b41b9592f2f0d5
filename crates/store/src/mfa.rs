//! Multi-factor authentication: TOTP secrets, recovery codes (hashes only) and the login
//! challenges that stand between a right password and a session. The same SQL serves staff
//! (mandatory, `staff_*` tables) and residents (opt-in, `resident_*` tables): each function
//! takes the realm's [`Tables`]; the functions without a `Tables` argument are the staff
//! ones.

use crate::Result;
use sqlx::AnyConnection;

/// The tables (and owner column) of one realm. Fixed names, never user input.
#[derive(Debug, Clone, Copy)]
pub struct Tables {
    pub mfa: &'static str,
    pub recovery_codes: &'static str,
    pub challenges: &'static str,
    /// The column naming the user in all three tables.
    pub owner: &'static str,
}

pub const STAFF: Tables = Tables {
    mfa: "staff_mfa",
    recovery_codes: "staff_recovery_codes",
    challenges: "staff_login_challenges",
    owner: "staff_id",
};

pub const RESIDENT: Tables = Tables {
    mfa: "resident_mfa",
    recovery_codes: "resident_recovery_codes",
    challenges: "resident_login_challenges",
    owner: "resident_id",
};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MfaRow {
    /// The staff member or resident.
    pub user_id: String,
    /// Base32 (RFC 4648, no padding).
    pub totp_secret: String,
    pub enrolled_at: Option<i64>,
    pub last_used_step: i64,
}

pub async fn get(conn: &mut AnyConnection, staff_id: &str) -> Result<Option<MfaRow>> {
    get_in(&STAFF, conn, staff_id).await
}

pub async fn get_in(t: &Tables, conn: &mut AnyConnection, user_id: &str) -> Result<Option<MfaRow>> {
    let sql = format!(
        "SELECT {o} AS user_id, totp_secret, enrolled_at, last_used_step FROM {m} WHERE {o} = $1",
        o = t.owner,
        m = t.mfa
    );
    Ok(sqlx::query_as(&sql)
        .bind(user_id)
        .fetch_optional(conn)
        .await?)
}

/// Stores a fresh not-yet-enrolled secret (a new one at every password step, so a secret
/// seen by someone who only knew the password is gone when the member enrolls); an
/// enrolled member's secret is never replaced here.
pub async fn insert_pending(conn: &mut AnyConnection, staff_id: &str, secret: &str) -> Result<()> {
    insert_pending_in(&STAFF, conn, staff_id, secret).await
}

pub async fn insert_pending_in(
    t: &Tables,
    conn: &mut AnyConnection,
    user_id: &str,
    secret: &str,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO {m} ({o}, totp_secret, enrolled_at, last_used_step)
         VALUES ($1, $2, NULL, 0)
         ON CONFLICT ({o}) DO UPDATE SET totp_secret = excluded.totp_secret
         WHERE {m}.enrolled_at IS NULL",
        o = t.owner,
        m = t.mfa
    );
    sqlx::query(&sql)
        .bind(user_id)
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
    let t = &STAFF;
    let sql = format!("DELETE FROM {} WHERE {} = $1", t.recovery_codes, t.owner);
    sqlx::query(&sql).bind(staff_id).execute(&mut *conn).await?;
    let sql = format!(
        "INSERT INTO {m} ({o}, totp_secret, enrolled_at, last_used_step)
         VALUES ($1, $2, $3, 0)
         ON CONFLICT ({o}) DO UPDATE SET totp_secret = $2, enrolled_at = $3, last_used_step = 0",
        o = t.owner,
        m = t.mfa
    );
    sqlx::query(&sql)
        .bind(staff_id)
        .bind(secret)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks a pending secret enrolled. False if it was enrolled already.
pub async fn mark_enrolled(conn: &mut AnyConnection, staff_id: &str, now: i64) -> Result<bool> {
    mark_enrolled_in(&STAFF, conn, staff_id, now).await
}

pub async fn mark_enrolled_in(
    t: &Tables,
    conn: &mut AnyConnection,
    user_id: &str,
    now: i64,
) -> Result<bool> {
    let sql = format!(
        "UPDATE {} SET enrolled_at = $1 WHERE {} = $2 AND enrolled_at IS NULL",
        t.mfa, t.owner
    );
    let r = sqlx::query(&sql)
        .bind(now)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Removes the user's secret, recovery codes and challenges (a resident turning TOTP off).
pub async fn delete_all_in(t: &Tables, conn: &mut AnyConnection, user_id: &str) -> Result<()> {
    for table in [t.challenges, t.recovery_codes, t.mfa] {
        let sql = format!("DELETE FROM {table} WHERE {} = $1", t.owner);
        sqlx::query(&sql).bind(user_id).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Removes only the user's TOTP secret (a resident turning TOTP off who keeps passkeys,
/// and with them their recovery codes).
pub async fn delete_secret_in(t: &Tables, conn: &mut AnyConnection, user_id: &str) -> Result<()> {
    let sql = format!("DELETE FROM {} WHERE {} = $1", t.mfa, t.owner);
    sqlx::query(&sql).bind(user_id).execute(conn).await?;
    Ok(())
}

/// Records that the code of `step` was used. False (and nothing changes) unless `step` is
/// later than every step used before: this is what makes each code single-use, also when
/// two requests race.
pub async fn use_step(conn: &mut AnyConnection, staff_id: &str, step: i64) -> Result<bool> {
    use_step_in(&STAFF, conn, staff_id, step).await
}

pub async fn use_step_in(
    t: &Tables,
    conn: &mut AnyConnection,
    user_id: &str,
    step: i64,
) -> Result<bool> {
    let sql = format!(
        "UPDATE {} SET last_used_step = $1 WHERE {} = $2 AND last_used_step < $1",
        t.mfa, t.owner
    );
    let r = sqlx::query(&sql)
        .bind(step)
        .bind(user_id)
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
    replace_recovery_codes_in(&STAFF, conn, staff_id, hashes, now).await
}

pub async fn replace_recovery_codes_in(
    t: &Tables,
    conn: &mut AnyConnection,
    user_id: &str,
    hashes: &[String],
    now: i64,
) -> Result<()> {
    let sql = format!("DELETE FROM {} WHERE {} = $1", t.recovery_codes, t.owner);
    sqlx::query(&sql).bind(user_id).execute(&mut *conn).await?;
    let sql = format!(
        "INSERT INTO {} ({}, code_hash, created_at, used_at) VALUES ($1, $2, $3, NULL)",
        t.recovery_codes, t.owner
    );
    for h in hashes {
        sqlx::query(&sql)
            .bind(user_id)
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
    use_recovery_code_in(&STAFF, conn, staff_id, code_hash, now).await
}

pub async fn use_recovery_code_in(
    t: &Tables,
    conn: &mut AnyConnection,
    user_id: &str,
    code_hash: &str,
    now: i64,
) -> Result<bool> {
    let sql = format!(
        "UPDATE {} SET used_at = $1 WHERE {} = $2 AND code_hash = $3 AND used_at IS NULL",
        t.recovery_codes, t.owner
    );
    let r = sqlx::query(&sql)
        .bind(now)
        .bind(user_id)
        .bind(code_hash)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn unused_recovery_codes(conn: &mut AnyConnection, staff_id: &str) -> Result<i64> {
    unused_recovery_codes_in(&STAFF, conn, staff_id).await
}

pub async fn unused_recovery_codes_in(
    t: &Tables,
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<i64> {
    let sql = format!(
        "SELECT COUNT(*) FROM {} WHERE {} = $1 AND used_at IS NULL",
        t.recovery_codes, t.owner
    );
    let (n,): (i64,) = sqlx::query_as(&sql).bind(user_id).fetch_one(conn).await?;
    Ok(n)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChallengeRow {
    pub token_hash: String,
    /// The staff member or resident.
    pub user_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub attempts: i64,
}

/// Starts a login challenge; the member's earlier challenges end.
pub async fn insert_challenge(conn: &mut AnyConnection, c: &ChallengeRow) -> Result<()> {
    insert_challenge_in(&STAFF, conn, c).await
}

pub async fn insert_challenge_in(
    t: &Tables,
    conn: &mut AnyConnection,
    c: &ChallengeRow,
) -> Result<()> {
    let sql = format!(
        "DELETE FROM {} WHERE {} = $1 OR expires_at <= $2",
        t.challenges, t.owner
    );
    sqlx::query(&sql)
        .bind(&c.user_id)
        .bind(c.created_at)
        .execute(&mut *conn)
        .await?;
    let sql = format!(
        "INSERT INTO {} (token_hash, {}, created_at, expires_at, attempts)
         VALUES ($1, $2, $3, $4, $5)",
        t.challenges, t.owner
    );
    sqlx::query(&sql)
        .bind(&c.token_hash)
        .bind(&c.user_id)
        .bind(c.created_at)
        .bind(c.expires_at)
        .bind(c.attempts)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn challenge(conn: &mut AnyConnection, token_hash: &str) -> Result<Option<ChallengeRow>> {
    challenge_in(&STAFF, conn, token_hash).await
}

pub async fn challenge_in(
    t: &Tables,
    conn: &mut AnyConnection,
    token_hash: &str,
) -> Result<Option<ChallengeRow>> {
    let sql = format!(
        "SELECT token_hash, {} AS user_id, created_at, expires_at, attempts FROM {} WHERE token_hash = $1",
        t.owner, t.challenges
    );
    Ok(sqlx::query_as(&sql)
        .bind(token_hash)
        .fetch_optional(conn)
        .await?)
}

/// Counts a wrong code; returns the attempts made so far.
pub async fn count_attempt(conn: &mut AnyConnection, token_hash: &str) -> Result<i64> {
    count_attempt_in(&STAFF, conn, token_hash).await
}

pub async fn count_attempt_in(
    t: &Tables,
    conn: &mut AnyConnection,
    token_hash: &str,
) -> Result<i64> {
    let sql = format!(
        "UPDATE {} SET attempts = attempts + 1 WHERE token_hash = $1",
        t.challenges
    );
    sqlx::query(&sql)
        .bind(token_hash)
        .execute(&mut *conn)
        .await?;
    let sql = format!(
        "SELECT attempts FROM {} WHERE token_hash = $1",
        t.challenges
    );
    let n: Option<(i64,)> = sqlx::query_as(&sql)
        .bind(token_hash)
        .fetch_optional(conn)
        .await?;
    Ok(n.map(|(n,)| n).unwrap_or(i64::MAX))
}

pub async fn delete_challenge(conn: &mut AnyConnection, token_hash: &str) -> Result<()> {
    delete_challenge_in(&STAFF, conn, token_hash).await
}

pub async fn delete_challenge_in(
    t: &Tables,
    conn: &mut AnyConnection,
    token_hash: &str,
) -> Result<()> {
    let sql = format!("DELETE FROM {} WHERE token_hash = $1", t.challenges);
    sqlx::query(&sql).bind(token_hash).execute(conn).await?;
    Ok(())
}

/// Gives a staff member a new enrollment code (replacing any earlier one).
pub async fn set_enrollment_code(
    conn: &mut AnyConnection,
    staff_id: &str,
    code_hash: &str,
    issued_by: &str,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    sqlx::query("DELETE FROM staff_enrollment_codes WHERE staff_id = $1")
        .bind(staff_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO staff_enrollment_codes (staff_id, code_hash, issued_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(staff_id)
    .bind(code_hash)
    .bind(issued_by)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Is `code_hash` the member's live enrollment code?
pub async fn enrollment_code_matches(
    conn: &mut AnyConnection,
    staff_id: &str,
    code_hash: &str,
    now: i64,
) -> Result<bool> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM staff_enrollment_codes WHERE staff_id = $1 AND code_hash = $2 AND expires_at > $3",
    )
    .bind(staff_id)
    .bind(code_hash)
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(n == 1)
}

/// Uses up the member's enrollment code if it is `code_hash` and has not expired.
pub async fn take_enrollment_code(
    conn: &mut AnyConnection,
    staff_id: &str,
    code_hash: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "DELETE FROM staff_enrollment_codes WHERE staff_id = $1 AND code_hash = $2 AND expires_at > $3",
    )
    .bind(staff_id)
    .bind(code_hash)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Removes a staff member's enrolled TOTP secret and recovery codes (a reset); a pending
/// secret shown at a sign-in in progress stays.
pub async fn reset_staff(conn: &mut AnyConnection, staff_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM staff_mfa WHERE staff_id = $1 AND enrolled_at IS NOT NULL")
        .bind(staff_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM staff_recovery_codes WHERE staff_id = $1")
        .bind(staff_id)
        .execute(conn)
        .await?;
    Ok(())
}
