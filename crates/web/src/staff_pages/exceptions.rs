//! Staff pages: the exceptions queue. Everyone on staff reads it (`/exceptions`, one
//! exception at `/exceptions/{id}` with the processor's evidence); supervisors and
//! administrators resolve an open one: attach its money to an account, refund it, or
//! explain it with a reason (`app::exceptions`).

use crate::forms::FormErrors;
use crate::portal::{render, Chrome};
use crate::staff::{Refusal, StaffCtx};
use crate::view::utc;
use crate::AppState;
use app::exceptions::{may_resolve, ExceptionView, Resolution};
use app::staff::Role;
use app::AppError;
use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

/// The resolution form's fields, in page order.
const FIELDS: &[&str] = &["resolution", "account_number", "note"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/exceptions", get(list))
        .route("/exceptions/{id}", get(detail))
        .route("/exceptions/{id}/resolve", post(resolve))
}

/// An exception id as we make them: `exc_` and 22 letters or digits.
fn valid_id(id: &str) -> bool {
    id.strip_prefix("exc_")
        .is_some_and(|r| r.len() == 22 && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

struct Row {
    id: String,
    kind: String,
    amount: String,
    payment_id: String,
    processor_ref: String,
    status: String,
    open: bool,
    created: String,
}

#[derive(Template)]
#[template(path = "staff/exceptions.html")]
struct ListPage {
    c: Chrome,
    rows: Vec<Row>,
    all: bool,
    open_count: i64,
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    all: Option<String>,
}

fn kind_label(ctx: &StaffCtx, e: &ExceptionView) -> String {
    ctx.t
        .s(&format!("staff.exceptions.kind.{}", e.kind.as_str()))
        .to_owned()
}

fn status_label(ctx: &StaffCtx, status: &str) -> String {
    ctx.t
        .s(&format!("staff.exceptions.status.{status}"))
        .to_owned()
}

async fn list(
    State(st): State<AppState>,
    ctx: StaffCtx,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, Refusal> {
    ctx.require(Role::Auditor)?;
    let Ok(Query(q)) = query else {
        return Err(ctx.bad_request());
    };
    let all = q.all.is_some_and(|v| v == "1");
    let items = st
        .app
        .exceptions(!all)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let open_count = st
        .app
        .open_exception_count()
        .await
        .map_err(|e| ctx.app_error(e))?;
    let rows = items
        .iter()
        .map(|e| Row {
            id: e.id.clone(),
            kind: kind_label(&ctx, e),
            amount: e.amount.map(|a| a.to_string()).unwrap_or_default(),
            payment_id: e.payment_id.clone().unwrap_or_default(),
            processor_ref: e.processor_ref.clone().unwrap_or_default(),
            status: status_label(&ctx, &e.status),
            open: e.is_open(),
            created: utc(e.created_at),
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &ListPage {
            c: ctx.chrome(),
            rows,
            all,
            open_count,
        },
    )?)
}

#[derive(Template)]
#[template(path = "staff/exception.html")]
struct DetailPage {
    c: Chrome,
    e: ExceptionView,
    kind: String,
    explain: String,
    status: String,
    amount: String,
    created: String,
    resolved: String,
    resolution: String,
    can_resolve: bool,
    errors: FormErrors,
    /// The form as sent, when it is shown again with its errors.
    chosen: String,
    account_number: String,
    note: String,
    notice: String,
}

#[allow(clippy::too_many_arguments)]
async fn show(
    st: &AppState,
    ctx: &StaffCtx,
    id: &str,
    status: StatusCode,
    errors: FormErrors,
    form: Option<&ResolveForm>,
    notice: String,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Auditor)?;
    let e = st.app.exception(id).await.map_err(|e| ctx.app_error(e))?;
    let can_resolve = may_resolve(me.role) && e.is_open();
    let page = DetailPage {
        c: ctx.chrome(),
        kind: kind_label(ctx, &e),
        explain: ctx
            .t
            .s(&format!("staff.exceptions.explain.{}", e.kind.as_str()))
            .to_owned(),
        status: status_label(ctx, &e.status),
        amount: e.amount.map(|a| a.to_string()).unwrap_or_default(),
        created: utc(e.created_at),
        resolved: e.resolved_at.map(utc).unwrap_or_default(),
        resolution: e
            .resolution
            .as_deref()
            .filter(|r| !r.is_empty())
            .map(|r| {
                ctx.t
                    .s(&format!("staff.exceptions.resolution.{r}"))
                    .to_owned()
            })
            .unwrap_or_default(),
        can_resolve,
        errors,
        chosen: form.map(|f| f.resolution.clone()).unwrap_or_else(|| {
            if e.holds_money() {
                String::new()
            } else {
                "explain".into()
            }
        }),
        account_number: form.map(|f| f.account_number.clone()).unwrap_or_default(),
        note: form.map(|f| f.note.clone()).unwrap_or_default(),
        notice,
        e,
    };
    Ok(render(status, &page)?)
}

async fn detail(
    State(st): State<AppState>,
    ctx: StaffCtx,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    ctx.require(Role::Auditor)?;
    if !valid_id(&id) {
        return Err(ctx.not_found());
    }
    show(
        &st,
        &ctx,
        &id,
        StatusCode::OK,
        FormErrors::none(),
        None,
        String::new(),
    )
    .await
}

#[derive(Deserialize)]
struct ResolveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    resolution: String,
    #[serde(default)]
    account_number: String,
    #[serde(default)]
    note: String,
}

async fn resolve(
    State(st): State<AppState>,
    ctx: StaffCtx,
    Path(id): Path<String>,
    form: Result<Form<ResolveForm>, FormRejection>,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Supervisor)?;
    if !valid_id(&id) {
        return Err(ctx.not_found());
    }
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    ctx.require_form_token(&f.csrf)?;
    let resolution = match f.resolution.as_str() {
        "attach" => Resolution::Attach(f.account_number.trim().to_owned()),
        "refund" => Resolution::Refund,
        "explain" => Resolution::Explain,
        _ => {
            // Every problem at once: the choice, and the reason if it is missing too.
            let mut problems = vec![app::FieldProblem::new(
                "resolution",
                "resolution_required",
                "choose how to resolve it",
            )];
            if f.note.trim().is_empty() {
                problems.push(app::FieldProblem::new(
                    "note",
                    "reason_required",
                    "give a reason",
                ));
            }
            let errors = FormErrors::from_problems(&ctx.t, &problems, FIELDS);
            return show(
                &st,
                &ctx,
                &id,
                StatusCode::BAD_REQUEST,
                errors,
                Some(&f),
                String::new(),
            )
            .await;
        }
    };
    match st
        .app
        .resolve_exception(me, &id, resolution, &f.note, &ctx.ip)
        .await
    {
        Ok(_) => {
            let notice = ctx.t.s("staff.exceptions.resolved_notice").to_owned();
            show(
                &st,
                &ctx,
                &id,
                StatusCode::OK,
                FormErrors::none(),
                None,
                notice,
            )
            .await
        }
        Err(AppError::Processor(_)) => {
            let errors = FormErrors::from_problems(
                &ctx.t,
                &[app::FieldProblem::new(
                    "resolution",
                    "processor_unavailable",
                    "the payment processor did not make the refund; try again later",
                )],
                FIELDS,
            );
            show(
                &st,
                &ctx,
                &id,
                StatusCode::BAD_GATEWAY,
                errors,
                Some(&f),
                String::new(),
            )
            .await
        }
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "resolution", FIELDS) {
            Some(errors) if !matches!(e, AppError::NotFound(_) | AppError::Forbidden) => {
                let status = crate::error::status_of(&e);
                show(&st, &ctx, &id, status, errors, Some(&f), String::new()).await
            }
            _ => Err(ctx.app_error(e)),
        },
    }
}
