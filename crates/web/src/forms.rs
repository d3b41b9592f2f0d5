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
