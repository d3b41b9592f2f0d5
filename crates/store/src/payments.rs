//! Payments, their items and their timeline.

use crate::Result;
use sqlx::AnyConnection;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: String,
    pub confirmation_number: String,
    pub status: String,
    pub amount_cents: i64,
    pub currency: String,
    /// Sealed by the app (`payments.email`).
    pub email: String,
    /// Keyed blind index of the email, for the staff search.
    pub email_index: Option<String>,
    pub resident_id: Option<String>,
    pub channel: String,
    pub processor_session_id: Option<String>,
    pub processor_payment_intent: Option<String>,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub refunded_cents: i64,
    pub return_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub decided_at: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentItemRow {
    pub payment_id: String,
    pub line_no: i64,
    pub item_type: String,
    pub account_number: String,
    pub amount_cents: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentEventRow {
    pub id: String,
    pub payment_id: String,
    pub at: i64,
    pub kind: String,
    pub detail: String,
}

const COLS: &str = "id, confirmation_number, status, amount_cents, currency, email, email_index, resident_id, channel,
    processor_session_id, processor_payment_intent, card_brand, card_last4, failure_code, failure_message,
    refunded_cents, return_url, created_at, updated_at, decided_at";

pub async fn insert(
    conn: &mut AnyConnection,
    p: &PaymentRow,
    items: &[PaymentItemRow],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO payments (id, confirmation_number, status, amount_cents, currency, email, email_index, resident_id, channel,
            processor_session_id, processor_payment_intent, card_brand, card_last4, failure_code, failure_message,
            refunded_cents, return_url, created_at, updated_at, decided_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
    )
    .bind(&p.id)
    .bind(&p.confirmation_number)
    .bind(&p.status)
    .bind(p.amount_cents)
    .bind(&p.currency)
    .bind(&p.email)
    .bind(&p.email_index)
    .bind(&p.resident_id)
    .bind(&p.channel)
    .bind(&p.processor_session_id)
    .bind(&p.processor_payment_intent)
    .bind(&p.card_brand)
    .bind(&p.card_last4)
    .bind(&p.failure_code)
    .bind(&p.failure_message)
    .bind(p.refunded_cents)
    .bind(&p.return_url)
    .bind(p.created_at)
    .bind(p.updated_at)
    .bind(p.decided_at)
    .execute(&mut *conn)
    .await?;
    for i in items {
        sqlx::query(
            "INSERT INTO payment_items (payment_id, line_no, item_type, account_number, amount_cents) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&i.payment_id)
        .bind(i.line_no)
        .bind(&i.item_type)
        .bind(&i.account_number)
        .bind(i.amount_cents)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<PaymentRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLS} FROM payments WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn by_session(conn: &mut AnyConnection, session_id: &str) -> Result<Option<PaymentRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM payments WHERE processor_session_id = $1"
    ))
    .bind(session_id)
    .fetch_optional(conn)
    .await?)
}

pub async fn by_payment_intent(
    conn: &mut AnyConnection,
    intent: &str,
) -> Result<Option<PaymentRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM payments WHERE processor_payment_intent = $1"
    ))
    .bind(intent)
    .fetch_optional(conn)
    .await?)
}

pub async fn items(conn: &mut AnyConnection, payment_id: &str) -> Result<Vec<PaymentItemRow>> {
    Ok(sqlx::query_as(
        "SELECT payment_id, line_no, item_type, account_number, amount_cents FROM payment_items WHERE payment_id = $1 ORDER BY line_no",
    )
    .bind(payment_id)
    .fetch_all(conn)
    .await?)
}

/// The items of several payments in one query, in each payment's line order (a page of
/// payments costs two queries, not one per payment).
pub async fn items_of(
    conn: &mut AnyConnection,
    payment_ids: &[&str],
) -> Result<Vec<PaymentItemRow>> {
    crate::fetch_for_ids(
        conn,
        "SELECT payment_id, line_no, item_type, account_number, amount_cents FROM payment_items
         WHERE payment_id IN ({ids}) ORDER BY payment_id, line_no",
        payment_ids,
    )
    .await
}

pub async fn set_session(
    conn: &mut AnyConnection,
    id: &str,
    session_id: &str,
    now: i64,
) -> Result<()> {
    sqlx::query("UPDATE payments SET processor_session_id = $1, updated_at = $2 WHERE id = $3")
        .bind(session_id)
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves a payment from `from` to `to` only if it is still in `from`. Returns whether it
/// moved: the compare-and-set that makes concurrent deciders (webhook, return, expiry job)
/// agree on one winner.
pub async fn transition(
    conn: &mut AnyConnection,
    id: &str,
    from: &str,
    to: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query("UPDATE payments SET status = $1, updated_at = $2, decided_at = $2 WHERE id = $3 AND status = $4")
        .bind(to)
        .bind(now)
        .bind(id)
        .bind(from)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Records what the processor said about the card and the charge.
pub async fn set_processor_details(
    conn: &mut AnyConnection,
    id: &str,
    payment_intent: Option<&str>,
    card_brand: Option<&str>,
    card_last4: Option<&str>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE payments SET processor_payment_intent = COALESCE($1, processor_payment_intent),
            card_brand = COALESCE($2, card_brand), card_last4 = COALESCE($3, card_last4), updated_at = $4 WHERE id = $5",
    )
    .bind(payment_intent)
    .bind(card_brand)
    .bind(card_last4)
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_failure(
    conn: &mut AnyConnection,
    id: &str,
    code: &str,
    message: &str,
    now: i64,
) -> Result<()> {
    sqlx::query("UPDATE payments SET failure_code = $1, failure_message = $2, updated_at = $3 WHERE id = $4")
        .bind(code)
        .bind(message)
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn add_event(conn: &mut AnyConnection, e: &PaymentEventRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO payment_events (id, payment_id, at, kind, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&e.id)
    .bind(&e.payment_id)
    .bind(e.at)
    .bind(&e.kind)
    .bind(&e.detail)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn events(conn: &mut AnyConnection, payment_id: &str) -> Result<Vec<PaymentEventRow>> {
    Ok(sqlx::query_as(
        "SELECT id, payment_id, at, kind, detail FROM payment_events WHERE payment_id = $1 ORDER BY at, id",
    )
    .bind(payment_id)
    .fetch_all(conn)
    .await?)
}

/// Ids of pending portal payments for this payer (email blind index) created since `since`,
/// newest first: the candidates a repeated "Pay" (double click, back and resubmit) reuses.
pub async fn recent_pending_for_payer(
    conn: &mut AnyConnection,
    email_index: &str,
    since: i64,
) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM payments WHERE status = 'pending' AND channel = 'portal' AND email_index = $1 AND created_at >= $2
         ORDER BY created_at DESC, id DESC LIMIT 5",
    )
    .bind(email_index)
    .bind(since)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Pending payments created before `cutoff`, oldest first.
pub async fn stale_pending(
    conn: &mut AnyConnection,
    cutoff: i64,
    limit: i64,
) -> Result<Vec<PaymentRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM payments WHERE status = 'pending' AND created_at < $1 ORDER BY created_at LIMIT $2"
    ))
    .bind(cutoff)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

pub async fn for_resident(
    conn: &mut AnyConnection,
    resident_id: &str,
    limit: i64,
) -> Result<Vec<PaymentRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM payments WHERE resident_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
    ))
    .bind(resident_id)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

pub async fn for_account(
    conn: &mut AnyConnection,
    account_number: &str,
    limit: i64,
) -> Result<Vec<PaymentRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM payments WHERE id IN (SELECT payment_id FROM payment_items WHERE account_number = $1)
         ORDER BY created_at DESC, id DESC LIMIT $2"
    ))
    .bind(account_number)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// [`for_account`], only the payments one resident made.
pub async fn for_account_by_resident(
    conn: &mut AnyConnection,
    account_number: &str,
    resident_id: &str,
    limit: i64,
) -> Result<Vec<PaymentRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM payments WHERE resident_id = $2
           AND id IN (SELECT payment_id FROM payment_items WHERE account_number = $1)
         ORDER BY created_at DESC, id DESC LIMIT $3"
    ))
    .bind(account_number)
    .bind(resident_id)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Staff search: exact confirmation number, account number, payment id, or email (the
/// caller passes the email's blind index, `email_index`).
pub async fn search(
    conn: &mut AnyConnection,
    q: &str,
    email_index: &str,
    limit: i64,
) -> Result<Vec<PaymentRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM payments
         WHERE UPPER(confirmation_number) = UPPER($1) OR email_index = $3 OR id = $1
            OR id IN (SELECT payment_id FROM payment_items WHERE account_number = $1)
         ORDER BY created_at DESC, id DESC LIMIT $2"
    ))
    .bind(q)
    .bind(limit)
    .bind(email_index)
    .fetch_all(conn)
    .await?)
}

pub async fn recent(conn: &mut AnyConnection, limit: i64) -> Result<Vec<PaymentRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM payments ORDER BY created_at DESC, id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Records the one-time key of the portal form that started a payment. A second payment
/// with the same key fails here with a unique violation (`is_unique_violation`).
pub async fn set_form_key(conn: &mut AnyConnection, id: &str, form_key: &str) -> Result<()> {
    sqlx::query("UPDATE payments SET form_key = $1 WHERE id = $2")
        .bind(form_key)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The payment a portal form with this key started, if any.
pub async fn by_form_key(conn: &mut AnyConnection, form_key: &str) -> Result<Option<PaymentRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLS} FROM payments WHERE form_key = $1"))
            .bind(form_key)
            .fetch_optional(conn)
            .await?,
    )
}

/// Payments created in `[from, to)`, newest first, after the cursor (created_at, id) if
/// given: one page of the API's list.
pub async fn page(
    conn: &mut AnyConnection,
    from: i64,
    to: i64,
    after: Option<(i64, &str)>,
    limit: i64,
) -> Result<Vec<PaymentRow>> {
    let (at, id) = after.unwrap_or((i64::MAX, ""));
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM payments
         WHERE created_at >= $1 AND created_at < $2
           AND (created_at < $3 OR (created_at = $3 AND id < $4) OR $5 = 0)
         ORDER BY created_at DESC, id DESC LIMIT $6"
    ))
    .bind(from)
    .bind(to)
    .bind(at)
    .bind(id)
    .bind(i64::from(after.is_some()))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// The language a payment's receipt is written in.
pub async fn set_language(conn: &mut AnyConnection, id: &str, language: &str) -> Result<()> {
    sqlx::query("UPDATE payments SET language = $2 WHERE id = $1")
        .bind(id)
        .bind(language)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn language_of(conn: &mut AnyConnection, id: &str) -> Result<String> {
    let r: Option<(String,)> = sqlx::query_as("SELECT language FROM payments WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(r.map_or_else(|| "en".to_owned(), |(l,)| l))
}
