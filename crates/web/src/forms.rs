//! What every form answer shares: the problems of one submission, all at once, each tied to
//! the field it is about, in the reader's language. Rendered by `_error_summary.html` (a
//! summary that takes focus and links to each field) and by each field's inline message
//! with `aria-invalid`.

use crate::i18n::Tr;
use app::{AppError, FieldProblem};

/// The problems of one form submission, in the order of the form's fields.
#[derive(Debug, Clone, Default)]
pub struct FormErrors(Vec<(String, String)>);

impl FormErrors {
    pub fn none() -> FormErrors {
        FormErrors(Vec::new())
    }

    /// The use case's field problems, each in the reader's language (`field_error.<code>`;
    /// the English text when the catalog has no entry), in the order of `fields`.
    pub fn from_problems(t: &Tr, problems: &[FieldProblem], fields: &[&str]) -> FormErrors {
        let mut out: Vec<(String, String)> = problems
            .iter()
            .map(|p| {
                let key = format!("field_error.{}", p.code);
                let text = t.s(&key);
                let text = if text == crate::i18n::MISSING {
                    p.message.clone()
                } else {
                    text.to_owned()
                };
                (p.field.clone(), text)
            })
            .collect();
        out.sort_by_key(|(f, _)| fields.iter().position(|x| x == f).unwrap_or(usize::MAX));
        FormErrors(out)
    }

    /// A refusal of the use case as form errors: its field problems, or one problem on
    /// `field` with its public message. `None` for errors that are no form's business
    /// (internal failures), which the caller turns into an error page.
    pub fn from_app(t: &Tr, e: &AppError, field: &str, fields: &[&str]) -> Option<FormErrors> {
        match e {
            AppError::Fields(p) => {
                // A problem about something this form has no field for is shown on `field`.
                let p: Vec<FieldProblem> = p
                    .iter()
                    .map(|x| {
                        let mut x = x.clone();
                        if !fields.contains(&x.field.as_str()) {
                            x.field = field.to_owned();
                        }
                        x
                    })
                    .collect();
                Some(FormErrors::from_problems(t, &p, fields))
            }
            AppError::Invalid { field: f, message } => {
                let f = if fields.contains(&f.as_str()) {
                    f.as_str()
                } else {
                    field
                };
                Some(FormErrors(vec![(f.to_owned(), message.clone())]))
            }
            e if !e.is_internal() && !matches!(e, AppError::Processor(_)) => Some(FormErrors(
                vec![(field.to_owned(), crate::error::public_message(e))],
            )),
            _ => None,
        }
    }

    /// Problems already in the reader's words, as (field id, message).
    pub fn of(pairs: Vec<(String, String)>) -> FormErrors {
        FormErrors(pairs)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// (field id, message), for the summary.
    pub fn items(&self) -> &[(String, String)] {
        &self.0
    }

    /// The message for one field, or "".
    pub fn get(&self, field: &str) -> &str {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
            .unwrap_or("")
    }

    pub fn has(&self, field: &str) -> bool {
        self.0.iter().any(|(f, _)| f == field)
    }
}

/// The first value of a field of a form read as pairs (forms with repeated fields, such as
/// checkboxes), or "".
pub fn value(form: &[(String, String)], name: &str) -> String {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Every value of a repeated field (checkboxes).
pub fn values(form: &[(String, String)], name: &str) -> Vec<String> {
    form.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .collect()
}

/// Longest CSRF field an upload form may carry.
const MAX_CSRF: usize = 256;

/// An upload form (`multipart/form-data`): the CSRF token and one file, at most
/// `MAX_DOCUMENT_BYTES` (read no further).
/// Equality of two secrets without an early exit (as the logout form's check).
pub fn secrets_equal(a: &str, b: &str) -> bool {
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
pub struct UploadForm {
    pub csrf: String,
    pub file: Option<(String, Vec<u8>)>,
}

pub enum UploadProblem {
    /// Not a form this page sends (unknown or repeated field, unreadable body).
    Malformed,
    /// The file is over the limit (read no further).
    TooLarge,
}

pub async fn read_upload(mut mp: axum::extract::Multipart) -> Result<UploadForm, UploadProblem> {
    let mut form = UploadForm::default();
    let mut seen_csrf = false;
    while let Some(mut field) = mp
        .next_field()
        .await
        .map_err(|_| UploadProblem::Malformed)?
    {
        match field.name() {
            Some("csrf") if !seen_csrf => {
                seen_csrf = true;
                let mut v = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(|_| UploadProblem::Malformed)? {
                    v.extend_from_slice(&chunk);
                    if v.len() > MAX_CSRF {
                        return Err(UploadProblem::Malformed);
                    }
                }
                form.csrf = String::from_utf8(v).map_err(|_| UploadProblem::Malformed)?;
            }
            Some("file") if form.file.is_none() => {
                // A file chosen in a browser always has a name; none means no file chosen.
                let name = field.file_name().unwrap_or_default().to_owned();
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(|_| UploadProblem::Malformed)? {
                    if bytes.len() + chunk.len() > app::documents::MAX_DOCUMENT_BYTES {
                        return Err(UploadProblem::TooLarge);
                    }
                    bytes.extend_from_slice(&chunk);
                }
                form.file = Some((name, bytes));
            }
            _ => return Err(UploadProblem::Malformed),
        }
    }
    Ok(form)
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

/// A stored upload as a download that nothing will run or render: an attachment typed by
/// our own sniffing, `nosniff`, a sandboxing CSP, not cached.
pub fn inert_download(
    bytes: Vec<u8>,
    media_type: &str,
    file_name: &str,
) -> axum::response::Response {
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    let mut res = (StatusCode::OK, bytes).into_response();
    let h = res.headers_mut();
    let mut put = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    put(header::CONTENT_TYPE, media_type);
    put(header::CONTENT_DISPOSITION, &content_disposition(file_name));
    put(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    put(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; sandbox",
    );
    put(header::CACHE_CONTROL, "no-store");
    res
}
