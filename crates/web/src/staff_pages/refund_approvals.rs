//! Staff pages: refunds waiting for a second person (`/refunds`). Supervisors and
//! administrators approve or reject a request they did not make; everyone on staff who
//! may ask for refunds sees the queue.

use crate::forms::FormErrors;
use crate::portal::{render, Chrome};
use crate::staff::{Refusal, StaffCtx};
use crate::view::utc;
use crate::AppState;
use app::refunds::may_approve;
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

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/refunds", get(queue))
        .route("/refunds/{id}/approve", post(approve))
        .route("/refunds/{id}/reject", post(reject))
}

fn valid_id(id: &str) -> bool {
    id.strip_prefix("rf_")
        .is_some_and(|r| r.len() == 22 && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

struct Row {
    id: String,
    payment_id: String,
    account_number: String,
    amount: String,
    reason: String,
    requested_by: String,
    created: String,
    /// The member viewing may decide it (an approver who did not ask for it).
    decidable: bool,
}

#[derive(Template)]
#[template(path = "staff/refund_approvals.html")]
struct QueuePage {
    c: Chrome,
    rows: Vec<Row>,
    errors: FormErrors,
    /// The refund the errors are about.
    error_refund: String,
}

async fn queue_page(
    st: &AppState,
    ctx: &StaffCtx,
    status: StatusCode,
    errors: FormErrors,
    error_refund: String,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Clerk)?;
    let waiting = st
        .app
        .refunds_awaiting_approval()
        .await
        .map_err(|e| ctx.app_error(e))?;
    let rows = waiting
        .into_iter()
        .map(|(r, payment_id)| Row {
            decidable: may_approve(me.role) && r.staff_id != me.id,
            id: r.id,
            payment_id,
            account_number: r.account_number,
            amount: r.amount.to_string(),
            reason: r.reason,
            requested_by: r.staff_id,
            created: utc(r.created_at),
        })
        .collect();
    Ok(render(
        status,
        &QueuePage {
            c: ctx.chrome(),
            rows,
            errors,
            error_refund,
        },
    )?)
}

async fn queue(State(st): State<AppState>, ctx: StaffCtx) -> Result<Response, Refusal> {
    queue_page(&st, &ctx, StatusCode::OK, FormErrors::none(), String::new()).await
}

#[derive(Deserialize)]
struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
}

async fn decide(
    st: &AppState,
    ctx: &StaffCtx,
    id: &str,
    form: Result<Form<DecideForm>, FormRejection>,
    approve: bool,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Supervisor)?;
    if !valid_id(id) {
        return Err(ctx.not_found());
    }
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    ctx.require_form_token(&f.csrf)?;
    let result = if approve {
        st.app.approve_refund(me, id, &ctx.ip).await
    } else {
        st.app.reject_refund(me, id, &f.note, &ctx.ip).await
    };
    match result {
        Ok(r) => Ok(Redirect::to(&format!("/payments/{}", r.payment_id)).into_response()),
        Err(AppError::Forbidden) => Err(ctx.fail(
            StatusCode::FORBIDDEN,
            "forbidden",
            ctx.t.s("staff.refunds.not_yours"),
        )),
        Err(AppError::Processor(_)) => {
            let errors = FormErrors::from_problems(
                &ctx.t,
                &[app::FieldProblem::new(
                    "note",
                    "processor_unavailable",
                    "the payment processor did not make the refund",
                )],
                &["note"],
            );
            queue_page(st, ctx, StatusCode::BAD_GATEWAY, errors, id.to_owned()).await
        }
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "note", &["note"]) {
            Some(errors) if !matches!(e, AppError::NotFound(_)) => {
                let status = crate::error::status_of(&e);
                queue_page(st, ctx, status, errors, id.to_owned()).await
            }
            _ => Err(ctx.app_error(e)),
        },
    }
}

async fn approve(
    State(st): State<AppState>,
    ctx: StaffCtx,
    Path(id): Path<String>,
    form: Result<Form<DecideForm>, FormRejection>,
) -> Result<Response, Refusal> {
    decide(&st, &ctx, &id, form, true).await
}

async fn reject(
    State(st): State<AppState>,
    ctx: StaffCtx,
    Path(id): Path<String>,
    form: Result<Form<DecideForm>, FormRejection>,
) -> Result<Response, Refusal> {
    decide(&st, &ctx, &id, form, false).await
}
