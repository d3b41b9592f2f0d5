//! Staff pages: reconciliation with the processor. Everyone on staff reads the runs
//! (`/reconciliation`, one day at `/reconciliation/{date}`); supervisors and administrators
//! run a closed day again (`POST /reconciliation/run`). The daily job runs each day after
//! its cut-off (`App::reconcile_due_days`).

use crate::forms::FormErrors;
use crate::portal::{render, Chrome};
use crate::staff::{Refusal, StaffCtx};
use crate::view::utc;
use crate::AppState;
use app::reconciliation::RunView;
use app::staff::Role;
use app::AppError;
use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

const FIELDS: &[&str] = &["business_date"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/reconciliation", get(list))
        .route("/reconciliation/run", post(run))
        .route("/reconciliation/{date}", get(day))
}

fn parse_date(s: &str) -> Option<time::Date> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s.trim(), &fmt).ok()
}

struct Row {
    date: String,
    ran: String,
    captures: String,
    ours: String,
    posted: String,
    differences: i64,
}

#[derive(Template)]
#[template(path = "staff/reconciliation.html")]
struct ListPage {
    c: Chrome,
    rows: Vec<Row>,
    can_run: bool,
    errors: FormErrors,
    business_date: String,
}

async fn list_page(
    st: &AppState,
    ctx: &StaffCtx,
    status: StatusCode,
    errors: FormErrors,
    business_date: String,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Auditor)?;
    let runs = st
        .app
        .reconciliations(60)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let rows = runs
        .into_iter()
        .map(|r| Row {
            ran: utc(r.ran_at),
            captures: r.processor_captures.to_string(),
            ours: r.our_payments.to_string(),
            posted: r.posted.to_string(),
            differences: r.differences.len() as i64,
            date: r.business_date,
        })
        .collect();
    Ok(render(
        status,
        &ListPage {
            c: ctx.chrome(),
            rows,
            can_run: me.role >= Role::Supervisor,
            errors,
            business_date,
        },
    )?)
}

async fn list(State(st): State<AppState>, ctx: StaffCtx) -> Result<Response, Refusal> {
    let yesterday = (st.app.now().date() - time::Duration::days(1)).to_string();
    list_page(&st, &ctx, StatusCode::OK, FormErrors::none(), yesterday).await
}

struct DiffRow {
    kind: String,
    detail: String,
    exception_id: String,
}

#[derive(Template)]
#[template(path = "staff/reconciliation_day.html")]
struct DayPage {
    c: Chrome,
    date: String,
    run: Option<RunView>,
    ran: String,
    diffs: Vec<DiffRow>,
    earlier: usize,
}

async fn day(
    State(st): State<AppState>,
    ctx: StaffCtx,
    Path(date): Path<String>,
) -> Result<Response, Refusal> {
    ctx.require(Role::Auditor)?;
    let Some(d) = parse_date(&date) else {
        return Err(ctx.not_found());
    };
    let mut runs = st
        .app
        .reconciliation_runs(d)
        .await
        .map_err(|e| ctx.app_error(e))?;
    if runs.is_empty() {
        return Err(ctx.not_found());
    }
    let run = runs.remove(0);
    let diffs = run
        .differences
        .iter()
        .map(|x| DiffRow {
            kind: ctx
                .t
                .s(&format!("staff.exceptions.kind.{}", x.kind))
                .to_owned(),
            detail: x.detail.clone(),
            exception_id: x.exception_id.clone().unwrap_or_default(),
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &DayPage {
            c: ctx.chrome(),
            date: d.to_string(),
            ran: utc(run.ran_at),
            run: Some(run),
            diffs,
            earlier: runs.len(),
        },
    )?)
}

#[derive(Deserialize)]
struct RunForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    business_date: String,
}

async fn run(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<RunForm>, FormRejection>,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Supervisor)?;
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    ctx.require_form_token(&f.csrf)?;
    let Some(d) = parse_date(&f.business_date) else {
        let errors = FormErrors::from_problems(
            &ctx.t,
            &[app::FieldProblem::new(
                "business_date",
                "business_date_shape",
                "enter a date like 2026-12-04",
            )],
            FIELDS,
        );
        return list_page(&st, &ctx, StatusCode::BAD_REQUEST, errors, f.business_date).await;
    };
    match st.app.reconcile_day(d, &format!("staff:{}", me.id)).await {
        Ok(_) => Ok(Redirect::to(&format!("/reconciliation/{d}")).into_response()),
        Err(AppError::Processor(_)) => {
            let errors = FormErrors::from_problems(
                &ctx.t,
                &[app::FieldProblem::new(
                    "business_date",
                    "processor_unreachable",
                    "the payment processor did not answer; try again later",
                )],
                FIELDS,
            );
            list_page(&st, &ctx, StatusCode::BAD_GATEWAY, errors, f.business_date).await
        }
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "business_date", FIELDS) {
            Some(errors) => {
                let status = crate::error::status_of(&e);
                list_page(&st, &ctx, status, errors, f.business_date).await
            }
            None => Err(ctx.app_error(e)),
        },
    }
}
