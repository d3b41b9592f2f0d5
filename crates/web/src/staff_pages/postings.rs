//! Staff pages: the city's ledger postings by business day, the settlement report of a day
//! (on screen and as CSV), and the export of a closed day in a layout the city's CIS
//! imports. Everyone on staff reads; supervisors and administrators export (an export
//! marks the day's postings as exported, and is audited).

use crate::forms::FormErrors;
use crate::portal::{render, Chrome};
use crate::staff::{Refusal, StaffCtx};
use crate::AppState;
use app::ledger::{PostingDay, Settlement};
use app::staff::Role;
use app::AppError;
use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

const FIELDS: &[&str] = &["layout"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/postings", get(days))
        .route("/postings/{date}", get(day))
        .route("/postings/{date}/settlement.csv", get(settlement_csv))
        .route("/postings/{date}/export", post(export))
}

fn parse_date(s: &str) -> Option<time::Date> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt).ok()
}

#[derive(Template)]
#[template(path = "staff/postings.html")]
struct DaysPage {
    c: Chrome,
    days: Vec<PostingDay>,
}

async fn days(State(st): State<AppState>, ctx: StaffCtx) -> Result<Response, Refusal> {
    ctx.require(Role::Auditor)?;
    let days = st
        .app
        .posting_days(90)
        .await
        .map_err(|e| ctx.app_error(e))?;
    Ok(render(
        StatusCode::OK,
        &DaysPage {
            c: ctx.chrome(),
            days,
        },
    )?)
}

#[derive(Template)]
#[template(path = "staff/postings_day.html")]
struct DayPage {
    c: Chrome,
    date: String,
    s: Settlement,
    closed: bool,
    can_export: bool,
    layouts: Vec<String>,
    chosen: String,
    errors: FormErrors,
}

async fn day_page(
    st: &AppState,
    ctx: &StaffCtx,
    d: time::Date,
    status: StatusCode,
    errors: FormErrors,
    chosen: String,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Auditor)?;
    let s = st.app.settlement(d).await.map_err(|e| ctx.app_error(e))?;
    let closed = st
        .app
        .business_day_closed(d)
        .map_err(|e| ctx.app_error(e))?;
    Ok(render(
        status,
        &DayPage {
            c: ctx.chrome(),
            date: d.to_string(),
            s,
            closed,
            can_export: me.role >= Role::Supervisor,
            layouts: st.app.ledger_config().layouts.keys().cloned().collect(),
            chosen,
            errors,
        },
    )?)
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
    day_page(
        &st,
        &ctx,
        d,
        StatusCode::OK,
        FormErrors::none(),
        "standard".into(),
    )
    .await
}

fn attachment(name: &str, content_type: &'static str, bytes: Vec<u8>) -> Response {
    let mut res = (StatusCode::OK, bytes).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

async fn settlement_csv(
    State(st): State<AppState>,
    ctx: StaffCtx,
    Path(date): Path<String>,
) -> Result<Response, Refusal> {
    ctx.require(Role::Auditor)?;
    let Some(d) = parse_date(&date) else {
        return Err(ctx.not_found());
    };
    let s = st.app.settlement(d).await.map_err(|e| ctx.app_error(e))?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let rows = std::iter::once(vec![
        "business_date".to_owned(),
        "department".into(),
        "payment_method".into(),
        "postings".into(),
        "receipts".into(),
        "refunds".into(),
        "net".into(),
    ])
    .chain(s.lines.iter().map(|l| {
        vec![
            d.to_string(),
            l.department.clone(),
            l.payment_method.clone(),
            l.count.to_string(),
            l.receipts.to_plain(),
            l.refunds.to_plain(),
            l.net.to_plain(),
        ]
    }))
    .chain(std::iter::once(vec![
        d.to_string(),
        "TOTAL".into(),
        String::new(),
        s.postings.to_string(),
        String::new(),
        String::new(),
        s.total.to_plain(),
    ]));
    for r in rows {
        w.write_record(&r)
            .map_err(|e| ctx.app_error(AppError::Internal(format!("csv: {e}"))))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| ctx.app_error(AppError::Internal(format!("csv: {e}"))))?;
    Ok(attachment(
        &format!("settlement-{d}.csv"),
        "text/csv; charset=utf-8",
        bytes,
    ))
}

#[derive(Deserialize)]
struct ExportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    layout: String,
}

async fn export(
    State(st): State<AppState>,
    ctx: StaffCtx,
    Path(date): Path<String>,
    form: Result<Form<ExportForm>, FormRejection>,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Supervisor)?;
    let Some(d) = parse_date(&date) else {
        return Err(ctx.not_found());
    };
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    ctx.require_form_token(&f.csrf)?;
    let Some(layout) = st.app.ledger_config().layouts.get(&f.layout).cloned() else {
        let errors = FormErrors::from_problems(
            &ctx.t,
            &[app::FieldProblem::new(
                "layout",
                "layout_unknown",
                "choose one of the listed layouts",
            )],
            FIELDS,
        );
        return day_page(&st, &ctx, d, StatusCode::BAD_REQUEST, errors, f.layout).await;
    };
    match st
        .app
        .export_postings(d, &layout, &format!("staff:{}", me.id))
        .await
    {
        Ok(e) => {
            let csv = matches!(layout.format, app::ledger::Format::Csv);
            Ok(attachment(
                &format!(
                    "postings-{d}-{}.{}",
                    f.layout,
                    if csv { "csv" } else { "txt" }
                ),
                if csv {
                    "text/csv; charset=utf-8"
                } else {
                    "text/plain; charset=utf-8"
                },
                e.bytes,
            ))
        }
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "layout", FIELDS) {
            Some(errors) => {
                let status = crate::error::status_of(&e);
                day_page(&st, &ctx, d, status, errors, f.layout).await
            }
            None => Err(ctx.app_error(e)),
        },
    }
}
