//! A signed-in staff member's own account security (ASVS 6.2.2, 6.2.3, 7.5.2), and the
//! administrators' page to end someone else's sessions (ASVS 7.4.5):
//!
//! - `GET  /profile`: change-password form and the member's active sessions (any role);
//! - `POST /profile/password`; `POST /profile/sessions/end` (with the password again: one
//!   session by reference, or `session=others`);
//! - `GET  /admin/sessions`: two forms (a staff user name, a resident email), and
//!   `POST /admin/sessions/staff`, `/admin/sessions/resident`: end every session of that
//!   user, or (`action=disable`) disable the account, which ends them in the same
//!   transaction, or (`action=enable`) enable it again (administrators only; audited
//!   `sessions.revoked`, `account.disabled`, `account.enabled`; nobody disables their
//!   own account); on the staff form, `action=reset` resets the member's second factors
//!   and shows a one-time enrollment code (`App::reset_staff_second_factors`);
//! - `POST /profile/passkeys/new`, `/profile/passkeys`, `/profile/passkeys/remove`: the
//!   member's passkeys (`crate::passkeys`).
//!
//! Every post carries the session's CSRF token.

use crate::passkeys::{NewPasskeyPage, PasskeyLine, PasskeySection};
use crate::portal::account_security::SessionLine;
use crate::portal::{render, Chrome};
use crate::staff::{Refusal, StaffCtx};
use crate::AppState;
use app::account_security::{AccountAction, WRONG_CURRENT};
use app::sessions::{Realm, Session};
use app::staff::{Role, StaffUser};
use app::AppError;
use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use domain::password::{MAX_LEN, STAFF_MIN_LEN};
use serde::Deserialize;

/// Who may end other users' sessions.
const REVOKE: Role = Role::Administrator;
/// Longest user name or email accepted on the admin forms.
const MAX_FIELD: usize = 254;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/profile", get(profile))
        .route("/profile/password", post(change_password))
        .route("/profile/sessions/end", post(end_sessions))
        .route("/profile/passkeys/new", post(passkey_begin))
        .route("/profile/passkeys", post(passkey_finish))
        .route("/profile/passkeys/remove", post(passkey_remove))
        .route("/profile/recovery-codes", post(renew_recovery_codes))
        .route("/admin/sessions", get(admin_page))
        .route("/admin/sessions/staff", post(revoke_staff))
        .route("/admin/sessions/resident", post(revoke_resident))
}

type Page = Result<Response, Refusal>;

#[derive(Deserialize)]
struct AnyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    session: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    credential: String,
    #[serde(default)]
    passkey: String,
    /// On the admin forms: `end` (or absent), `disable`, `enable`, `reset` or `role`.
    #[serde(default)]
    action: String,
    /// With `action=role`: the new role.
    #[serde(default)]
    role: String,
}

/// The administrator's choice on the admin forms; anything else is a bad request.
fn account_action(ctx: &StaffCtx, action: &str) -> Result<AccountAction, Refusal> {
    match action {
        "" | "end" => Ok(AccountAction::EndSessions),
        "disable" => Ok(AccountAction::Disable),
        "enable" => Ok(AccountAction::Enable),
        _ => Err(ctx.bad_request()),
    }
}

/// The signed-in member with at least `need`, after checking the form's CSRF token.
fn member<'a>(
    ctx: &'a StaffCtx,
    need: Role,
    form: &Result<Form<AnyForm>, FormRejection>,
) -> Result<(&'a Session, &'a StaffUser), Refusal> {
    ctx.require(need)?;
    let Some((session, user)) = &ctx.signed_in else {
        return Err(Refusal::from(Redirect::to("/login").into_response()));
    };
    let token = form.as_ref().map(|Form(f)| f.csrf.as_str()).unwrap_or("");
    if token.is_empty() || !domain::secret::constant_time_eq(&session.csrf_token, token) {
        return Err(ctx.fail(
            StatusCode::FORBIDDEN,
            "csrf_token_invalid",
            ctx.t.s("staff.error.csrf"),
        ));
    }
    Ok((session, user))
}

#[derive(Template)]
#[template(path = "staff/profile.html")]
struct ProfilePage {
    c: Chrome,
    username: String,
    min_len: usize,
    max_len: usize,
    /// The password rules, translated.
    hint: String,
    error_field: &'static str,
    error: String,
    notice: String,
    sessions: Vec<SessionLine>,
    passkeys: PasskeySection,
}

async fn show_profile(
    st: &AppState,
    ctx: &StaffCtx,
    status: StatusCode,
    error_field: &'static str,
    error: String,
    notice: String,
) -> Page {
    let user = ctx.require(Role::Auditor)?;
    let session = ctx.signed_in.as_ref().map(|(s, _)| s);
    let sessions = st
        .app
        .sessions_of(Realm::Staff, &user.id, session)
        .await
        .map_err(|e| ctx.app_error(e))?
        .iter()
        .map(SessionLine::of)
        .collect();
    let passkeys = PasskeySection {
        available: st.app.passkeys_available(Realm::Staff),
        lines: st
            .app
            .passkeys(Realm::Staff, &user.id)
            .await
            .map_err(|e| ctx.app_error(e))?
            .iter()
            .map(|p| PasskeyLine::of(&ctx.t, p))
            .collect(),
        base: "/profile/passkeys",
    };
    Ok(render(
        status,
        &ProfilePage {
            c: ctx.chrome(),
            username: user.username.clone(),
            min_len: STAFF_MIN_LEN,
            hint: ctx.t.f(
                "staff.profile.password_hint",
                &[("min", &STAFF_MIN_LEN.to_string())],
            ),
            max_len: MAX_LEN,
            error_field,
            error,
            notice,
            sessions,
            passkeys,
        },
    )?)
}

async fn profile(State(st): State<AppState>, ctx: StaffCtx) -> Page {
    show_profile(&st, &ctx, StatusCode::OK, "", String::new(), String::new()).await
}

async fn change_password(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<AnyForm>, FormRejection>,
) -> Page {
    let (session, user) = member(&ctx, Role::Auditor, &form)?;
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    let result = st
        .app
        .change_staff_password(&user.id, &f.current_password, &f.password, session, &ctx.ip)
        .await;
    match result {
        Ok(()) => {
            let notice = ctx.t.s("security.password.changed").to_owned();
            show_profile(&st, &ctx, StatusCode::OK, "", String::new(), notice).await
        }
        Err(AppError::Invalid { field, message }) => {
            let (field, error) = if field == "current_password" && message == WRONG_CURRENT {
                (
                    "current_password",
                    ctx.t.s("security.error.current_password").to_owned(),
                )
            } else {
                (
                    "password",
                    format!("{}: {message}", ctx.t.s("account.field.new_password")),
                )
            };
            show_profile(
                &st,
                &ctx,
                StatusCode::BAD_REQUEST,
                field,
                error,
                String::new(),
            )
            .await
        }
        Err(e) => Err(ctx.app_error(e)),
    }
}

async fn end_sessions(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<AnyForm>, FormRejection>,
) -> Page {
    let (session, user) = member(&ctx, Role::Auditor, &form)?;
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    match st
        .app
        .reauthenticate(Realm::Staff, &user.id, &f.current_password, &ctx.ip)
        .await
    {
        Ok(()) => {}
        Err(AppError::Invalid { .. }) => {
            let error = ctx.t.s("security.error.current_password").to_owned();
            return show_profile(
                &st,
                &ctx,
                StatusCode::BAD_REQUEST,
                "end_password",
                error,
                String::new(),
            )
            .await;
        }
        Err(e) => return Err(ctx.app_error(e)),
    }
    if f.session == "others" {
        st.app
            .end_all_sessions(Realm::Staff, &user.id, Some(session), &ctx.ip)
            .await
            .map_err(|e| ctx.app_error(e))?;
        return Ok(Redirect::to("/profile").into_response());
    }
    let own = f.session == session.reference();
    st.app
        .end_session_by_id(Realm::Staff, &user.id, &f.session, &ctx.ip)
        .await
        .map_err(|e| ctx.app_error(e))?;
    Ok(Redirect::to(if own { "/login" } else { "/profile" }).into_response())
}

/// The profile page with a passkey or recovery-code form's answer.
async fn answer(st: &AppState, ctx: &StaffCtx, a: crate::passkeys::Answer) -> Page {
    show_profile(st, ctx, a.status, a.field, a.error, a.notice).await
}

/// `POST /profile/recovery-codes` (the password again): ten new recovery codes.
async fn renew_recovery_codes(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<AnyForm>, FormRejection>,
) -> Page {
    let (_, user) = member(&ctx, Role::Auditor, &form)?;
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    let result = st
        .app
        .renew_recovery_codes(Realm::Staff, &user.id, &f.current_password, &ctx.ip)
        .await;
    match result {
        Ok(codes) => {
            let mut c = ctx.chrome();
            c.signed_in = true;
            Ok(render(
                StatusCode::OK,
                &crate::staff::RecoveryCodesPage {
                    c,
                    codes,
                    renewed: true,
                },
            )?)
        }
        Err(e) => {
            let a = crate::passkeys::renew_refused(&ctx.t, e).map_err(|e| ctx.app_error(e))?;
            answer(&st, &ctx, a).await
        }
    }
}

/// `POST /profile/passkeys/new` (a name, the password): the page that asks the browser
/// for a passkey.
async fn passkey_begin(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<AnyForm>, FormRejection>,
) -> Page {
    let (_, user) = member(&ctx, Role::Auditor, &form)?;
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    let result = st
        .app
        .begin_passkey_registration(
            Realm::Staff,
            &user.id,
            &user.username,
            &f.name,
            &f.current_password,
            &ctx.ip,
        )
        .await;
    match result {
        Ok(ceremony) => Ok(render(
            StatusCode::OK,
            &NewPasskeyPage::of(ctx.chrome(), "/profile/passkeys", "/profile", ceremony),
        )?),
        Err(e) => {
            let a = crate::passkeys::begin_refused(&ctx.t, e).map_err(|e| ctx.app_error(e))?;
            answer(&st, &ctx, a).await
        }
    }
}

/// `POST /profile/passkeys` (the ceremony token and the browser's answer).
async fn passkey_finish(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<AnyForm>, FormRejection>,
) -> Page {
    let (_, user) = member(&ctx, Role::Auditor, &form)?;
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    let result = st
        .app
        .finish_passkey_registration(
            Realm::Staff,
            &user.id,
            &f.token,
            crate::passkeys::bounded(&f.credential),
            &ctx.ip,
        )
        .await;
    // Staff have TOTP and recovery codes before any passkey: none are issued here.
    let a = crate::passkeys::finished(&ctx.t, result)
        .map_err(|e| ctx.app_error(e))?
        .unwrap_or_else(|_| crate::passkeys::Answer::notice(&ctx.t, "passkey.added"));
    answer(&st, &ctx, a).await
}

/// `POST /profile/passkeys/remove` (which one, and the password again).
async fn passkey_remove(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<AnyForm>, FormRejection>,
) -> Page {
    let (_, user) = member(&ctx, Role::Auditor, &form)?;
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    let result = st
        .app
        .remove_passkey(
            Realm::Staff,
            &user.id,
            &f.passkey,
            &f.current_password,
            &ctx.ip,
        )
        .await;
    let a = crate::passkeys::removed(&ctx.t, result).map_err(|e| ctx.app_error(e))?;
    answer(&st, &ctx, a).await
}

/// The admin page again with why an action on someone's account was refused.
fn admin_refusal(ctx: &StaffCtx, e: AppError) -> Page {
    match e {
        AppError::Forbidden => {
            let error = ctx.t.s("staff.sessions.own_account").to_owned();
            show_admin(ctx, StatusCode::FORBIDDEN, String::new(), error)
        }
        AppError::NotFound(_) => {
            let error = ctx.t.s("staff.sessions.no_such_user").to_owned();
            show_admin(ctx, StatusCode::NOT_FOUND, String::new(), error)
        }
        e => Err(ctx.app_error(e)),
    }
}

#[derive(Template)]
#[template(path = "staff/admin_sessions.html")]
struct AdminPage {
    c: Chrome,
    notice: String,
    error: String,
}

fn show_admin(ctx: &StaffCtx, status: StatusCode, notice: String, error: String) -> Page {
    ctx.require(REVOKE)?;
    Ok(render(
        status,
        &AdminPage {
            c: ctx.chrome(),
            notice,
            error,
        },
    )?)
}

async fn admin_page(ctx: StaffCtx) -> Page {
    show_admin(&ctx, StatusCode::OK, String::new(), String::new())
}

async fn revoke_staff(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<AnyForm>, FormRejection>,
) -> Page {
    let (_, admin) = member(&ctx, REVOKE, &form)?;
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    if f.username.trim().is_empty() || f.username.len() > MAX_FIELD {
        return Err(ctx.bad_request());
    }
    if f.action == "role" {
        let Some(role) = Role::parse(&f.role) else {
            return Err(ctx.bad_request());
        };
        return match st
            .app
            .change_staff_role(admin, &f.username, role, &ctx.ip)
            .await
        {
            Ok(r) => {
                let notice = ctx.t.f(
                    "staff.sessions.role_changed",
                    &[("n", &r.ended.to_string())],
                );
                show_admin(&ctx, StatusCode::OK, notice, String::new())
            }
            Err(e) => admin_refusal(&ctx, e),
        };
    }
    if f.action == "reset" {
        return match st
            .app
            .reset_staff_second_factors(Some(admin), &f.username, &ctx.ip)
            .await
        {
            Ok(e) => {
                let notice = ctx.t.f(
                    "staff.sessions.reset_done",
                    &[("user", f.username.trim()), ("code", &e.code)],
                );
                show_admin(&ctx, StatusCode::OK, notice, String::new())
            }
            Err(e) => admin_refusal(&ctx, e),
        };
    }
    let action = account_action(&ctx, &f.action)?;
    let result = st
        .app
        .staff_account_action(admin, &f.username, action, &ctx.ip)
        .await;
    revoked(&ctx, action, result)
}

async fn revoke_resident(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<AnyForm>, FormRejection>,
) -> Page {
    let (_, admin) = member(&ctx, REVOKE, &form)?;
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    if f.email.trim().is_empty() || f.email.len() > MAX_FIELD {
        return Err(ctx.bad_request());
    }
    let action = account_action(&ctx, &f.action)?;
    let result = st
        .app
        .resident_account_action(admin, &f.email, action, &ctx.ip)
        .await;
    revoked(&ctx, action, result)
}

fn revoked(
    ctx: &StaffCtx,
    action: AccountAction,
    result: Result<app::account_security::Revoked, AppError>,
) -> Page {
    match result {
        Ok(r) => {
            let key = match action {
                AccountAction::EndSessions => "staff.sessions.revoked",
                AccountAction::Disable => "staff.sessions.disabled",
                AccountAction::Enable => "staff.sessions.enabled",
            };
            let notice = ctx.t.f(key, &[("n", &r.ended.to_string())]);
            show_admin(ctx, StatusCode::OK, notice, String::new())
        }
        Err(e) => admin_refusal(ctx, e),
    }
}
