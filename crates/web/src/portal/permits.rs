//! Building permits for residents: apply in steps (details, plans, review and submit),
//! saved and resumed; follow the review; pay; print the issued permit; book inspections;
//! and the public lookup of a permit's status.
//!
//! - `GET  /permits`: the resident's applications and permits;
//! - `GET|POST /permits/new`, `GET|POST /permits/{id}/edit`: step 1, the details;
//! - `GET|POST /permits/{id}/plans`: step 2, plans (multipart upload, checked like every
//!   upload; the CSRF token travels in the form);
//! - `GET  /permits/{id}`: step 3 and the permit's page: fees, review, inspections;
//! - `POST /permits/{id}/submit`, `POST /permits/{id}/inspections`;
//! - `GET  /permits/{id}/print`: the printable permit;
//! - `GET  /permits/plans/{plan}`: a plan, as an inert download;
//! - `GET  /permit-lookup`: public, by permit number and street or ZIP.

use super::account::to_login;
use super::{render, Chrome, Ctx};
use crate::error::{Format, PageError, WebError};
use crate::forms::{read_upload, secrets_equal, FormErrors, UploadProblem};
use crate::security::{MAX_UPLOAD_BODY, PLAN_UPLOAD_ROUTE};
use crate::view::{self, InvoiceRow, LineRow};
use crate::AppState;
use app::permits::{PermitFile, PermitInput, PERMIT_FIELDS};
use app::services::PermitType;
use app::AppError;
use askama::Template;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/permits", get(list))
        .route("/permits/new", get(new_form).post(create))
        .route("/permits/{id}", get(show))
        .route("/permits/{id}/edit", get(edit_form).post(update))
        .route(
            PLAN_UPLOAD_ROUTE,
            get(plans_page)
                .post(upload_plan)
                .layer(DefaultBodyLimit::max(MAX_UPLOAD_BODY)),
        )
        .route("/permits/{id}/submit", post(submit))
        .route("/permits/{id}/inspections", post(request_inspection))
        .route("/permits/{id}/print", get(print))
        .route("/permits/plans/{plan}", get(download_plan))
        .route("/permit-lookup", get(lookup))
}

type Page = Result<Response, PageError>;

fn is_id(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|r| {
        (16..=64).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

fn not_found(ctx: &Ctx) -> PageError {
    PageError(WebError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        ctx.t.s("permit.not_found"),
        Format::Html,
    ))
}

/// One permit type as the form offers it.
struct TypeOption {
    code: String,
    name: String,
    documents: Vec<String>,
}

fn type_options(ctx: &Ctx, types: &[PermitType]) -> Vec<TypeOption> {
    types
        .iter()
        .map(|t| TypeOption {
            code: t.code.clone(),
            name: view::name(&ctx.t, &t.name, &t.name_es).to_owned(),
            documents: t.required_documents.clone(),
        })
        .collect()
}

struct PermitLine {
    id: String,
    kind: String,
    street: String,
    status: String,
    number: String,
}

#[derive(Template)]
#[template(path = "portal/permits.html")]
struct ListPage {
    c: Chrome,
    permits: Vec<PermitLine>,
}

async fn list(State(st): State<AppState>, ctx: Ctx) -> Page {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    let types = st.app.permit_types().await?;
    let permits = st
        .app
        .permits_of_resident(&s.user_id)
        .await?
        .into_iter()
        .map(|p| PermitLine {
            kind: types
                .iter()
                .find(|t| t.code == p.permit_type)
                .map(|t| view::name(&ctx.t, &t.name, &t.name_es).to_owned())
                .unwrap_or_else(|| p.permit_type.clone()),
            street: p.site_street.clone(),
            status: ctx.t.s(&format!("permit.status.{}", p.status)).to_owned(),
            number: p.permit_number.clone().unwrap_or_default(),
            id: p.id,
        })
        .collect();
    render(
        StatusCode::OK,
        &ListPage {
            c: ctx.chrome(),
            permits,
        },
    )
}

#[derive(Deserialize, Default)]
struct PermitForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    permit_type: String,
    #[serde(default)]
    applicant_name: String,
    #[serde(default)]
    applicant_phone: String,
    #[serde(default)]
    site_street: String,
    #[serde(default)]
    site_zip: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    valuation: String,
    #[serde(default)]
    area_sq_ft: String,
    #[serde(default)]
    contractor_licence: String,
}

impl PermitForm {
    fn input(&self) -> PermitInput {
        PermitInput {
            permit_type: self.permit_type.trim().to_owned(),
            applicant_name: self.applicant_name.clone(),
            applicant_phone: self.applicant_phone.clone(),
            site_street: self.site_street.clone(),
            site_zip: self.site_zip.clone(),
            scope: self.scope.clone(),
            valuation: self.valuation.clone(),
            area_sq_ft: self.area_sq_ft.clone(),
            contractor_licence: self.contractor_licence.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "portal/permit_form.html")]
struct FormPage {
    c: Chrome,
    /// `None`: a new application.
    id: Option<String>,
    types: Vec<TypeOption>,
    v: PermitInput,
    errors: FormErrors,
}

async fn form_page(
    st: &AppState,
    ctx: &Ctx,
    id: Option<String>,
    v: PermitInput,
    errors: FormErrors,
) -> Page {
    let types = type_options(ctx, &st.app.permit_types().await?);
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render(
        status,
        &FormPage {
            c: ctx.chrome(),
            id,
            types,
            v,
            errors,
        },
    )
}

async fn new_form(State(st): State<AppState>, ctx: Ctx) -> Page {
    if ctx.session.is_none() {
        return Ok(to_login());
    }
    form_page(&st, &ctx, None, PermitInput::default(), FormErrors::none()).await
}

async fn save(st: &AppState, ctx: &Ctx, id: Option<String>, f: PermitForm) -> Page {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    ctx.check_csrf(&f.csrf)?;
    let input = f.input();
    match st
        .app
        .save_permit(&s.user_id, id.as_deref(), &input, &ctx.ip)
        .await
    {
        Ok(id) => Ok(Redirect::to(&format!("/permits/{id}/plans")).into_response()),
        Err(AppError::NotFound(_)) => Err(not_found(ctx)),
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "permit_type", PERMIT_FIELDS) {
            Some(errors) => form_page(st, ctx, id, input, errors).await,
            None => Err(e.into()),
        },
    }
}

async fn create(State(st): State<AppState>, ctx: Ctx, Form(f): Form<PermitForm>) -> Page {
    save(&st, &ctx, None, f).await
}

async fn edit_form(State(st): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Page {
    let file = match own_file(&st, &ctx, &id).await? {
        Ok(f) => f,
        Err(r) => return Ok(r),
    };
    let p = &file.permit;
    if !p.editable() {
        return Ok(Redirect::to(&format!("/permits/{id}")).into_response());
    }
    let v = PermitInput {
        permit_type: p.permit_type.clone(),
        applicant_name: p.applicant_name.clone(),
        applicant_phone: p.applicant_phone.clone(),
        site_street: p.site_street.clone(),
        site_zip: p.site_zip.clone(),
        scope: p.scope.clone(),
        valuation: view::plain(p.valuation_cents),
        area_sq_ft: p.area_sq_ft.to_string(),
        contractor_licence: p.contractor_licence.clone(),
    };
    form_page(&st, &ctx, Some(id), v, FormErrors::none()).await
}

async fn update(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<PermitForm>,
) -> Page {
    if !is_id("pmt_", &id) {
        return Err(not_found(&ctx));
    }
    save(&st, &ctx, Some(id), f).await
}

/// The resident's own permit file, or a redirect to the login page.
async fn own_file(
    st: &AppState,
    ctx: &Ctx,
    id: &str,
) -> Result<Result<PermitFile, Response>, PageError> {
    let Some(s) = ctx.session.clone() else {
        return Ok(Err(to_login()));
    };
    if !is_id("pmt_", id) {
        return Err(not_found(ctx));
    }
    match st.app.permit_file(Some(&s.user_id), id).await {
        Ok(f) => Ok(Ok(f)),
        Err(AppError::NotFound(_)) => Err(not_found(ctx)),
        Err(e) => Err(e.into()),
    }
}

struct PlanLine {
    id: String,
    name: String,
    kind: &'static str,
}

#[derive(Template)]
#[template(path = "portal/permit_plans.html")]
struct PlansPage {
    c: Chrome,
    id: String,
    documents: Vec<String>,
    plans: Vec<PlanLine>,
    editable: bool,
    errors: FormErrors,
}

fn plan_lines(file: &PermitFile) -> Vec<PlanLine> {
    file.plans
        .iter()
        .map(|p| PlanLine {
            id: p.id.clone(),
            name: p.file_name.clone(),
            kind: p.kind.label(),
        })
        .collect()
}

async fn plans_with(
    st: &AppState,
    ctx: &Ctx,
    id: &str,
    errors: FormErrors,
    status: StatusCode,
) -> Page {
    let file = match own_file(st, ctx, id).await? {
        Ok(f) => f,
        Err(r) => return Ok(r),
    };
    render(
        status,
        &PlansPage {
            c: ctx.chrome(),
            id: id.to_owned(),
            documents: file.kind.required_documents.clone(),
            plans: plan_lines(&file),
            editable: file.permit.editable(),
            errors,
        },
    )
}

async fn plans_page(State(st): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Page {
    plans_with(&st, &ctx, &id, FormErrors::none(), StatusCode::OK).await
}

async fn upload_plan(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    mp: Result<Multipart, MultipartRejection>,
) -> Page {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    let problem = |code: &'static str, msg: &str| {
        FormErrors::from_problems(
            &ctx.t,
            &[app::FieldProblem::new("plan", code, msg)],
            &["plan"],
        )
    };
    let Ok(mp) = mp else {
        return plans_with(
            &st,
            &ctx,
            &id,
            problem("upload_unreadable", "the upload could not be read"),
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    let form = match read_upload(mp).await {
        Ok(f) => f,
        Err(UploadProblem::TooLarge) => {
            return plans_with(
                &st,
                &ctx,
                &id,
                problem("upload_too_large", "the file is larger than 10 MB"),
                StatusCode::PAYLOAD_TOO_LARGE,
            )
            .await;
        }
        Err(UploadProblem::Malformed) => {
            return plans_with(
                &st,
                &ctx,
                &id,
                problem("upload_unreadable", "the upload could not be read"),
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    if !secrets_equal(&s.csrf_token, &form.csrf) || form.csrf.is_empty() {
        return Err(PageError(WebError::new(
            StatusCode::FORBIDDEN,
            "csrf_token_invalid",
            ctx.t.s("error.csrf"),
            Format::Html,
        )));
    }
    let Some((name, bytes)) = form.file.filter(|(n, _)| !n.is_empty()) else {
        return plans_with(
            &st,
            &ctx,
            &id,
            problem("upload_choose_file", "choose a file"),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    match st
        .app
        .attach_plan(&s.user_id, &id, &name, &bytes, &ctx.ip)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/permits/{id}/plans")).into_response()),
        Err(AppError::NotFound(_)) => Err(not_found(&ctx)),
        Err(e) => {
            let status = crate::error::status_of(&e);
            match FormErrors::from_app(&ctx.t, &e, "plan", &["plan"]) {
                Some(errors) => plans_with(&st, &ctx, &id, errors, status).await,
                None => Err(e.into()),
            }
        }
    }
}

struct InspectionLine {
    kind: String,
    day: String,
    status: String,
    note: String,
}

struct DayOption {
    day: String,
    label: String,
}

#[derive(Template)]
#[template(path = "portal/permit.html")]
struct PermitPage {
    c: Chrome,
    id: String,
    kind: String,
    status: String,
    raw_status: String,
    number: String,
    street: String,
    zip: String,
    scope: String,
    valuation: String,
    area: i64,
    contractor: String,
    note: String,
    editable: bool,
    estimate: Vec<LineRow>,
    estimate_total: String,
    plans: Vec<PlanLine>,
    invoices: Vec<InvoiceRow>,
    inspections: Vec<InspectionLine>,
    inspection_types: Vec<String>,
    days: Vec<DayOption>,
    errors: FormErrors,
    notice: String,
}

async fn permit_page(st: &AppState, ctx: &Ctx, id: &str, errors: FormErrors, notice: &str) -> Page {
    let file = match own_file(st, ctx, id).await? {
        Ok(f) => f,
        Err(r) => return Ok(r),
    };
    let p = &file.permit;
    let days = if p.status == "issued" {
        st.app
            .inspection_days()
            .await?
            .into_iter()
            .filter(|(_, left)| *left > 0)
            .map(|(d, left)| DayOption {
                label: ctx.t.f(
                    "inspection.day_option",
                    &[("date", &ctx.t.date(&d)), ("left", &left.to_string())],
                ),
                day: d,
            })
            .collect()
    } else {
        Vec::new()
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render(
        status,
        &PermitPage {
            c: ctx.chrome(),
            id: id.to_owned(),
            kind: view::name(&ctx.t, &file.kind.name, &file.kind.name_es).to_owned(),
            status: ctx.t.s(&format!("permit.status.{}", p.status)).to_owned(),
            raw_status: p.status.clone(),
            number: p.permit_number.clone().unwrap_or_default(),
            street: p.site_street.clone(),
            zip: p.site_zip.clone(),
            scope: p.scope.clone(),
            valuation: view::money(p.valuation_cents),
            area: p.area_sq_ft,
            contractor: p.contractor_licence.clone(),
            note: p.review_note.clone().unwrap_or_default(),
            editable: p.editable(),
            estimate: view::fee_lines(&ctx.t, &file.estimate),
            estimate_total: view::money(file.estimate.iter().map(|l| l.amount_cents).sum()),
            plans: plan_lines(&file),
            invoices: view::invoice_rows(&ctx.t, &file.invoices),
            inspections: file
                .inspections
                .iter()
                .map(|i| InspectionLine {
                    kind: i.inspection_type.clone(),
                    day: ctx.t.date(&i.day),
                    status: ctx
                        .t
                        .s(&format!("inspection.status.{}", i.status))
                        .to_owned(),
                    note: i.note.clone().unwrap_or_default(),
                })
                .collect(),
            inspection_types: file.kind.inspections.clone(),
            days,
            errors,
            notice: notice.to_owned(),
        },
    )
}

#[derive(Deserialize, Default)]
struct ShowQuery {
    #[serde(default)]
    done: Option<String>,
}

async fn show(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    q: Query<ShowQuery>,
) -> Page {
    let notice = match q.0.done {
        Some(d) if d == "submitted" => ctx.t.s("permit.notice.submitted"),
        Some(d) if d == "inspection" => ctx.t.s("permit.notice.inspection"),
        _ => "",
    };
    permit_page(&st, &ctx, &id, FormErrors::none(), notice).await
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn submit(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Page {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    ctx.check_csrf(&f.csrf)?;
    if !is_id("pmt_", &id) {
        return Err(not_found(&ctx));
    }
    match st.app.submit_permit(&s.user_id, &id, &ctx.ip).await {
        Ok(()) => Ok(Redirect::to(&format!("/permits/{id}?done=submitted")).into_response()),
        Err(AppError::NotFound(_)) => Err(not_found(&ctx)),
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "submit", &["submit", "plan"]) {
            Some(errors) => permit_page(&st, &ctx, &id, errors, "").await,
            None => Err(e.into()),
        },
    }
}

#[derive(Deserialize)]
struct InspectionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    inspection_type: String,
    #[serde(default)]
    day: String,
}

async fn request_inspection(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<InspectionForm>,
) -> Page {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    ctx.check_csrf(&f.csrf)?;
    if !is_id("pmt_", &id) {
        return Err(not_found(&ctx));
    }
    match st
        .app
        .request_inspection(&s.user_id, &id, &f.inspection_type, &f.day, &ctx.ip)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/permits/{id}?done=inspection")).into_response()),
        Err(AppError::NotFound(_)) => Err(not_found(&ctx)),
        Err(e) => {
            match FormErrors::from_app(&ctx.t, &e, "inspection_type", &["inspection_type", "day"]) {
                Some(errors) => permit_page(&st, &ctx, &id, errors, "").await,
                None => Err(e.into()),
            }
        }
    }
}

#[derive(Template)]
#[template(path = "portal/permit_print.html")]
struct PrintPage {
    c: Chrome,
    number: String,
    kind: String,
    street: String,
    zip: String,
    scope: String,
    valuation: String,
    contractor: String,
    issued: String,
    inspections: Vec<String>,
}

async fn print(State(st): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Page {
    let file = match own_file(&st, &ctx, &id).await? {
        Ok(f) => f,
        Err(r) => return Ok(r),
    };
    let p = &file.permit;
    if p.status != "issued" {
        return Err(not_found(&ctx));
    }
    render(
        StatusCode::OK,
        &PrintPage {
            c: ctx.chrome(),
            number: p.permit_number.clone().unwrap_or_default(),
            kind: view::name(&ctx.t, &file.kind.name, &file.kind.name_es).to_owned(),
            street: p.site_street.clone(),
            zip: p.site_zip.clone(),
            scope: p.scope.clone(),
            valuation: view::money(p.valuation_cents),
            contractor: p.contractor_licence.clone(),
            issued: p
                .issued_at
                .map(|t| view::date_of(&ctx.t, t))
                .unwrap_or_default(),
            inspections: file.kind.inspections.clone(),
        },
    )
}

async fn download_plan(State(st): State<AppState>, ctx: Ctx, Path(plan): Path<String>) -> Page {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    if !is_id("pln_", &plan) {
        return Err(not_found(&ctx));
    }
    match st.app.plan_content(Some(&s.user_id), &plan).await {
        Ok((name, kind, bytes)) => Ok(crate::forms::inert_download(
            bytes,
            kind.media_type(),
            &name,
        )),
        Err(AppError::NotFound(_)) => Err(not_found(&ctx)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, Default)]
struct LookupQuery {
    #[serde(default)]
    number: String,
    #[serde(default)]
    address: String,
}

struct PublicInspection {
    kind: String,
    day: String,
    status: String,
}

#[derive(Template)]
#[template(path = "portal/permit_lookup.html")]
struct LookupPage {
    c: Chrome,
    number: String,
    address: String,
    errors: FormErrors,
    found: bool,
    kind: String,
    status: String,
    issued: String,
    inspections: Vec<PublicInspection>,
}

async fn lookup(State(st): State<AppState>, ctx: Ctx, Query(q): Query<LookupQuery>) -> Page {
    let mut page = LookupPage {
        c: ctx.chrome(),
        number: q.number.trim().chars().take(40).collect(),
        address: q.address.trim().chars().take(200).collect(),
        errors: FormErrors::none(),
        found: false,
        kind: String::new(),
        status: String::new(),
        issued: String::new(),
        inspections: Vec::new(),
    };
    if q.number.is_empty() && q.address.is_empty() {
        return render(StatusCode::OK, &page);
    }
    let mut problems = Vec::new();
    if q.number.trim().is_empty() {
        problems.push(app::FieldProblem::new(
            "number",
            "required",
            "enter the permit number",
        ));
    }
    if q.address.trim().is_empty() {
        problems.push(app::FieldProblem::new(
            "address",
            "required",
            "enter the street or ZIP",
        ));
    }
    if !problems.is_empty() {
        page.errors = FormErrors::from_problems(&ctx.t, &problems, &["number", "address"]);
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    match st
        .app
        .public_permit(&page.number, &page.address, &ctx.ip)
        .await
    {
        Ok(p) => {
            page.found = true;
            page.kind = view::name(&ctx.t, &p.permit_type.name, &p.permit_type.name_es).to_owned();
            page.status = ctx.t.s(&format!("permit.status.{}", p.status)).to_owned();
            page.issued = p
                .issued_at
                .map(|t| view::date_of(&ctx.t, t))
                .unwrap_or_default();
            page.inspections = p
                .inspections
                .iter()
                .map(|i| PublicInspection {
                    kind: i.inspection_type.clone(),
                    day: ctx.t.date(&i.day),
                    status: ctx
                        .t
                        .s(&format!("inspection.status.{}", i.status))
                        .to_owned(),
                })
                .collect();
            render(StatusCode::OK, &page)
        }
        Err(AppError::NotFound(_)) => {
            page.errors = FormErrors::from_problems(
                &ctx.t,
                &[app::FieldProblem::new(
                    "number",
                    "permit_lookup_none",
                    "no permit matches",
                )],
                &["number", "address"],
            );
            render(StatusCode::NOT_FOUND, &page)
        }
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "number", &["number", "address"]) {
            Some(errors) => {
                page.errors = errors;
                render(crate::error::status_of(&e), &page)
            }
            None => Err(e.into()),
        },
    }
}
