//! Resident accounts: register, verify, log in and out, reset a password, link utility
//! accounts, the dashboard, bills, and paying several accounts in one checkout.
//!
//! Every page that shows an account first checks that the signed-in resident has linked
//! it (`resident_owns`); an account of someone else is answered exactly like one that does
//! not exist (404).

use super::{form_error, render, resident_cookie_name, status_label, Chrome, Ctx};
use crate::error::{Format, PageError, WebError};
use crate::i18n::Tr;
use crate::{cookies, AppState};
use app::billing::{AccountSummary, Bill};
use app::payments::{Channel, ItemProof, PaymentRequest, PaymentView, RequestedItem};
use app::resident_mfa::ResidentLoginStep;
use app::sessions::Session;
use app::AppError;
use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use domain::{AccountNumber, Currency, EmailAddress, Money};
use serde::Deserialize;

/// How many rows the history tables show.
const RECENT_PAYMENTS: i64 = 10;
const HISTORY_ROWS: i64 = 100;
const BILL_ROWS: i64 = 36;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/register", get(register_form).post(register))
        .route("/verify", get(verify))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/forgot", get(forgot_form).post(forgot))
        .route("/reset", get(reset_form).post(reset))
        .route("/dashboard", get(dashboard))
        .route("/accounts/link", get(link_form).post(link))
        .route("/accounts/{account}", get(account_page))
        .route("/accounts/{account}/bills/{bill_id}", get(bill_page))
        .route("/pay", post(pay))
        .route("/payments", get(payments_page))
}

// ---------------------------------------------------------------------------------------
// Refusals: a use case's error as a message for the form, in the reader's language.

/// A refused form: the status to answer with and the message, in the reader's language.
pub(super) struct Problem {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

/// Turns a refusal into a [`Problem`] by its code, never by its English text; failures of
/// ours stay errors (an error page).
pub(super) fn problem(ctx: &Ctx, e: AppError) -> Result<Problem, PageError> {
    let t = &ctx.t;
    let message = match &e {
        AppError::BadCredentials => t.s("account.error.bad_credentials").to_owned(),
        AppError::EmailNotVerified => t.s("account.error.unverified").to_owned(),
        AppError::Locked => t.s("account.error.locked").to_owned(),
        AppError::LinkProofMismatch => t.s("account.error.link_mismatch").to_owned(),
        AppError::BadToken => t.s("account.error.bad_token").to_owned(),
        AppError::Forbidden => t.s("account.error.not_linked").to_owned(),
        AppError::Fields(p) => crate::forms::FormErrors::from_problems(t, p, &[])
            .items()
            .first()
            .map(|(_, m)| m.clone())
            .unwrap_or_default(),
        AppError::Invalid { field, .. } => match field.as_str() {
            "email" => t.s("account.error.email").to_owned(),
            "account_number" => t.s("account.error.account_number").to_owned(),
            "postal_code" => t.s("account.error.postal_code").to_owned(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    let (status, fallback) = form_error(ctx, e)?;
    Ok(Problem {
        status,
        message: if message.is_empty() {
            fallback
        } else {
            message
        },
    })
}

fn not_found(t: &Tr) -> PageError {
    PageError(WebError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        t.s("account.error.not_found"),
        Format::Html,
    ))
}

/// Where a signed-out visitor of a resident page is sent.
pub(super) fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

fn date_of(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|d| d.date().to_string())
        .unwrap_or_default()
}

/// Parses `?name=value` pairs; a malformed query reads as empty.
fn query_value(q: &Option<String>, name: &str) -> Option<String> {
    q.as_deref()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v))
}

// ---------------------------------------------------------------------------------------
// A page with a title and a message (check your email, email confirmed, ...).

#[derive(Template)]
#[template(path = "portal/account_notice.html")]
struct NoticePage {
    c: Chrome,
    title: &'static str,
    message: &'static str,
    /// `success`, `info` or `error`.
    kind: &'static str,
    link_href: &'static str,
    link_label: &'static str,
}

/// A notice page; the texts are already translated (so the catalog test sees their keys).
fn notice(
    ctx: &Ctx,
    status: StatusCode,
    title: &'static str,
    message: &'static str,
    kind: &'static str,
    link_href: &'static str,
    link_label: &'static str,
) -> Result<Response, PageError> {
    render(
        status,
        &NoticePage {
            c: ctx.chrome(),
            title,
            message,
            kind,
            link_href,
            link_label,
        },
    )
}

// ---------------------------------------------------------------------------------------
// Register and verify.

#[derive(Template)]
#[template(path = "portal/account_register.html")]
struct RegisterPage {
    c: Chrome,
    email: String,
    errors: crate::forms::FormErrors,
}

/// A refusal as form errors (every problem, each on its field, in the reader's language),
/// with its status; failures of ours stay errors (an error page).
fn form_errors(
    ctx: &Ctx,
    e: AppError,
    field: &str,
    fields: &[&str],
) -> Result<(StatusCode, crate::forms::FormErrors), PageError> {
    let status = crate::error::status_of(&e);
    if matches!(e, AppError::RateLimited) {
        let p = app::FieldProblem::new(field, "rate_limited", "too many attempts");
        return Ok((
            status,
            crate::forms::FormErrors::from_problems(&ctx.t, &[p], fields),
        ));
    }
    match crate::forms::FormErrors::from_app(&ctx.t, &e, field, fields) {
        Some(errors) if !status.is_server_error() => Ok((status, errors)),
        _ => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct CredentialsForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

async fn register_form(ctx: Ctx) -> Result<Response, PageError> {
    render(
        StatusCode::OK,
        &RegisterPage {
            c: ctx.chrome(),
            email: String::new(),
            errors: crate::forms::FormErrors::none(),
        },
    )
}

async fn register(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<CredentialsForm>,
) -> Result<Response, PageError> {
    match st
        .app
        .register(&f.email, &f.password, ctx.t.lang, &ctx.ip)
        .await
    {
        // The same answer whether or not the address already had an account.
        Ok(()) => notice(
            &ctx,
            StatusCode::OK,
            ctx.t.s("account.register.done_title"),
            ctx.t.s("account.register.done_text"),
            "success",
            "/login",
            ctx.t.s("nav.login"),
        ),
        Err(e) => {
            let (status, errors) = form_errors(&ctx, e, "email", &["email", "password"])?;
            render(
                status,
                &RegisterPage {
                    c: ctx.chrome(),
                    email: f.email.trim().to_owned(),
                    errors,
                },
            )
        }
    }
}

async fn verify(
    State(st): State<AppState>,
    ctx: Ctx,
    RawQuery(q): RawQuery,
) -> Result<Response, PageError> {
    let token = query_value(&q, "token").unwrap_or_default();
    let result = if token.is_empty() {
        Err(AppError::BadToken)
    } else {
        st.app.verify_email(&token, &ctx.ip).await
    };
    match result {
        Ok(()) => notice(
            &ctx,
            StatusCode::OK,
            ctx.t.s("account.verify.done_title"),
            ctx.t.s("account.verify.done_text"),
            "success",
            "/login",
            ctx.t.s("nav.login"),
        ),
        Err(AppError::BadToken) => notice(
            &ctx,
            StatusCode::BAD_REQUEST,
            ctx.t.s("account.verify.bad_title"),
            ctx.t.s("account.verify.bad_text"),
            "error",
            "/login",
            ctx.t.s("nav.login"),
        ),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------
// Log in and out.

#[derive(Template)]
#[template(path = "portal/account_login.html")]
pub(super) struct LoginPage {
    pub(super) c: Chrome,
    pub(super) email: String,
    pub(super) error: String,
}

async fn login_form(ctx: Ctx) -> Result<Response, PageError> {
    if ctx.session.is_some() {
        return Ok(Redirect::to("/dashboard").into_response());
    }
    render(
        StatusCode::OK,
        &LoginPage {
            c: ctx.chrome(),
            email: String::new(),
            error: String::new(),
        },
    )
}

async fn login(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<CredentialsForm>,
) -> Result<Response, PageError> {
    match st
        .app
        .resident_login_step(&f.email, &f.password, &ctx.ip)
        .await
    {
        Ok(ResidentLoginStep::Challenge { token }) => {
            // Two-step sign-in is on: no session until the code (`account_mfa`).
            let cookie = super::account_mfa::challenge_cookie(&st, &token);
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login/mfa")).into_response())
        }
        Ok(ResidentLoginStep::SignedIn(_, new)) => {
            // A new session replaces any old one (no session fixation).
            if let Some(old) = &ctx.session {
                st.app.end_session(old).await?;
            }
            let cookie = cookies::set(
                resident_cookie_name(&st),
                &new.token,
                "Lax",
                st.cfg.secure_cookies,
                None,
            );
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/dashboard")).into_response())
        }
        Err(e) => {
            let p = problem(&ctx, e)?;
            render(
                p.status,
                &LoginPage {
                    c: ctx.chrome(),
                    email: f.email.trim().to_owned(),
                    error: p.message,
                },
            )
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    if let Some(s) = &ctx.session {
        ctx.check_csrf(&f.csrf)?;
        st.app.end_session(s).await?;
    }
    let cookie = cookies::clear(resident_cookie_name(&st), "Lax", st.cfg.secure_cookies);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response())
}

// ---------------------------------------------------------------------------------------
// Forgotten password.

#[derive(Template)]
#[template(path = "portal/account_forgot.html")]
struct ForgotPage {
    c: Chrome,
    email: String,
    error: String,
}

#[derive(Deserialize)]
struct EmailForm {
    #[serde(default)]
    email: String,
}

async fn forgot_form(ctx: Ctx) -> Result<Response, PageError> {
    render(
        StatusCode::OK,
        &ForgotPage {
            c: ctx.chrome(),
            email: String::new(),
            error: String::new(),
        },
    )
}

async fn forgot(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<EmailForm>,
) -> Result<Response, PageError> {
    match st.app.request_password_reset(&f.email, &ctx.ip).await {
        Ok(()) => notice(
            &ctx,
            StatusCode::OK,
            ctx.t.s("account.forgot.done_title"),
            ctx.t.s("account.forgot.done_text"),
            "info",
            "/login",
            ctx.t.s("nav.login"),
        ),
        Err(e) => {
            let p = problem(&ctx, e)?;
            render(
                p.status,
                &ForgotPage {
                    c: ctx.chrome(),
                    email: f.email.trim().to_owned(),
                    error: p.message,
                },
            )
        }
    }
}

#[derive(Template)]
#[template(path = "portal/account_reset.html")]
struct ResetPage {
    c: Chrome,
    token: String,
    errors: crate::forms::FormErrors,
}

#[derive(Deserialize)]
struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

fn bad_reset_link(ctx: &Ctx) -> Result<Response, PageError> {
    notice(
        ctx,
        StatusCode::BAD_REQUEST,
        ctx.t.s("account.reset.bad_title"),
        ctx.t.s("account.reset.bad_text"),
        "error",
        "/forgot",
        ctx.t.s("account.forgot.title"),
    )
}

async fn reset_form(ctx: Ctx, RawQuery(q): RawQuery) -> Result<Response, PageError> {
    match query_value(&q, "token").filter(|t| !t.is_empty()) {
        Some(token) => render(
            StatusCode::OK,
            &ResetPage {
                c: ctx.chrome(),
                token,
                errors: crate::forms::FormErrors::none(),
            },
        ),
        None => bad_reset_link(&ctx),
    }
}

async fn reset(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<ResetForm>,
) -> Result<Response, PageError> {
    if f.token.is_empty() {
        return bad_reset_link(&ctx);
    }
    match st.app.reset_password(&f.token, &f.password, &ctx.ip).await {
        Ok(()) => notice(
            &ctx,
            StatusCode::OK,
            ctx.t.s("account.reset.done_title"),
            ctx.t.s("account.reset.done_text"),
            "success",
            "/login",
            ctx.t.s("nav.login"),
        ),
        Err(AppError::BadToken) => bad_reset_link(&ctx),
        Err(e) => {
            let (status, errors) = form_errors(&ctx, e, "password", &["password"])?;
            render(
                status,
                &ResetPage {
                    c: ctx.chrome(),
                    token: f.token,
                    errors,
                },
            )
        }
    }
}

// ---------------------------------------------------------------------------------------
// Dashboard and paying several accounts at once.

/// One payment in a history table.
struct PaymentLine {
    id: String,
    date: String,
    confirmation: String,
    accounts: String,
    amount: Money,
    status: &'static str,
}

impl PaymentLine {
    fn of(t: &Tr, p: &PaymentView) -> PaymentLine {
        let mut accounts: Vec<&str> = p.items.iter().map(|i| i.account_number.as_str()).collect();
        accounts.dedup();
        PaymentLine {
            id: p.id.clone(),
            date: date_of(p.created_at),
            confirmation: p.confirmation_number.clone(),
            accounts: accounts.join(", "),
            amount: p.amount,
            status: status_label(t, p.status),
        }
    }

    /// The part of the payment applied to `account`.
    fn for_account(t: &Tr, p: &PaymentView, account: &str) -> PaymentLine {
        let mut line = PaymentLine::of(t, p);
        let mine = p
            .items
            .iter()
            .filter(|i| i.account_number == account)
            .map(|i| i.amount);
        if let Ok(sum) = Money::sum(p.amount.currency(), mine) {
            line.amount = sum;
        }
        line.accounts = account.to_owned();
        line
    }
}

/// A linked account on the dashboard, with the state of its row of the pay form.
struct DashRow {
    s: AccountSummary,
    checked: bool,
    amount: String,
    error: String,
}

#[derive(Template)]
#[template(path = "portal/dashboard.html")]
struct DashboardPage {
    c: Chrome,
    email: String,
    rows: Vec<DashRow>,
    payable: usize,
    payments: Vec<PaymentLine>,
    errors: crate::forms::FormErrors,
    /// The pay form's one-time key (a form sent twice starts one payment).
    form_key: String,
}

async fn dashboard_page(
    st: &AppState,
    ctx: &Ctx,
    s: &Session,
    status: StatusCode,
    form: Option<&[(String, String)]>,
    errors: crate::forms::FormErrors,
) -> Result<Response, PageError> {
    let resident = st.app.resident(&s.user_id).await?;
    let accounts = st.app.dashboard(&s.user_id).await?;
    let payments = st
        .app
        .payments_for_resident(&s.user_id, RECENT_PAYMENTS)
        .await?;
    let value = |name: String| {
        form.and_then(|f| f.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
    };
    let rows: Vec<DashRow> = accounts
        .into_iter()
        .map(|a| {
            let n = a.account_number.as_str().to_owned();
            let (checked, amount) = match form {
                Some(_) => (
                    value(format!("pay_{n}")).is_some(),
                    value(format!("amount_{n}")).unwrap_or_default(),
                ),
                None => (true, a.balance.to_plain()),
            };
            let error = errors.get(&format!("amount_{n}")).to_owned();
            DashRow {
                s: a,
                checked,
                amount,
                error,
            }
        })
        .collect();
    let payable = rows.iter().filter(|r| r.s.balance.is_positive()).count();
    let payments = payments
        .iter()
        .map(|p| PaymentLine::of(&ctx.t, p))
        .collect();
    render(
        status,
        &DashboardPage {
            form_key: app::ids::form_key(),
            c: ctx.chrome(),
            email: resident.email,
            rows,
            payable,
            payments,
            errors,
        },
    )
}

async fn dashboard(State(st): State<AppState>, ctx: Ctx) -> Result<Response, PageError> {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    // Every sign-in lands here: the language the resident reads is remembered for their
    // emails (written only when it changed).
    st.app.remember_language(&s.user_id, ctx.t.lang).await?;
    dashboard_page(
        &st,
        &ctx,
        &s,
        StatusCode::OK,
        None,
        crate::forms::FormErrors::none(),
    )
    .await
}

/// What the pay form asked for, or every problem with it (each on its amount field; a
/// form with nothing chosen on `pay`).
fn requested_items(
    currency: Currency,
    form: &[(String, String)],
) -> Result<Vec<RequestedItem>, Vec<app::FieldProblem>> {
    let mut items = Vec::new();
    let mut problems = Vec::new();
    for (key, _) in form.iter().filter(|(k, _)| k.starts_with("pay_")) {
        let raw = key.trim_start_matches("pay_");
        let Some(account) = AccountNumber::parse(raw) else {
            problems.push(app::FieldProblem::new(
                "pay",
                "account_number_shape",
                "not an account number",
            ));
            continue;
        };
        if items.iter().any(|i: &RequestedItem| i.account == account) {
            continue;
        }
        let typed = crate::forms::value(form, &format!("amount_{raw}"));
        match Money::parse_dollars(typed.trim().trim_start_matches('$'), currency) {
            Ok(amount) if amount.is_positive() => items.push(RequestedItem {
                account,
                proof: ItemProof::Linked,
                amount,
            }),
            _ => problems.push(app::FieldProblem::new(
                &format!("amount_{raw}"),
                "amount_shape",
                "enter an amount like 12.34",
            )),
        }
    }
    if items.is_empty() && problems.is_empty() {
        problems.push(app::FieldProblem::new(
            "pay",
            "cart_empty",
            "choose at least one account to pay",
        ));
    }
    if problems.is_empty() {
        Ok(items)
    } else {
        Err(problems)
    }
}

/// The pay form's fields in order (each account's amount, then the form as a whole).
fn pay_fields(form: &[(String, String)]) -> Vec<String> {
    form.iter()
        .filter_map(|(k, _)| k.strip_prefix("pay_").map(|a| format!("amount_{a}")))
        .chain(std::iter::once("pay".to_owned()))
        .collect()
}

async fn pay(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    ctx.check_csrf(&crate::forms::value(&form, "csrf"))?;
    let fields = pay_fields(&form);
    let field_refs: Vec<&str> = fields.iter().map(String::as_str).collect();
    let items = match requested_items(st.app.config().currency, &form) {
        Ok(items) => items,
        Err(problems) => {
            let errors = crate::forms::FormErrors::from_problems(&ctx.t, &problems, &field_refs);
            return dashboard_page(&st, &ctx, &s, StatusCode::BAD_REQUEST, Some(&form), errors)
                .await;
        }
    };
    let resident = st.app.resident(&s.user_id).await?;
    let email = EmailAddress::parse(&resident.email)
        .ok_or_else(|| AppError::Internal("stored resident email is malformed".into()))?;
    let accounts: Vec<String> = items
        .iter()
        .map(|i| i.account.as_str().to_owned())
        .collect();
    let req = PaymentRequest {
        language: Some(ctx.t.lang.to_owned()),
        items,
        invoices: vec![],
        email,
        resident_id: Some(s.user_id.clone()),
        channel: Channel::Portal,
        return_url: None,
        source_ip: ctx.ip.clone(),
        form_key: Some(crate::forms::value(&form, "form_key")),
    };
    match st.app.start_payment(req).await {
        Ok(started) => Ok(Redirect::to(&started.checkout_url).into_response()),
        Err(AppError::FormAlreadyUsed(id)) => {
            Ok(Redirect::to(&format!("/payments/{id}/receipt")).into_response())
        }
        Err(e) => {
            // `items[i].amount_cents` names the row the use case refused.
            let row_field = |f: &str| -> String {
                f.strip_prefix("items[")
                    .and_then(|r| r.split_once(']'))
                    .and_then(|(i, _)| i.parse::<usize>().ok())
                    .and_then(|i| accounts.get(i))
                    .map_or_else(|| "pay".to_owned(), |a| format!("amount_{a}"))
            };
            let e = match e {
                AppError::Fields(ps) => AppError::Fields(
                    ps.into_iter()
                        .map(|mut p| {
                            p.field = row_field(&p.field);
                            p
                        })
                        .collect(),
                ),
                AppError::Forbidden => AppError::Fields(vec![app::FieldProblem::new(
                    "pay",
                    "account_not_linked",
                    "this account is not linked to you",
                )]),
                e => e,
            };
            let status = crate::error::status_of(&e);
            let Some(errors) = crate::forms::FormErrors::from_app(&ctx.t, &e, "pay", &field_refs)
            else {
                return Err(e.into());
            };
            dashboard_page(&st, &ctx, &s, status, Some(&form), errors).await
        }
    }
}

#[derive(Template)]
#[template(path = "portal/account_payments.html")]
struct PaymentsPage {
    c: Chrome,
    payments: Vec<PaymentLine>,
}

async fn payments_page(State(st): State<AppState>, ctx: Ctx) -> Result<Response, PageError> {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    let payments = st
        .app
        .payments_for_resident(&s.user_id, HISTORY_ROWS)
        .await?;
    let payments = payments
        .iter()
        .map(|p| PaymentLine::of(&ctx.t, p))
        .collect();
    render(
        StatusCode::OK,
        &PaymentsPage {
            c: ctx.chrome(),
            payments,
        },
    )
}

// ---------------------------------------------------------------------------------------
// Linking an account.

#[derive(Template)]
#[template(path = "portal/account_link.html")]
struct LinkPage {
    c: Chrome,
    account_number: String,
    linking_code: String,
    errors: crate::forms::FormErrors,
}

#[derive(Deserialize)]
struct LinkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    account_number: String,
    #[serde(default)]
    linking_code: String,
}

/// The link form's fields, in page order.
const LINK_FIELDS: &[&str] = &["account_number", "linking_code"];

async fn link_form(ctx: Ctx) -> Result<Response, PageError> {
    if ctx.session.is_none() {
        return Ok(to_login());
    }
    render(
        StatusCode::OK,
        &LinkPage {
            c: ctx.chrome(),
            account_number: String::new(),
            linking_code: String::new(),
            errors: crate::forms::FormErrors::none(),
        },
    )
}

async fn link(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<LinkForm>,
) -> Result<Response, PageError> {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    ctx.check_csrf(&f.csrf)?;
    match st
        .app
        .link_account(&s.user_id, &f.account_number, &f.linking_code, &ctx.ip)
        .await
    {
        Ok(account) => Ok(Redirect::to(&format!("/accounts/{account}?linked=1")).into_response()),
        Err(e) => {
            let status = crate::error::status_of(&e);
            let errors = match &e {
                AppError::LinkProofMismatch => crate::forms::FormErrors::from_problems(
                    &ctx.t,
                    &[app::FieldProblem::new(
                        "account_number",
                        "link_mismatch",
                        "these details do not match an account",
                    )],
                    LINK_FIELDS,
                ),
                AppError::RateLimited => crate::forms::FormErrors::from_problems(
                    &ctx.t,
                    &[app::FieldProblem::new(
                        "account_number",
                        "rate_limited",
                        "too many attempts",
                    )],
                    LINK_FIELDS,
                ),
                _ => match crate::forms::FormErrors::from_app(
                    &ctx.t,
                    &e,
                    "account_number",
                    LINK_FIELDS,
                ) {
                    Some(errors) => errors,
                    None => return Err(e.into()),
                },
            };
            render(
                status,
                &LinkPage {
                    c: ctx.chrome(),
                    account_number: f.account_number.trim().to_owned(),
                    linking_code: f.linking_code.trim().to_owned(),
                    errors,
                },
            )
        }
    }
}

// ---------------------------------------------------------------------------------------
// One account, one bill.

/// The account of the path, if the signed-in resident has linked it; 404 otherwise
/// (the same answer for an account that exists but is someone else's).
async fn owned_account(
    st: &AppState,
    ctx: &Ctx,
    s: &Session,
    raw: &str,
) -> Result<AccountNumber, PageError> {
    let account = AccountNumber::parse(raw).ok_or_else(|| not_found(&ctx.t))?;
    if !st.app.resident_owns(&s.user_id, account.as_str()).await? {
        // Answered as not found (no hint the account exists), and recorded.
        st.app
            .record_refusal(
                &format!("resident:{}", s.user_id),
                "resident.access_refused",
                account.as_str(),
                "account not linked to this resident",
                &ctx.ip,
            )
            .await?;
        return Err(not_found(&ctx.t));
    }
    Ok(account)
}

#[derive(Template)]
#[template(path = "portal/account_detail.html")]
struct AccountPage {
    c: Chrome,
    s: AccountSummary,
    linked: bool,
    bills: Vec<Bill>,
    payments: Vec<PaymentLine>,
}

async fn account_page(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, PageError> {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    let account = owned_account(&st, &ctx, &s, &raw).await?;
    let summary = st.app.account_summary(account.as_str()).await?;
    let bills = st.app.bills(account.as_str(), BILL_ROWS).await?;
    // Only this resident's own payments: others who pay the same account (a landlord, a
    // roommate, a quick-pay payer) are not shown to everyone who links it; their payments
    // count in the balance.
    let payments = st
        .app
        .payments_for_account_by_resident(account.as_str(), &s.user_id, HISTORY_ROWS)
        .await?
        .iter()
        .map(|p| PaymentLine::for_account(&ctx.t, p, account.as_str()))
        .collect();
    let linked = query_value(&q, "linked").is_some();
    render(
        StatusCode::OK,
        &AccountPage {
            c: ctx.chrome(),
            s: summary,
            linked,
            bills,
            payments,
        },
    )
}

#[derive(Template)]
#[template(path = "portal/account_bill.html")]
struct BillPage {
    c: Chrome,
    b: Bill,
}

async fn bill_page(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((raw, bill_id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    let account = owned_account(&st, &ctx, &s, &raw).await?;
    if bill_id.is_empty() || bill_id.len() > 128 {
        return Err(not_found(&ctx.t));
    }
    let b = match st.app.bill(&bill_id).await {
        Ok(b) if b.account_number == account.as_str() => b,
        Ok(_) | Err(AppError::NotFound(_)) => return Err(not_found(&ctx.t)),
        Err(e) => return Err(e.into()),
    };
    render(StatusCode::OK, &BillPage { c: ctx.chrome(), b })
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::password::{PasswordProblem, RESIDENT_MIN_LEN};

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_password_problem_has_a_translation() {
        let problems = [
            PasswordProblem::TooShort {
                min: RESIDENT_MIN_LEN,
            },
            PasswordProblem::TooLong,
            PasswordProblem::Common,
            PasswordProblem::ContainsIdentifier,
            PasswordProblem::Repetitive,
        ];
        for lang in ["en", "es"] {
            let t = Tr::new(lang);
            for p in problems {
                for staff in [false, true] {
                    let fp = app::residents::password_problem("password", p, staff);
                    let m = t.s(&format!("field_error.{}", fp.code));
                    assert!(
                        m != crate::i18n::MISSING && !m.contains('{'),
                        "{lang} {p:?}: {m:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn pay_form_reads_checked_accounts_only() {
        let f = form(&[
            ("csrf", "x"),
            ("pay_100001", "1"),
            ("amount_100001", "$1,234.50"),
            ("amount_100002", "9.99"),
            ("pay_100003", "1"),
            ("amount_100003", "0.01"),
        ]);
        let items = requested_items(Currency::Usd, &f).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].account.as_str(), "100001");
        assert_eq!(items[0].amount.cents(), 123_450);
        assert!(matches!(items[0].proof, ItemProof::Linked));
        assert_eq!(items[1].amount.cents(), 1);
    }

    #[test]
    fn pay_form_refusals_name_the_field_all_at_once() {
        let none = requested_items(
            Currency::Usd,
            &form(&[("csrf", "x"), ("amount_100001", "5")]),
        )
        .err()
        .unwrap();
        assert_eq!(none[0].field, "pay");
        assert_eq!(none[0].code, "cart_empty");
        for bad in ["", "ten", "0", "-5", "1.234", "1e3"] {
            let p = requested_items(
                Currency::Usd,
                &form(&[
                    ("pay_100001", "1"),
                    ("amount_100001", bad),
                    ("pay_100002", "1"),
                    ("amount_100002", bad),
                ]),
            )
            .err()
            .unwrap();
            let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
            assert_eq!(
                fields,
                ["amount_100001", "amount_100002"],
                "{bad}: both rows at once"
            );
        }
        let p = requested_items(Currency::Usd, &form(&[("pay_12", "1"), ("amount_12", "5")]))
            .err()
            .unwrap();
        assert_eq!(p[0].field, "pay");
    }

    #[test]
    fn query_values() {
        assert_eq!(
            query_value(&Some("token=ab%20c&x=1".into()), "token").as_deref(),
            Some("ab c")
        );
        assert_eq!(query_value(&Some("x=1".into()), "token"), None);
        assert_eq!(query_value(&None, "token"), None);
    }
}
