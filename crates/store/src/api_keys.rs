//! API keys of the city's systems.

use crate::Result;
use sqlx::AnyConnection;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub secret_hash: String,
    pub scopes: String,
    pub created_by: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

const COLS: &str =
    "id, name, secret_hash, scopes, created_by, created_at, revoked_at, last_used_at";

pub async fn insert(conn: &mut AnyConnection, k: &ApiKeyRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO api_keys ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(&k.id)
    .bind(&k.name)
    .bind(&k.secret_hash)
    .bind(&k.scopes)
    .bind(&k.created_by)
    .bind(k.created_at)
    .bind(k.revoked_at)
    .bind(k.last_used_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<ApiKeyRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLS} FROM api_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn list(conn: &mut AnyConnection) -> Result<Vec<ApiKeyRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM api_keys ORDER BY created_at DESC, id"
    ))
    .fetch_all(conn)
    .await?)
}

/// True if this call revoked it.
pub async fn revoke(conn: &mut AnyConnection, id: &str, at: i64) -> Result<bool> {
    let r = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(at)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Records a use, at most once a minute per key (a read is not worth a commit each time).
pub async fn touch(conn: &mut AnyConnection, id: &str, at: i64) -> Result<()> {
    sqlx::query(
        "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
    )
    .bind(at)
    .bind(id)
    .bind(at - 60)
    .execute(conn)
    .await?;
    Ok(())
}
