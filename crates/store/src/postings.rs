//! Ledger postings of business days, and their exports.

use crate::Result;
use sqlx::AnyConnection;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PostingRow {
    pub id: String,
    pub business_date: String,
    /// `payment`, `refund` or `exception`.
    pub kind: String,
    pub source_id: String,
    pub line_no: i64,
    pub item_type: String,
    pub fund: String,
    pub department: String,
    pub ledger_account: String,
    pub account_number: String,
    /// Money received is positive, money given back negative.
    pub amount_cents: i64,
    pub currency: String,
    /// Card brand (`visa`, ...) or `unknown`.
    pub payment_method: String,
    /// What people quote: the confirmation number, the refund or exception id.
    pub reference: String,
    pub created_at: i64,
    pub export_id: Option<String>,
}

const COLS: &str =
    "id, business_date, kind, source_id, line_no, item_type, fund, department, ledger_account,
    account_number, amount_cents, currency, payment_method, reference, created_at, export_id";

/// Inserts the posting unless one exists for (kind, source, line). True if inserted.
pub async fn insert_once(conn: &mut AnyConnection, p: &PostingRow) -> Result<bool> {
    let done = sqlx::query(&format!(
        "INSERT INTO postings ({COLS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         ON CONFLICT (kind, source_id, line_no) DO NOTHING"
    ))
    .bind(&p.id)
    .bind(&p.business_date)
    .bind(&p.kind)
    .bind(&p.source_id)
    .bind(p.line_no)
    .bind(&p.item_type)
    .bind(&p.fund)
    .bind(&p.department)
    .bind(&p.ledger_account)
    .bind(&p.account_number)
    .bind(p.amount_cents)
    .bind(&p.currency)
    .bind(&p.payment_method)
    .bind(&p.reference)
    .bind(p.created_at)
    .bind(&p.export_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A business day's postings in a stable order (time, kind, source, line).
pub async fn of_day(conn: &mut AnyConnection, day: &str) -> Result<Vec<PostingRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM postings WHERE business_date = $1
         ORDER BY created_at, kind, source_id, line_no"
    ))
    .bind(day)
    .fetch_all(conn)
    .await?)
}

/// The postings one export marked, in the same stable order.
pub async fn of_export(conn: &mut AnyConnection, export_id: &str) -> Result<Vec<PostingRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM postings WHERE export_id = $1
         ORDER BY created_at, kind, source_id, line_no"
    ))
    .bind(export_id)
    .fetch_all(conn)
    .await?)
}

/// Sum of the postings of one source (e.g. a payment), any day.
pub async fn total_of_source(conn: &mut AnyConnection, kind: &str, source_id: &str) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) FROM postings WHERE kind = $1 AND source_id = $2",
    )
    .bind(kind)
    .bind(source_id)
    .fetch_one(conn)
    .await?;
    Ok(n)
}

/// (business date, postings, total cents, export id) of the most recent days.
pub async fn days(
    conn: &mut AnyConnection,
    limit: i64,
) -> Result<Vec<(String, i64, i64, Option<String>)>> {
    Ok(sqlx::query_as(
        "SELECT p.business_date, COUNT(*), CAST(SUM(p.amount_cents) AS BIGINT), e.id
         FROM postings p LEFT JOIN posting_exports e ON e.business_date = p.business_date
         GROUP BY p.business_date, e.id
         ORDER BY p.business_date DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExportRow {
    pub id: String,
    pub business_date: String,
    pub created_at: i64,
    pub exported_by: String,
    pub row_count: i64,
    pub total_cents: i64,
}

pub async fn export_of_day(conn: &mut AnyConnection, day: &str) -> Result<Option<ExportRow>> {
    Ok(sqlx::query_as(
        "SELECT id, business_date, created_at, exported_by, row_count, total_cents
         FROM posting_exports WHERE business_date = $1",
    )
    .bind(day)
    .fetch_optional(conn)
    .await?)
}

/// Records the day's export and marks every not yet exported posting of the day with it.
/// Fails with a unique violation if the day was exported meanwhile.
pub async fn insert_export(conn: &mut AnyConnection, e: &ExportRow) -> Result<u64> {
    sqlx::query(
        "INSERT INTO posting_exports (id, business_date, created_at, exported_by, row_count, total_cents)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&e.id)
    .bind(&e.business_date)
    .bind(e.created_at)
    .bind(&e.exported_by)
    .bind(e.row_count)
    .bind(e.total_cents)
    .execute(&mut *conn)
    .await?;
    let marked = sqlx::query(
        "UPDATE postings SET export_id = $1 WHERE business_date = $2 AND export_id IS NULL",
    )
    .bind(&e.id)
    .bind(&e.business_date)
    .execute(conn)
    .await?;
    Ok(marked.rows_affected())
}

/// Postings of a day that carry no export although the day was exported.
pub async fn unexported_of_day(conn: &mut AnyConnection, day: &str) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM postings WHERE business_date = $1 AND export_id IS NULL ORDER BY id",
    )
    .bind(day)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}
