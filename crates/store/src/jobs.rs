//! Scheduled tasks run by one node at a time: a row per task, claimed by compare-and-set
//! with a lease. On PostgreSQL the claim is one `UPDATE` of one row (its row lock orders
//! racing nodes; the loser sees the new lease and claims nothing); on SQLite the single
//! writer orders them. A holder that dies simply lets its lease run out.

use crate::Result;
use sqlx::AnyConnection;

/// A task's row, for operators and tests.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub name: String,
    pub holder: Option<String>,
    pub lease_until: i64,
    pub next_run_at: i64,
    pub last_run_at: Option<i64>,
    pub runs: i64,
}

/// Claims task `name` for `node` until `now + lease_secs` if it is due and nobody holds a
/// live lease. True if this node now holds it.
pub async fn claim(
    conn: &mut AnyConnection,
    name: &str,
    node: &str,
    now: i64,
    lease_secs: i64,
) -> Result<bool> {
    sqlx::query("INSERT INTO jobs (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    let r = sqlx::query(
        "UPDATE jobs SET holder = $2, lease_until = $3, runs = runs + 1
         WHERE name = $1 AND next_run_at <= $4 AND lease_until <= $4",
    )
    .bind(name)
    .bind(node)
    .bind(now + lease_secs)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Ends `node`'s lease on `name` and sets its next run. False if the lease was lost (it
/// ran out and another node took the task over).
pub async fn finish(
    conn: &mut AnyConnection,
    name: &str,
    node: &str,
    now: i64,
    next_run_at: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE jobs SET holder = NULL, lease_until = 0, last_run_at = $3, next_run_at = $4
         WHERE name = $1 AND holder = $2",
    )
    .bind(name)
    .bind(node)
    .bind(now)
    .bind(next_run_at)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn get(conn: &mut AnyConnection, name: &str) -> Result<Option<JobRow>> {
    Ok(sqlx::query_as(
        "SELECT name, holder, lease_until, next_run_at, last_run_at, runs FROM jobs WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?)
}
