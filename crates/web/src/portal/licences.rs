//! Business licences for residents: apply, renew (details carried forward to confirm, the
//! fee and any late penalty shown before the invoice is made), print the certificate;
//! and the public check of a certificate.
//!
//! - `GET  /licences`, `GET|POST /licences/new`, `GET /licences/{id}`;
//! - `GET|POST /licences/{id}/renew` (POST with `quote` shows the fee, then confirms);
//! - `GET  /licences/{id}/certificate`: printable, with the verification URL;
//! - `GET  /licence-check`, `GET /licence-check/{code}`: public.

use super::account::to_login;
use super::{render, Chrome, Ctx};
use crate::error::{Format, PageError, WebError};
use crate::forms::FormErrors;
use crate::view::{self, InvoiceRow, LineRow};
use crate::AppState;
use app::licences::{LicenceInput, LicenceView, LICENCE_FIELDS};
use app::services::LicenceType;
use app::AppError;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/licences", get(list))
        .route("/licences/new", get(new_form).post(create))
        .route("/licences/{id}", get(show))
        .route("/licences/{id}/renew", get(renew_form).post(renew))
        .route("/licences/{id}/certificate", get(certificate))
        .route("/licence-check", get(verify_form))
        .route("/licence-check/{code}", get(verify_code))
}

type Page = Result<Response, PageError>;

fn not_found(ctx: &Ctx) -> PageError {
    PageError(WebError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        ctx.t.s("licence.not_found"),
        Format::Html,
    ))
}

fn is_licence_id(id: &str) -> bool {
    id.strip_prefix("lic_").is_some_and(|r| {
        (16..=64).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

struct TypeOption {
    code: String,
    name: String,
}

fn type_name(ctx: &Ctx, types: &[LicenceType], code: &str) -> String {
    types
        .iter()
        .find(|t| t.code == code)
        .map(|t| view::name(&ctx.t, &t.name, &t.name_es).to_owned())
        .unwrap_or_else(|| code.to_owned())
}

struct LicenceLine {
    id: String,
    business: String,
    kind: String,
    status: String,
    number: String,
    expires: String,
}

fn line(ctx: &Ctx, types: &[LicenceType], l: &LicenceView) -> LicenceLine {
    LicenceLine {
        id: l.id.clone(),
        business: l.business_name.clone(),
        kind: type_name(ctx, types, &l.licence_type),
        status: ctx.t.s(&format!("licence.status.{}", l.status)).to_owned(),
        number: l.licence_number.clone().unwrap_or_default(),
        expires: l
            .expires_on
            .as_deref()
            .map(|d| ctx.t.date(d))
            .unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "portal/licences.html")]
struct ListPage {
    c: Chrome,
    licences: Vec<LicenceLine>,
}

async fn list(State(st): State<AppState>, ctx: Ctx) -> Page {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    let types = st.app.licence_types().await?;
    let licences = st
        .app
        .licences_of_resident(&s.user_id)
        .await?
        .iter()
        .map(|l| line(&ctx, &types, l))
        .collect();
    render(
        StatusCode::OK,
        &ListPage {
            c: ctx.chrome(),
            licences,
        },
    )
}

#[derive(Deserialize, Default)]
struct LicenceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    licence_type: String,
    #[serde(default)]
    business_name: String,
    #[serde(default)]
    business_street: String,
    #[serde(default)]
    business_zip: String,
    #[serde(default)]
    employees: String,
    #[serde(default)]
    gross_receipts: String,
    /// Renewal: "1" asks for the fee first; anything else confirms.
    #[serde(default)]
    quote: String,
}

impl LicenceForm {
    fn input(&self) -> LicenceInput {
        LicenceInput {
            licence_type: self.licence_type.trim().to_owned(),
            business_name: self.business_name.clone(),
            business_street: self.business_street.clone(),
            business_zip: self.business_zip.clone(),
            employees: self.employees.clone(),
            gross_receipts: self.gross_receipts.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "portal/licence_form.html")]
struct FormPage {
    c: Chrome,
    /// Renewal of this licence (the type is fixed), or a new application.
    renew: Option<String>,
    renew_title: String,
    types: Vec<TypeOption>,
    v: LicenceInput,
    errors: FormErrors,
    quote: Vec<LineRow>,
    quote_total: String,
}

async fn new_form(State(st): State<AppState>, ctx: Ctx) -> Page {
    if ctx.session.is_none() {
        return Ok(to_login());
    }
    new_page(&st, &ctx, LicenceInput::default(), FormErrors::none()).await
}

async fn new_page(st: &AppState, ctx: &Ctx, v: LicenceInput, errors: FormErrors) -> Page {
    let types = st
        .app
        .licence_types()
        .await?
        .iter()
        .map(|t| TypeOption {
            code: t.code.clone(),
            name: view::name(&ctx.t, &t.name, &t.name_es).to_owned(),
        })
        .collect();
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render(
        status,
        &FormPage {
            c: ctx.chrome(),
            renew: None,
            renew_title: String::new(),
            types,
            v,
            errors,
            quote: Vec::new(),
            quote_total: String::new(),
        },
    )
}

async fn create(State(st): State<AppState>, ctx: Ctx, Form(f): Form<LicenceForm>) -> Page {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    ctx.check_csrf(&f.csrf)?;
    let input = f.input();
    match st.app.apply_licence(&s.user_id, &input, &ctx.ip).await {
        Ok(id) => Ok(Redirect::to(&format!("/licences/{id}")).into_response()),
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "licence_type", LICENCE_FIELDS) {
            Some(errors) => new_page(&st, &ctx, input, errors).await,
            None => Err(e.into()),
        },
    }
}

#[derive(Template)]
#[template(path = "portal/licence.html")]
struct LicencePage {
    c: Chrome,
    l: LicenceLine,
    street: String,
    zip: String,
    employees: i64,
    gross: String,
    raw_status: String,
    reason: String,
    renewable: bool,
    invoices: Vec<InvoiceRow>,
}

async fn own(
    st: &AppState,
    ctx: &Ctx,
    id: &str,
) -> Result<Result<(LicenceView, LicenceType, Vec<app::services::InvoiceView>), Response>, PageError>
{
    let Some(s) = ctx.session.clone() else {
        return Ok(Err(to_login()));
    };
    if !is_licence_id(id) {
        return Err(not_found(ctx));
    }
    match st.app.licence(Some(&s.user_id), id).await {
        Ok(x) => Ok(Ok(x)),
        Err(AppError::NotFound(_)) => Err(not_found(ctx)),
        Err(e) => Err(e.into()),
    }
}

async fn show(State(st): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Page {
    let (l, kind, invoices) = match own(&st, &ctx, &id).await? {
        Ok(x) => x,
        Err(r) => return Ok(r),
    };
    render(
        StatusCode::OK,
        &LicencePage {
            c: ctx.chrome(),
            l: line(&ctx, std::slice::from_ref(&kind), &l),
            street: l.business_street.clone(),
            zip: l.business_zip.clone(),
            employees: l.employees,
            gross: view::money(l.gross_receipts_cents),
            raw_status: l.status.clone(),
            reason: l.status_reason.clone().unwrap_or_default(),
            renewable: l.renewable,
            invoices: view::invoice_rows(&ctx.t, &invoices),
        },
    )
}

async fn renew_page(
    ctx: &Ctx,
    l: &LicenceView,
    kind: &LicenceType,
    v: LicenceInput,
    errors: FormErrors,
    quote: Vec<domain::fees::FeeLine>,
) -> Page {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render(
        status,
        &FormPage {
            c: ctx.chrome(),
            renew: Some(l.id.clone()),
            renew_title: format!(
                "{} ({})",
                view::name(&ctx.t, &kind.name, &kind.name_es),
                l.licence_number.clone().unwrap_or_default()
            ),
            types: Vec::new(),
            v,
            errors,
            quote_total: if quote.is_empty() {
                String::new()
            } else {
                view::money(quote.iter().map(|l| l.amount_cents).sum())
            },
            quote: view::fee_lines(&ctx.t, &quote),
        },
    )
}

async fn renew_form(State(st): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Page {
    let (l, kind, _) = match own(&st, &ctx, &id).await? {
        Ok(x) => x,
        Err(r) => return Ok(r),
    };
    if !l.renewable {
        return Ok(Redirect::to(&format!("/licences/{id}")).into_response());
    }
    // The business's details carried forward, for the owner to confirm or correct.
    let v = LicenceInput {
        licence_type: l.licence_type.clone(),
        business_name: l.business_name.clone(),
        business_street: l.business_street.clone(),
        business_zip: l.business_zip.clone(),
        employees: l.employees.to_string(),
        gross_receipts: view::plain(l.gross_receipts_cents),
    };
    renew_page(&ctx, &l, &kind, v, FormErrors::none(), Vec::new()).await
}

async fn renew(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<LicenceForm>,
) -> Page {
    let (l, kind, _) = match own(&st, &ctx, &id).await? {
        Ok(x) => x,
        Err(r) => return Ok(r),
    };
    ctx.check_csrf(&f.csrf)?;
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    let input = f.input();
    let result = if f.quote == "1" {
        st.app
            .renewal_quote(&s.user_id, &id, &input)
            .await
            .map(Some)
    } else {
        st.app
            .renew_licence(&s.user_id, &id, &input, &ctx.ip)
            .await
            .map(|_| None)
    };
    match result {
        Ok(Some(quote)) => renew_page(&ctx, &l, &kind, input, FormErrors::none(), quote).await,
        Ok(None) => Ok(Redirect::to("/cart").into_response()),
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "business_name", LICENCE_FIELDS) {
            Some(errors) => renew_page(&ctx, &l, &kind, input, errors, Vec::new()).await,
            None => Err(e.into()),
        },
    }
}

#[derive(Template)]
#[template(path = "portal/licence_certificate.html")]
struct CertificatePage {
    c: Chrome,
    l: LicenceLine,
    street: String,
    zip: String,
    issued: String,
    code: String,
    verify_url: String,
}

async fn certificate(State(st): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Page {
    let (l, kind, _) = match own(&st, &ctx, &id).await? {
        Ok(x) => x,
        Err(r) => return Ok(r),
    };
    let Some(code) = l.verification_code.clone().filter(|_| l.status == "active") else {
        return Err(not_found(&ctx));
    };
    render(
        StatusCode::OK,
        &CertificatePage {
            c: ctx.chrome(),
            l: line(&ctx, std::slice::from_ref(&kind), &l),
            street: l.business_street.clone(),
            zip: l.business_zip.clone(),
            issued: l
                .issued_on
                .as_deref()
                .map(|d| ctx.t.date(d))
                .unwrap_or_default(),
            verify_url: format!("{}/licence-check/{code}", st.app.config().portal_base_url),
            code,
        },
    )
}

#[derive(Deserialize, Default)]
struct VerifyQuery {
    #[serde(default)]
    code: String,
}

#[derive(Template)]
#[template(path = "portal/verify.html")]
struct VerifyPage {
    c: Chrome,
    code: String,
    errors: FormErrors,
    found: bool,
    current: bool,
    number: String,
    business: String,
    kind: String,
    status: String,
    expires: String,
}

async fn verify_page(st: &AppState, ctx: &Ctx, code: &str) -> Page {
    let mut page = VerifyPage {
        c: ctx.chrome(),
        code: code.trim().chars().take(20).collect(),
        errors: FormErrors::none(),
        found: false,
        current: false,
        number: String::new(),
        business: String::new(),
        kind: String::new(),
        status: String::new(),
        expires: String::new(),
    };
    if code.trim().is_empty() {
        return render(StatusCode::OK, &page);
    }
    match st.app.verify_certificate(code, &ctx.ip).await {
        Ok(v) => {
            page.found = true;
            page.current = v.current;
            page.number = v.licence_number;
            page.business = v.business_name;
            page.kind =
                view::name(&ctx.t, &v.licence_type.name, &v.licence_type.name_es).to_owned();
            page.status = ctx.t.s(&format!("licence.status.{}", v.status)).to_owned();
            page.expires = v
                .expires_on
                .as_deref()
                .map(|d| ctx.t.date(d))
                .unwrap_or_default();
            render(StatusCode::OK, &page)
        }
        Err(AppError::NotFound(_)) => {
            page.errors = FormErrors::from_problems(
                &ctx.t,
                &[app::FieldProblem::new(
                    "code",
                    "certificate_unknown",
                    "no certificate has this code",
                )],
                &["code"],
            );
            render(StatusCode::NOT_FOUND, &page)
        }
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "code", &["code"]) {
            Some(errors) => {
                page.errors = errors;
                render(crate::error::status_of(&e), &page)
            }
            None => Err(e.into()),
        },
    }
}

async fn verify_form(State(st): State<AppState>, ctx: Ctx, Query(q): Query<VerifyQuery>) -> Page {
    verify_page(&st, &ctx, &q.code).await
}

async fn verify_code(State(st): State<AppState>, ctx: Ctx, Path(code): Path<String>) -> Page {
    verify_page(&st, &ctx, &code).await
}
