//! Passkeys (WebAuthn credentials) of staff and residents, and the server's half of
//! ceremonies in progress. Realm is part of every lookup: a staff passkey never signs a
//! resident in, nor the reverse.

use crate::Result;
use sqlx::AnyConnection;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PasskeyRow {
    pub id: String,
    pub realm: String,
    pub user_id: String,
    pub credential_id: String,
    pub name: String,
    /// The relying party's serialised credential record (public key, counter).
    pub credential: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

const COLS: &str = "id, realm, user_id, credential_id, name, credential, created_at, last_used_at";

/// Stores a new passkey; `Ok(false)` when this credential is already registered in the
/// realm (to anyone).
pub async fn insert(conn: &mut AnyConnection, p: &PasskeyRow) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO passkeys (id, realm, user_id, credential_id, name, credential, created_at, last_used_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (realm, credential_id) DO NOTHING",
    )
    .bind(&p.id)
    .bind(&p.realm)
    .bind(&p.user_id)
    .bind(&p.credential_id)
    .bind(&p.name)
    .bind(&p.credential)
    .bind(p.created_at)
    .bind(p.last_used_at)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A user's passkeys, oldest first.
pub async fn list(conn: &mut AnyConnection, realm: &str, user_id: &str) -> Result<Vec<PasskeyRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM passkeys WHERE realm = $1 AND user_id = $2 ORDER BY created_at, id"
    ))
    .bind(realm)
    .bind(user_id)
    .fetch_all(conn)
    .await?)
}

pub async fn count(conn: &mut AnyConnection, realm: &str, user_id: &str) -> Result<i64> {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM passkeys WHERE realm = $1 AND user_id = $2")
            .bind(realm)
            .bind(user_id)
            .fetch_one(conn)
            .await?;
    Ok(n)
}

/// Records a sign-in with the passkey: its new credential record (signature counter) and
/// when it was used.
pub async fn record_use(
    conn: &mut AnyConnection,
    id: &str,
    credential: &str,
    now: i64,
) -> Result<()> {
    sqlx::query("UPDATE passkeys SET credential = $1, last_used_at = $2 WHERE id = $3")
        .bind(credential)
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes one of the user's passkeys; `Ok(false)` if they have none with this id.
pub async fn delete(
    conn: &mut AnyConnection,
    realm: &str,
    user_id: &str,
    id: &str,
) -> Result<bool> {
    let r = sqlx::query("DELETE FROM passkeys WHERE realm = $1 AND user_id = $2 AND id = $3")
        .bind(realm)
        .bind(user_id)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Removes all of a user's passkeys (an administrator's reset).
pub async fn delete_all(conn: &mut AnyConnection, realm: &str, user_id: &str) -> Result<u64> {
    let r = sqlx::query("DELETE FROM passkeys WHERE realm = $1 AND user_id = $2")
        .bind(realm)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CeremonyRow {
    pub token_hash: String,
    pub realm: String,
    pub user_id: String,
    /// `register` or `login`.
    pub purpose: String,
    /// The relying party's serialised ceremony state (holds the challenge).
    pub state: String,
    /// The options given to the browser (JSON), to show again on the same page.
    pub options: String,
    /// Registration: the name the user chose for the passkey.
    pub label: String,
    pub expires_at: i64,
}

/// Starts a ceremony; the user's earlier ceremonies of the same purpose, and expired
/// ones of anyone, end.
pub async fn insert_ceremony(conn: &mut AnyConnection, c: &CeremonyRow, now: i64) -> Result<()> {
    sqlx::query(
        "DELETE FROM passkey_ceremonies WHERE (realm = $1 AND user_id = $2 AND purpose = $3) OR expires_at <= $4",
    )
    .bind(&c.realm)
    .bind(&c.user_id)
    .bind(&c.purpose)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO passkey_ceremonies (token_hash, realm, user_id, purpose, state, options, label, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&c.token_hash)
    .bind(&c.realm)
    .bind(&c.user_id)
    .bind(&c.purpose)
    .bind(&c.state)
    .bind(&c.options)
    .bind(&c.label)
    .bind(c.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The ceremony for a token, of the realm and purpose asked for (expired or not: the
/// caller checks `expires_at`).
pub async fn ceremony(
    conn: &mut AnyConnection,
    realm: &str,
    purpose: &str,
    token_hash: &str,
) -> Result<Option<CeremonyRow>> {
    Ok(sqlx::query_as(
        "SELECT token_hash, realm, user_id, purpose, state, options, label, expires_at
         FROM passkey_ceremonies WHERE token_hash = $1 AND realm = $2 AND purpose = $3",
    )
    .bind(token_hash)
    .bind(realm)
    .bind(purpose)
    .fetch_optional(conn)
    .await?)
}

/// Ends a ceremony; `Ok(false)` if it was already gone (so two requests racing with the
/// same ceremony cannot both finish it).
pub async fn take_ceremony(conn: &mut AnyConnection, token_hash: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM passkey_ceremonies WHERE token_hash = $1")
        .bind(token_hash)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}
