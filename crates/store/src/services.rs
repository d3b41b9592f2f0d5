//! Permits, licences, their invoices and inspections, and the types the city configures.

use crate::{Result, StoreError};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sqlx::AnyConnection;

// ---------------------------------------------------------------- service types

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServiceTypeRow {
    pub kind: String,
    pub code: String,
    pub definition: String,
    pub updated_by: String,
    pub updated_at: i64,
}

pub async fn types(conn: &mut AnyConnection, kind: &str) -> Result<Vec<ServiceTypeRow>> {
    Ok(sqlx::query_as(
        "SELECT kind, code, definition, updated_by, updated_at FROM service_types WHERE kind = $1 ORDER BY code",
    )
    .bind(kind)
    .fetch_all(conn)
    .await?)
}

pub async fn upsert_type(conn: &mut AnyConnection, r: &ServiceTypeRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO service_types (kind, code, definition, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (kind, code) DO UPDATE SET definition = excluded.definition,
           updated_by = excluded.updated_by, updated_at = excluded.updated_at",
    )
    .bind(&r.kind)
    .bind(&r.code)
    .bind(&r.definition)
    .bind(&r.updated_by)
    .bind(r.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------- counters

/// The next value of a named sequence (1, 2, ...), inside the caller's transaction.
pub async fn next_number(conn: &mut AnyConnection, name: &str) -> Result<i64> {
    sqlx::query(
        "INSERT INTO counters (name, value) VALUES ($1, 1)
         ON CONFLICT (name) DO UPDATE SET value = counters.value + 1",
    )
    .bind(name)
    .execute(&mut *conn)
    .await?;
    let (v,): (i64,) = sqlx::query_as("SELECT value FROM counters WHERE name = $1")
        .bind(name)
        .fetch_one(conn)
        .await?;
    Ok(v)
}

// ---------------------------------------------------------------- permits

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PermitRow {
    pub id: String,
    pub resident_id: String,
    pub permit_type: String,
    pub status: String,
    pub applicant_name: String,
    pub applicant_phone: String,
    pub site_street: String,
    pub site_zip: String,
    pub scope: String,
    pub valuation_cents: i64,
    pub area_sq_ft: i64,
    pub contractor_licence: String,
    pub permit_number: Option<String>,
    pub review_note: Option<String>,
    pub reviewed_by: Option<String>,
    pub submitted_at: Option<i64>,
    pub decided_at: Option<i64>,
    pub issued_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const PERMIT_COLUMNS: &str = "id, resident_id, permit_type, status, applicant_name, applicant_phone, site_street, site_zip, scope, valuation_cents, area_sq_ft, contractor_licence, permit_number, review_note, reviewed_by, submitted_at, decided_at, issued_at, created_at, updated_at";

pub async fn insert_permit(conn: &mut AnyConnection, p: &PermitRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO permits ({PERMIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
    ))
    .bind(&p.id)
    .bind(&p.resident_id)
    .bind(&p.permit_type)
    .bind(&p.status)
    .bind(&p.applicant_name)
    .bind(&p.applicant_phone)
    .bind(&p.site_street)
    .bind(&p.site_zip)
    .bind(&p.scope)
    .bind(p.valuation_cents)
    .bind(p.area_sq_ft)
    .bind(&p.contractor_licence)
    .bind(&p.permit_number)
    .bind(&p.review_note)
    .bind(&p.reviewed_by)
    .bind(p.submitted_at)
    .bind(p.decided_at)
    .bind(p.issued_at)
    .bind(p.created_at)
    .bind(p.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Rewrites an application's details (only while it is the resident's to edit).
pub async fn update_permit_details(conn: &mut AnyConnection, p: &PermitRow) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE permits SET permit_type = $2, applicant_name = $3, applicant_phone = $4, site_street = $5,
           site_zip = $6, scope = $7, valuation_cents = $8, area_sq_ft = $9, contractor_licence = $10, updated_at = $11
         WHERE id = $1 AND status IN ('draft', 'revision_requested')",
    )
    .bind(&p.id)
    .bind(&p.permit_type)
    .bind(&p.applicant_name)
    .bind(&p.applicant_phone)
    .bind(&p.site_street)
    .bind(&p.site_zip)
    .bind(&p.scope)
    .bind(p.valuation_cents)
    .bind(p.area_sq_ft)
    .bind(&p.contractor_licence)
    .bind(p.updated_at)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn permit(conn: &mut AnyConnection, id: &str) -> Result<Option<PermitRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {PERMIT_COLUMNS} FROM permits WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

pub async fn permit_by_number(conn: &mut AnyConnection, number: &str) -> Result<Option<PermitRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {PERMIT_COLUMNS} FROM permits WHERE permit_number = $1"
    ))
    .bind(number)
    .fetch_optional(conn)
    .await?)
}

pub async fn permits_of_resident(
    conn: &mut AnyConnection,
    resident: &str,
) -> Result<Vec<PermitRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {PERMIT_COLUMNS} FROM permits WHERE resident_id = $1 ORDER BY created_at DESC, id LIMIT 200"
    ))
    .bind(resident)
    .fetch_all(conn)
    .await?)
}

pub async fn permits_with_status(conn: &mut AnyConnection, status: &str) -> Result<Vec<PermitRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {PERMIT_COLUMNS} FROM permits WHERE status = $1 ORDER BY submitted_at, id LIMIT 500"
    ))
    .bind(status)
    .fetch_all(conn)
    .await?)
}

/// Compare-and-set of a permit's status, with the fields a decision sets.
#[allow(clippy::too_many_arguments)]
pub async fn transition_permit(
    conn: &mut AnyConnection,
    id: &str,
    from: &[&str],
    to: &str,
    note: Option<&str>,
    staff: Option<&str>,
    now: i64,
) -> Result<bool> {
    let list = from
        .iter()
        .map(|s| format!("'{}'", s.replace('\'', "")))
        .collect::<Vec<_>>()
        .join(", ");
    let (submitted, decided) = match to {
        "submitted" => ("$5", "decided_at"),
        "draft" | "issued" => ("submitted_at", "decided_at"),
        _ => ("submitted_at", "$5"),
    };
    let r = sqlx::query(&format!(
        "UPDATE permits SET status = $2, review_note = COALESCE($3, review_note), reviewed_by = COALESCE($4, reviewed_by),
           submitted_at = {submitted}, decided_at = {decided}, updated_at = $5
         WHERE id = $1 AND status IN ({list})"
    ))
    .bind(id)
    .bind(to)
    .bind(note)
    .bind(staff)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Gives a permit its number if it has none (at its first submission).
pub async fn number_permit(conn: &mut AnyConnection, id: &str, number: &str) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE permits SET permit_number = $2 WHERE id = $1 AND permit_number IS NULL",
    )
    .bind(id)
    .bind(number)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Issues an approved permit (under `number` if it has none yet).
pub async fn issue_permit(
    conn: &mut AnyConnection,
    id: &str,
    number: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE permits SET status = 'issued', permit_number = COALESCE(permit_number, $2), issued_at = $3, updated_at = $3
         WHERE id = $1 AND status = 'approved'",
    )
    .bind(id)
    .bind(number)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

// ---------------------------------------------------------------- plans

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PlanRow {
    pub id: String,
    pub permit_id: String,
    pub original_name: String,
    pub media_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub created_at: i64,
}

pub async fn insert_plan(conn: &mut AnyConnection, p: &PlanRow, content: &[u8]) -> Result<()> {
    sqlx::query(
        "INSERT INTO permit_plans (id, permit_id, original_name, media_type, size_bytes, sha256, content_base64, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&p.id)
    .bind(&p.permit_id)
    .bind(&p.original_name)
    .bind(&p.media_type)
    .bind(p.size_bytes)
    .bind(&p.sha256)
    .bind(STANDARD.encode(content))
    .bind(p.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn plans(conn: &mut AnyConnection, permit_id: &str) -> Result<Vec<PlanRow>> {
    Ok(sqlx::query_as(
        "SELECT id, permit_id, original_name, media_type, size_bytes, sha256, created_at FROM permit_plans
         WHERE permit_id = $1 ORDER BY created_at, id",
    )
    .bind(permit_id)
    .fetch_all(conn)
    .await?)
}

pub async fn plan_content(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<(PlanRow, Vec<u8>)>> {
    let row: Option<PlanRow> = sqlx::query_as(
        "SELECT id, permit_id, original_name, media_type, size_bytes, sha256, created_at FROM permit_plans WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (b64,): (String,) = sqlx::query_as("SELECT content_base64 FROM permit_plans WHERE id = $1")
        .bind(id)
        .fetch_one(conn)
        .await?;
    let bytes = STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| StoreError::Corrupt(format!("plan {id}: content is not base64")))?;
    Ok(Some((row, bytes)))
}

// ---------------------------------------------------------------- invoices

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvoiceRow {
    pub id: String,
    pub item_type: String,
    pub subject_id: String,
    pub purpose: String,
    pub resident_id: Option<String>,
    pub amount_cents: i64,
    pub paid_cents: i64,
    pub status: String,
    pub detail: String,
    pub created_at: i64,
    pub paid_at: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvoiceLineRow {
    pub invoice_id: String,
    pub line_no: i64,
    pub code: String,
    pub amount_cents: i64,
}

const INVOICE_COLUMNS: &str = "id, item_type, subject_id, purpose, resident_id, amount_cents, paid_cents, status, detail, created_at, paid_at";

pub async fn insert_invoice(
    conn: &mut AnyConnection,
    i: &InvoiceRow,
    lines: &[InvoiceLineRow],
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO invoices ({INVOICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ))
    .bind(&i.id)
    .bind(&i.item_type)
    .bind(&i.subject_id)
    .bind(&i.purpose)
    .bind(&i.resident_id)
    .bind(i.amount_cents)
    .bind(i.paid_cents)
    .bind(&i.status)
    .bind(&i.detail)
    .bind(i.created_at)
    .bind(i.paid_at)
    .execute(&mut *conn)
    .await?;
    for l in lines {
        sqlx::query(
            "INSERT INTO invoice_lines (invoice_id, line_no, code, amount_cents) VALUES ($1, $2, $3, $4)",
        )
        .bind(&l.invoice_id)
        .bind(l.line_no)
        .bind(&l.code)
        .bind(l.amount_cents)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub async fn invoice(conn: &mut AnyConnection, id: &str) -> Result<Option<InvoiceRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

pub async fn invoice_lines(conn: &mut AnyConnection, id: &str) -> Result<Vec<InvoiceLineRow>> {
    Ok(sqlx::query_as(
        "SELECT invoice_id, line_no, code, amount_cents FROM invoice_lines WHERE invoice_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(conn)
    .await?)
}

pub async fn invoices_of_subject(
    conn: &mut AnyConnection,
    subject: &str,
) -> Result<Vec<InvoiceRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE subject_id = $1 ORDER BY created_at, id"
    ))
    .bind(subject)
    .fetch_all(conn)
    .await?)
}

pub async fn open_invoices_of_resident(
    conn: &mut AnyConnection,
    resident: &str,
) -> Result<Vec<InvoiceRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE resident_id = $1 AND status = 'open' ORDER BY created_at, id"
    ))
    .bind(resident)
    .fetch_all(conn)
    .await?)
}

/// Records one payment's amount against an invoice, once: false when this payment was
/// already counted. Marks the invoice paid when it is covered.
pub async fn pay_invoice(
    conn: &mut AnyConnection,
    invoice_id: &str,
    payment_id: &str,
    amount_cents: i64,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO invoice_payments (invoice_id, payment_id, amount_cents, posted_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (invoice_id, payment_id) DO NOTHING",
    )
    .bind(invoice_id)
    .bind(payment_id)
    .bind(amount_cents)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE invoices SET paid_cents = paid_cents + $2,
           status = CASE WHEN paid_cents + $2 >= amount_cents THEN 'paid' ELSE status END,
           paid_at = CASE WHEN paid_cents + $2 >= amount_cents THEN $3 ELSE paid_at END
         WHERE id = $1",
    )
    .bind(invoice_id)
    .bind(amount_cents)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(true)
}

/// Takes back an amount a refund returned (the invoice is open again if it falls short).
pub async fn unpay_invoice(
    conn: &mut AnyConnection,
    invoice_id: &str,
    amount_cents: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE invoices SET paid_cents = paid_cents - $2,
           status = CASE WHEN paid_cents - $2 < amount_cents AND status = 'paid' THEN 'open' ELSE status END
         WHERE id = $1",
    )
    .bind(invoice_id)
    .bind(amount_cents)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn void_open_invoices(
    conn: &mut AnyConnection,
    subject: &str,
    purpose: &str,
) -> Result<u64> {
    let r = sqlx::query(
        "UPDATE invoices SET status = 'void' WHERE subject_id = $1 AND purpose = $2 AND status = 'open' AND paid_cents = 0",
    )
    .bind(subject)
    .bind(purpose)
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

// ---------------------------------------------------------------- inspections

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InspectionRow {
    pub id: String,
    pub permit_id: String,
    pub inspection_type: String,
    pub requested_for: String,
    pub status: String,
    pub result_note: Option<String>,
    pub inspector_id: Option<String>,
    pub recorded_at: Option<i64>,
    pub created_at: i64,
}

const INSPECTION_COLUMNS: &str =
    "id, permit_id, inspection_type, requested_for, status, result_note, inspector_id, recorded_at, created_at";

pub async fn insert_inspection(conn: &mut AnyConnection, i: &InspectionRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO inspections ({INSPECTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&i.id)
    .bind(&i.permit_id)
    .bind(&i.inspection_type)
    .bind(&i.requested_for)
    .bind(&i.status)
    .bind(&i.result_note)
    .bind(&i.inspector_id)
    .bind(i.recorded_at)
    .bind(i.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn inspection(conn: &mut AnyConnection, id: &str) -> Result<Option<InspectionRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {INSPECTION_COLUMNS} FROM inspections WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

pub async fn inspections_of_permit(
    conn: &mut AnyConnection,
    permit: &str,
) -> Result<Vec<InspectionRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {INSPECTION_COLUMNS} FROM inspections WHERE permit_id = $1 ORDER BY created_at, id"
    ))
    .bind(permit)
    .fetch_all(conn)
    .await?)
}

pub async fn inspections_requested(conn: &mut AnyConnection) -> Result<Vec<InspectionRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {INSPECTION_COLUMNS} FROM inspections WHERE status = 'requested' ORDER BY requested_for, created_at LIMIT 500"
    ))
    .fetch_all(conn)
    .await?)
}

/// Inspections booked (not canceled) on a day.
pub async fn booked_on(conn: &mut AnyConnection, day: &str) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM inspections WHERE requested_for = $1 AND status <> 'canceled'",
    )
    .bind(day)
    .fetch_one(conn)
    .await?;
    Ok(n)
}

pub async fn record_inspection(
    conn: &mut AnyConnection,
    id: &str,
    status: &str,
    note: &str,
    inspector: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE inspections SET status = $2, result_note = $3, inspector_id = $4, recorded_at = $5
         WHERE id = $1 AND status = 'requested'",
    )
    .bind(id)
    .bind(status)
    .bind(note)
    .bind(inspector)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn capacity(conn: &mut AnyConnection, day: &str) -> Result<Option<i64>> {
    let r: Option<(i64,)> =
        sqlx::query_as("SELECT capacity FROM inspection_capacity WHERE day = $1")
            .bind(day)
            .fetch_optional(conn)
            .await?;
    Ok(r.map(|(c,)| c))
}

pub async fn set_capacity(conn: &mut AnyConnection, day: &str, capacity: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO inspection_capacity (day, capacity) VALUES ($1, $2)
         ON CONFLICT (day) DO UPDATE SET capacity = excluded.capacity",
    )
    .bind(day)
    .bind(capacity)
    .execute(conn)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------- licences

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LicenceRow {
    pub id: String,
    pub licence_number: Option<String>,
    pub resident_id: String,
    pub licence_type: String,
    pub business_name: String,
    pub business_street: String,
    pub business_zip: String,
    pub employees: i64,
    pub gross_receipts_cents: i64,
    pub status: String,
    pub issued_on: Option<String>,
    pub expires_on: Option<String>,
    pub verification_code: Option<String>,
    pub renewal_notice_for: Option<String>,
    pub status_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const LICENCE_COLUMNS: &str = "id, licence_number, resident_id, licence_type, business_name, business_street, business_zip, employees, gross_receipts_cents, status, issued_on, expires_on, verification_code, renewal_notice_for, status_reason, created_at, updated_at";

pub async fn insert_licence(conn: &mut AnyConnection, l: &LicenceRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO licences ({LICENCE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
    ))
    .bind(&l.id)
    .bind(&l.licence_number)
    .bind(&l.resident_id)
    .bind(&l.licence_type)
    .bind(&l.business_name)
    .bind(&l.business_street)
    .bind(&l.business_zip)
    .bind(l.employees)
    .bind(l.gross_receipts_cents)
    .bind(&l.status)
    .bind(&l.issued_on)
    .bind(&l.expires_on)
    .bind(&l.verification_code)
    .bind(&l.renewal_notice_for)
    .bind(&l.status_reason)
    .bind(l.created_at)
    .bind(l.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes back a licence's details and state (the caller read it in this transaction).
pub async fn update_licence(conn: &mut AnyConnection, l: &LicenceRow) -> Result<()> {
    sqlx::query(
        "UPDATE licences SET licence_number = $2, business_name = $3, business_street = $4, business_zip = $5,
           employees = $6, gross_receipts_cents = $7, status = $8, issued_on = $9, expires_on = $10,
           verification_code = $11, renewal_notice_for = $12, status_reason = $13, updated_at = $14
         WHERE id = $1",
    )
    .bind(&l.id)
    .bind(&l.licence_number)
    .bind(&l.business_name)
    .bind(&l.business_street)
    .bind(&l.business_zip)
    .bind(l.employees)
    .bind(l.gross_receipts_cents)
    .bind(&l.status)
    .bind(&l.issued_on)
    .bind(&l.expires_on)
    .bind(&l.verification_code)
    .bind(&l.renewal_notice_for)
    .bind(&l.status_reason)
    .bind(l.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn licence(conn: &mut AnyConnection, id: &str) -> Result<Option<LicenceRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {LICENCE_COLUMNS} FROM licences WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

pub async fn licence_by(
    conn: &mut AnyConnection,
    column: LicenceKey,
    value: &str,
) -> Result<Option<LicenceRow>> {
    let col = match column {
        LicenceKey::Number => "licence_number",
        LicenceKey::VerificationCode => "verification_code",
    };
    Ok(sqlx::query_as(&format!(
        "SELECT {LICENCE_COLUMNS} FROM licences WHERE {col} = $1"
    ))
    .bind(value)
    .fetch_optional(conn)
    .await?)
}

#[derive(Debug, Clone, Copy)]
pub enum LicenceKey {
    Number,
    VerificationCode,
}

pub async fn licences_of_resident(
    conn: &mut AnyConnection,
    resident: &str,
) -> Result<Vec<LicenceRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {LICENCE_COLUMNS} FROM licences WHERE resident_id = $1 ORDER BY created_at DESC, id LIMIT 200"
    ))
    .bind(resident)
    .fetch_all(conn)
    .await?)
}

pub async fn all_licences(conn: &mut AnyConnection) -> Result<Vec<LicenceRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {LICENCE_COLUMNS} FROM licences ORDER BY business_name, id LIMIT 1000"
    ))
    .fetch_all(conn)
    .await?)
}

/// Active licences expiring on or before `until` whose renewal notice for that expiry
/// has not been sent.
pub async fn licences_due_notice(conn: &mut AnyConnection, until: &str) -> Result<Vec<LicenceRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {LICENCE_COLUMNS} FROM licences WHERE status = 'active' AND expires_on <= $1
           AND (renewal_notice_for IS NULL OR renewal_notice_for <> expires_on) ORDER BY expires_on, id LIMIT 500"
    ))
    .bind(until)
    .fetch_all(conn)
    .await?)
}

/// Marks a licence's renewal notice sent for its current expiry: false if another node
/// (or run) did it first.
pub async fn mark_notice(conn: &mut AnyConnection, id: &str, expiry: &str) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE licences SET renewal_notice_for = $2 WHERE id = $1 AND expires_on = $2
           AND (renewal_notice_for IS NULL OR renewal_notice_for <> $2)",
    )
    .bind(id)
    .bind(expiry)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}
