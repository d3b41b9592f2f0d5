//! Staff page: the city systems' API keys (administrators). Make a key with its scopes
//! (shown once), see when each was last used, revoke one.

use crate::forms::FormErrors;
use crate::portal::{render, Chrome};
use crate::staff::{Refusal, StaffCtx};
use crate::view::utc;
use crate::AppState;
use app::api_keys::{ApiKeyView, SCOPES};
use app::staff::Role;
use app::AppError;
use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};

const FIELDS: &[&str] = &["name", "scopes"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/api-keys", get(page).post(create))
        .route("/admin/api-keys/revoke", post(revoke))
}

struct Row {
    k: ApiKeyView,
    created: String,
    last_used: String,
}

#[derive(Template)]
#[template(path = "staff/api_keys.html")]
struct KeysPage {
    c: Chrome,
    rows: Vec<Row>,
    scopes: Vec<&'static str>,
    chosen: Vec<String>,
    name: String,
    errors: FormErrors,
    /// A key just made: its full text, shown this once.
    new_key: String,
}

async fn show(
    st: &AppState,
    ctx: &StaffCtx,
    status: StatusCode,
    errors: FormErrors,
    form: (String, Vec<String>),
    new_key: String,
) -> Result<Response, Refusal> {
    ctx.require(Role::Administrator)?;
    let rows = st
        .app
        .api_keys()
        .await
        .map_err(|e| ctx.app_error(e))?
        .into_iter()
        .map(|k| Row {
            created: utc(k.created_at),
            last_used: k.last_used_at.map(utc).unwrap_or_default(),
            k,
        })
        .collect();
    let mut res = render(
        status,
        &KeysPage {
            c: ctx.chrome(),
            rows,
            scopes: SCOPES.to_vec(),
            name: form.0,
            chosen: form.1,
            errors,
            new_key,
        },
    )?;
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

async fn page(State(st): State<AppState>, ctx: StaffCtx) -> Result<Response, Refusal> {
    show(
        &st,
        &ctx,
        StatusCode::OK,
        FormErrors::none(),
        (String::new(), vec![]),
        String::new(),
    )
    .await
}

async fn create(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Administrator)?;
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    let value = |k: &str| {
        f.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    ctx.require_form_token(&value("csrf"))?;
    let name = value("name");
    let scopes: Vec<String> = f
        .iter()
        .filter(|(n, _)| n == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    match st.app.create_api_key(me, &name, &scopes, &ctx.ip).await {
        Ok((_, key)) => {
            show(
                &st,
                &ctx,
                StatusCode::OK,
                FormErrors::none(),
                (String::new(), vec![]),
                key,
            )
            .await
        }
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "name", FIELDS) {
            Some(errors) if !matches!(e, AppError::Forbidden) => {
                show(
                    &st,
                    &ctx,
                    StatusCode::BAD_REQUEST,
                    errors,
                    (name, scopes),
                    String::new(),
                )
                .await
            }
            _ => Err(ctx.app_error(e)),
        },
    }
}

async fn revoke(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Administrator)?;
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    let value = |k: &str| {
        f.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    ctx.require_form_token(&value("csrf"))?;
    st.app
        .revoke_api_key(me, &value("id"), &ctx.ip)
        .await
        .map_err(|e| ctx.app_error(e))?;
    Ok(Redirect::to("/admin/api-keys").into_response())
}
