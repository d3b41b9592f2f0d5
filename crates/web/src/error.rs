//! The one error type at the HTTP edge. It logs the detail and shows the user a clear
//! message with a stable code: never a stack trace, SQL or internal error text.

use app::AppError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// How to render: a page for browsers, JSON for the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
}

#[derive(Debug)]
pub struct WebError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub format: Format,
}

pub fn status_of(e: &AppError) -> StatusCode {
    match e {
        AppError::Invalid { .. }
        | AppError::Fields(_)
        | AppError::LinkProofMismatch
        | AppError::BadToken
        | AppError::Webhook(_) => StatusCode::BAD_REQUEST,
        AppError::AccountNotFound | AppError::NotFound(_) => StatusCode::NOT_FOUND,
        AppError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        AppError::BadCredentials => StatusCode::UNAUTHORIZED,
        AppError::Locked => StatusCode::LOCKED,
        AppError::EmailNotVerified | AppError::Forbidden => StatusCode::FORBIDDEN,
        AppError::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
        AppError::IdempotencyInProgress | AppError::FormAlreadyUsed(_) => StatusCode::CONFLICT,
        AppError::Processor(_) => StatusCode::BAD_GATEWAY,
        AppError::Store(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The message a user may see for an error.
pub fn public_message(e: &AppError) -> String {
    match e {
        AppError::Store(_) | AppError::Internal(_) => "Something went wrong on our side. Nothing was charged. Please try again in a few minutes.".into(),
        AppError::Processor(_) => "The payment service is not answering right now. Nothing was charged. Please try again in a few minutes.".into(),
        AppError::Webhook(w) => format!("webhook rejected: {w}"),
        AppError::NotFound(what) => format!("That {what} was not found."),
        AppError::Invalid { field, message } => format!("{field}: {message}"),
        AppError::Fields(problems) => problems
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => {
            let s = other.to_string();
            let mut c = s.chars();
            c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str() + ".").unwrap_or_default()
        }
    }
}

impl WebError {
    pub fn from_app(e: AppError, format: Format) -> WebError {
        let status = status_of(&e);
        if e.is_internal() || status.is_server_error() {
            tracing::error!(code = e.code(), error = %e, "request failed");
        } else {
            tracing::info!(code = e.code(), "request refused");
        }
        let field = match &e {
            AppError::Invalid { field, .. } => Some(field.clone()),
            AppError::Fields(p) => p.first().map(|p| p.field.clone()),
            _ => None,
        };
        WebError {
            status,
            code: e.code(),
            message: public_message(&e),
            field,
            format,
        }
    }

    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        format: Format,
    ) -> WebError {
        WebError {
            status,
            code,
            message: message.into(),
            field: None,
            format,
        }
    }

    pub fn json_body(&self) -> serde_json::Value {
        let mut err = serde_json::json!({ "code": self.code, "message": self.message });
        if let (Some(f), Some(obj)) = (&self.field, err.as_object_mut()) {
            obj.insert("field".into(), serde_json::Value::String(f.clone()));
        }
        serde_json::json!({ "error": err })
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self.format {
            Format::Json => (self.status, Json(self.json_body())).into_response(),
            Format::Html => crate::portal::error_page(self.status, self.code, &self.message),
        }
    }
}

/// For API handlers: `?` on an `AppError` gives a JSON error.
pub struct ApiError(pub WebError);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        ApiError(WebError::from_app(e, Format::Json))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

/// For page handlers: `?` on an `AppError` gives an error page.
pub struct PageError(pub WebError);

impl From<AppError> for PageError {
    fn from(e: AppError) -> PageError {
        PageError(WebError::from_app(e, Format::Html))
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> PageError {
        tracing::error!(error = %e, "template failed");
        PageError(WebError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side.",
            Format::Html,
        ))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}
