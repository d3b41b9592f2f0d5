//! Staff pages: the back-office settings (administrators): the business-day cut-off, the
//! refund approval threshold and the outbound webhook endpoints; and the webhook delivery
//! log with its re-send button. The rules live in `app::settings` and
//! `app::outbound_webhooks`.

use crate::forms::FormErrors;
use crate::portal::{render, Chrome};
use crate::staff::{utc, Refusal, StaffCtx};
use crate::AppState;
use app::outbound_webhooks::{DeliveryView, EndpointView, EVENTS};
use app::settings::{format_cutoff, Settings, SettingsInput};
use app::staff::Role;
use app::AppError;
use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use domain::Money;

const FIELDS: &[&str] = &["business_day_cutoff", "refund_approval_threshold"];
const WEBHOOK_FIELDS: &[&str] = &["webhook_url", "webhook_events"];
const LOG_LIMIT: i64 = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/settings", get(page).post(save))
        .route("/admin/settings/webhooks", post(add_endpoint))
        .route("/admin/settings/webhooks/remove", post(remove_endpoint))
        .route("/admin/webhooks", get(log))
        .route("/admin/webhooks/{id}/resend", post(resend))
}

#[derive(Template)]
#[template(path = "staff/settings.html")]
struct SettingsPage {
    c: Chrome,
    cutoff: String,
    threshold: String,
    errors: FormErrors,
    saved: bool,
    endpoints: Vec<EndpointView>,
    events: Vec<&'static str>,
    webhook_url: String,
    chosen: Vec<String>,
    /// An endpoint's signing secret just made: shown this once.
    new_secret: String,
}

/// What the page shows besides the stored values.
#[derive(Default)]
struct Shown {
    settings: Option<SettingsInput>,
    errors: Option<FormErrors>,
    saved: bool,
    webhook: (String, Vec<String>),
    new_secret: String,
}

fn input_of(st: &AppState, s: &Settings) -> SettingsInput {
    let m = Money::from_cents(s.refund_approval_threshold_cents, st.app.config().currency);
    SettingsInput {
        business_day_cutoff: format_cutoff(s.business_day_cutoff),
        // `$1,234.50` without the dollar sign: what the field takes back.
        refund_approval_threshold: m.to_string().trim_start_matches('$').to_owned(),
    }
}

async fn show(
    st: &AppState,
    ctx: &StaffCtx,
    status: StatusCode,
    shown: Shown,
) -> Result<Response, Refusal> {
    ctx.require(Role::Administrator)?;
    let input = match shown.settings {
        Some(i) => i,
        None => input_of(st, &st.app.settings().await.map_err(|e| ctx.app_error(e))?),
    };
    let endpoints = st
        .app
        .webhook_endpoints()
        .await
        .map_err(|e| ctx.app_error(e))?;
    let mut res = render(
        status,
        &SettingsPage {
            c: ctx.chrome(),
            cutoff: input.business_day_cutoff,
            threshold: input.refund_approval_threshold,
            errors: shown.errors.unwrap_or_else(FormErrors::none),
            saved: shown.saved,
            endpoints,
            events: EVENTS.to_vec(),
            webhook_url: shown.webhook.0,
            chosen: shown.webhook.1,
            new_secret: shown.new_secret,
        },
    )?;
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

async fn page(State(st): State<AppState>, ctx: StaffCtx) -> Result<Response, Refusal> {
    show(&st, &ctx, StatusCode::OK, Shown::default()).await
}

/// The form's fields; refuses a form without a valid anti-forgery token.
fn fields(
    ctx: &StaffCtx,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Vec<(String, String)>, Refusal> {
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    ctx.require_form_token(&value(&f, "csrf"))?;
    Ok(f)
}

fn value(f: &[(String, String)], k: &str) -> String {
    f.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

async fn save(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Administrator)?;
    let f = fields(&ctx, form)?;
    let input = SettingsInput {
        business_day_cutoff: value(&f, "business_day_cutoff"),
        refund_approval_threshold: value(&f, "refund_approval_threshold"),
    };
    match st.app.update_settings(me, &input, &ctx.ip).await {
        Ok(s) => {
            let shown = Shown {
                settings: Some(input_of(&st, &s)),
                saved: true,
                ..Shown::default()
            };
            show(&st, &ctx, StatusCode::OK, shown).await
        }
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "business_day_cutoff", FIELDS) {
            Some(errors) if !matches!(e, AppError::Forbidden) => {
                let shown = Shown {
                    settings: Some(input),
                    errors: Some(errors),
                    ..Shown::default()
                };
                show(&st, &ctx, StatusCode::BAD_REQUEST, shown).await
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
    let f = fields(&ctx, form)?;
    let url = value(&f, "webhook_url");
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
            let shown = Shown {
                new_secret: secret,
                ..Shown::default()
            };
            show(&st, &ctx, StatusCode::OK, shown).await
        }
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "webhook_url", WEBHOOK_FIELDS) {
            Some(errors) if !matches!(e, AppError::Forbidden) => {
                let shown = Shown {
                    errors: Some(errors),
                    webhook: (url, events),
                    ..Shown::default()
                };
                show(&st, &ctx, StatusCode::BAD_REQUEST, shown).await
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
    let f = fields(&ctx, form)?;
    st.app
        .remove_webhook_endpoint(me, &value(&f, "id"), &ctx.ip)
        .await
        .map_err(|e| ctx.app_error(e))?;
    Ok(Redirect::to("/admin/settings").into_response())
}

struct LogRow {
    d: DeliveryView,
    created: String,
    next: String,
    code: String,
    can_resend: bool,
}

#[derive(Template)]
#[template(path = "staff/webhook_log.html")]
struct LogPage {
    c: Chrome,
    rows: Vec<LogRow>,
}

async fn log(State(st): State<AppState>, ctx: StaffCtx) -> Result<Response, Refusal> {
    ctx.require(Role::Administrator)?;
    let rows = st
        .app
        .webhook_deliveries(LOG_LIMIT)
        .await
        .map_err(|e| ctx.app_error(e))?
        .into_iter()
        .map(|d| LogRow {
            created: utc(d.created_at),
            next: if d.status == "pending" {
                utc(d.next_attempt_at)
            } else {
                String::new()
            },
            code: d
                .last_status_code
                .map(|c| c.to_string())
                .unwrap_or_default(),
            can_resend: matches!(d.status.as_str(), "delivered" | "failed"),
            d,
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
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Administrator)?;
    fields(&ctx, form)?;
    st.app
        .resend_webhook(me, &id, &ctx.ip)
        .await
        .map_err(|e| ctx.app_error(e))?;
    Ok(Redirect::to("/admin/webhooks").into_response())
}
