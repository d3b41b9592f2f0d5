//! Back-office settings stored in the database (migration 0017): name -> text value.

use crate::Result;
use sqlx::AnyConnection;

/// (name, value) of every stored setting.
pub async fn all(conn: &mut AnyConnection) -> Result<Vec<(String, String)>> {
    Ok(
        sqlx::query_as("SELECT name, value FROM settings ORDER BY name")
            .fetch_all(conn)
            .await?,
    )
}

/// Stores `value` under `name` (insert or replace).
pub async fn put(
    conn: &mut AnyConnection,
    name: &str,
    value: &str,
    at: i64,
    by: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO settings (name, value, updated_at, updated_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value,
           updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )
    .bind(name)
    .bind(value)
    .bind(at)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}
