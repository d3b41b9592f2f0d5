//! The public JSON API (`/api/v1`, for the city's IVR and mobile vendors), the processor
//! webhook, and health checks.

use crate::error::{ApiError, Format, WebError};
use crate::AppState;
use app::payments::{
    Channel, ItemProof, PaymentRequest, PaymentView, RequestedItem, WebhookOutcome,
};
use app::AppError;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::{AccountNumber, EmailAddress, Money, PostalCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{OpenApi, ToSchema};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/quick-pay/lookup", post(lookup))
        .route(
            "/api/v1/payments",
            post(create_payment).get(crate::api_city::list_payments),
        )
        .route("/api/v1/payments/{id}", get(get_payment))
        .route(
            "/api/v1/payments/{id}/refunds",
            post(crate::api_city::request_refund),
        )
        .route("/api/v1/postings", get(crate::api_city::list_postings))
        .route("/api/v1/bills", post(crate::api_city::import_bills))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/webhooks/processor", post(webhook))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    let format = if uri.path().starts_with("/api/") {
        Format::Json
    } else {
        Format::Html
    };
    WebError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "There is no page at this address.",
        format,
    )
    .into_response()
}

fn bad_json(e: serde_json::Error) -> ApiError {
    // serde_json names the missing or mistyped field and where it is; it never echoes values.
    ApiError(WebError {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_json",
        message: format!("The request body is not valid: {e}"),
        field: None,
        format: Format::Json,
    })
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = ct.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError(WebError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the body as application/json.",
            Format::Json,
        )));
    }
    serde_json::from_slice(body).map_err(bad_json)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    /// The utility account number printed on the bill.
    #[schema(pattern = r"^[0-9]{4,12}$", min_length = 4, max_length = 12)]
    pub account_number: String,
    /// The five-digit ZIP code of the service address (ZIP+4 is accepted).
    #[schema(pattern = r"^[0-9]{5}(-[0-9]{4})?$", min_length = 5, max_length = 10)]
    pub postal_code: String,
}

#[derive(Serialize, ToSchema)]
pub struct LookupResponse {
    pub account_number: String,
    pub masked_name: String,
    pub service_street: String,
    pub balance_cents: i64,
    pub currency: String,
    pub due_date: Option<String>,
    pub past_due: bool,
    pub latest_bill: Option<BillJson>,
}

#[derive(Serialize, ToSchema)]
pub struct BillJson {
    pub id: String,
    pub issued_on: String,
    pub due_on: String,
    pub period_start: String,
    pub period_end: String,
    pub amount_cents: i64,
    pub lines: Vec<BillLineJson>,
}

#[derive(Serialize, ToSchema)]
pub struct BillLineJson {
    pub kind: String,
    pub description: String,
    pub amount_cents: i64,
}

/// Look up what an account owes.
#[utoipa::path(post, path = "/api/v1/quick-pay/lookup", request_body = LookupRequest,
    responses((status = 200, body = LookupResponse), (status = 404, description = "No account matches that account number and ZIP code (the same answer for either)", body = ErrorBody), (status = 400, body = ErrorBody), (status = 413, description = "Body larger than the limit", body = ErrorBody), (status = 415, description = "Not application/json", body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn lookup(
    State(st): State<AppState>,
    axum::Extension(client): axum::Extension<crate::security::ClientIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<LookupResponse>, ApiError> {
    let req: LookupRequest = parse(&headers, &body)?;
    st.app
        .rate_limit(&format!("lookup-ip:{}", client.0), 60, 900)
        .await?;
    let s = st.app.lookup(&req.account_number, &req.postal_code).await?;
    Ok(Json(LookupResponse {
        account_number: s.account_number.to_string(),
        masked_name: s.masked_name,
        service_street: s.service_street,
        balance_cents: s.balance.cents(),
        currency: s.balance.currency().code().into(),
        due_date: s.due_date,
        past_due: s.past_due,
        latest_bill: s.latest_bill.map(|b| BillJson {
            id: b.id,
            issued_on: b.issued_on,
            due_on: b.due_on,
            period_start: b.period_start,
            period_end: b.period_end,
            amount_cents: b.amount.cents(),
            lines: b
                .lines
                .into_iter()
                .map(|l| BillLineJson {
                    kind: l.kind,
                    description: l.description,
                    amount_cents: l.amount.cents(),
                })
                .collect(),
        }),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePaymentRequest {
    /// One to twenty items, each for a different account.
    #[schema(min_items = 1, max_items = 20)]
    pub items: Vec<ItemJson>,
    /// Where the receipt is emailed.
    #[schema(
        format = Email,
        min_length = 5,
        max_length = 254,
        pattern = r#"^[^\s<>",@]{1,64}@[A-Za-z0-9][A-Za-z0-9-]{0,62}(\.[A-Za-z0-9][A-Za-z0-9-]{0,62})+$"#
    )]
    pub email: String,
    /// Where to send the payer after the payment is decided (an allowed origin only).
    #[schema(max_length = 2000)]
    pub return_url: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemJson {
    /// Only `utility` for now.
    #[serde(rename = "type")]
    #[schema(pattern = "^utility$")]
    pub item_type: String,
    #[schema(pattern = r"^[0-9]{4,12}$", min_length = 4, max_length = 12)]
    pub account_number: String,
    #[schema(pattern = r"^[0-9]{5}(-[0-9]{4})?$", min_length = 5, max_length = 10)]
    pub postal_code: String,
    /// Positive, at most the balance due, in cents.
    #[schema(minimum = 1, maximum = 99_999_999)]
    pub amount_cents: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PaymentJson {
    pub id: String,
    pub status: String,
    pub amount_cents: i64,
    pub currency: String,
    pub confirmation_number: String,
    pub items: Vec<PaymentItemJson>,
    pub card: Option<CardJson>,
    pub failure_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkout_url: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PaymentItemJson {
    #[serde(rename = "type")]
    pub item_type: String,
    pub account_number: String,
    pub amount_cents: i64,
}

#[derive(Serialize, ToSchema)]
pub struct CardJson {
    pub brand: String,
    pub last4: String,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs.
    pub code: String,
    /// For people.
    pub message: String,
    /// The input at fault, when there is one.
    pub field: Option<String>,
}

pub(crate) fn payment_json(p: PaymentView, checkout_url: Option<String>) -> PaymentJson {
    PaymentJson {
        card: match (p.card_brand, p.card_last4, p.status.captured()) {
            (Some(brand), Some(last4), true) => Some(CardJson { brand, last4 }),
            _ => None,
        },
        id: p.id,
        status: p.status.as_str().into(),
        amount_cents: p.amount.cents(),
        currency: p.amount.currency().code().into(),
        confirmation_number: p.confirmation_number,
        items: p
            .items
            .into_iter()
            .map(|i| PaymentItemJson {
                item_type: i.item_type,
                account_number: i.account_number,
                amount_cents: i.amount.cents(),
            })
            .collect(),
        failure_code: p.failure_code,
        checkout_url,
    }
}

fn to_request(
    st: &AppState,
    req: CreatePaymentRequest,
    ip: String,
) -> Result<PaymentRequest, AppError> {
    let currency = st.app.config().currency;
    let mut items = Vec::with_capacity(req.items.len());
    for (i, it) in req.items.into_iter().enumerate() {
        if it.item_type != "utility" {
            return Err(AppError::invalid(
                format!("items[{i}].type"),
                "only \"utility\" items can be paid",
            ));
        }
        let account = AccountNumber::parse(&it.account_number).ok_or_else(|| {
            AppError::invalid(format!("items[{i}].account_number"), "4 to 12 digits")
        })?;
        let zip = PostalCode::parse(&it.postal_code).ok_or_else(|| {
            AppError::invalid(format!("items[{i}].postal_code"), "a 5 digit ZIP code")
        })?;
        items.push(RequestedItem {
            account,
            proof: ItemProof::PostalCode(zip),
            amount: Money::from_cents(it.amount_cents, currency),
        });
    }
    let email = EmailAddress::parse(&req.email)
        .ok_or_else(|| AppError::invalid("email", "an email address like name@example.com"))?;
    Ok(PaymentRequest {
        language: None,
        items,
        invoices: vec![],
        email,
        resident_id: None,
        channel: Channel::Api,
        return_url: req.return_url,
        source_ip: ip,
        // The API has its own `Idempotency-Key` header.
        form_key: None,
    })
}

const IDEMPOTENCY_SCOPE: &str = "api.payments";

/// Start a payment. Requires `Idempotency-Key`: the same key and body replays the first
/// response; the same key with another body is refused with 422.
#[utoipa::path(post, path = "/api/v1/payments", request_body = CreatePaymentRequest,
    params(("Idempotency-Key" = String, Header, description = "Unique per intended payment: 1 to 255 printable ASCII characters, not starting or ending with a space", pattern = r"^[!-~]([ -~]{0,253}[!-~])?$", min_length = 1, max_length = 255)),
    responses((status = 201, body = PaymentJson), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, description = "Body larger than the limit", body = ErrorBody), (status = 415, description = "Not application/json", body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, description = "Too many payment starts from this client", body = ErrorBody), (status = 502, body = ErrorBody)))]
async fn create_payment(
    State(st): State<AppState>,
    axum::Extension(client): axum::Extension<crate::security::ClientIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let req: CreatePaymentRequest = parse(&headers, &body)?;
    // A request that cannot be valid is refused before its key is stored: nothing is
    // promised, and junk keys cannot fill the database.
    let request = to_request(&st, req, client.0.to_string())?;
    idempotent(&st, IDEMPOTENCY_SCOPE, key, &body, || async {
        st.app.start_payment(request).await.map(|started| {
            (
                StatusCode::CREATED,
                serde_json::to_value(payment_json(started.payment, Some(started.checkout_url)))
                    .unwrap_or_default(),
            )
        })
    })
    .await
}

/// The request's `Idempotency-Key`: 1 to 255 printable characters.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<&str, ApiError> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or("");
    if key.is_empty() || key.len() > 255 || key.chars().any(|c| c.is_control()) {
        return Err(AppError::invalid(
            "Idempotency-Key",
            "send an Idempotency-Key header of 1 to 255 printable characters",
        )
        .into());
    }
    Ok(key)
}

/// Runs `op` once per (scope, key): the same key and body replays the first answer, the
/// same key with another body is 422, a key still being answered 409. A failure of ours or
/// a rate limit frees the key (nothing durable was promised), so the client can retry.
pub(crate) async fn idempotent<F, Fut>(
    st: &AppState,
    scope: &str,
    key: &str,
    body: &[u8],
    op: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, serde_json::Value), AppError>>,
{
    // The hash of the canonical request, so formatting differences are the same request.
    let canonical =
        serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(body).map_err(bad_json)?)
            .map_err(bad_json)?;
    let request_hash = hex::encode(Sha256::digest(&canonical));
    let now = st.app.now().unix_timestamp();
    {
        let mut conn = st.app.store.conn().await.map_err(AppError::from)?;
        match app::store::idempotency::reserve(&mut conn, scope, key, &request_hash, now)
            .await
            .map_err(AppError::from)?
        {
            app::store::idempotency::Reservation::Reserved => {}
            app::store::idempotency::Reservation::Replay { status, body } => {
                let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
                return Ok((
                    status,
                    [
                        (axum::http::header::CONTENT_TYPE, "application/json"),
                        (
                            axum::http::header::HeaderName::from_static("idempotent-replayed"),
                            "true",
                        ),
                    ],
                    body,
                )
                    .into_response());
            }
            app::store::idempotency::Reservation::InProgress => {
                return Err(AppError::IdempotencyInProgress.into())
            }
            app::store::idempotency::Reservation::Mismatch => {
                return Err(AppError::IdempotencyMismatch.into())
            }
        }
    }
    let (status, json) = match op().await {
        Ok(answer) => answer,
        Err(e) => {
            let err = WebError::from_app(e, Format::Json);
            if err.status.is_server_error() || err.status == StatusCode::TOO_MANY_REQUESTS {
                let mut conn = st.app.store.conn().await.map_err(AppError::from)?;
                app::store::idempotency::release(&mut conn, scope, key)
                    .await
                    .map_err(AppError::from)?;
                return Err(ApiError(err));
            }
            (err.status, err.json_body())
        }
    };
    let text = json.to_string();
    let mut conn = st.app.store.conn().await.map_err(AppError::from)?;
    app::store::idempotency::complete(&mut conn, scope, key, i64::from(status.as_u16()), &text)
        .await
        .map_err(AppError::from)?;
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response())
}

/// A payment's status and what it paid.
#[utoipa::path(get, path = "/api/v1/payments/{id}", params(("id" = String, Path, description = "Payment id, pay_...", pattern = "^pay_[A-Za-z0-9]{1,64}$")),
    responses((status = 200, body = PaymentJson), (status = 404, body = ErrorBody)))]
async fn get_payment(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PaymentJson>, ApiError> {
    if domain::ids::PaymentId::parse(&id).is_none() {
        return Err(AppError::NotFound("payment").into());
    }
    let p = st.app.payment(&id).await?;
    // The API creates only anonymous (quick-pay) payments; a resident's payment is shown to
    // that resident only, in the portal.
    if p.resident_id.is_some() {
        return Err(AppError::NotFound("payment").into());
    }
    Ok(Json(payment_json(p, None)))
}

async fn webhook(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let sig = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let outcome = st.app.handle_webhook(&body, sig).await?;
    let text = match outcome {
        WebhookOutcome::Applied => "applied",
        WebhookOutcome::Duplicate => "duplicate",
        WebhookOutcome::Ignored(why) => why,
    };
    Ok(Json(serde_json::json!({ "received": true, "outcome": text })).into_response())
}

pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(st): State<AppState>) -> Response {
    match st.app.store.ping().await {
        Ok(()) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "database not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "not ready" })),
            )
                .into_response()
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strongroom public API",
        version = "1",
        description = "Look up and pay city utility bills. Card details are never sent here: payers enter them on the processor's hosted page at checkout_url."
    ),
    paths(
        lookup,
        create_payment,
        get_payment,
        crate::api_city::list_payments,
        crate::api_city::list_postings,
        crate::api_city::import_bills,
        crate::api_city::request_refund
    ),
    modifiers(&ApiKeyScheme),
    components(schemas(
        LookupRequest,
        LookupResponse,
        BillJson,
        BillLineJson,
        CreatePaymentRequest,
        ItemJson,
        PaymentJson,
        PaymentItemJson,
        CardJson,
        ErrorBody,
        ErrorDetail,
        crate::api_city::PaymentList,
        crate::api_city::PostingList,
        crate::api_city::PostingJson,
        crate::api_city::BillsRequest,
        crate::api_city::BillIn,
        crate::api_city::ImportResult,
        crate::api_city::ImportRefused,
        crate::api_city::ImportProblem,
        crate::api_city::RefundRequest,
        crate::api_city::RefundJson
    ))
)]
pub struct ApiDoc;

/// The city systems' API keys: `Authorization: Bearer sr_live_...`, scopes named on each
/// operation.
struct ApiKeyScheme;

impl utoipa::Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sr_live_<id>_<secret>")
                    .description(Some("An API key made by an administrator in the back office; its scopes: bills:write, payments:read, postings:read, refunds:write."))
                    .build(),
            ),
        );
    }
}

async fn openapi() -> Response {
    match ApiDoc::openapi().to_json() {
        Ok(s) => ([(axum::http::header::CONTENT_TYPE, "application/json")], s).into_response(),
        Err(_) => WebError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "could not build the API document",
            Format::Json,
        )
        .into_response(),
    }
}
