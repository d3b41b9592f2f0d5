//! The staff back office, on its own listener with its own cookie.
//!
//! First cut: password + TOTP login (see [`app::mfa`]) and logout, payment search, a payment with its timeline, an
//! account with its bills, ledger and payments, and the email outbox. Every route names the
//! least role it needs ([`StaffCtx::require`]); the role is re-read from the store on every
//! request, so disabling a user or changing a role takes effect at once. There are no
//! writes yet besides login and logout.

use crate::error::{Format, PageError, WebError};
use crate::i18n::{self, Tr};
use crate::portal::{render, status_label, Chrome};
use crate::{assets, cookies, AppState};
use app::mfa::{LoginStep, CHALLENGE_SECS};
use app::payments::PaymentView;
use app::sessions::{Realm, Session};
use app::staff::{Role, StaffUser, TimelineEntry};
use app::AppError;
use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use domain::ids::{EmailId, PaymentId};
use domain::AccountNumber;
use serde::Deserialize;

pub const STAFF_COOKIE: &str = "sr_staff";
pub const STAFF_COOKIE_SECURE: &str = "__Host-sr_staff";
/// The half-signed-in step (password right, code owed): a challenge token, sent only to
/// `/login...`. It opens no other page: it is not a session.
pub const MFA_COOKIE: &str = "sr_staff_mfa";
/// With TLS: the `__Secure-` prefix (`__Host-` needs `Path=/`, and this cookie is only
/// for `/login`), so a plain-HTTP response cannot set or overwrite it.
pub const MFA_COOKIE_SECURE: &str = "__Secure-sr_staff_mfa";

fn mfa_cookie_name(st: &AppState) -> &'static str {
    cookies::pick(st.cfg.secure_cookies, MFA_COOKIE_SECURE, MFA_COOKIE)
}
/// Longest code field accepted (a 6-digit code or a recovery code, with spaces).
const MAX_CODE: usize = 64;

/// How many rows the list pages show.
const LIST_LIMIT: i64 = 50;
/// Longest search query accepted (a confirmation number, account number or email).
const MAX_QUERY: usize = 254;
const MAX_USERNAME: usize = 64;
const MAX_PASSWORD: usize = 1024;

pub fn staff_cookie_name(st: &AppState) -> &'static str {
    if st.cfg.secure_cookies {
        STAFF_COOKIE_SECURE
    } else {
        STAFF_COOKIE
    }
}

#[derive(Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

/// Per-request context of the back office: language, client address, and the signed-in
/// staff member (a live staff-realm session whose user exists and is not disabled).
pub struct StaffCtx {
    pub t: Tr,
    pub ip: String,
    pub city: String,
    pub signed_in: Option<(Session, StaffUser)>,
    /// The browser's form token, for the sign-in forms.
    pub form_token: String,
    /// The matched route (template, no ids or query): what a refusal is recorded against.
    pub route: String,
    app: app::App,
}

impl FromRequestParts<AppState> for StaffCtx {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<StaffCtx, PageError> {
        let q: Option<LangQuery> = parts
            .uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok());
        let t = i18n::negotiate(q.as_ref().and_then(|q| q.lang.as_deref()), &parts.headers);
        let session = match cookies::get(&parts.headers, staff_cookie_name(st)) {
            Some(token) => st.app.session(Realm::Staff, &token).await?,
            None => None,
        };
        let signed_in = match session {
            Some(s) => st.app.staff_user(&s.user_id).await?.map(|u| (s, u)),
            None => None,
        };
        Ok(StaffCtx {
            t,
            ip: crate::portal::client_ip(parts),
            city: st.app.config().city_name.clone(),
            signed_in,
            form_token: crate::portal::form_token(parts),
            route: parts
                .extensions
                .get::<axum::extract::MatchedPath>()
                .map(|m| m.as_str().to_owned())
                .unwrap_or_else(|| "(no route)".into()),
            app: st.app.clone(),
        })
    }
}

/// Equality of two secrets without an early exit: compares their SHA-256 hashes (fixed
/// length) byte by byte, folding the differences.
fn secrets_equal(a: &str, b: &str) -> bool {
    let (ha, hb) = (app::ids::token_hash(a), app::ids::token_hash(b));
    ha.len() == hb.len()
        && ha
            .bytes()
            .zip(hb.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// May a member with role `have` use a route that needs `need`?
fn allowed(have: Role, need: Role) -> bool {
    have >= need
}

impl StaffCtx {
    pub fn chrome(&self) -> Chrome {
        Chrome {
            t: self.t,
            city: self.city.clone(),
            sri: assets::uswds_js_integrity(),
            signed_in: self.signed_in.is_some(),
            staff: true,
            csrf: self
                .signed_in
                .as_ref()
                .map(|(s, _)| s.csrf_token.clone())
                .unwrap_or_else(|| self.form_token.clone()),
            nav: true,
            admin: self
                .signed_in
                .as_ref()
                .is_some_and(|(_, u)| u.role == Role::Administrator),
        }
    }

    /// The signed-in staff member if their role is at least `need`; otherwise a redirect to
    /// the login page (not signed in) or a 403 page (role too low).
    pub fn require(&self, need: Role) -> Result<&StaffUser, Refusal> {
        match &self.signed_in {
            None => Err(Refusal::from(Redirect::to("/login").into_response())),
            Some((_, u)) if allowed(u.role, need) => Ok(u),
            Some((_, u)) => {
                tracing::info!(staff_id = %u.id, role = u.role.as_str(), need = need.as_str(), "staff route refused: role too low");
                // Recorded in the audit log too (ASVS 16.3.2), off the request's path.
                let (app, id, route, ip) = (
                    self.app.clone(),
                    u.id.clone(),
                    self.route.clone(),
                    self.ip.clone(),
                );
                let detail = format!("role {} needs {}", u.role.as_str(), need.as_str());
                tokio::spawn(async move {
                    let actor = format!("staff:{id}");
                    let event = "staff.access_refused";
                    if let Err(e) = app
                        .record_refusal(&actor, event, &route, &detail, &ip)
                        .await
                    {
                        tracing::warn!(code = e.code(), "could not audit a refused staff route");
                    }
                });
                Err(self.fail(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    self.t.s("staff.error.forbidden"),
                ))
            }
        }
    }

    /// The signed-in staff member if their role is one of `roles` (roles outside the
    /// ladder, such as inspector, are named explicitly).
    pub fn require_one_of(&self, roles: &[Role]) -> Result<&StaffUser, Refusal> {
        match &self.signed_in {
            Some((_, u)) if roles.contains(&u.role) => Ok(u),
            Some((_, u)) if u.role == Role::Administrator => Ok(u),
            _ => self.require(Role::Administrator),
        }
    }

    /// Checks a form's token against the signed-in member's session (403 page otherwise).
    pub fn require_form_token(&self, sent: &str) -> Result<(), Refusal> {
        let ok = self
            .signed_in
            .as_ref()
            .is_some_and(|(s, _)| !sent.is_empty() && secrets_equal(&s.csrf_token, sent));
        if ok {
            Ok(())
        } else {
            Err(self.fail(
                StatusCode::FORBIDDEN,
                "csrf_token_invalid",
                self.t.s("staff.error.csrf"),
            ))
        }
    }

    /// An error page with the back office's layout.
    pub fn fail(&self, status: StatusCode, code: &'static str, message: &str) -> Refusal {
        let page = StaffErrorPage {
            c: self.chrome(),
            code,
            message,
        };
        Refusal::from(match render(status, &page) {
            Ok(r) => r,
            Err(e) => e.into_response(),
        })
    }

    pub fn not_found(&self) -> Refusal {
        self.fail(
            StatusCode::NOT_FOUND,
            "not_found",
            self.t.s("staff.error.not_found"),
        )
    }

    pub fn bad_request(&self) -> Refusal {
        self.fail(
            StatusCode::BAD_REQUEST,
            "bad_request",
            self.t.s("staff.error.bad_request"),
        )
    }

    /// A use case's refusal or failure as a page (the edge error type logs it).
    pub fn app_error(&self, e: AppError) -> Refusal {
        let we = WebError::from_app(e, Format::Html);
        let message = if we.status == StatusCode::NOT_FOUND {
            self.t.s("staff.error.not_found").to_owned()
        } else if we.status.is_server_error() {
            self.t.s("staff.error.internal").to_owned()
        } else {
            we.message
        };
        self.fail(we.status, we.code, &message)
    }
}

/// A page handler's refusal: a redirect or an error page, boxed (responses are large).
pub struct Refusal(Box<Response>);

impl From<Response> for Refusal {
    fn from(r: Response) -> Refusal {
        Refusal(Box::new(r))
    }
}

impl From<PageError> for Refusal {
    fn from(e: PageError) -> Refusal {
        Refusal::from(e.into_response())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        *self.0
    }
}

type Page = Result<Response, Refusal>;

fn page<T: Template>(t: &T) -> Page {
    Ok(render(StatusCode::OK, t)?)
}

/// `YYYY-MM-DD HH:MM` in UTC.
pub fn utc(ts: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|d| d.format(&fmt).ok())
        .unwrap_or_else(|| ts.to_string())
}

/// `YYYY-MM-DD HH:MM:SS` in UTC (timelines, where seconds matter).
pub fn utc_seconds(ts: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|d| d.format(&fmt).ok())
        .unwrap_or_else(|| ts.to_string())
}

/// Events are stamped to the second and the store breaks ties by a random id, so events
/// of the same second are put back in the order a payment lives through them.
fn in_lifecycle_order(mut events: Vec<TimelineEntry>) -> Vec<TimelineEntry> {
    fn rank(kind: &str) -> u8 {
        match kind {
            "created" => 0,
            "checkout_opened" => 1,
            "attempt_declined" => 2,
            "posted" => 4,
            "refund_reported" => 5,
            _ => 3,
        }
    }
    events.sort_by_key(|e| (e.at, rank(&e.kind)));
    events
}

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(crate::staff_pages::router())
        .route("/", get(search))
        .route("/login", get(login_page).post(login))
        .route("/login/mfa", get(mfa_page).post(mfa_verify))
        .route("/logout", post(logout))
        .route("/payments/{id}", get(payment))
        .route("/payments/{id}/refund", post(refund))
        .route("/accounts/{account}", get(account))
        .route("/outbox", get(outbox))
        .route("/outbox/{id}", get(outbox_email))
        .fallback(no_such_page)
        .method_not_allowed_fallback(wrong_method)
}

async fn no_such_page(ctx: StaffCtx) -> Refusal {
    ctx.not_found()
}

async fn wrong_method(ctx: StaffCtx) -> Refusal {
    ctx.fail(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        ctx.t.s("staff.error.bad_request"),
    )
}

#[derive(Template)]
#[template(path = "error.html")]
struct StaffErrorPage<'a> {
    c: Chrome,
    code: &'a str,
    message: &'a str,
}

// ---- login / logout ----

#[derive(Template)]
#[template(path = "staff/login.html")]
struct LoginPage {
    c: Chrome,
    username: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn login_page(ctx: StaffCtx) -> Page {
    if ctx.signed_in.is_some() {
        return Ok(Redirect::to("/").into_response());
    }
    page(&LoginPage {
        c: ctx.chrome(),
        username: String::new(),
        error: None,
    })
}

async fn login(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Page {
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    let username = f.username.trim().to_owned();
    let result = if username.is_empty()
        || username.len() > MAX_USERNAME
        || f.password.is_empty()
        || f.password.len() > MAX_PASSWORD
    {
        Err(AppError::BadCredentials)
    } else {
        st.app.staff_login(&username, &f.password, &ctx.ip).await
    };
    let (status, key) = match result {
        Ok(step) => {
            // The password alone opens nothing: on to the second factor.
            let cookie = mfa_cookie(&st, step.token(), CHALLENGE_SECS);
            return Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login/mfa")).into_response());
        }
        Err(AppError::BadCredentials) => (StatusCode::UNAUTHORIZED, "staff.login.bad_credentials"),
        Err(AppError::Locked) => (StatusCode::LOCKED, "staff.login.locked"),
        Err(AppError::RateLimited) => (StatusCode::TOO_MANY_REQUESTS, "error.rate_limited"),
        Err(e) => return Err(ctx.app_error(e)),
    };
    tracing::info!(status = status.as_u16(), "staff login refused");
    let mut c = ctx.chrome();
    // The form is shown signed out whatever cookie came with it.
    c.signed_in = false;
    Ok(render(
        status,
        &LoginPage {
            c,
            username,
            error: Some(ctx.t.s(key).to_owned()),
        },
    )?)
}

/// `Set-Cookie` for the challenge cookie: path `/login`, so it goes nowhere else.
fn mfa_cookie(st: &AppState, value: &str, max_age: i64) -> String {
    let mut c = format!(
        "{}={value}; Path=/login; HttpOnly; SameSite=Strict; Max-Age={max_age}",
        mfa_cookie_name(st)
    );
    if st.cfg.secure_cookies {
        c.push_str("; Secure");
    }
    c
}

#[derive(Template)]
#[template(path = "staff/login_mfa.html")]
struct MfaPage {
    c: Chrome,
    error: Option<String>,
    /// The sign-in ceremony's options when the member has passkeys.
    passkey_options: Option<String>,
    passkey_sri: &'static str,
}

#[derive(Template)]
#[template(path = "staff/enroll.html")]
struct EnrollPage {
    c: Chrome,
    /// The secret in groups of four, for typing into an app.
    secret_grouped: String,
    otpauth_uri: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "staff/recovery_codes.html")]
pub(crate) struct RecoveryCodesPage {
    pub(crate) c: Chrome,
    pub(crate) codes: Vec<String>,
    /// New codes replacing earlier ones (not a first enrollment).
    pub(crate) renewed: bool,
}

#[derive(Deserialize)]
struct MfaForm {
    #[serde(default)]
    code: String,
    /// A passkey's answer (JSON), instead of a code.
    #[serde(default)]
    credential: String,
    /// At enrollment: the one-time code from an administrator.
    #[serde(default)]
    enrollment_code: String,
}

pub(crate) fn grouped(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The code form or the enrollment page of a live challenge.
fn step_page(
    ctx: &StaffCtx,
    step: &LoginStep,
    status: StatusCode,
    error: Option<String>,
    passkey_options: Option<String>,
) -> Page {
    let mut c = ctx.chrome();
    c.signed_in = false;
    Ok(match step {
        LoginStep::Challenge { .. } => render(
            status,
            &MfaPage {
                c,
                error,
                passkey_options,
                passkey_sri: crate::assets::passkey_js_integrity(),
            },
        )?,
        LoginStep::Enroll {
            secret_base32,
            otpauth_uri,
            ..
        } => render(
            status,
            &EnrollPage {
                c,
                secret_grouped: grouped(secret_base32),
                otpauth_uri: otpauth_uri.clone(),
                error,
            },
        )?,
    })
}

/// The passkey sign-in options of a live challenge (enrolled members with passkeys).
async fn passkey_options(
    st: &AppState,
    ctx: &StaffCtx,
    step: &LoginStep,
) -> Result<Option<String>, Refusal> {
    match step {
        LoginStep::Challenge { token } => st
            .app
            .passkey_login_options(Realm::Staff, token)
            .await
            .map_err(|e| ctx.app_error(e)),
        LoginStep::Enroll { .. } => Ok(None),
    }
}

/// Back to the password form with a message, the challenge cookie cleared.
fn restart(st: &AppState, ctx: &StaffCtx, status: StatusCode, key: &str) -> Page {
    let mut c = ctx.chrome();
    c.signed_in = false;
    let page = render(
        status,
        &LoginPage {
            c,
            username: String::new(),
            error: Some(ctx.t.s(key).to_owned()),
        },
    )?;
    Ok(([(header::SET_COOKIE, mfa_cookie(st, "", 0))], page).into_response())
}

async fn mfa_page(State(st): State<AppState>, ctx: StaffCtx, headers: HeaderMap) -> Page {
    if ctx.signed_in.is_some() {
        return Ok(Redirect::to("/").into_response());
    }
    let step = match cookies::get(&headers, mfa_cookie_name(&st)) {
        Some(token) => st
            .app
            .staff_challenge(&token)
            .await
            .map_err(|e| ctx.app_error(e))?,
        None => None,
    };
    match step {
        Some(step) => {
            let options = passkey_options(&st, &ctx, &step).await?;
            step_page(&ctx, &step, StatusCode::OK, None, options)
        }
        None => Ok((
            [(header::SET_COOKIE, mfa_cookie(&st, "", 0))],
            Redirect::to("/login"),
        )
            .into_response()),
    }
}

async fn mfa_verify(
    State(st): State<AppState>,
    ctx: StaffCtx,
    headers: HeaderMap,
    form: Result<Form<MfaForm>, FormRejection>,
) -> Page {
    let Some(token) = cookies::get(&headers, mfa_cookie_name(&st)) else {
        return Ok(Redirect::to("/login").into_response());
    };
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    // An over-long entry is a wrong code (and counted as one), not a different error.
    let code = if f.code.len() > MAX_CODE { "" } else { &f.code };
    let with_passkey = !f.credential.is_empty();
    let result = if with_passkey {
        st.app
            .staff_login_passkey(&token, crate::passkeys::bounded(&f.credential), &ctx.ip)
            .await
    } else {
        let enrollment = if f.enrollment_code.len() > MAX_CODE {
            ""
        } else {
            &f.enrollment_code
        };
        st.app
            .staff_login_verify(&token, code, enrollment, &ctx.ip)
            .await
    };
    let key = match result {
        Ok(done) => {
            // A session this browser already had is ended, not kept alongside the new one.
            if let Some((old, _)) = &ctx.signed_in {
                if let Err(e) = st.app.end_session(old).await {
                    tracing::warn!(code = e.code(), "could not end the previous staff session");
                }
            }
            tracing::info!(staff_id = %done.user.id, role = done.user.role.as_str(), recovery_code = done.used_recovery_code, "staff signed in");
            let set = AppendHeaders([
                (
                    header::SET_COOKIE,
                    cookies::set(
                        staff_cookie_name(&st),
                        &done.session.token,
                        "Strict",
                        st.cfg.secure_cookies,
                        None,
                    ),
                ),
                (header::SET_COOKIE, mfa_cookie(&st, "", 0)),
            ]);
            if done.recovery_codes.is_empty() {
                return Ok((set, Redirect::to("/")).into_response());
            }
            // Just enrolled: the recovery codes, shown this once (never stored in clear).
            let mut c = ctx.chrome();
            c.signed_in = true;
            c.csrf = done.session.csrf_token.clone();
            let page = render(
                StatusCode::OK,
                &RecoveryCodesPage {
                    c,
                    codes: done.recovery_codes,
                    renewed: false,
                },
            )?;
            return Ok((set, page).into_response());
        }
        Err(AppError::BadCredentials) if with_passkey => {
            (StatusCode::UNAUTHORIZED, "passkey.not_verified")
        }
        Err(AppError::BadCredentials) if !f.enrollment_code.is_empty() => {
            (StatusCode::UNAUTHORIZED, "staff.enroll.bad_code")
        }
        Err(AppError::BadCredentials) => (StatusCode::UNAUTHORIZED, "staff.mfa.bad_code"),
        Err(AppError::RateLimited) => (StatusCode::TOO_MANY_REQUESTS, "error.rate_limited"),
        Err(AppError::BadToken) => {
            return restart(&st, &ctx, StatusCode::UNAUTHORIZED, "staff.mfa.expired")
        }
        Err(AppError::Locked) => {
            return restart(&st, &ctx, StatusCode::LOCKED, "staff.login.locked")
        }
        Err(e) => return Err(ctx.app_error(e)),
    };
    tracing::info!(status = key.0.as_u16(), "staff sign-in code refused");
    match st
        .app
        .staff_challenge(&token)
        .await
        .map_err(|e| ctx.app_error(e))?
    {
        Some(step) => {
            let options = passkey_options(&st, &ctx, &step).await?;
            step_page(&ctx, &step, key.0, Some(ctx.t.s(key.1).to_owned()), options)
        }
        None => restart(&st, &ctx, StatusCode::UNAUTHORIZED, "staff.mfa.expired"),
    }
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Page {
    let Some((session, _)) = &ctx.signed_in else {
        let clear = cookies::clear(staff_cookie_name(&st), "Strict", st.cfg.secure_cookies);
        return Ok(([(header::SET_COOKIE, clear)], Redirect::to("/login")).into_response());
    };
    let token = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if token.is_empty() || !secrets_equal(&session.csrf_token, &token) {
        return Err(ctx.fail(
            StatusCode::FORBIDDEN,
            "csrf_token_invalid",
            ctx.t.s("staff.error.csrf"),
        ));
    }
    st.app
        .logout(session, &ctx.ip)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let clear = cookies::clear(staff_cookie_name(&st), "Strict", st.cfg.secure_cookies);
    Ok(([(header::SET_COOKIE, clear)], Redirect::to("/login")).into_response())
}

// ---- payments ----

/// One payment as a row of a table.
struct PaymentRow {
    id: String,
    confirmation_number: String,
    created: String,
    email: String,
    accounts: String,
    amount: String,
    status: &'static str,
}

fn payment_row(t: &Tr, p: &PaymentView) -> PaymentRow {
    let mut accounts: Vec<&str> = p.items.iter().map(|i| i.account_number.as_str()).collect();
    accounts.dedup();
    PaymentRow {
        id: p.id.clone(),
        confirmation_number: p.confirmation_number.clone(),
        created: utc(p.created_at),
        email: p.email.clone(),
        accounts: accounts.join(", "),
        amount: p.amount.to_string(),
        status: status_label(t, p.status),
    }
}

#[derive(Template)]
#[template(path = "staff/search.html")]
struct SearchPage {
    c: Chrome,
    q: String,
    payments: Vec<PaymentRow>,
    payments_caption: String,
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// Who may search and view payments: auditors too (read-only).
const VIEW_PAYMENTS: Role = Role::Auditor;
/// Who may open accounts and the outbox.
const VIEW_ACCOUNTS: Role = Role::Clerk;

async fn search(
    State(st): State<AppState>,
    ctx: StaffCtx,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Page {
    ctx.require(VIEW_PAYMENTS)?;
    let Ok(Query(SearchQuery { q })) = query else {
        return Err(ctx.bad_request());
    };
    let q = q.trim().to_owned();
    if q.len() > MAX_QUERY || q.chars().any(char::is_control) {
        return Err(ctx.bad_request());
    }
    let found = st
        .app
        .search_payments(&q, LIST_LIMIT)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let payments: Vec<PaymentRow> = found.iter().map(|p| payment_row(&ctx.t, p)).collect();
    let payments_caption = if q.is_empty() {
        ctx.t.f(
            "staff.search.caption_recent",
            &[("count", &payments.len().to_string())],
        )
    } else {
        ctx.t.f(
            "staff.search.caption",
            &[("count", &payments.len().to_string()), ("q", &q)],
        )
    };
    page(&SearchPage {
        c: ctx.chrome(),
        q,
        payments,
        payments_caption,
    })
}

struct ItemRow {
    kind: String,
    account_number: String,
    amount: String,
}

struct EventRow {
    at: String,
    kind: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "staff/payment.html")]
struct PaymentPage {
    c: Chrome,
    p: PaymentRow,
    refunded: Option<String>,
    card: Option<String>,
    decided: Option<String>,
    channel: String,
    failure_code: Option<String>,
    failure_message: Option<String>,
    items: Vec<ItemRow>,
    link_accounts: bool,
    events: Vec<EventRow>,
    refunds: Vec<RefundLine>,
    /// The refund form: the member may refund and money is left to refund.
    can_refund: bool,
    /// The field a refund error is about (`account`, `amount`, `reason`), and the error.
    error_field: String,
    error: String,
    notice: String,
}

/// One refund in the payment page's list.
struct RefundLine {
    created: String,
    account_number: String,
    amount: String,
    status: String,
    reason: String,
}

/// Who may ask for a refund (a clerk's request, and any above the city's threshold, waits
/// for a supervisor's or administrator's approval at `/refunds`).
const REFUND: Role = Role::Clerk;

#[derive(Deserialize)]
struct RefundForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
}

/// `POST /payments/{id}/refund` (supervisors and administrators).
async fn refund(
    State(st): State<AppState>,
    ctx: StaffCtx,
    Path(id): Path<String>,
    form: Result<Form<RefundForm>, FormRejection>,
) -> Page {
    let me = ctx.require(REFUND)?;
    if PaymentId::parse(&id).is_none() {
        return Err(ctx.not_found());
    }
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    let csrf_ok = ctx
        .signed_in
        .as_ref()
        .is_some_and(|(s, _)| !f.csrf.is_empty() && secrets_equal(&s.csrf_token, &f.csrf));
    if !csrf_ok {
        return Err(ctx.fail(
            StatusCode::FORBIDDEN,
            "csrf_token_invalid",
            ctx.t.s("staff.error.csrf"),
        ));
    }
    match st
        .app
        .refund_payment(me, &id, &f.account, &f.amount, &f.reason, &ctx.ip)
        .await
    {
        Ok(r) => {
            let notice = ctx.t.f(
                if r.status == "awaiting_approval" {
                    "staff.refund.awaiting"
                } else {
                    "staff.refund.done"
                },
                &[
                    ("amount", &r.amount.to_string()),
                    ("account", &r.account_number),
                ],
            );
            show_payment(&st, &ctx, &id, StatusCode::OK, ("", String::new()), notice).await
        }
        Err(AppError::Invalid { field, message }) => {
            let field = match field.as_str() {
                "account" => "account",
                "reason" => "reason",
                _ => "amount",
            };
            show_payment(
                &st,
                &ctx,
                &id,
                StatusCode::BAD_REQUEST,
                (field, message),
                String::new(),
            )
            .await
        }
        Err(AppError::Processor(_)) => {
            let error = ctx.t.s("staff.refund.processor").to_owned();
            show_payment(
                &st,
                &ctx,
                &id,
                StatusCode::BAD_GATEWAY,
                ("amount", error),
                String::new(),
            )
            .await
        }
        Err(e) => Err(ctx.app_error(e)),
    }
}

async fn payment(State(st): State<AppState>, ctx: StaffCtx, Path(id): Path<String>) -> Page {
    if PaymentId::parse(&id).is_none() {
        ctx.require(VIEW_PAYMENTS)?;
        return Err(ctx.not_found());
    }
    show_payment(
        &st,
        &ctx,
        &id,
        StatusCode::OK,
        ("", String::new()),
        String::new(),
    )
    .await
}

/// The payment page, with a refund error (field, message) or notice.
async fn show_payment(
    st: &AppState,
    ctx: &StaffCtx,
    id: &str,
    status: StatusCode,
    (error_field, error): (&str, String),
    notice: String,
) -> Page {
    let me = ctx.require(VIEW_PAYMENTS)?;
    let link_accounts = allowed(me.role, VIEW_ACCOUNTS);
    let p = st.app.payment(id).await.map_err(|e| ctx.app_error(e))?;
    let refunds = st
        .app
        .refunds(id)
        .await
        .map_err(|e| ctx.app_error(e))?
        .into_iter()
        .map(|r| RefundLine {
            created: utc(r.created_at),
            account_number: r.account_number,
            amount: r.amount.to_string(),
            status: ctx
                .t
                .s(&format!("staff.refund.status.{}", r.status))
                .to_owned(),
            reason: r.reason,
        })
        .collect();
    let can_refund = allowed(me.role, REFUND)
        && matches!(
            p.status,
            domain::PaymentStatus::Succeeded | domain::PaymentStatus::PartiallyRefunded
        )
        && p.refunded.cents() < p.amount.cents();
    let timeline = st
        .app
        .payment_timeline(id)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let card = match (&p.card_brand, &p.card_last4) {
        (Some(b), Some(l)) => Some(ctx.t.f(
            "receipt.card_ending",
            &[("brand", app::email::brand_name(b)), ("last4", l)],
        )),
        _ => None,
    };
    let page_data = PaymentPage {
        c: ctx.chrome(),
        refunded: (p.refunded.cents() != 0).then(|| p.refunded.to_string()),
        card,
        decided: p.decided_at.map(utc),
        channel: p.channel.clone(),
        failure_code: p.failure_code.clone(),
        failure_message: p.failure_message.clone(),
        items: p
            .items
            .iter()
            .map(|i| ItemRow {
                kind: i.item_type.clone(),
                account_number: i.account_number.clone(),
                amount: i.amount.to_string(),
            })
            .collect(),
        link_accounts,
        events: in_lifecycle_order(timeline)
            .into_iter()
            .map(|e| EventRow {
                at: utc_seconds(e.at),
                kind: e.kind,
                detail: e.detail,
            })
            .collect(),
        p: payment_row(&ctx.t, &p),
        refunds,
        can_refund,
        error_field: error_field.to_owned(),
        error,
        notice,
    };
    Ok(render(status, &page_data)?)
}

// ---- accounts ----

struct BillRow {
    issued_on: String,
    period: String,
    due_on: String,
    amount: String,
}

struct LedgerRow {
    posted: String,
    kind: String,
    description: String,
    amount: String,
}

#[derive(Template)]
#[template(path = "staff/account.html")]
struct AccountPage {
    c: Chrome,
    s: app::billing::AccountSummary,
    bills: Vec<BillRow>,
    ledger: Vec<LedgerRow>,
    payments: Vec<PaymentRow>,
    payments_caption: String,
}

fn ledger_kind(t: &Tr, kind: &str) -> String {
    match kind {
        "bill" => t.s("staff.ledger.kind.bill").to_owned(),
        "payment" => t.s("staff.ledger.kind.payment").to_owned(),
        "refund" => t.s("staff.ledger.kind.refund").to_owned(),
        "adjustment" => t.s("staff.ledger.kind.adjustment").to_owned(),
        other => other.to_owned(),
    }
}

async fn account(State(st): State<AppState>, ctx: StaffCtx, Path(account): Path<String>) -> Page {
    ctx.require(VIEW_ACCOUNTS)?;
    let Some(number) = AccountNumber::parse(&account).filter(|n| n.as_str() == account) else {
        return Err(ctx.not_found());
    };
    let n = number.as_str();
    let s = st
        .app
        .account_summary(n)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let bills = st
        .app
        .bills(n, LIST_LIMIT)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let ledger = st
        .app
        .ledger(n, LIST_LIMIT)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let payments = st
        .app
        .payments_for_account(n, LIST_LIMIT)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let data = AccountPage {
        c: ctx.chrome(),
        s,
        bills: bills
            .iter()
            .map(|b| BillRow {
                issued_on: b.issued_on.clone(),
                period: ctx.t.f(
                    "staff.account.period",
                    &[("start", &b.period_start), ("end", &b.period_end)],
                ),
                due_on: b.due_on.clone(),
                amount: b.amount.to_string(),
            })
            .collect(),
        ledger: ledger
            .iter()
            .map(|l| LedgerRow {
                posted: utc(l.posted_at),
                kind: ledger_kind(&ctx.t, &l.kind),
                description: l.description.clone(),
                amount: l.amount.to_string(),
            })
            .collect(),
        payments: payments.iter().map(|p| payment_row(&ctx.t, p)).collect(),
        payments_caption: ctx.t.s("staff.account.payments_caption").to_owned(),
    };
    page(&data)
}

// ---- outbox ----

struct EmailRow {
    id: String,
    created: String,
    to: String,
    subject: String,
    kind: String,
    status: String,
    attempts: i64,
}

fn email_status(t: &Tr, status: &str) -> String {
    match status {
        "pending" => t.s("staff.outbox.status.pending").to_owned(),
        "sent" => t.s("staff.outbox.status.sent").to_owned(),
        "held_in_outbox" => t.s("staff.outbox.status.held_in_outbox").to_owned(),
        "failed" => t.s("staff.outbox.status.failed").to_owned(),
        other => other.to_owned(),
    }
}

fn email_row(t: &Tr, e: &app::store::outbox::EmailRow) -> EmailRow {
    EmailRow {
        id: e.id.clone(),
        created: utc(e.created_at),
        to: e.to_addr.clone(),
        subject: e.subject.clone(),
        kind: e.kind.clone(),
        status: email_status(t, &e.status),
        attempts: e.attempts,
    }
}

#[derive(Template)]
#[template(path = "staff/outbox.html")]
struct OutboxPage {
    c: Chrome,
    rows: Vec<EmailRow>,
}

async fn outbox(State(st): State<AppState>, ctx: StaffCtx) -> Page {
    ctx.require(VIEW_ACCOUNTS)?;
    let emails = st
        .app
        .outbox(LIST_LIMIT)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let rows = emails.iter().map(|e| email_row(&ctx.t, e)).collect();
    page(&OutboxPage {
        c: ctx.chrome(),
        rows,
    })
}

#[derive(Template)]
#[template(path = "staff/outbox_email.html")]
struct OutboxEmailPage {
    c: Chrome,
    e: EmailRow,
    sent: Option<String>,
    last_error: Option<String>,
    body: String,
}

async fn outbox_email(State(st): State<AppState>, ctx: StaffCtx, Path(id): Path<String>) -> Page {
    ctx.require(VIEW_ACCOUNTS)?;
    if EmailId::parse(&id).is_none() {
        return Err(ctx.not_found());
    }
    let e = st
        .app
        .outbox_email(&id)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let data = OutboxEmailPage {
        c: ctx.chrome(),
        e: email_row(&ctx.t, &e),
        sent: e.sent_at.map(utc),
        last_error: e.last_error.clone(),
        body: e.body_text.clone(),
    };
    page(&data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_minutes() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13");
    }

    #[test]
    fn same_second_events_follow_the_lifecycle() {
        let e = |at, kind: &str| TimelineEntry {
            at,
            kind: kind.into(),
            detail: String::new(),
        };
        let sorted = in_lifecycle_order(vec![
            e(5, "posted"),
            e(5, "succeeded"),
            e(4, "checkout_opened"),
            e(5, "created"),
        ]);
        let kinds: Vec<_> = sorted.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["checkout_opened", "created", "succeeded", "posted"]);
    }

    #[test]
    fn secrets_compare() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", ""));
    }

    #[test]
    fn roles_are_ordered_for_least_privilege() {
        assert!(allowed(Role::Auditor, VIEW_PAYMENTS));
        assert!(!allowed(Role::Auditor, VIEW_ACCOUNTS));
        assert!(allowed(Role::Clerk, VIEW_ACCOUNTS));
        assert!(allowed(Role::Administrator, VIEW_ACCOUNTS));
    }
}
