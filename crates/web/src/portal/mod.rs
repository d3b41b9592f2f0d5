//! The resident portal: quick pay without an account, the processor return pages, and
//! (in `account`) registration, login and the dashboard.

pub mod account;
pub mod account_mfa;
pub mod account_security;
pub mod cart;
pub mod licences;
pub mod notices;
pub mod permits;

use crate::error::{Format, PageError, WebError};
use crate::i18n::{self, Tr};
use crate::{assets, cookies, AppState};
use app::payments::{Channel, ItemProof, PaymentRequest, PaymentView, RequestedItem};
use app::sessions::{Realm, Session};
use app::AppError;
use askama::Template;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use domain::{AccountNumber, EmailAddress, Money, PaymentStatus, PostalCode};
use serde::Deserialize;

pub const RESIDENT_COOKIE: &str = "sr_resident";
pub const RESIDENT_COOKIE_SECURE: &str = "__Host-sr_resident";

/// What every page's layout needs.
pub struct Chrome {
    pub t: Tr,
    pub city: String,
    pub sri: &'static str,
    pub signed_in: bool,
    pub staff: bool,
    pub csrf: String,
    /// Show the navigation. Off on the generic error page, which both listeners use.
    pub nav: bool,
    /// A signed-in staff administrator: the navigation links the access page.
    pub admin: bool,
}

/// Per-request context: language, the resident's session if any, the client address.
pub struct Ctx {
    pub t: Tr,
    pub session: Option<Session>,
    pub ip: String,
    pub city: String,
    /// The browser's form token (see `security::FormToken`), for pages without a session.
    pub form_token: String,
}

/// The form token the CSRF layer put on the request.
pub fn form_token(parts: &Parts) -> String {
    parts
        .extensions
        .get::<crate::security::FormToken>()
        .map(|t| t.0.clone())
        .unwrap_or_default()
}

#[derive(Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

pub fn client_ip(parts: &Parts) -> String {
    parts
        .extensions
        .get::<crate::security::ClientIp>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub fn resident_cookie_name(st: &AppState) -> &'static str {
    if st.cfg.secure_cookies {
        RESIDENT_COOKIE_SECURE
    } else {
        RESIDENT_COOKIE
    }
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Ctx, PageError> {
        let q: Option<LangQuery> = parts
            .uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok());
        let t = i18n::negotiate(q.as_ref().and_then(|q| q.lang.as_deref()), &parts.headers);
        let session = match cookies::get(&parts.headers, resident_cookie_name(st)) {
            Some(token) => st.app.session(Realm::Resident, &token).await?,
            None => None,
        };
        Ok(Ctx {
            t,
            session,
            ip: client_ip(parts),
            city: st.app.config().city_name.clone(),
            form_token: form_token(parts),
        })
    }
}

impl Ctx {
    pub fn chrome(&self) -> Chrome {
        Chrome {
            t: self.t,
            city: self.city.clone(),
            sri: assets::uswds_js_integrity(),
            signed_in: self.session.is_some(),
            staff: false,
            csrf: self
                .session
                .as_ref()
                .map(|s| s.csrf_token.clone())
                .unwrap_or_else(|| self.form_token.clone()),
            nav: true,
            admin: false,
        }
    }

    /// The signed-in resident, or a redirect to the login page.
    pub fn resident(&self) -> Result<&Session, Redirect> {
        self.session.as_ref().ok_or_else(|| Redirect::to("/login"))
    }

    /// Checks a form's CSRF token against the session's.
    pub fn check_csrf(&self, token: &str) -> Result<(), PageError> {
        match &self.session {
            Some(s) if domain::secret::constant_time_eq(&s.csrf_token, token) => Ok(()),
            _ => Err(PageError(WebError::new(
                StatusCode::FORBIDDEN,
                "csrf_token_invalid",
                "This form has expired. Go back, reload the page and try again.",
                Format::Html,
            ))),
        }
    }
}

/// Renders a template with a status.
pub fn render<T: Template>(status: StatusCode, t: &T) -> Result<Response, PageError> {
    Ok((status, Html(t.render()?)).into_response())
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    c: Chrome,
    code: &'a str,
    message: &'a str,
}

/// The city's name for pages rendered without request state (error pages).
static CITY_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub(crate) fn remember_city_name(name: &str) {
    let _ = CITY_NAME.set(name.to_owned());
}

/// What an error page showed, carried on its response so [`localize_error_page`] can
/// render it again in the reader's language.
#[derive(Clone, Debug)]
pub struct ErrorShown {
    pub code: String,
    pub message: String,
}

/// A full error page (used by the edge error type, so it must not fail). English; the
/// listeners' [`localize_error_page`] layer renders it again in the reader's language.
pub fn error_page(status: StatusCode, code: &str, message: &str) -> Response {
    let mut res = error_page_in(Tr::new("en"), status, code, message);
    res.extensions_mut().insert(ErrorShown {
        code: code.to_owned(),
        message: message.to_owned(),
    });
    res
}

/// Error pages in the language of the request (`?lang=`, the `lang` cookie, then
/// `Accept-Language`), declared with that language, their message from the catalog by the
/// error's code (`error.code.<code>`) where it has one.
pub async fn localize_error_page(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let q: Option<LangQuery> = req
        .uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok());
    let t = i18n::negotiate(q.as_ref().and_then(|q| q.lang.as_deref()), req.headers());
    let res = next.run(req).await;
    let Some(shown) = res.extensions().get::<ErrorShown>().cloned() else {
        return res;
    };
    if t.lang == "en" {
        return res;
    }
    let key = format!("error.code.{}", shown.code);
    let message = match t.s(&key) {
        m if m == i18n::MISSING => shown.message.clone(),
        m => m.to_owned(),
    };
    let (mut parts, _) = res.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let fresh = error_page_in(t, parts.status, &shown.code, &message);
    let (_, body) = fresh.into_parts();
    Response::from_parts(parts, body)
}

fn error_page_in(t: Tr, status: StatusCode, code: &str, message: &str) -> Response {
    let c = Chrome {
        t,
        city: CITY_NAME.get().cloned().unwrap_or_default(),
        sri: assets::uswds_js_integrity(),
        signed_in: false,
        staff: false,
        csrf: String::new(),
        nav: false,
        admin: false,
    };
    match (ErrorPage { c, code, message }).render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, message.to_owned()).into_response(),
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/quick-pay", post(quick_pay_lookup))
        .route("/quick-pay/pay", post(quick_pay_start))
        .route("/payments/{id}/return", get(payment_return))
        .route(
            "/payments/{id}/cancel",
            get(payment_left).post(payment_cancel),
        )
        .route("/payments/{id}/receipt", get(receipt))
        .merge(account::router())
        .merge(account_security::router())
        .merge(account_mfa::router())
        .merge(notices::router())
        .merge(permits::router())
        .merge(licences::router())
        .merge(cart::router())
}

/// The portal's pages with `?lang=` remembered (the cookie is `Secure` under TLS).
pub fn router_with_language(state: AppState) -> Router<AppState> {
    router().layer(axum::middleware::from_fn_with_state(
        state,
        remember_language,
    ))
}

/// `?lang=es` sticks: it is remembered in a cookie.
async fn remember_language(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let lang = req
        .uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str::<LangQuery>(q).ok())
        .and_then(|q| q.lang)
        .filter(|l| i18n::LANGUAGES.iter().any(|(c, _)| c == l));
    let mut res = next.run(req).await;
    if let Some(l) = lang {
        let secure = if st.cfg.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        if let Ok(v) =
            format!("lang={l}; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000{secure}").parse()
        {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

#[derive(Template)]
#[template(path = "portal/home.html")]
struct HomePage {
    c: Chrome,
    error: Option<String>,
    account_number: String,
    postal_code: String,
}

async fn home(ctx: Ctx) -> Result<Response, PageError> {
    render(
        StatusCode::OK,
        &HomePage {
            c: ctx.chrome(),
            error: None,
            account_number: String::new(),
            postal_code: String::new(),
        },
    )
}

#[derive(Deserialize)]
struct LookupForm {
    #[serde(default)]
    account_number: String,
    #[serde(default)]
    postal_code: String,
}

#[derive(Template)]
#[template(path = "portal/quick_pay.html")]
struct QuickPayPage {
    c: Chrome,
    s: app::billing::AccountSummary,
    postal_code: String,
    amount: String,
    email: String,
    errors: crate::forms::FormErrors,
    /// The form's one-time key (a form sent twice starts one payment).
    form_key: String,
}

/// Turns a use-case refusal into the message shown next to the form (with its status).
pub fn form_error(ctx: &Ctx, e: AppError) -> Result<(StatusCode, String), PageError> {
    let status = crate::error::status_of(&e);
    if status.is_server_error() {
        return Err(e.into());
    }
    let msg = match &e {
        AppError::AccountNotFound => ctx.t.s("quickpay.not_found").to_owned(),
        AppError::RateLimited => ctx.t.s("error.rate_limited").to_owned(),
        _ => crate::error::public_message(&e),
    };
    tracing::info!(code = e.code(), "form refused");
    Ok((status, msg))
}

async fn quick_pay_lookup(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<LookupForm>,
) -> Result<Response, PageError> {
    let result = match st
        .app
        .rate_limit(&format!("lookup-ip:{}", ctx.ip), 60, 900)
        .await
    {
        Ok(()) => st.app.lookup(&f.account_number, &f.postal_code).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(s) => {
            let amount = if s.balance.is_positive() {
                s.balance.to_plain()
            } else {
                String::new()
            };
            render(
                StatusCode::OK,
                &QuickPayPage {
                    c: ctx.chrome(),
                    s,
                    postal_code: f.postal_code.trim().to_owned(),
                    amount,
                    email: String::new(),
                    errors: crate::forms::FormErrors::none(),
                    form_key: app::ids::form_key(),
                },
            )
        }
        Err(e) => {
            let (status, msg) = form_error(&ctx, e)?;
            render(
                status,
                &HomePage {
                    c: ctx.chrome(),
                    error: Some(msg),
                    account_number: f.account_number,
                    postal_code: f.postal_code,
                },
            )
        }
    }
}

#[derive(Deserialize)]
struct PayForm {
    #[serde(default)]
    account_number: String,
    #[serde(default)]
    postal_code: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    form_key: String,
}

async fn quick_pay_start(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<PayForm>,
) -> Result<Response, PageError> {
    // The same lookup budget as the find-my-bill form: this form answers account + ZIP too.
    let looked_up = match st
        .app
        .rate_limit(&format!("lookup-ip:{}", ctx.ip), 60, 900)
        .await
    {
        Ok(()) => st.app.lookup(&f.account_number, &f.postal_code).await,
        Err(e) => Err(e),
    };
    let summary = match looked_up {
        Ok(s) => s,
        Err(e) => {
            let (status, msg) = form_error(&ctx, e)?;
            return render(
                status,
                &HomePage {
                    c: ctx.chrome(),
                    error: Some(msg),
                    account_number: f.account_number,
                    postal_code: f.postal_code,
                },
            );
        }
    };
    let attempt = build_quick_pay(&st, &ctx, &f);
    let result = match attempt {
        Ok(req) => st.app.start_payment(req).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(started) => Ok(Redirect::to(&started.checkout_url).into_response()),
        Err(AppError::FormAlreadyUsed(id)) => {
            Ok(Redirect::to(&format!("/payments/{id}/receipt")).into_response())
        }
        Err(e) => {
            // Every problem at once, each on its field, in the reader's language; the use
            // case names the amount `items[0].amount_cents`.
            let e = match e {
                AppError::Fields(ps) => AppError::Fields(
                    ps.into_iter()
                        .map(|mut p| {
                            if p.field.starts_with("items[") {
                                p.field = "amount".into();
                            }
                            p
                        })
                        .collect(),
                ),
                AppError::AccountNotFound => {
                    let (status, msg) = form_error(&ctx, AppError::AccountNotFound)?;
                    return render(
                        status,
                        &HomePage {
                            c: ctx.chrome(),
                            error: Some(msg),
                            account_number: f.account_number,
                            postal_code: f.postal_code,
                        },
                    );
                }
                e => e,
            };
            let status = crate::error::status_of(&e);
            let Some(errors) =
                crate::forms::FormErrors::from_app(&ctx.t, &e, "amount", QUICK_PAY_FIELDS)
            else {
                return Err(e.into());
            };
            tracing::info!(code = e.code(), "quick pay refused");
            render(
                status,
                &QuickPayPage {
                    c: ctx.chrome(),
                    s: summary,
                    postal_code: f.postal_code.trim().to_owned(),
                    amount: f.amount,
                    email: f.email,
                    errors,
                    form_key: app::ids::form_key(),
                },
            )
        }
    }
}

/// The quick-pay form's fields, in order.
const QUICK_PAY_FIELDS: &[&str] = &["amount", "email"];

/// The payment the quick-pay form asks for, or every problem with the form at once.
fn build_quick_pay(st: &AppState, ctx: &Ctx, f: &PayForm) -> Result<PaymentRequest, AppError> {
    let currency = st.app.config().currency;
    let account = AccountNumber::parse(&f.account_number).ok_or(AppError::AccountNotFound)?;
    let zip = PostalCode::parse(&f.postal_code).ok_or(AppError::AccountNotFound)?;
    let mut problems = Vec::new();
    let amount = match Money::parse_dollars(f.amount.trim().trim_start_matches('$'), currency) {
        Ok(m) => Some(m),
        Err(e) => {
            problems.push(app::FieldProblem::new(
                "amount",
                "amount_shape",
                e.to_string(),
            ));
            None
        }
    };
    let email = EmailAddress::parse(&f.email);
    if email.is_none() {
        problems.push(app::FieldProblem::new(
            "email",
            "email_shape",
            "an email address like name@example.com",
        ));
    }
    let (Some(amount), Some(email)) = (amount, email) else {
        return Err(AppError::Fields(problems));
    };
    Ok(PaymentRequest {
        language: Some(ctx.t.lang.to_owned()),
        invoices: vec![],
        items: vec![RequestedItem {
            account,
            proof: ItemProof::PostalCode(zip),
            amount,
        }],
        email,
        resident_id: ctx.session.as_ref().map(|s| s.user_id.clone()),
        channel: Channel::Portal,
        return_url: None,
        source_ip: ctx.ip.clone(),
        form_key: Some(f.form_key.clone()),
    })
}

fn valid_payment_id(id: &str) -> Result<(), PageError> {
    domain::ids::PaymentId::parse(id)
        .map(|_| ())
        .ok_or_else(|| {
            PageError(WebError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "That payment was not found.",
                Format::Html,
            ))
        })
}

async fn payment_return(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    valid_payment_id(&id)?;
    let p = st.app.complete_return(&id).await?;
    match (&p.return_url, p.status) {
        (Some(url), s) if s != PaymentStatus::Pending => {
            let sep = if url.contains('?') { '&' } else { '?' };
            Ok(Redirect::to(&format!("{url}{sep}payment_id={}", p.id)).into_response())
        }
        _ => Ok(Redirect::to(&format!("/payments/{id}/receipt")).into_response()),
    }
}

#[derive(Template)]
#[template(path = "portal/left.html")]
struct LeftPage {
    c: Chrome,
    p: PaymentView,
    failure: Option<String>,
    checkout_url: Option<String>,
}

/// The processor's cancel link lands here (a GET: it changes nothing).
async fn payment_left(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    valid_payment_id(&id)?;
    owned_or_anonymous(&st, &ctx, &id).await?;
    let (p, checkout_url) = st.app.payment_left(&id).await?;
    if p.status != PaymentStatus::Pending {
        return Ok(Redirect::to(&format!("/payments/{id}/receipt")).into_response());
    }
    let failure = failure_message(&ctx.t, p.failure_code.as_deref());
    render(
        StatusCode::OK,
        &LeftPage {
            c: ctx.chrome(),
            p,
            failure,
            checkout_url,
        },
    )
}

/// The resident's deliberate "Cancel this payment" (a POST with the form token): the
/// checkout is expired at the processor so it cannot be paid later.
async fn payment_cancel(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    valid_payment_id(&id)?;
    owned_or_anonymous(&st, &ctx, &id).await?;
    st.app.cancel_return(&id).await?;
    Ok(Redirect::to(&format!("/payments/{id}/receipt")).into_response())
}

/// A signed-in resident's payment is theirs alone; a quick-pay payment is reached by its
/// unguessable id (the processor sends the payer back to it).
async fn owned_or_anonymous(st: &AppState, ctx: &Ctx, id: &str) -> Result<(), PageError> {
    let p = st.app.payment(id).await?;
    match &p.resident_id {
        Some(owner) if ctx.session.as_ref().map(|s| &s.user_id) != Some(owner) => {
            Err(AppError::NotFound("payment").into())
        }
        _ => Ok(()),
    }
}

fn failure_message(t: &Tr, code: Option<&str>) -> Option<String> {
    match code {
        Some("insufficient_funds") => Some(t.s("decline.insufficient_funds").to_owned()),
        Some("processor_unavailable") => Some(t.s("decline.processor_unavailable").to_owned()),
        Some("amount_mismatch") => Some(t.s("decline.amount_mismatch").to_owned()),
        Some(_) => Some(t.s("decline.generic").to_owned()),
        None => None,
    }
}

#[derive(Template)]
#[template(path = "portal/receipt.html")]
struct ReceiptPage {
    c: Chrome,
    p: PaymentView,
    title: String,
    status_label: String,
    card: Option<String>,
    failure: Option<String>,
    checkout_url: Option<String>,
    return_url: Option<String>,
}

pub fn status_label(t: &Tr, s: PaymentStatus) -> &'static str {
    t.s(&format!("status.{}", s.as_str()))
}

async fn receipt(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    valid_payment_id(&id)?;
    let p = st.app.payment(&id).await?;
    // A signed-in resident's payment is theirs alone; a quick-pay receipt is reached by its
    // unguessable id (the processor sends the payer back to it).
    if let Some(owner) = &p.resident_id {
        if ctx.session.as_ref().map(|s| &s.user_id) != Some(owner) {
            return Err(AppError::NotFound("payment").into());
        }
    }
    let title = ctx.t.s(match p.status {
        PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded => {
            "receipt.title"
        }
        PaymentStatus::Pending => "receipt.title_pending",
        _ => "receipt.title_failed",
    });
    let card = match (&p.card_brand, &p.card_last4, p.status.captured()) {
        (Some(b), Some(l), true) => Some(ctx.t.f(
            "receipt.card_ending",
            &[("brand", app::email::brand_name(b)), ("last4", l)],
        )),
        _ => None,
    };
    let failure = failure_message(&ctx.t, p.failure_code.as_deref());
    let return_url = p.return_url.clone();
    render(
        StatusCode::OK,
        &ReceiptPage {
            c: ctx.chrome(),
            status_label: status_label(&ctx.t, p.status).to_owned(),
            title: title.to_owned(),
            card,
            failure,
            checkout_url: None,
            return_url,
            p,
        },
    )
}
