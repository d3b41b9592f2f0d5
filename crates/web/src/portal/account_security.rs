//! A signed-in resident's account security (ASVS 6.2.2, 6.2.3, 7.5.2):
//!
//! - `GET  /account/security`: change-password form and the list of active sessions;
//! - `POST /account/password`: current and new password (other sessions are ended);
//! - two-step sign-in on and off: `account_mfa`;
//! - `POST /account/sessions/end`: with the password again, ends one session (named by
//!   its opaque reference) or, with `session=others`, every session but this one.
//!
//! Every post carries the session's CSRF token.

use super::account::problem;
use super::{render, Chrome, Ctx};
use crate::error::PageError;
use crate::passkeys::{NewPasskeyPage, PasskeyLine, PasskeySection};
use crate::view::utc;
use crate::AppState;
use app::sessions::{Realm, Session, SessionInfo};
use app::AppError;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use domain::password::{MAX_LEN, RESIDENT_MIN_LEN};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/account/security", get(page))
        .route("/account/password", post(change_password))
        .route("/account/sessions/end", post(end_sessions))
        .route("/account/passkeys/new", post(passkey_begin))
        .route("/account/passkeys", post(passkey_finish))
        .route("/account/passkeys/remove", post(passkey_remove))
        .route("/account/recovery-codes", post(renew_recovery_codes))
}

/// One row of the sessions table.
pub struct SessionLine {
    pub reference: String,
    pub created: String,
    pub last_seen: String,
    pub this_device: bool,
}

impl SessionLine {
    pub fn of(s: &SessionInfo) -> SessionLine {
        SessionLine {
            reference: s.reference.clone(),
            created: utc(s.created_at),
            last_seen: utc(s.last_seen_at),
            this_device: s.this_device,
        }
    }
}

#[derive(Template)]
#[template(path = "portal/account_security.html")]
struct SecurityPage {
    c: Chrome,
    min_len: usize,
    max_len: usize,
    /// The password rules, translated.
    hint: String,
    /// Each field's problem (the summary links to them).
    errors: crate::forms::FormErrors,
    /// The field the error is about: `current_password`, `password`, `end_password`,
    /// `mfa_password`, `mfa_code` or `""`.
    error_field: &'static str,
    error: String,
    notice: String,
    sessions: Vec<SessionLine>,
    /// Two-step sign-in is on (`account_mfa`).
    mfa_enabled: bool,
    passkeys: PasskeySection,
}

pub(super) async fn show(
    st: &AppState,
    ctx: &Ctx,
    session: &Session,
    status: StatusCode,
    error_field: &'static str,
    error: String,
    notice: String,
) -> Result<Response, PageError> {
    let none = crate::forms::FormErrors::none();
    show_errors(st, ctx, session, status, error_field, error, none, notice).await
}

/// The security page with a form's problems, all of them, each on its field.
#[allow(clippy::too_many_arguments)]
async fn show_errors(
    st: &AppState,
    ctx: &Ctx,
    session: &Session,
    status: StatusCode,
    error_field: &'static str,
    error: String,
    errors: crate::forms::FormErrors,
    notice: String,
) -> Result<Response, PageError> {
    let sessions = st
        .app
        .sessions_of(Realm::Resident, &session.user_id, Some(session))
        .await?
        .iter()
        .map(SessionLine::of)
        .collect();
    let mfa_enabled = st.app.resident_mfa_enabled(&session.user_id).await?;
    let passkeys = PasskeySection {
        available: st.app.passkeys_available(Realm::Resident),
        lines: st
            .app
            .passkeys(Realm::Resident, &session.user_id)
            .await?
            .iter()
            .map(|p| PasskeyLine::of(&ctx.t, p))
            .collect(),
        base: "/account/passkeys",
    };
    render(
        status,
        &SecurityPage {
            c: ctx.chrome(),
            min_len: RESIDENT_MIN_LEN,
            hint: ctx.t.f(
                "security.password.hint",
                &[("min", &RESIDENT_MIN_LEN.to_string())],
            ),
            max_len: MAX_LEN,
            errors: if error_field.is_empty() {
                errors
            } else {
                crate::forms::FormErrors::of(vec![(error_field.to_owned(), error.clone())])
            },
            error_field,
            error,
            notice,
            sessions,
            mfa_enabled,
            passkeys,
        },
    )
}

async fn page(State(st): State<AppState>, ctx: Ctx) -> Result<Response, PageError> {
    let Ok(session) = ctx.resident() else {
        return Ok(Redirect::to("/login").into_response());
    };
    show(
        &st,
        &ctx,
        session,
        StatusCode::OK,
        "",
        String::new(),
        String::new(),
    )
    .await
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    password: String,
}

async fn change_password(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<PasswordForm>,
) -> Result<Response, PageError> {
    let Ok(session) = ctx.resident() else {
        return Ok(Redirect::to("/login").into_response());
    };
    ctx.check_csrf(&f.csrf)?;
    let result = st
        .app
        .change_resident_password(
            &session.user_id,
            &f.current_password,
            &f.password,
            session,
            &ctx.ip,
        )
        .await;
    match result {
        Ok(()) => {
            let notice = ctx.t.s("security.password.changed").to_owned();
            show(
                &st,
                &ctx,
                session,
                StatusCode::OK,
                "",
                String::new(),
                notice,
            )
            .await
        }
        Err(e) => {
            // Every problem of the form at once (the current password and the new one),
            // in the reader's language by their codes.
            let status = crate::error::status_of(&e);
            let Some(errors) = crate::forms::FormErrors::from_app(
                &ctx.t,
                &e,
                "password",
                &["current_password", "password"],
            ) else {
                return Err(e.into());
            };
            show_errors(
                &st,
                &ctx,
                session,
                status,
                "",
                String::new(),
                errors,
                String::new(),
            )
            .await
        }
    }
}

#[derive(Deserialize)]
struct EndForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
    /// A session's reference, or `others`.
    #[serde(default)]
    session: String,
}

async fn end_sessions(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<EndForm>,
) -> Result<Response, PageError> {
    let Ok(session) = ctx.resident() else {
        return Ok(Redirect::to("/login").into_response());
    };
    ctx.check_csrf(&f.csrf)?;
    if let Err(e) = st
        .app
        .reauthenticate(
            Realm::Resident,
            &session.user_id,
            &f.current_password,
            &ctx.ip,
        )
        .await
    {
        let (status, error) = match e {
            AppError::Invalid { .. } => (
                StatusCode::BAD_REQUEST,
                ctx.t.s("security.error.current_password").to_owned(),
            ),
            other => {
                let p = problem(&ctx, other)?;
                (p.status, p.message)
            }
        };
        return show(
            &st,
            &ctx,
            session,
            status,
            "end_password",
            error,
            String::new(),
        )
        .await;
    }
    if f.session == "others" {
        st.app
            .end_all_sessions(Realm::Resident, &session.user_id, Some(session), &ctx.ip)
            .await?;
        return Ok(Redirect::to("/account/security").into_response());
    }
    let own = f.session == session.reference();
    st.app
        .end_session_by_id(Realm::Resident, &session.user_id, &f.session, &ctx.ip)
        .await?;
    if own {
        // Ending this device's session signs this browser out.
        return Ok(Redirect::to("/login").into_response());
    }
    Ok(Redirect::to("/account/security").into_response())
}

#[derive(Deserialize)]
struct PasskeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    credential: String,
    #[serde(default)]
    passkey: String,
    #[serde(default)]
    current_password: String,
}

/// The security page with a passkey or recovery-code form's answer.
async fn answer(
    st: &AppState,
    ctx: &Ctx,
    session: &Session,
    a: crate::passkeys::Answer,
) -> Result<Response, PageError> {
    show(st, ctx, session, a.status, a.field, a.error, a.notice).await
}

/// `POST /account/passkeys/new` (a name, the password): the page that asks the browser
/// for a passkey.
async fn passkey_begin(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<PasskeyForm>,
) -> Result<Response, PageError> {
    let Ok(session) = ctx.resident() else {
        return Ok(Redirect::to("/login").into_response());
    };
    ctx.check_csrf(&f.csrf)?;
    let email = st.app.resident(&session.user_id).await?.email;
    let result = st
        .app
        .begin_passkey_registration(
            Realm::Resident,
            &session.user_id,
            &email,
            &f.name,
            &f.current_password,
            &ctx.ip,
        )
        .await;
    match result {
        Ok(ceremony) => render(
            StatusCode::OK,
            &NewPasskeyPage::of(
                ctx.chrome(),
                "/account/passkeys",
                "/account/security",
                ceremony,
            ),
        ),
        Err(e) => {
            let a = crate::passkeys::begin_refused(&ctx.t, e)?;
            answer(&st, &ctx, session, a).await
        }
    }
}

/// `POST /account/passkeys` (the ceremony token and the browser's answer). A resident's
/// first second factor comes with recovery codes, shown once.
async fn passkey_finish(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<PasskeyForm>,
) -> Result<Response, PageError> {
    let Ok(session) = ctx.resident() else {
        return Ok(Redirect::to("/login").into_response());
    };
    ctx.check_csrf(&f.csrf)?;
    let result = st
        .app
        .finish_passkey_registration(
            Realm::Resident,
            &session.user_id,
            &f.token,
            crate::passkeys::bounded(&f.credential),
            &ctx.ip,
        )
        .await;
    match crate::passkeys::finished(&ctx.t, result)? {
        Ok(a) => answer(&st, &ctx, session, a).await,
        Err(codes) => super::account_mfa::recovery_codes_page(&ctx, codes),
    }
}

/// `POST /account/passkeys/remove` (which one, and the password again).
async fn passkey_remove(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<PasskeyForm>,
) -> Result<Response, PageError> {
    let Ok(session) = ctx.resident() else {
        return Ok(Redirect::to("/login").into_response());
    };
    ctx.check_csrf(&f.csrf)?;
    let result = st
        .app
        .remove_passkey(
            Realm::Resident,
            &session.user_id,
            &f.passkey,
            &f.current_password,
            &ctx.ip,
        )
        .await;
    let a = crate::passkeys::removed(&ctx.t, result)?;
    answer(&st, &ctx, session, a).await
}

/// `POST /account/recovery-codes` (the password again): ten new recovery codes, for a
/// resident with two-step sign-in.
async fn renew_recovery_codes(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<PasskeyForm>,
) -> Result<Response, PageError> {
    let Ok(session) = ctx.resident() else {
        return Ok(Redirect::to("/login").into_response());
    };
    ctx.check_csrf(&f.csrf)?;
    let result = st
        .app
        .renew_recovery_codes(
            Realm::Resident,
            &session.user_id,
            &f.current_password,
            &ctx.ip,
        )
        .await;
    match result {
        Ok(codes) => super::account_mfa::recovery_codes_page(&ctx, codes),
        Err(e) => {
            let a = crate::passkeys::renew_refused(&ctx.t, e)?;
            answer(&st, &ctx, session, a).await
        }
    }
}
