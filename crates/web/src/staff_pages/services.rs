//! Staff pages for permits, inspections, licences and the types the city offers.
//!
//! - `GET /permit-reviews`, `GET /permit-reviews/{id}`, `POST /permit-reviews/{id}`:
//!   the review queue and decisions (clerk and above);
//! - `GET /permit-plans/{plan}`: a plan as an inert download (clerk and above, inspectors);
//! - `GET /inspections`, `POST /inspections/{id}`, `POST /inspections/capacity`:
//!   inspectors record results; supervisors set a day's capacity;
//! - `GET /licences`, `POST /licences/{id}/status`: suspend, revoke, reinstate
//!   (supervisor and above), audited;
//! - `GET /service-types`, `POST /service-types`: permit and licence types as TOML
//!   (administrators edit; every change is audited with before and after).

use crate::forms::FormErrors;
use crate::portal::{render, Chrome};
use crate::staff::{Refusal, StaffCtx};
use crate::view::{self, InvoiceRow, LineRow};
use crate::AppState;
use app::permits::{InspectionResult, Review};
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
        .route("/permit-reviews", get(queue))
        .route("/permit-reviews/{id}", get(review_page).post(review))
        .route("/permit-plans/{plan}", get(plan))
        .route("/inspections", get(inspections))
        .route("/inspections/capacity", post(capacity))
        .route("/inspections/{id}", post(record))
        .route("/licences", get(licences))
        .route("/licences/{id}/status", post(licence_status))
        .route("/service-types", get(types).post(save_type))
}

type Page = Result<Response, Refusal>;

fn ok_id(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|r| {
        (16..=64).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

const INSPECTORS: &[Role] = &[Role::Inspector, Role::Supervisor];

struct QueueRow {
    id: String,
    kind: String,
    street: String,
    submitted: String,
}

#[derive(Template)]
#[template(path = "staff/permit_queue.html")]
struct QueuePage {
    c: Chrome,
    rows: Vec<QueueRow>,
}

async fn queue(State(st): State<AppState>, ctx: StaffCtx) -> Page {
    ctx.require(Role::Clerk)?;
    let types = st.app.permit_types().await.map_err(|e| ctx.app_error(e))?;
    let rows = st
        .app
        .permit_queue()
        .await
        .map_err(|e| ctx.app_error(e))?
        .into_iter()
        .map(|p| QueueRow {
            kind: types
                .iter()
                .find(|t| t.code == p.permit_type)
                .map(|t| t.name.clone())
                .unwrap_or_else(|| p.permit_type.clone()),
            street: format!("{}, {}", p.site_street, p.site_zip),
            submitted: p.submitted_at.map(crate::view::utc).unwrap_or_default(),
            id: p.id,
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &QueuePage {
            c: ctx.chrome(),
            rows,
        },
    )?)
}

struct PlanLine {
    id: String,
    name: String,
    kind: &'static str,
}

#[derive(Template)]
#[template(path = "staff/permit_review.html")]
struct ReviewPage {
    c: Chrome,
    id: String,
    kind: String,
    status: String,
    waiting: bool,
    applicant: String,
    phone: String,
    street: String,
    scope: String,
    valuation: String,
    area: i64,
    contractor: String,
    number: String,
    plans: Vec<PlanLine>,
    estimate: Vec<LineRow>,
    invoices: Vec<InvoiceRow>,
    errors: FormErrors,
}

async fn review_with(
    st: &AppState,
    ctx: &StaffCtx,
    id: &str,
    errors: FormErrors,
    status: StatusCode,
) -> Page {
    ctx.require(Role::Clerk)?;
    if !ok_id("pmt_", id) {
        return Err(ctx.not_found());
    }
    let f = st
        .app
        .permit_file(None, id)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let p = &f.permit;
    Ok(render(
        status,
        &ReviewPage {
            c: ctx.chrome(),
            id: id.to_owned(),
            kind: f.kind.name.clone(),
            status: ctx.t.s(&format!("permit.status.{}", p.status)).to_owned(),
            waiting: p.status == "submitted",
            applicant: p.applicant_name.clone(),
            phone: p.applicant_phone.clone(),
            street: format!("{}, {}", p.site_street, p.site_zip),
            scope: p.scope.clone(),
            valuation: view::money(p.valuation_cents),
            area: p.area_sq_ft,
            contractor: p.contractor_licence.clone(),
            number: p.permit_number.clone().unwrap_or_default(),
            plans: f
                .plans
                .iter()
                .map(|x| PlanLine {
                    id: x.id.clone(),
                    name: x.file_name.clone(),
                    kind: x.kind.label(),
                })
                .collect(),
            estimate: view::fee_lines(&ctx.t, &f.estimate),
            invoices: view::invoice_rows(&ctx.t, &f.invoices),
            errors,
        },
    )?)
}

async fn review_page(State(st): State<AppState>, ctx: StaffCtx, Path(id): Path<String>) -> Page {
    review_with(&st, &ctx, &id, FormErrors::none(), StatusCode::OK).await
}

#[derive(Deserialize)]
struct ReviewForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    note: String,
}

async fn review(
    State(st): State<AppState>,
    ctx: StaffCtx,
    Path(id): Path<String>,
    form: Result<Form<ReviewForm>, FormRejection>,
) -> Page {
    let me = ctx.require(Role::Clerk)?.clone();
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    ctx.require_form_token(&f.csrf)?;
    if !ok_id("pmt_", &id) {
        return Err(ctx.not_found());
    }
    let decision = match f.decision.as_str() {
        "approve" => Review::Approve,
        "reject" => Review::Reject(f.note.clone()),
        "revise" => Review::RequestRevision(f.note.clone()),
        _ => {
            let errors = FormErrors::from_problems(
                &ctx.t,
                &[app::FieldProblem::new(
                    "decision",
                    "decision_required",
                    "choose a decision",
                )],
                &["decision", "note"],
            );
            return review_with(&st, &ctx, &id, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    match st.app.review_permit(&me.id, &id, &decision, &ctx.ip).await {
        Ok(()) => Ok(Redirect::to("/permit-reviews").into_response()),
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "decision", &["decision", "note"]) {
            Some(errors) => review_with(&st, &ctx, &id, errors, crate::error::status_of(&e)).await,
            None => Err(ctx.app_error(e)),
        },
    }
}

async fn plan(State(st): State<AppState>, ctx: StaffCtx, Path(plan): Path<String>) -> Page {
    let me = ctx.require_one_of(&[Role::Inspector, Role::Clerk, Role::Supervisor])?;
    if !ok_id("pln_", &plan) {
        return Err(ctx.not_found());
    }
    let (name, kind, bytes) = st
        .app
        .plan_content(None, &plan)
        .await
        .map_err(|e| ctx.app_error(e))?;
    tracing::info!(staff_id = %me.id, plan_id = %plan, "permit plan downloaded");
    Ok(crate::forms::inert_download(
        bytes,
        kind.media_type(),
        &name,
    ))
}

struct InspectionRow {
    id: String,
    kind: String,
    day: String,
    permit: String,
}

struct DayRow {
    day: String,
    left: i64,
}

#[derive(Template)]
#[template(path = "staff/inspections.html")]
struct InspectionsPage {
    c: Chrome,
    rows: Vec<InspectionRow>,
    days: Vec<DayRow>,
    errors: FormErrors,
    error_for: String,
    supervisor: bool,
}

async fn inspections_with(
    st: &AppState,
    ctx: &StaffCtx,
    errors: FormErrors,
    error_for: &str,
    status: StatusCode,
) -> Page {
    let me = ctx.require_one_of(INSPECTORS)?;
    let supervisor = me.role >= Role::Supervisor;
    let rows = st
        .app
        .inspection_queue()
        .await
        .map_err(|e| ctx.app_error(e))?
        .into_iter()
        .map(|(i, permit)| InspectionRow {
            id: i.id,
            kind: i.inspection_type,
            day: i.day,
            permit,
        })
        .collect();
    let days = st
        .app
        .inspection_days()
        .await
        .map_err(|e| ctx.app_error(e))?
        .into_iter()
        .map(|(day, left)| DayRow { day, left })
        .collect();
    Ok(render(
        status,
        &InspectionsPage {
            c: ctx.chrome(),
            rows,
            days,
            errors,
            error_for: error_for.to_owned(),
            supervisor,
        },
    )?)
}

async fn inspections(State(st): State<AppState>, ctx: StaffCtx) -> Page {
    inspections_with(&st, &ctx, FormErrors::none(), "", StatusCode::OK).await
}

#[derive(Deserialize)]
struct RecordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    result: String,
    #[serde(default)]
    note: String,
}

async fn record(
    State(st): State<AppState>,
    ctx: StaffCtx,
    Path(id): Path<String>,
    form: Result<Form<RecordForm>, FormRejection>,
) -> Page {
    let me = ctx.require_one_of(INSPECTORS)?.clone();
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    ctx.require_form_token(&f.csrf)?;
    if !ok_id("insp_", &id) {
        return Err(ctx.not_found());
    }
    let Some(result) = InspectionResult::parse(&f.result) else {
        let errors = FormErrors::from_problems(
            &ctx.t,
            &[app::FieldProblem::new(
                "result",
                "inspection_result_required",
                "choose a result",
            )],
            &["result", "note"],
        );
        return inspections_with(&st, &ctx, errors, &id, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    match st
        .app
        .record_inspection(&me.id, &id, result, &f.note, &ctx.ip)
        .await
    {
        Ok(()) => Ok(Redirect::to("/inspections").into_response()),
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "result", &["result", "note"]) {
            Some(errors) => {
                inspections_with(&st, &ctx, errors, &id, crate::error::status_of(&e)).await
            }
            None => Err(ctx.app_error(e)),
        },
    }
}

#[derive(Deserialize)]
struct CapacityForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    day: String,
    #[serde(default)]
    capacity: String,
}

async fn capacity(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<CapacityForm>, FormRejection>,
) -> Page {
    let me = ctx.require(Role::Supervisor)?.clone();
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    ctx.require_form_token(&f.csrf)?;
    let cap = f.capacity.trim().parse::<i64>().unwrap_or(-1);
    match st
        .app
        .set_inspection_capacity(&me.id, f.day.trim(), cap, &ctx.ip)
        .await
    {
        Ok(()) => Ok(Redirect::to("/inspections").into_response()),
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "capacity", &["day", "capacity"]) {
            Some(errors) => {
                inspections_with(&st, &ctx, errors, "capacity", crate::error::status_of(&e)).await
            }
            None => Err(ctx.app_error(e)),
        },
    }
}

struct LicenceRow {
    id: String,
    number: String,
    business: String,
    kind: String,
    status: String,
    raw_status: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "staff/licences.html")]
struct LicencesPage {
    c: Chrome,
    rows: Vec<LicenceRow>,
    supervisor: bool,
    errors: FormErrors,
    error_for: String,
}

async fn licences_with(
    st: &AppState,
    ctx: &StaffCtx,
    errors: FormErrors,
    error_for: &str,
    status: StatusCode,
) -> Page {
    let me = ctx.require(Role::Clerk)?;
    let supervisor = me.role >= Role::Supervisor;
    let types = st.app.licence_types().await.map_err(|e| ctx.app_error(e))?;
    let rows = st
        .app
        .all_licences()
        .await
        .map_err(|e| ctx.app_error(e))?
        .into_iter()
        .map(|l| LicenceRow {
            kind: types
                .iter()
                .find(|t| t.code == l.licence_type)
                .map(|t| t.name.clone())
                .unwrap_or_else(|| l.licence_type.clone()),
            status: ctx.t.s(&format!("licence.status.{}", l.status)).to_owned(),
            raw_status: l.status.clone(),
            number: l.licence_number.unwrap_or_default(),
            business: l.business_name,
            expires: l.expires_on.unwrap_or_default(),
            id: l.id,
        })
        .collect();
    Ok(render(
        status,
        &LicencesPage {
            c: ctx.chrome(),
            rows,
            supervisor,
            errors,
            error_for: error_for.to_owned(),
        },
    )?)
}

async fn licences(State(st): State<AppState>, ctx: StaffCtx) -> Page {
    licences_with(&st, &ctx, FormErrors::none(), "", StatusCode::OK).await
}

#[derive(Deserialize)]
struct StatusForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    reason: String,
}

async fn licence_status(
    State(st): State<AppState>,
    ctx: StaffCtx,
    Path(id): Path<String>,
    form: Result<Form<StatusForm>, FormRejection>,
) -> Page {
    let me = ctx.require(Role::Supervisor)?.clone();
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    ctx.require_form_token(&f.csrf)?;
    if !ok_id("lic_", &id) {
        return Err(ctx.not_found());
    }
    match st
        .app
        .set_licence_status(&me.id, &id, &f.action, &f.reason, &ctx.ip)
        .await
    {
        Ok(()) => Ok(Redirect::to("/licences").into_response()),
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "reason", &["action", "reason"]) {
            Some(errors) => {
                licences_with(&st, &ctx, errors, &id, crate::error::status_of(&e)).await
            }
            None => Err(ctx.app_error(e)),
        },
    }
}

struct TypeRow {
    kind: String,
    code: String,
    definition: String,
}

#[derive(Template)]
#[template(path = "staff/service_types.html")]
struct TypesPage {
    c: Chrome,
    rows: Vec<TypeRow>,
    admin: bool,
    errors: FormErrors,
    kind: String,
    definition: String,
    notice: bool,
}

async fn types_with(
    st: &AppState,
    ctx: &StaffCtx,
    errors: FormErrors,
    kind: &str,
    definition: &str,
    notice: bool,
) -> Page {
    let me = ctx.require(Role::Clerk)?;
    let admin = me.role == Role::Administrator;
    let mut rows = Vec::new();
    for k in [app::services::PERMIT, app::services::LICENCE] {
        for (code, definition) in st
            .app
            .service_type_definitions(k)
            .await
            .map_err(|e| ctx.app_error(e))?
        {
            rows.push(TypeRow {
                kind: k.to_owned(),
                code,
                definition,
            });
        }
    }
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(render(
        status,
        &TypesPage {
            c: ctx.chrome(),
            rows,
            admin,
            errors,
            kind: kind.to_owned(),
            definition: definition.to_owned(),
            notice,
        },
    )?)
}

#[derive(Deserialize, Default)]
struct TypesQuery {
    #[serde(default)]
    saved: Option<String>,
}

async fn types(
    State(st): State<AppState>,
    ctx: StaffCtx,
    axum::extract::Query(q): axum::extract::Query<TypesQuery>,
) -> Page {
    types_with(
        &st,
        &ctx,
        FormErrors::none(),
        "permit",
        "",
        q.saved.is_some(),
    )
    .await
}

#[derive(Deserialize)]
struct TypeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    definition: String,
}

async fn save_type(
    State(st): State<AppState>,
    ctx: StaffCtx,
    form: Result<Form<TypeForm>, FormRejection>,
) -> Page {
    let me = ctx.require(Role::Administrator)?.clone();
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    ctx.require_form_token(&f.csrf)?;
    match st
        .app
        .save_service_type(&me.id, &f.kind, &f.definition, &ctx.ip)
        .await
    {
        Ok(_) => Ok(Redirect::to("/service-types?saved=1").into_response()),
        Err(AppError::NotFound(_)) => {
            let errors = FormErrors::from_problems(
                &ctx.t,
                &[app::FieldProblem::new(
                    "kind",
                    "type_kind",
                    "choose permit or licence",
                )],
                &["kind", "definition"],
            );
            types_with(&st, &ctx, errors, &f.kind, &f.definition, false).await
        }
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "definition", &["kind", "definition"]) {
            Some(errors) => types_with(&st, &ctx, errors, &f.kind, &f.definition, false).await,
            None => Err(ctx.app_error(e)),
        },
    }
}
