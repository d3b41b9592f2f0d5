//! Resident two-step sign-in (opt-in; `app::resident_mfa`):
//!
//! - `GET/POST /login/mfa`: the code (or a recovery code) owed after a right password,
//!   for the challenge in the `sr_resident_mfa` cookie (Path=/login, HttpOnly, Lax);
//! - `POST /account/mfa/start`, `/account/mfa/confirm`: turn it on from
//!   `/account/security` (a fresh secret, confirmed by a first code; the recovery codes
//!   are shown once);
//! - `POST /account/mfa/disable`: turn it off with the password and a current code.
//!
//! Every post carries the form's CSRF token.

use super::account::{problem, LoginPage};
use super::account_security::show;
use super::{render, resident_cookie_name, Chrome, Ctx};
use crate::error::PageError;
use crate::view::grouped;
use crate::{cookies, AppState};
use app::account_security::WRONG_CURRENT;
use app::mfa::CHALLENGE_SECS;
use app::AppError;
use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

pub const MFA_COOKIE: &str = "sr_resident_mfa";
/// With TLS: the `__Secure-` prefix (`__Host-` needs `Path=/`; this cookie is only for
/// `/login`).
pub const MFA_COOKIE_SECURE: &str = "__Secure-sr_resident_mfa";

fn mfa_cookie_name(st: &AppState) -> &'static str {
    cookies::pick(st.cfg.secure_cookies, MFA_COOKIE_SECURE, MFA_COOKIE)
}
/// Longest code field accepted (a 6-digit code or a recovery code, with spaces).
const MAX_CODE: usize = 64;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login/mfa", get(code_form).post(verify))
        .route("/account/mfa/start", post(start))
        .route("/account/mfa/confirm", post(confirm))
        .route("/account/mfa/disable", post(disable))
}

/// The challenge cookie (`max_age` 0 clears it).
pub(super) fn mfa_cookie(st: &AppState, value: &str, max_age: i64) -> String {
    let mut c = format!(
        "{}={value}; Path=/login; HttpOnly; SameSite=Lax; Max-Age={max_age}",
        mfa_cookie_name(st)
    );
    if st.cfg.secure_cookies {
        c.push_str("; Secure");
    }
    c
}

/// The cookie for a new challenge.
pub(super) fn challenge_cookie(st: &AppState, token: &str) -> String {
    mfa_cookie(st, token, CHALLENGE_SECS)
}

fn bounded(code: &str) -> &str {
    // An over-long entry is a wrong code (and counted as one), not a different error.
    if code.len() > MAX_CODE {
        ""
    } else {
        code
    }
}

#[derive(Template)]
#[template(path = "portal/account_login_mfa.html")]
struct CodePage {
    c: Chrome,
    error: String,
    /// The sign-in ceremony's options when the resident has passkeys.
    passkey_options: Option<String>,
    passkey_sri: &'static str,
}

/// The code page of the challenge `token`, with the passkey button when the resident has
/// passkeys.
async fn code_page(
    st: &AppState,
    ctx: &Ctx,
    token: &str,
    status: StatusCode,
    error: String,
) -> Result<Response, PageError> {
    let passkey_options = st
        .app
        .passkey_login_options(app::sessions::Realm::Resident, token)
        .await?;
    render(
        status,
        &CodePage {
            c: ctx.chrome(),
            error,
            passkey_options,
            passkey_sri: crate::assets::passkey_js_integrity(),
        },
    )
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
    /// A passkey's answer (JSON), instead of a code.
    #[serde(default)]
    credential: String,
}

/// Back to the password form with a message, the challenge cookie cleared.
fn restart(st: &AppState, ctx: &Ctx, status: StatusCode, key: &str) -> Result<Response, PageError> {
    let page = render(
        status,
        &LoginPage {
            c: ctx.chrome(),
            email: String::new(),
            error: ctx.t.s(key).to_owned(),
        },
    )?;
    Ok(([(header::SET_COOKIE, mfa_cookie(st, "", 0))], page).into_response())
}

async fn code_form(
    State(st): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    if ctx.session.is_some() {
        return Ok(Redirect::to("/dashboard").into_response());
    }
    let token = cookies::get(&headers, mfa_cookie_name(&st)).unwrap_or_default();
    if !st.app.resident_challenge_live(&token).await? {
        return Ok((
            [(header::SET_COOKIE, mfa_cookie(&st, "", 0))],
            Redirect::to("/login"),
        )
            .into_response());
    }
    code_page(&st, &ctx, &token, StatusCode::OK, String::new()).await
}

async fn verify(
    State(st): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(f): Form<CodeForm>,
) -> Result<Response, PageError> {
    let Some(token) = cookies::get(&headers, mfa_cookie_name(&st)) else {
        return Ok(Redirect::to("/login").into_response());
    };
    let with_passkey = !f.credential.is_empty();
    let result = if with_passkey {
        st.app
            .resident_login_passkey(&token, crate::passkeys::bounded(&f.credential), &ctx.ip)
            .await
    } else {
        st.app
            .resident_login_verify(&token, bounded(&f.code), &ctx.ip)
            .await
    };
    match result {
        Ok(done) => {
            // A new session replaces any old one (no session fixation).
            if let Some(old) = &ctx.session {
                st.app.end_session(old).await?;
            }
            let set = AppendHeaders([
                (
                    header::SET_COOKIE,
                    cookies::set(
                        resident_cookie_name(&st),
                        &done.session.token,
                        "Lax",
                        st.cfg.secure_cookies,
                        None,
                    ),
                ),
                (header::SET_COOKIE, mfa_cookie(&st, "", 0)),
            ]);
            Ok((set, Redirect::to("/dashboard")).into_response())
        }
        Err(AppError::BadToken) => {
            restart(&st, &ctx, StatusCode::UNAUTHORIZED, "account.mfa.expired")
        }
        Err(AppError::BadCredentials) => {
            let key = if with_passkey {
                "passkey.not_verified"
            } else {
                "account.mfa.bad_code"
            };
            let error = ctx.t.s(key).to_owned();
            code_page(&st, &ctx, &token, StatusCode::UNAUTHORIZED, error).await
        }
        Err(e) => {
            let p = problem(&ctx, e)?;
            code_page(&st, &ctx, &token, p.status, p.message).await
        }
    }
}

#[derive(Template)]
#[template(path = "portal/account_mfa_setup.html")]
struct SetupPage {
    c: Chrome,
    secret_grouped: String,
    otpauth_uri: String,
    error: String,
}

#[derive(Template)]
#[template(path = "portal/account_mfa_recovery.html")]
struct RecoveryPage {
    c: Chrome,
    codes: Vec<String>,
}

/// The recovery codes, shown this once.
pub(super) fn recovery_codes_page(ctx: &Ctx, codes: Vec<String>) -> Result<Response, PageError> {
    render(
        StatusCode::OK,
        &RecoveryPage {
            c: ctx.chrome(),
            codes,
        },
    )
}

#[derive(Deserialize)]
struct StartForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
}

async fn start(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<StartForm>,
) -> Result<Response, PageError> {
    let Ok(session) = ctx.resident() else {
        return Ok(Redirect::to("/login").into_response());
    };
    ctx.check_csrf(&f.csrf)?;
    let e = match st
        .app
        .begin_resident_totp(&session.user_id, &f.current_password, &ctx.ip)
        .await
    {
        Ok(e) => e,
        Err(AppError::Forbidden) => return Ok(Redirect::to("/account/security").into_response()),
        Err(AppError::Invalid { .. }) => {
            let error = ctx.t.s("security.error.current_password").to_owned();
            return show(
                &st,
                &ctx,
                session,
                StatusCode::BAD_REQUEST,
                "mfa_start_password",
                error,
                String::new(),
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    };
    render(
        StatusCode::OK,
        &SetupPage {
            c: ctx.chrome(),
            secret_grouped: grouped(&e.secret_base32),
            otpauth_uri: e.otpauth_uri,
            error: String::new(),
        },
    )
}

#[derive(Deserialize)]
struct ConfirmForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

async fn confirm(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<ConfirmForm>,
) -> Result<Response, PageError> {
    let Ok(session) = ctx.resident() else {
        return Ok(Redirect::to("/login").into_response());
    };
    ctx.check_csrf(&f.csrf)?;
    let (status, error) = match st
        .app
        .confirm_resident_totp(&session.user_id, bounded(&f.code), &ctx.ip)
        .await
    {
        Ok(codes) => return recovery_codes_page(&ctx, codes),
        Err(AppError::BadToken) => return Ok(Redirect::to("/account/security").into_response()),
        Err(AppError::Invalid { .. }) => (
            StatusCode::BAD_REQUEST,
            ctx.t.s("security.mfa.bad_code").to_owned(),
        ),
        Err(e) => {
            let p = problem(&ctx, e)?;
            (p.status, p.message)
        }
    };
    let Some(e) = st.app.pending_resident_totp(&session.user_id).await? else {
        return Ok(Redirect::to("/account/security").into_response());
    };
    render(
        status,
        &SetupPage {
            c: ctx.chrome(),
            secret_grouped: grouped(&e.secret_base32),
            otpauth_uri: e.otpauth_uri,
            error,
        },
    )
}

#[derive(Deserialize)]
struct DisableForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    code: String,
}

async fn disable(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<DisableForm>,
) -> Result<Response, PageError> {
    let Ok(session) = ctx.resident() else {
        return Ok(Redirect::to("/login").into_response());
    };
    ctx.check_csrf(&f.csrf)?;
    let result = st
        .app
        .disable_resident_totp(
            &session.user_id,
            &f.current_password,
            bounded(&f.code),
            &ctx.ip,
        )
        .await;
    let (status, field, error, notice) = match result {
        Ok(()) => (
            StatusCode::OK,
            "",
            String::new(),
            ctx.t.s("security.mfa.disabled").to_owned(),
        ),
        Err(AppError::Invalid { field, message })
            if field == "current_password" && message == WRONG_CURRENT =>
        {
            (
                StatusCode::BAD_REQUEST,
                "mfa_password",
                ctx.t.s("security.error.current_password").to_owned(),
                String::new(),
            )
        }
        Err(AppError::Invalid { .. }) => (
            StatusCode::BAD_REQUEST,
            "mfa_code",
            ctx.t.s("security.mfa.bad_code").to_owned(),
            String::new(),
        ),
        Err(AppError::BadToken) => return Ok(Redirect::to("/account/security").into_response()),
        Err(e) => {
            let p = problem(&ctx, e)?;
            (p.status, "", p.message, String::new())
        }
    };
    show(&st, &ctx, session, status, field, error, notice).await
}
