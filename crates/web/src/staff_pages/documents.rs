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

use crate::forms::{read_upload, secrets_equal, UploadProblem as FormProblem};
use crate::i18n::Tr;
use crate::portal::{render, Chrome};
use crate::security::{MAX_UPLOAD_BODY, UPLOAD_ROUTE};
use crate::staff::{Refusal, StaffCtx};
use crate::view::utc;
use crate::AppState;
use app::documents::{is_document_id, Document};
use app::staff::Role;
use app::AppError;
use askama::Template;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use domain::AccountNumber;

/// Who may see, attach and download documents.
const DOCUMENTS: Role = Role::Clerk;

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
    let form = match read_upload(mp).await {
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

pub use crate::forms::content_disposition;

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
    let res = crate::forms::inert_download(
        doc.bytes,
        doc.document.kind.media_type(),
        &doc.document.file_name,
    );
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
