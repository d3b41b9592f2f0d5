//! Content-Security-Policy violation reports, reduced to what is safe to keep: the path of
//! the page, the directive, the origin of what was blocked.

use crate::Result;
use sqlx::AnyConnection;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CspReport {
    pub id: String,
    pub received_at: i64,
    pub document_path: String,
    pub violated_directive: String,
    pub blocked_origin: String,
}

pub async fn insert(conn: &mut AnyConnection, r: &CspReport) -> Result<()> {
    sqlx::query(
        "INSERT INTO csp_reports (id, received_at, document_path, violated_directive, blocked_origin) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&r.id)
    .bind(r.received_at)
    .bind(&r.document_path)
    .bind(&r.violated_directive)
    .bind(&r.blocked_origin)
    .execute(conn)
    .await?;
    Ok(())
}

/// The newest reports first.
pub async fn recent(conn: &mut AnyConnection, limit: i64) -> Result<Vec<CspReport>> {
    Ok(sqlx::query_as(
        "SELECT id, received_at, document_path, violated_directive, blocked_origin FROM csp_reports ORDER BY received_at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?)
}
