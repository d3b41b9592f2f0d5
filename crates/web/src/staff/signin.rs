//! Staff sign-in: password, then a TOTP code or a passkey (enrolment on first sign-in); logout.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/login/mfa", get(mfa_page).post(mfa_verify))
        .route("/logout", post(logout))
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
