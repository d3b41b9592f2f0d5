//! What the portal and the back office share about passkeys (`app::passkeys`): the list
//! shown on a person's security page, the add-a-passkey page, and the sign-in form's
//! pieces. The routes live with each realm's security page (`portal::account_security`,
//! `staff_pages::profile`) and code page (`portal::account_mfa`, `staff`): a passkey
//! answer is posted to the same `/login/mfa` as a typed code, in field `credential`.

use crate::i18n::Tr;
use crate::portal::Chrome;
use crate::view::utc;
use app::passkeys::PasskeyInfo;
use askama::Template;

/// Largest passkey answer accepted (JSON; an attestation with a certificate chain is a
/// few kilobytes). A longer one is a wrong answer, not a different error.
pub const MAX_CREDENTIAL: usize = 16 * 1024;

/// One row of a person's passkey list.
pub struct PasskeyLine {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: String,
}

impl PasskeyLine {
    pub fn of(t: &Tr, p: &PasskeyInfo) -> PasskeyLine {
        PasskeyLine {
            id: p.id.clone(),
            name: p.name.clone(),
            created: utc(p.created_at),
            last_used: p
                .last_used_at
                .map(utc)
                .unwrap_or_else(|| t.s("passkey.never_used").to_owned()),
        }
    }
}

/// The passkey part of a security page.
pub struct PasskeySection {
    /// Passkeys work here (the site is reached by a domain name).
    pub available: bool,
    pub lines: Vec<PasskeyLine>,
    /// Where the forms post: `/account/passkeys` or `/profile/passkeys`.
    pub base: &'static str,
}

/// The page between "add a passkey" and the browser's ceremony: a button that asks the
/// browser for a new passkey (`passkey.js`), with the server's options.
#[derive(Template)]
#[template(path = "passkey_new.html")]
pub struct NewPasskeyPage {
    pub c: Chrome,
    pub passkey_sri: &'static str,
    /// `/account/passkeys` or `/profile/passkeys`.
    pub action: &'static str,
    /// The security page, to go back to.
    pub back: &'static str,
    pub token: String,
    pub options: String,
    pub name: String,
}

impl NewPasskeyPage {
    /// The page for a begun ceremony, whose answer is posted to `action`.
    pub fn of(
        c: Chrome,
        action: &'static str,
        back: &'static str,
        ceremony: app::passkeys::PasskeyCeremony,
    ) -> NewPasskeyPage {
        NewPasskeyPage {
            c,
            passkey_sri: crate::assets::passkey_js_integrity(),
            action,
            back,
            token: ceremony.token,
            options: ceremony.options_json,
            name: ceremony.name,
        }
    }
}

/// A bounded answer: over-long answers become empty (and fail verification).
pub fn bounded(credential: &str) -> &str {
    if credential.len() > MAX_CREDENTIAL {
        ""
    } else {
        credential
    }
}

/// How a security page answers a passkey (or recovery-code) form: the page again with an
/// error on a field or a notice. Shared by the portal and the back office, whose pages and
/// contexts differ but whose answers do not.
pub struct Answer {
    pub status: axum::http::StatusCode,
    /// The form field the error is about (`""` with a notice).
    pub field: &'static str,
    pub error: String,
    pub notice: String,
}

impl Answer {
    fn error(field: &'static str, error: String) -> Answer {
        Answer {
            status: axum::http::StatusCode::BAD_REQUEST,
            field,
            error,
            notice: String::new(),
        }
    }

    pub fn notice(t: &Tr, key: &str) -> Answer {
        Answer {
            status: axum::http::StatusCode::OK,
            field: "",
            error: String::new(),
            notice: t.s(key).to_owned(),
        }
    }
}

/// A refused "add a passkey" form (a wrong password, a bad name); other errors pass on.
pub fn begin_refused(t: &Tr, e: app::AppError) -> Result<Answer, app::AppError> {
    match e {
        app::AppError::Invalid { field, .. } if field == "current_password" => Ok(Answer::error(
            "passkey_add_password",
            t.s("security.error.current_password").to_owned(),
        )),
        app::AppError::Invalid { message, .. } => Ok(Answer::error(
            "passkey_name",
            format!("{}: {message}", t.s("passkey.field.name")),
        )),
        e => Err(e),
    }
}

/// The answer to a finished "add a passkey" ceremony: `Ok(Err(codes))` when recovery codes
/// were issued (to show once), else the security page's answer.
pub fn finished(
    t: &Tr,
    result: Result<Vec<String>, app::AppError>,
) -> Result<Result<Answer, Vec<String>>, app::AppError> {
    match result {
        Ok(codes) if !codes.is_empty() => Ok(Err(codes)),
        Ok(_) => Ok(Ok(Answer::notice(t, "passkey.added"))),
        Err(app::AppError::BadToken) => Ok(Ok(Answer::error(
            "passkey_name",
            t.s("passkey.expired").to_owned(),
        ))),
        Err(app::AppError::Invalid { .. }) => Ok(Ok(Answer::error(
            "passkey_name",
            t.s("passkey.not_verified").to_owned(),
        ))),
        Err(e) => Err(e),
    }
}

/// The answer to "remove a passkey".
pub fn removed(t: &Tr, result: Result<(), app::AppError>) -> Result<Answer, app::AppError> {
    match result {
        Ok(()) => Ok(Answer::notice(t, "passkey.removed")),
        Err(app::AppError::Invalid { .. }) => Ok(Answer::error(
            "passkey_password",
            t.s("security.error.current_password").to_owned(),
        )),
        Err(e) => Err(e),
    }
}

/// The answer to a refused "new recovery codes" form.
pub fn renew_refused(t: &Tr, e: app::AppError) -> Result<Answer, app::AppError> {
    match e {
        app::AppError::Invalid { field, message } => Ok(Answer::error(
            "recovery_password",
            if field == "current_password" {
                t.s("security.error.current_password").to_owned()
            } else {
                message
            },
        )),
        e => Err(e),
    }
}
