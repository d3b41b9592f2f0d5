//! Staff users of the back office.

use crate::Result;
use sqlx::AnyConnection;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StaffRow {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
    pub role: String,
    pub disabled: i64,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
    pub created_at: i64,
}

const COLS: &str = "id, username, display_name, password_hash, role, disabled, failed_logins, locked_until, created_at";

pub async fn insert(conn: &mut AnyConnection, s: &StaffRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO staff_users (id, username, display_name, password_hash, role, disabled, failed_logins, locked_until, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&s.id)
    .bind(&s.username)
    .bind(&s.display_name)
    .bind(&s.password_hash)
    .bind(&s.role)
    .bind(s.disabled)
    .bind(s.failed_logins)
    .bind(s.locked_until)
    .bind(s.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn by_username(conn: &mut AnyConnection, username: &str) -> Result<Option<StaffRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM staff_users WHERE username = $1"
    ))
    .bind(username)
    .fetch_optional(conn)
    .await?)
}

pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<StaffRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLS} FROM staff_users WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

/// Counts a failed login; locks the account until `lock_until` once `max_failures` is reached.
pub async fn record_failure(
    conn: &mut AnyConnection,
    id: &str,
    max_failures: i64,
    lock_until: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE staff_users SET failed_logins = failed_logins + 1,
            locked_until = CASE WHEN failed_logins + 1 >= $1 THEN $2 ELSE locked_until END WHERE id = $3",
    )
    .bind(max_failures)
    .bind(lock_until)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn record_success(conn: &mut AnyConnection, id: &str) -> Result<()> {
    sqlx::query("UPDATE staff_users SET failed_logins = 0, locked_until = NULL WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets a staff member's role; `Ok(false)` if there is no such member.
pub async fn set_role(conn: &mut AnyConnection, id: &str, role: &str) -> Result<bool> {
    let r = sqlx::query("UPDATE staff_users SET role = $1 WHERE id = $2")
        .bind(role)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Disables (or enables again) an account; `Ok(false)` if there is no such account.
pub async fn set_disabled(conn: &mut AnyConnection, id: &str, disabled: bool) -> Result<bool> {
    let r = sqlx::query("UPDATE staff_users SET disabled = $1 WHERE id = $2")
        .bind(i64::from(disabled))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn set_password(conn: &mut AnyConnection, id: &str, hash: &str) -> Result<()> {
    sqlx::query("UPDATE staff_users SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
