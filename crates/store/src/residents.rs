//! Resident accounts, their single-use email tokens and their linked utility accounts.

use crate::Result;
use sqlx::AnyConnection;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ResidentRow {
    pub id: String,
    pub email: String,
    pub email_key: String,
    pub password_hash: String,
    pub email_verified_at: Option<i64>,
    pub disabled: i64,
    pub created_at: i64,
}

const COLS: &str = "id, email, email_key, password_hash, email_verified_at, disabled, created_at";

pub async fn insert(conn: &mut AnyConnection, r: &ResidentRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO residents (id, email, email_key, password_hash, email_verified_at, disabled, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&r.id)
    .bind(&r.email)
    .bind(&r.email_key)
    .bind(&r.password_hash)
    .bind(r.email_verified_at)
    .bind(r.disabled)
    .bind(r.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn by_email_key(
    conn: &mut AnyConnection,
    email_key: &str,
) -> Result<Option<ResidentRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM residents WHERE email_key = $1"
    ))
    .bind(email_key)
    .fetch_optional(conn)
    .await?)
}

pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<ResidentRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLS} FROM residents WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn set_verified(conn: &mut AnyConnection, id: &str, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE residents SET email_verified_at = COALESCE(email_verified_at, $1) WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Disables (or enables again) an account; `Ok(false)` if there is no such account.
pub async fn set_disabled(conn: &mut AnyConnection, id: &str, disabled: bool) -> Result<bool> {
    let r = sqlx::query("UPDATE residents SET disabled = $1 WHERE id = $2")
        .bind(i64::from(disabled))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn set_password(conn: &mut AnyConnection, id: &str, hash: &str) -> Result<()> {
    sqlx::query("UPDATE residents SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn insert_token(
    conn: &mut AnyConnection,
    token_hash: &str,
    resident_id: &str,
    purpose: &str,
    expires_at: i64,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO resident_tokens (token_hash, resident_id, purpose, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(resident_id)
    .bind(purpose)
    .bind(expires_at)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks an unused, unexpired token of `purpose` as used and returns its resident; `None`
/// if it is unknown, used, expired or for another purpose. Single use even under races.
pub async fn consume_token(
    conn: &mut AnyConnection,
    token_hash: &str,
    purpose: &str,
    now: i64,
) -> Result<Option<String>> {
    let r = sqlx::query(
        "UPDATE resident_tokens SET used_at = $1 WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(token_hash)
    .bind(purpose)
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() != 1 {
        return Ok(None);
    }
    let (id,): (String,) =
        sqlx::query_as("SELECT resident_id FROM resident_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_one(conn)
            .await?;
    Ok(Some(id))
}

/// Whether an unused, unexpired token of `purpose` exists (without using it).
pub async fn token_is_live(
    conn: &mut AnyConnection,
    token_hash: &str,
    purpose: &str,
    now: i64,
) -> Result<bool> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM resident_tokens WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3",
    )
    .bind(token_hash)
    .bind(purpose)
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

/// Voids a resident's outstanding tokens of one purpose (after a reset, say).
pub async fn void_tokens(
    conn: &mut AnyConnection,
    resident_id: &str,
    purpose: &str,
    now: i64,
) -> Result<()> {
    sqlx::query("UPDATE resident_tokens SET used_at = $1 WHERE resident_id = $2 AND purpose = $3 AND used_at IS NULL")
        .bind(now)
        .bind(resident_id)
        .bind(purpose)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn link_account(
    conn: &mut AnyConnection,
    resident_id: &str,
    account_number: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO resident_accounts (resident_id, account_number, linked_at) VALUES ($1, $2, $3)
         ON CONFLICT (resident_id, account_number) DO NOTHING",
    )
    .bind(resident_id)
    .bind(account_number)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn linked_accounts(conn: &mut AnyConnection, resident_id: &str) -> Result<Vec<String>> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT account_number FROM resident_accounts WHERE resident_id = $1 ORDER BY linked_at, account_number")
            .bind(resident_id)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(|(a,)| a).collect())
}

pub async fn has_account(
    conn: &mut AnyConnection,
    resident_id: &str,
    account_number: &str,
) -> Result<bool> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM resident_accounts WHERE resident_id = $1 AND account_number = $2",
    )
    .bind(resident_id)
    .bind(account_number)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

/// The language a resident reads (`en` when unknown).
pub async fn language_of(conn: &mut AnyConnection, id: &str) -> Result<String> {
    let r: Option<(String,)> = sqlx::query_as("SELECT language FROM residents WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(r.map_or_else(|| "en".to_owned(), |(l,)| l))
}

/// Remembers a resident's language; writes only when it changes. True if it changed.
pub async fn set_language(conn: &mut AnyConnection, id: &str, language: &str) -> Result<bool> {
    let r = sqlx::query("UPDATE residents SET language = $2 WHERE id = $1 AND language <> $2")
        .bind(id)
        .bind(language)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}
