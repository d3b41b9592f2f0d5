//! Staff pages: bill imports from the back office (supervisors and administrators). A file
//! (up to `MAX_IMPORT_FILE`; larger ones through `strongroom import-bills`) and a mapping
//! are uploaded; the import runs in the background on the same engine as the command line
//! (`app::bill_import`), and its page shows its progress (reload it) and then its result.
//! Every import is listed with its counts and errors (line and field).

use crate::forms::FormErrors;
use crate::portal::{render, Chrome};
use crate::security::{IMPORT_ROUTE, MAX_IMPORT_BODY, MAX_IMPORT_FILE};
use crate::staff::{Refusal, StaffCtx};
use crate::view::utc;
use crate::AppState;
use app::bill_import::{ImportOptions, LineError, Mapping, Observer};
use app::staff::Role;
use askama::Template;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const FIELDS: &[&str] = &["mapping", "file"];

/// The mappings the back office offers: the layouts shipped in `deploy/`.
fn mappings() -> Vec<(&'static str, &'static str)> {
    vec![
        ("csv", include_str!("../../../../deploy/bills-csv.toml")),
        ("fixed", include_str!("../../../../deploy/bills-fixed.toml")),
    ]
}

/// A background import's state, as its page shows it.
#[derive(Debug, Clone, Default)]
pub struct Job {
    pub source: String,
    pub bytes_total: u64,
    pub bytes: u64,
    pub lines: u64,
    pub started_at: i64,
    /// Set when it ended: the import's id (its record has the result).
    pub import_id: Option<String>,
    /// Set when it could not run at all.
    pub failure: Option<String>,
}

/// The node's background imports by job id.
#[derive(Clone, Default)]
pub struct Jobs(Arc<Mutex<HashMap<String, Job>>>);

impl Jobs {
    fn update(&self, id: &str, f: impl FnOnce(&mut Job)) {
        if let Ok(mut m) = self.0.lock() {
            if let Some(j) = m.get_mut(id) {
                f(j);
            }
        }
    }

    fn get(&self, id: &str) -> Option<Job> {
        self.0.lock().ok().and_then(|m| m.get(id).cloned())
    }
}

struct JobObserver {
    jobs: Jobs,
    id: String,
}

impl Observer for JobObserver {
    fn progress(&mut self, bytes: u64, lines: u64) {
        self.jobs.update(&self.id, |j| {
            j.bytes = bytes;
            j.lines = lines;
        });
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            IMPORT_ROUTE,
            get(list)
                .post(upload)
                .layer(DefaultBodyLimit::max(MAX_IMPORT_BODY)),
        )
        .route("/imports/jobs/{job}", get(job))
        .route("/imports/{id}", get(one))
}

struct Row {
    id: String,
    source: String,
    status: String,
    failed: bool,
    started: String,
    lines: i64,
    created: i64,
    updated: i64,
    unchanged: i64,
    skipped: i64,
}

#[derive(Template)]
#[template(path = "staff/imports.html")]
struct ListPage {
    c: Chrome,
    rows: Vec<Row>,
    mappings: Vec<&'static str>,
    chosen: String,
    errors: FormErrors,
    max_mib: usize,
}

async fn list_page(
    st: &AppState,
    ctx: &StaffCtx,
    status: StatusCode,
    errors: FormErrors,
    chosen: String,
) -> Result<Response, Refusal> {
    ctx.require(Role::Supervisor)?;
    let rows = st
        .app
        .bill_imports(50)
        .await
        .map_err(|e| ctx.app_error(e))?
        .into_iter()
        .map(|r| Row {
            failed: r.status != "succeeded",
            status: ctx
                .t
                .s(&format!("staff.imports.status.{}", r.status))
                .to_owned(),
            id: r.id,
            source: r.source,
            started: utc(r.started_at),
            lines: r.lines,
            created: r.bills_created,
            updated: r.bills_updated,
            unchanged: r.bills_unchanged,
            skipped: r.lines_skipped,
        })
        .collect();
    Ok(render(
        status,
        &ListPage {
            c: ctx.chrome(),
            rows,
            mappings: mappings().into_iter().map(|(n, _)| n).collect(),
            chosen,
            errors,
            max_mib: MAX_IMPORT_FILE / (1024 * 1024),
        },
    )?)
}

async fn list(State(st): State<AppState>, ctx: StaffCtx) -> Result<Response, Refusal> {
    list_page(&st, &ctx, StatusCode::OK, FormErrors::none(), "csv".into()).await
}

struct Upload {
    csrf: String,
    mapping: String,
    skip_invalid: bool,
    file: Option<(String, Vec<u8>)>,
}

/// The upload form; `None` for a body that is not this page's form.
async fn read_upload(mut mp: Multipart) -> Result<Upload, bool> {
    let mut u = Upload {
        csrf: String::new(),
        mapping: String::new(),
        skip_invalid: false,
        file: None,
    };
    while let Some(mut field) = mp.next_field().await.map_err(|_| false)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" && u.file.is_none() {
            let file_name = field.file_name().unwrap_or_default().to_owned();
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|_| false)? {
                if bytes.len() + chunk.len() > MAX_IMPORT_FILE {
                    return Err(true);
                }
                bytes.extend_from_slice(&chunk);
            }
            u.file = Some((file_name, bytes));
            continue;
        }
        let text = field.text().await.map_err(|_| false)?;
        if text.len() > 256 {
            return Err(false);
        }
        match name.as_str() {
            "csrf" => u.csrf = text,
            "mapping" => u.mapping = text,
            "skip_invalid" => u.skip_invalid = text == "1",
            _ => return Err(false),
        }
    }
    Ok(u)
}

async fn upload(
    State(st): State<AppState>,
    ctx: StaffCtx,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Supervisor)?;
    let Ok(mp) = mp else {
        return Err(ctx.bad_request());
    };
    let form = match read_upload(mp).await {
        Ok(f) => f,
        Err(too_large) => {
            if !too_large {
                return Err(ctx.bad_request());
            }
            let errors = FormErrors::from_problems(
                &ctx.t,
                &[app::FieldProblem::new(
                    "file",
                    "import_too_large",
                    "the file is too large",
                )],
                FIELDS,
            );
            return list_page(
                &st,
                &ctx,
                StatusCode::PAYLOAD_TOO_LARGE,
                errors,
                "csv".into(),
            )
            .await;
        }
    };
    ctx.require_form_token(&form.csrf)?;
    let mapping = mappings()
        .into_iter()
        .find(|(n, _)| *n == form.mapping)
        .and_then(|(_, text)| Mapping::parse(text).ok());
    let mut problems = Vec::new();
    if mapping.is_none() {
        problems.push(app::FieldProblem::new(
            "mapping",
            "layout_unknown",
            "choose a file layout",
        ));
    }
    let file = form.file.filter(|(n, b)| !n.is_empty() && !b.is_empty());
    if file.is_none() {
        problems.push(app::FieldProblem::new(
            "file",
            "import_choose_file",
            "choose a file",
        ));
    }
    let (Some(mapping), Some((name, bytes))) = (mapping, file) else {
        let errors = FormErrors::from_problems(&ctx.t, &problems, FIELDS);
        return list_page(&st, &ctx, StatusCode::BAD_REQUEST, errors, form.mapping).await;
    };
    // A plain name for the record (no path, no control characters).
    let source: String = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    let job_id = app::ids::random_token();
    let job = Job {
        source: source.clone(),
        bytes_total: bytes.len() as u64,
        started_at: st.app.now().unix_timestamp(),
        ..Job::default()
    };
    if let Ok(mut m) = st.imports.0.lock() {
        m.insert(job_id.clone(), job);
    }
    let mut opts = ImportOptions::new(&source, &format!("staff:{}", me.id));
    opts.skip_invalid = form.skip_invalid;
    let (app, jobs, id) = (st.app.clone(), st.imports.clone(), job_id.clone());
    tokio::spawn(async move {
        let size = bytes.len() as u64;
        let mut observer = JobObserver {
            jobs: jobs.clone(),
            id: id.clone(),
        };
        let result = app
            .import_bills(
                std::io::Cursor::new(bytes),
                size,
                &mapping,
                &opts,
                &mut observer,
            )
            .await;
        match result {
            Ok(r) => jobs.update(&id, |j| j.import_id = Some(r.import_id)),
            Err(e) => {
                tracing::error!(code = e.code(), error = %e, "bill import failed");
                jobs.update(&id, |j| j.failure = Some(e.code().to_owned()));
            }
        }
    });
    Ok(Redirect::to(&format!("/imports/jobs/{job_id}")).into_response())
}

#[derive(Template)]
#[template(path = "staff/import_job.html")]
struct JobPage {
    c: Chrome,
    job_id: String,
    j: Job,
    percent: u64,
}

async fn job(
    State(st): State<AppState>,
    ctx: StaffCtx,
    Path(job_id): Path<String>,
) -> Result<Response, Refusal> {
    ctx.require(Role::Supervisor)?;
    let Some(j) = st.imports.get(&job_id) else {
        return Err(ctx.not_found());
    };
    if let Some(id) = &j.import_id {
        return Ok(Redirect::to(&format!("/imports/{id}")).into_response());
    }
    let percent = (j.bytes * 100)
        .checked_div(j.bytes_total)
        .unwrap_or(0)
        .min(100);
    Ok(render(
        StatusCode::OK,
        &JobPage {
            c: ctx.chrome(),
            job_id,
            j,
            percent,
        },
    )?)
}

#[derive(Template)]
#[template(path = "staff/import.html")]
struct OnePage {
    c: Chrome,
    r: app::store::bill_import::ImportRow,
    status: String,
    started: String,
    errors: Vec<LineError>,
}

async fn one(
    State(st): State<AppState>,
    ctx: StaffCtx,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    ctx.require(Role::Supervisor)?;
    if !id.starts_with("imp_") || id.len() > 40 {
        return Err(ctx.not_found());
    }
    let r = st
        .app
        .bill_import(&id)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let errors: Vec<LineError> = serde_json::from_str(&r.errors).unwrap_or_default();
    Ok(render(
        StatusCode::OK,
        &OnePage {
            c: ctx.chrome(),
            status: ctx
                .t
                .s(&format!("staff.imports.status.{}", r.status))
                .to_owned(),
            started: utc(r.started_at),
            errors,
            r,
        },
    )?)
}
