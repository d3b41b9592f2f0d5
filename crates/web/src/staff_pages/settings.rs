//! Staff pages: settings (`/settings`: the business day's cut-off, the refund approval
//! threshold, the city's webhook endpoints; administrators change them, supervisors read
//! them) and the delivery log of the city's webhooks (`/webhooks`, with a resend).

use crate::forms::FormErrors;
use crate::portal::{render, Chrome};
use crate::staff::{Refusal, StaffCtx};
use crate::view::utc;
use crate::AppState;
use app::city_webhooks::{EndpointView, EVENTS};
use app::staff::Role;
use app::AppError;
use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/settings", get(page).post(save))
        .route("/settings/webhooks", post(add_endpoint))
        .route("/settings/webhooks/remove", post(remove_endpoint))
        .route("/webhooks", get(log))
        .route("/webhooks/resend", post(resend))
}

#[derive(Template)]
#[template(path = "staff/settings.html")]
struct SettingsPage {
    c: Chrome,
    admin: bool,
    cutoff: String,
    threshold: String,
    endpoints: Vec<EndpointView>,
    events: Vec<&'static str>,
    errors: FormErrors,
    notice: String,
    /// A just-added endpoint's signing secret, shown once.
    new_secret: String,
    url: String,
}

struct Shown {
    cutoff: Option<String>,
    threshold: Option<String>,
    url: String,
    notice: String,
    new_secret: String,
}

async fn show(
    st: &AppState,
    ctx: &StaffCtx,
    status: StatusCode,
    errors: FormErrors,
    s: Shown,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Supervisor)?;
    let live = st.app.live_settings();
    let endpoints = st
        .app
        .webhook_endpoints()
        .await
        .map_err(|e| ctx.app_error(e))?;
    let threshold =
        domain::Money::from_cents(live.refund_threshold_cents, st.app.config().currency);
    let mut res = render(
        status,
        &SettingsPage {
            c: ctx.chrome(),
            admin: me.role == Role::Administrator,
            cutoff: s
                .cutoff
                .unwrap_or_else(|| format!("{:02}:{:02}", live.cutoff.0, live.cutoff.1)),
            threshold: s.threshold.unwrap_or_else(|| threshold.to_plain()),
            endpoints,
            events: EVENTS.to_vec(),
            errors,
            notice: s.notice,
            new_secret: s.new_secret,
            url: s.url,
        },
    )?;
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

fn blank() -> Shown {
    Shown {
        cutoff: None,
        threshold: None,
        url: String::new(),
        notice: String::new(),
        new_secret: String::new(),
    }
}

async fn page(State(st): State<AppState>, ctx: StaffCtx) -> Result<Response, Refusal> {
    show(&st, &ctx, StatusCode::OK, FormErrors::none(), blank()).await
}

async fn save(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Administrator)?;
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    ctx.require_form_token(&crate::forms::value(&f, "csrf"))?;
    let (cutoff, threshold) = (
        crate::forms::value(&f, "cutoff"),
        crate::forms::value(&f, "threshold"),
    );
    match st
        .app
        .update_settings(me, &cutoff, &threshold, &ctx.ip)
        .await
    {
        Ok(_) => {
            let s = Shown {
                notice: ctx.t.s("staff.settings.saved").to_owned(),
                ..blank()
            };
            show(&st, &ctx, StatusCode::OK, FormErrors::none(), s).await
        }
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "cutoff", &["cutoff", "threshold"]) {
            Some(errors) if !matches!(e, AppError::Forbidden) => {
                let s = Shown {
                    cutoff: Some(cutoff),
                    threshold: Some(threshold),
                    ..blank()
                };
                show(&st, &ctx, StatusCode::BAD_REQUEST, errors, s).await
            }
            _ => Err(ctx.app_error(e)),
        },
    }
}

async fn add_endpoint(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Administrator)?;
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    ctx.require_form_token(&crate::forms::value(&f, "csrf"))?;
    let url = crate::forms::value(&f, "url");
    let events: Vec<String> = f
        .iter()
        .filter(|(n, _)| n == "event")
        .map(|(_, v)| v.clone())
        .collect();
    match st
        .app
        .add_webhook_endpoint(me, &url, &events, &ctx.ip)
        .await
    {
        Ok((_, secret)) => {
            let s = Shown {
                new_secret: secret,
                ..blank()
            };
            show(&st, &ctx, StatusCode::OK, FormErrors::none(), s).await
        }
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "url", &["url", "events"]) {
            Some(errors) if !matches!(e, AppError::Forbidden) => {
                let s = Shown { url, ..blank() };
                show(&st, &ctx, StatusCode::BAD_REQUEST, errors, s).await
            }
            _ => Err(ctx.app_error(e)),
        },
    }
}

async fn remove_endpoint(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Administrator)?;
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    ctx.require_form_token(&crate::forms::value(&f, "csrf"))?;
    st.app
        .disable_webhook_endpoint(me, &crate::forms::value(&f, "id"), &ctx.ip)
        .await
        .map_err(|e| ctx.app_error(e))?;
    Ok(Redirect::to("/settings").into_response())
}

struct DeliveryLine {
    id: String,
    event: String,
    endpoint: String,
    status: String,
    attempts: i64,
    last_status: String,
    last_error: String,
    created: String,
    resendable: bool,
}

#[derive(Template)]
#[template(path = "staff/webhooks.html")]
struct LogPage {
    c: Chrome,
    rows: Vec<DeliveryLine>,
}

async fn log(State(st): State<AppState>, ctx: StaffCtx) -> Result<Response, Refusal> {
    ctx.require(Role::Supervisor)?;
    let rows = st
        .app
        .city_webhook_deliveries(200)
        .await
        .map_err(|e| ctx.app_error(e))?
        .into_iter()
        .map(|d| DeliveryLine {
            resendable: d.status != "sending",
            status: ctx
                .t
                .s(&format!("staff.webhooks.status.{}", d.status))
                .to_owned(),
            id: d.id,
            event: d.event_type,
            endpoint: d.endpoint_id,
            attempts: d.attempts,
            last_status: d.last_status.map(|s| s.to_string()).unwrap_or_default(),
            last_error: d.last_error.unwrap_or_default(),
            created: utc(d.created_at),
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &LogPage {
            c: ctx.chrome(),
            rows,
        },
    )?)
}

async fn resend(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Supervisor)?;
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    ctx.require_form_token(&crate::forms::value(&f, "csrf"))?;
    st.app
        .resend_city_webhook(me, &crate::forms::value(&f, "id"), &ctx.ip)
        .await
        .map_err(|e| ctx.app_error(e))?;
    Ok(Redirect::to("/webhooks").into_response())
}
