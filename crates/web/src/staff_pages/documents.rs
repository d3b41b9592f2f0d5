//! Staff pages: documents attached to a utility account (the upload pipeline of
//! invariant 3; permit plans will use it too).
//!
//! - `GET  /accounts/{account}/documents`: the account's documents and the upload form;
//! - `POST /accounts/{account}/documents`: a `multipart/form-data` upload (CSRF token and
//!   one file), checked by `app::documents`; the body limit of this one route is raised
//!   (see `security::UPLOAD_ROUTE`);
//! - `GET  /documents/{id}/download`: the bytes, only ever as an attachment, typed by our
//!   own sniffing, with `nosniff` and `Content-Security-Policy: default-src 'none'; sandbox`.
//!
//! All need the clerk role or above.

use crate::i18n::Tr;
use crate::portal::{render, Chrome};
use crate::security::{MAX_UPLOAD_BODY, UPLOAD_ROUTE};
use crate::staff::{utc, Refusal, StaffCtx};
use crate::AppState;
use app::documents::{is_document_id, Document, MAX_DOCUMENT_BYTES};
use app::staff::Role;
use app::AppError;
use askama::Template;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use domain::AccountNumber;

/// Who may see, attach and download documents.
const DOCUMENTS: Role = Role::Clerk;
/// Longest CSRF field accepted.
const MAX_CSRF: usize = 256;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            UPLOAD_ROUTE,
            get(list)
                .post(upload)
                .layer(DefaultBodyLimit::max(MAX_UPLOAD_BODY)),
        )
        .route("/documents/{id}/download", get(download))
}

type Page = Result<Response, Refusal>;

struct DocRow {
    id: String,
    name: String,
    kind: &'static str,
    size: String,
    uploaded_by: String,
    created: String,
}

#[derive(Template)]
#[template(path = "staff/documents.html")]
struct DocumentsPage {
    c: Chrome,
    account: String,
    rows: Vec<DocRow>,
    error: Option<String>,
}

/// `1.2 MB`, `34 KB`, `512 bytes`.
fn human_size(t: &Tr, n: i64) -> String {
    const KB: i64 = 1024;
    const MB: i64 = 1024 * 1024;
    if n >= MB {
        t.f(
            "staff.documents.size_mb",
            &[("n", &format!("{}.{}", n / MB, (n % MB) * 10 / MB))],
        )
    } else if n >= KB {
        t.f(
            "staff.documents.size_kb",
            &[("n", &((n + KB - 1) / KB).to_string())],
        )
    } else {
        t.f("staff.documents.size_bytes", &[("n", &n.to_string())])
    }
}

fn doc_row(t: &Tr, d: &Document) -> DocRow {
    DocRow {
        id: d.id.clone(),
        name: d.file_name.clone(),
        kind: d.kind.label(),
        size: human_size(t, d.size_bytes),
        uploaded_by: d.uploaded_by.clone(),
        created: utc(d.created_at),
    }
}

/// The account number of the path, exactly as the account page accepts it.
fn account_of(ctx: &StaffCtx, account: &str) -> Result<AccountNumber, Refusal> {
    AccountNumber::parse(account)
        .filter(|n| n.as_str() == account)
        .ok_or_else(|| ctx.not_found())
}

async fn list_page(
    st: &AppState,
    ctx: &StaffCtx,
    account: &str,
    status: StatusCode,
    error: Option<String>,
) -> Page {
    // 404 for an account that does not exist.
    st.app
        .account_summary(account)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let docs = st
        .app
        .documents_for_account(account)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let page = DocumentsPage {
        c: ctx.chrome(),
        account: account.to_owned(),
        rows: docs.iter().map(|d| doc_row(&ctx.t, d)).collect(),
        error,
    };
    Ok(render(status, &page)?)
}

async fn list(State(st): State<AppState>, ctx: StaffCtx, Path(account): Path<String>) -> Page {
    ctx.require(DOCUMENTS)?;
    let n = account_of(&ctx, &account)?;
    list_page(&st, &ctx, n.as_str(), StatusCode::OK, None).await
}

/// Equality of two secrets without an early exit (as the logout form's check).
fn secrets_equal(a: &str, b: &str) -> bool {
    let (ha, hb) = (app::ids::token_hash(a), app::ids::token_hash(b));
    ha.len() == hb.len()
        && ha
            .bytes()
            .zip(hb.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// What the upload form sent.
#[derive(Default)]
struct UploadForm {
    csrf: String,
    file: Option<(String, Vec<u8>)>,
}

enum FormProblem {
    /// Not a form this page sends (unknown or repeated field, unreadable body).
    Malformed,
    /// The file is over the limit (read no further).
    TooLarge,
}

async fn read_form(mut mp: Multipart) -> Result<UploadForm, FormProblem> {
    let mut form = UploadForm::default();
    let mut seen_csrf = false;
    while let Some(mut field) = mp.next_field().await.map_err(|_| FormProblem::Malformed)? {
        match field.name() {
            Some("csrf") if !seen_csrf => {
                seen_csrf = true;
                let mut v = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(|_| FormProblem::Malformed)? {
                    v.extend_from_slice(&chunk);
                    if v.len() > MAX_CSRF {
                        return Err(FormProblem::Malformed);
                    }
                }
                form.csrf = String::from_utf8(v).map_err(|_| FormProblem::Malformed)?;
            }
            Some("file") if form.file.is_none() => {
                // A file chosen in a browser always has a name; none means no file chosen.
                let name = field.file_name().unwrap_or_default().to_owned();
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(|_| FormProblem::Malformed)? {
                    if bytes.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                        return Err(FormProblem::TooLarge);
                    }
                    bytes.extend_from_slice(&chunk);
                }
                form.file = Some((name, bytes));
            }
            _ => return Err(FormProblem::Malformed),
        }
    }
    Ok(form)
}

async fn upload(
    State(st): State<AppState>,
    ctx: StaffCtx,
    Path(account): Path<String>,
    mp: Result<Multipart, MultipartRejection>,
) -> Page {
    let me = ctx.require(DOCUMENTS)?;
    let n = account_of(&ctx, &account)?;
    let Ok(mp) = mp else {
        return Err(ctx.bad_request());
    };
    let form = match read_form(mp).await {
        Ok(f) => f,
        Err(FormProblem::Malformed) => return Err(ctx.bad_request()),
        Err(FormProblem::TooLarge) => {
            let msg = ctx.t.s("staff.documents.too_large").to_owned();
            return list_page(
                &st,
                &ctx,
                n.as_str(),
                StatusCode::PAYLOAD_TOO_LARGE,
                Some(msg),
            )
            .await;
        }
    };
    let Some((session, _)) = &ctx.signed_in else {
        return Err(ctx.bad_request());
    };
    if form.csrf.is_empty() || !secrets_equal(&session.csrf_token, &form.csrf) {
        return Err(ctx.fail(
            StatusCode::FORBIDDEN,
            "csrf_token_invalid",
            ctx.t.s("staff.error.csrf"),
        ));
    }
    let Some((name, bytes)) = form.file.filter(|(name, _)| !name.is_empty()) else {
        let msg = ctx.t.s("staff.documents.choose_file").to_owned();
        return list_page(&st, &ctx, n.as_str(), StatusCode::BAD_REQUEST, Some(msg)).await;
    };
    match st
        .app
        .attach_document(&me.id, n.as_str(), &name, &bytes, &ctx.ip)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/accounts/{}/documents", n.as_str())).into_response()),
        Err(AppError::Invalid { message, .. }) => {
            tracing::info!(staff_id = %me.id, "document refused");
            let msg = ctx
                .t
                .f("staff.documents.refused", &[("reason", message.as_str())]);
            list_page(&st, &ctx, n.as_str(), StatusCode::BAD_REQUEST, Some(msg)).await
        }
        Err(e) => Err(ctx.app_error(e)),
    }
}

/// The `Content-Disposition` of a download: always `attachment`, with an ASCII `filename`
/// (quotes, backslashes and anything outside printable ASCII replaced by `_`) and, when
/// the name has other characters, the exact name as RFC 5987 `filename*`.
pub fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() || c == ' ') && !matches!(c, '"' | '\\' | ';' | '%') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if ascii == name {
        return format!("attachment; filename=\"{ascii}\"");
    }
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

async fn download(State(st): State<AppState>, ctx: StaffCtx, Path(id): Path<String>) -> Page {
    let me = ctx.require(DOCUMENTS)?;
    if !is_document_id(&id) {
        return Err(ctx.not_found());
    }
    let doc = st
        .app
        .document_content(&id)
        .await
        .map_err(|e| ctx.app_error(e))?;
    tracing::info!(staff_id = %me.id, document_id = %doc.document.id, "document downloaded");
    let mut res = (StatusCode::OK, doc.bytes).into_response();
    let h = res.headers_mut();
    let mut put = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    put(header::CONTENT_TYPE, doc.document.kind.media_type());
    put(
        header::CONTENT_DISPOSITION,
        &content_disposition(&doc.document.file_name),
    );
    put(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    put(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; sandbox",
    );
    put(header::CACHE_CONTROL, "no-store");
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_is_always_an_attachment_with_a_safe_name() {
        assert_eq!(
            content_disposition("plan.pdf"),
            "attachment; filename=\"plan.pdf\""
        );
        assert_eq!(
            content_disposition("plan\"; x=.pdf"),
            "attachment; filename=\"plan__ x=.pdf\"; filename*=UTF-8''plan%22%3B%20x%3D.pdf"
        );
        assert_eq!(
            content_disposition("plano año.pdf"),
            "attachment; filename=\"plano a_o.pdf\"; filename*=UTF-8''plano%20a%C3%B1o.pdf"
        );
    }

    #[test]
    fn sizes_for_people() {
        let t = Tr::new("en");
        assert_eq!(human_size(&t, 512), "512 bytes");
        assert_eq!(human_size(&t, 1500), "2 KB");
        assert_eq!(human_size(&t, 3 * 1024 * 1024 + 512 * 1024), "3.5 MB");
    }
}
