//! Documents attached to accounts: opaque blobs under random ids, in the database only.
//!
//! The content is kept base64-encoded in a TEXT column (portable across SQLite and
//! PostgreSQL); callers see bytes. Listing functions never load the content.

use crate::{Result, StoreError};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sqlx::AnyConnection;

/// A document's description (everything but its content).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DocumentRow {
    pub id: String,
    pub account_number: String,
    /// Staff id of the uploader.
    pub uploaded_by: String,
    /// The checked original name, for display and the download's filename only.
    pub original_name: String,
    /// Media type sniffed from the content by us, never the client's.
    pub media_type: String,
    pub size_bytes: i64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    pub created_at: i64,
}

const COLUMNS: &str =
    "id, account_number, uploaded_by, original_name, media_type, size_bytes, sha256, created_at";

pub async fn insert(conn: &mut AnyConnection, d: &DocumentRow, content: &[u8]) -> Result<()> {
    sqlx::query(
        "INSERT INTO documents (id, account_number, uploaded_by, original_name, media_type, size_bytes, sha256, content_base64, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&d.id)
    .bind(&d.account_number)
    .bind(&d.uploaded_by)
    .bind(&d.original_name)
    .bind(&d.media_type)
    .bind(d.size_bytes)
    .bind(&d.sha256)
    .bind(STANDARD.encode(content))
    .bind(d.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<DocumentRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM documents WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

/// The content of a document, decoded.
pub async fn content(conn: &mut AnyConnection, id: &str) -> Result<Option<Vec<u8>>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT content_base64 FROM documents WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    match row {
        None => Ok(None),
        Some((b64,)) => STANDARD
            .decode(b64.as_bytes())
            .map(Some)
            .map_err(|_| StoreError::Corrupt(format!("document {id}: content is not base64"))),
    }
}

/// An account's documents, newest first.
pub async fn for_account(
    conn: &mut AnyConnection,
    account_number: &str,
    limit: i64,
) -> Result<Vec<DocumentRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM documents WHERE account_number = $1 ORDER BY created_at DESC, id LIMIT $2"
    ))
    .bind(account_number)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

pub async fn count(conn: &mut AnyConnection) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM documents")
        .fetch_one(conn)
        .await?;
    Ok(n)
}
