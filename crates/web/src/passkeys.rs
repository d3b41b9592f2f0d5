//! What the portal and the back office share about passkeys (`app::passkeys`): the list
//! shown on a person's security page, the add-a-passkey page, and the sign-in form's
//! pieces. The routes live with each realm's security page (`portal::account_security`,
//! `staff_pages::profile`) and code page (`portal::account_mfa`, `staff`): a passkey
//! answer is posted to the same `/login/mfa` as a typed code, in field `credential`.

use crate::i18n::Tr;
use crate::portal::Chrome;
use crate::staff::utc;
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

/// A bounded answer: over-long answers become empty (and fail verification).
pub fn bounded(credential: &str) -> &str {
    if credential.len() > MAX_CREDENTIAL {
        ""
    } else {
        credential
    }
}
