//! Staff page: the back-office settings (administrators): the business-day cut-off and the
//! refund approval threshold. The rules live in `app::settings`.

use crate::forms::FormErrors;
use crate::portal::{render, Chrome};
use crate::staff::{Refusal, StaffCtx};
use crate::AppState;
use app::settings::{format_cutoff, Settings, SettingsInput};
use app::staff::Role;
use app::AppError;
use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use domain::Money;

const FIELDS: &[&str] = &["business_day_cutoff", "refund_approval_threshold"];

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/settings", get(page).post(save))
}

#[derive(Template)]
#[template(path = "staff/settings.html")]
struct SettingsPage {
    c: Chrome,
    cutoff: String,
    threshold: String,
    errors: FormErrors,
    saved: bool,
}

fn input_of(st: &AppState, s: &Settings) -> SettingsInput {
    let m = Money::from_cents(s.refund_approval_threshold_cents, st.app.config().currency);
    SettingsInput {
        business_day_cutoff: format_cutoff(s.business_day_cutoff),
        // `$1,234.50` without the dollar sign: what the field takes back.
        refund_approval_threshold: m.to_string().trim_start_matches('$').to_owned(),
    }
}

fn show(
    ctx: &StaffCtx,
    status: StatusCode,
    input: SettingsInput,
    errors: FormErrors,
    saved: bool,
) -> Result<Response, Refusal> {
    Ok(render(
        status,
        &SettingsPage {
            c: ctx.chrome(),
            cutoff: input.business_day_cutoff,
            threshold: input.refund_approval_threshold,
            errors,
            saved,
        },
    )?)
}

async fn page(State(st): State<AppState>, ctx: StaffCtx) -> Result<Response, Refusal> {
    ctx.require(Role::Administrator)?;
    let s = st.app.settings().await.map_err(|e| ctx.app_error(e))?;
    show(
        &ctx,
        StatusCode::OK,
        input_of(&st, &s),
        FormErrors::none(),
        false,
    )
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
    let value = |k: &str| {
        f.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    ctx.require_form_token(&value("csrf"))?;
    let input = SettingsInput {
        business_day_cutoff: value("business_day_cutoff"),
        refund_approval_threshold: value("refund_approval_threshold"),
    };
    match st.app.update_settings(me, &input, &ctx.ip).await {
        Ok(s) => show(
            &ctx,
            StatusCode::OK,
            input_of(&st, &s),
            FormErrors::none(),
            true,
        ),
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "business_day_cutoff", FIELDS) {
            Some(errors) if !matches!(e, AppError::Forbidden) => {
                show(&ctx, StatusCode::BAD_REQUEST, input, errors, false)
            }
            _ => Err(ctx.app_error(e)),
        },
    }
}
