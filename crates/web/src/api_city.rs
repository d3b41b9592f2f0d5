//! The JSON API for the city's own systems (CIS, finance), behind scoped API keys
//! (`Authorization: Bearer sr_live_...`, made at `/admin/api-keys` on the staff listener):
//! bills in (`bills:write`, the bill-import engine), payments and postings out in Stripe's
//! list format (`payments:read`, `postings:read`), refund requests (`refunds:write`; they
//! always wait for a supervisor's approval, as a clerk's do). A missing or unknown key is
//! 401, a key without the scope 403.

use crate::api::{payment_json, ErrorBody, PaymentJson};
use crate::error::{ApiError, Format, WebError};
use crate::AppState;
use app::api_keys::ApiPrincipal;
use app::AppError;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

fn refused(status: StatusCode, code: &'static str, message: &str) -> ApiError {
    ApiError(WebError::new(status, code, message, Format::Json))
}

/// The key of the request, if it may use `scope`.
async fn principal(
    st: &AppState,
    headers: &HeaderMap,
    scope: &str,
) -> Result<ApiPrincipal, ApiError> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let Some(p) = st.app.api_principal(bearer.trim()).await? else {
        return Err(refused(
            StatusCode::UNAUTHORIZED,
            "api_key_invalid",
            "Send a live API key as Authorization: Bearer sr_live_...",
        ));
    };
    if !p.may(scope) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "api_key_scope",
            &format!("This API key may not do this; it needs the scope {scope}."),
        ));
    }
    Ok(p)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Unix seconds, inclusive.
    #[param(minimum = 0)]
    pub created_gte: Option<i64>,
    /// Unix seconds, exclusive.
    #[param(minimum = 0)]
    pub created_lt: Option<i64>,
    /// 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The id of the last object of the previous page.
    #[param(pattern = "^pay_[A-Za-z0-9]{1,64}$")]
    pub starting_after: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PaymentList {
    /// Always `list`.
    pub object: String,
    pub url: String,
    pub has_more: bool,
    pub data: Vec<PaymentJson>,
}

fn limit_of(l: Option<i64>) -> Result<i64, ApiError> {
    match l {
        None => Ok(10),
        Some(n) if (1..=100).contains(&n) => Ok(n),
        Some(_) => Err(AppError::invalid("limit", "1 to 100").into()),
    }
}

/// Payments, newest first, one page at a time (Stripe's list format).
#[utoipa::path(get, path = "/api/v1/payments", params(ListQuery),
    security(("api_key" = ["payments:read"])),
    responses((status = 200, body = PaymentList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_payments(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PaymentList>, ApiError> {
    principal(&st, &headers, "payments:read").await?;
    let Ok(Query(q)) = q else {
        return Err(AppError::invalid(
            "query",
            "created_gte, created_lt, limit and starting_after only",
        )
        .into());
    };
    let limit = limit_of(q.limit)?;
    let (page, has_more) = st
        .app
        .payments_page(
            q.created_gte.unwrap_or(0),
            q.created_lt.unwrap_or(i64::MAX),
            q.starting_after.as_deref(),
            limit,
        )
        .await?;
    Ok(Json(PaymentList {
        object: "list".into(),
        url: "/api/v1/payments".into(),
        has_more,
        data: page.into_iter().map(|p| payment_json(p, None)).collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PostingsQuery {
    /// The business day, YYYY-MM-DD.
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub business_date: String,
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    #[param(pattern = "^pst_[A-Za-z0-9]{1,64}$")]
    pub starting_after: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PostingJson {
    pub id: String,
    pub business_date: String,
    /// `payment`, `refund` or `exception`.
    pub kind: String,
    pub source_id: String,
    pub reference: String,
    pub account_number: String,
    pub fund: String,
    pub department: String,
    pub ledger_account: String,
    pub payment_method: String,
    /// Received positive, given back negative.
    pub amount_cents: i64,
    pub currency: String,
    pub exported: bool,
}

#[derive(Serialize, ToSchema)]
pub struct PostingList {
    pub object: String,
    pub url: String,
    pub has_more: bool,
    pub data: Vec<PostingJson>,
}

/// A business day's ledger postings, in posting order, one page at a time.
#[utoipa::path(get, path = "/api/v1/postings", params(PostingsQuery),
    security(("api_key" = ["postings:read"])),
    responses((status = 200, body = PostingList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_postings(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<PostingsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PostingList>, ApiError> {
    principal(&st, &headers, "postings:read").await?;
    let Ok(Query(q)) = q else {
        return Err(AppError::invalid("business_date", "send business_date=YYYY-MM-DD").into());
    };
    let day = time::Date::parse(
        &q.business_date,
        &time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| AppError::invalid("business_date", "a date like 2026-12-04"))?;
    let limit = limit_of(q.limit)? as usize;
    let all = st.app.postings_of_day(day).await?;
    let start = match &q.starting_after {
        None => 0,
        Some(id) => all
            .iter()
            .position(|p| &p.id == id)
            .map(|i| i + 1)
            .ok_or_else(|| AppError::invalid("starting_after", "no such posting on that day"))?,
    };
    let rest = &all[start.min(all.len())..];
    Ok(Json(PostingList {
        object: "list".into(),
        url: "/api/v1/postings".into(),
        has_more: rest.len() > limit,
        data: rest
            .iter()
            .take(limit)
            .map(|p| PostingJson {
                id: p.id.clone(),
                business_date: p.business_date.clone(),
                kind: p.kind.clone(),
                source_id: p.source_id.clone(),
                reference: p.reference.clone(),
                account_number: p.account_number.clone(),
                fund: p.fund.clone(),
                department: p.department.clone(),
                ledger_account: p.ledger_account.clone(),
                payment_method: p.payment_method.clone(),
                amount_cents: p.amount_cents,
                currency: p.currency.clone(),
                exported: p.export_id.is_some(),
            })
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BillsRequest {
    /// 1 to 100 bills (larger batches: the bill file import).
    #[schema(min_items = 1, max_items = 100)]
    pub bills: Vec<BillIn>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BillIn {
    /// The billing system's own bill id: sending a bill again changes nothing twice.
    #[schema(pattern = r"^[A-Za-z0-9._/-]{1,64}$")]
    pub bill_id: String,
    #[schema(pattern = r"^[0-9]{4,12}$")]
    pub account_number: String,
    #[schema(pattern = r"^[0-9]{5}(-[0-9]{4})?$")]
    pub postal_code: String,
    #[schema(min_length = 1, max_length = 200)]
    pub holder_name: String,
    #[schema(min_length = 1, max_length = 200)]
    pub service_street: String,
    #[schema(min_length = 1, max_length = 100)]
    pub service_city: String,
    /// YYYY-MM-DD.
    #[schema(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub period_start: String,
    #[schema(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub period_end: String,
    #[schema(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub issued_on: String,
    #[schema(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub due_on: String,
    #[schema(minimum = 0)]
    pub water_cents: Option<i64>,
    #[schema(minimum = 0)]
    pub sewer_cents: Option<i64>,
    #[schema(minimum = 0)]
    pub trash_cents: Option<i64>,
    #[schema(minimum = 0)]
    pub late_fee_cents: Option<i64>,
    /// The web code printed on the bill (default: Strongroom makes one for new accounts).
    #[schema(pattern = "^[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{6,16}$")]
    pub linking_code: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportResult {
    pub import_id: String,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub accounts_created: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ImportRefused {
    pub error: ErrorBody,
    /// Each problem: `line` is the bill's position in `bills`, from 1.
    pub problems: Vec<ImportProblem>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportProblem {
    pub line: u64,
    pub field: String,
    pub message: String,
}

/// The bills as a CSV in the layout of `deploy/bills-csv.toml`: the file engine imports
/// API bills too, with the same checks and idempotency.
fn as_csv(bills: &[BillIn]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "BILL_ID",
        "ACCOUNT",
        "SERVICE_ZIP",
        "CUSTOMER_NAME",
        "SERVICE_ADDRESS",
        "SERVICE_CITY",
        "PERIOD_FROM",
        "PERIOD_TO",
        "BILL_DATE",
        "DUE_DATE",
        "PREV_READ",
        "CURR_READ",
        "USAGE_HCF",
        "WEB_CODE",
        "WATER",
        "SEWER",
        "TRASH",
        "LATE_FEE",
    ])?;
    let cents = |c: Option<i64>| match c {
        None => String::new(),
        Some(c) if c < 0 => format!("-{}.{:02}", c.unsigned_abs() / 100, c.unsigned_abs() % 100),
        Some(c) => format!("{}.{:02}", c / 100, c % 100),
    };
    for b in bills {
        w.write_record([
            b.bill_id.as_str(),
            &b.account_number,
            &b.postal_code,
            &b.holder_name,
            &b.service_street,
            &b.service_city,
            &b.period_start,
            &b.period_end,
            &b.issued_on,
            &b.due_on,
            "",
            "",
            "",
            b.linking_code.as_deref().unwrap_or(""),
            &cents(b.water_cents),
            &cents(b.sewer_cents),
            &cents(b.trash_cents),
            &cents(b.late_fee_cents),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// Bills from the billing system (the same checks and idempotency as a bill file). All or
/// nothing: any invalid bill refuses the request with every problem listed.
#[utoipa::path(post, path = "/api/v1/bills", request_body = BillsRequest,
    security(("api_key" = ["bills:write"])),
    responses((status = 200, body = ImportResult), (status = 400, body = ImportRefused), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn import_bills(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = principal(&st, &headers, "bills:write").await?;
    let req: BillsRequest = crate::api::parse(&headers, &body)?;
    if req.bills.is_empty() || req.bills.len() > 100 {
        return Err(AppError::invalid("bills", "send 1 to 100 bills").into());
    }
    let csv = as_csv(&req.bills).map_err(|e| AppError::Internal(format!("csv: {e}")))?;
    let mapping = app::bill_import::Mapping::parse(include_str!("../../../deploy/bills-csv.toml"))
        .map_err(|e| AppError::Internal(format!("mapping: {e}")))?;
    let opts = app::bill_import::ImportOptions::new("api", &p.actor());
    let r = st
        .app
        .import_bills(
            &csv[..],
            csv.len() as u64,
            &mapping,
            &opts,
            &mut app::bill_import::Quiet,
        )
        .await?;
    if r.rolled_back {
        let body = serde_json::json!({
            "error": {"code": "invalid_request", "message": "Some bills are not valid; nothing was imported.", "field": "bills"},
            // CSV line 1 is the header: bill n is line n + 1.
            "problems": r.errors.iter().map(|e| serde_json::json!({
                "line": e.line.saturating_sub(1), "field": e.field, "message": e.message
            })).collect::<Vec<_>>(),
        });
        return Ok((StatusCode::BAD_REQUEST, Json(body)).into_response());
    }
    Ok(Json(ImportResult {
        import_id: r.import_id,
        created: r.created,
        updated: r.updated,
        unchanged: r.unchanged,
        accounts_created: r.accounts_created,
    })
    .into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    #[schema(pattern = r"^[0-9]{4,12}$")]
    pub account_number: String,
    #[schema(minimum = 1)]
    pub amount_cents: i64,
    #[schema(min_length = 1, max_length = 200)]
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct RefundJson {
    pub id: String,
    pub payment_id: String,
    pub account_number: String,
    pub amount_cents: i64,
    /// `awaiting_approval` until a supervisor decides.
    pub status: String,
}

/// Ask for a refund of part or all of one account of a captured payment. It waits for a
/// supervisor's or administrator's approval in the back office, as a clerk's request does.
#[utoipa::path(post, path = "/api/v1/payments/{id}/refunds", request_body = RefundRequest,
    params(("id" = String, Path, pattern = "^pay_[A-Za-z0-9]{1,64}$"),
        ("Idempotency-Key" = String, Header, description = "Unique per intended refund", pattern = r"^[!-~]([ -~]{0,253}[!-~])?$", min_length = 1, max_length = 255)),
    security(("api_key" = ["refunds:write"])),
    responses((status = 201, body = RefundJson), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn request_refund(
    State(st): State<AppState>,
    Path(id): Path<String>,
    axum::Extension(client): axum::Extension<crate::security::ClientIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = principal(&st, &headers, "refunds:write").await?;
    if domain::ids::PaymentId::parse(&id).is_none() {
        return Err(AppError::NotFound("payment").into());
    }
    let key = crate::api::idempotency_key(&headers)?;
    let req: RefundRequest = crate::api::parse(&headers, &body)?;
    if req.amount_cents < 1 {
        return Err(AppError::invalid("amount_cents", "a positive number of cents").into());
    }
    // The key acts as a clerk: its requests always wait for a person's approval.
    let as_staff = app::staff::StaffUser {
        id: p.actor(),
        username: p.actor(),
        display_name: p.actor(),
        role: app::staff::Role::Clerk,
    };
    let amount = format!("{}.{:02}", req.amount_cents / 100, req.amount_cents % 100);
    let ip = client.0.to_string();
    // Keys of one API key, for one payment: a retried request finds its first answer.
    let scope = format!("api.refunds:{}:{id}", p.key_id);
    crate::api::idempotent(&st, &scope, key, &body, || async {
        let r = st
            .app
            .refund_payment(
                &as_staff,
                &id,
                &req.account_number,
                &amount,
                &req.reason,
                &ip,
            )
            .await?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(RefundJson {
                id: r.id,
                payment_id: r.payment_id,
                account_number: r.account_number,
                amount_cents: r.amount.cents(),
                status: r.status,
            })
            .unwrap_or_default(),
        ))
    })
    .await
}
