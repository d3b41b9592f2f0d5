use processor::webhook::WebhookError;
use store::StoreError;

/// Everything a use case can refuse or fail with. `code()` is stable: clients and tests
/// match on it; messages are for people.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The input named by `field` is wrong; `message` says how.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Several inputs are wrong at once (a form shows them all): each names its field and
    /// a stable reason code, the key of the message people read (`field_error.<code>`).
    #[error("{}", .0.iter().map(|p| format!("{}: {}", p.field, p.message)).collect::<Vec<_>>().join("; "))]
    Fields(Vec<FieldProblem>),
    /// Account number and ZIP did not match an account (deliberately not saying which).
    #[error("no account matches that account number and ZIP code")]
    AccountNotFound,
    /// The proof of a bill did not match (deliberately not saying which part).
    #[error("those details do not match a bill on that account")]
    LinkProofMismatch,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("too many attempts; try again later")]
    RateLimited,
    #[error("email or password is incorrect")]
    BadCredentials,
    #[error("this account is locked; try again later")]
    Locked,
    #[error("verify your email address before logging in")]
    EmailNotVerified,
    #[error("this link is invalid or has expired")]
    BadToken,
    #[error("not allowed")]
    Forbidden,
    #[error("this idempotency key was used with a different request")]
    IdempotencyMismatch,
    #[error("a request with this idempotency key is still in progress")]
    IdempotencyInProgress,
    /// A portal payment form sent again after the payment it started was decided; the
    /// payment's id, whose receipt answers the form.
    #[error("this form was already used for payment {0}")]
    FormAlreadyUsed(String),
    #[error("the payment processor is unavailable: {0}")]
    Processor(#[from] processor::ProcessorError),
    #[error("webhook rejected: {0}")]
    Webhook(#[from] WebhookError),
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// One wrong input of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    /// Stable: the message catalog's `field_error.<code>`.
    pub code: &'static str,
    /// English, for logs and API clients.
    pub message: String,
}

impl FieldProblem {
    pub fn new(field: &str, code: &'static str, message: impl Into<String>) -> FieldProblem {
        FieldProblem {
            field: field.to_owned(),
            code,
            message: message.into(),
        }
    }
}

impl AppError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> AppError {
        AppError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::Invalid { .. } | AppError::Fields(_) => "invalid_request",
            AppError::AccountNotFound => "account_not_found",
            AppError::LinkProofMismatch => "link_proof_mismatch",
            AppError::NotFound(_) => "not_found",
            AppError::RateLimited => "rate_limited",
            AppError::BadCredentials => "bad_credentials",
            AppError::Locked => "account_locked",
            AppError::EmailNotVerified => "email_not_verified",
            AppError::BadToken => "bad_token",
            AppError::Forbidden => "forbidden",
            AppError::IdempotencyMismatch => "idempotency_key_reused",
            AppError::IdempotencyInProgress => "idempotency_key_in_progress",
            AppError::FormAlreadyUsed(_) => "form_already_used",
            AppError::Processor(_) => "processor_unavailable",
            AppError::Webhook(_) => "webhook_rejected",
            AppError::Store(_) | AppError::Internal(_) => "internal_error",
        }
    }

    /// True for failures of ours (not the caller's): these are logged with detail and shown
    /// to the user only as a generic message.
    pub fn is_internal(&self) -> bool {
        matches!(self, AppError::Store(_) | AppError::Internal(_))
    }
}
