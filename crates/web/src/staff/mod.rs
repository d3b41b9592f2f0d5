//! The staff back office, on its own listener with its own cookie: what every staff page
//! shares (the request context with its role gates, refusals), split by area like the
//! portal: sign-in ([`signin`]), payments and refunds ([`payments`]), accounts
//! ([`accounts`]), the email outbox ([`outbox`]); the finance, permit and admin areas are
//! in `staff_pages`. Every route names the least role it needs ([`StaffCtx::require`]);
//! the role is re-read from the store on every request, so disabling a user or changing a
//! role takes effect at once. Time formatting and other view helpers are in `view`.

pub mod accounts;
pub mod outbox;
pub mod payments;
pub mod signin;

use crate::view::{grouped, utc, utc_seconds};
pub(crate) use signin::RecoveryCodesPage;

/// Who may search and view payments: auditors too (read-only).
pub(crate) const VIEW_PAYMENTS: Role = Role::Auditor;
/// Who may open accounts and the outbox.
pub(crate) const VIEW_ACCOUNTS: Role = Role::Clerk;

/// One payment as a row of a table.
pub(crate) struct PaymentRow {
    id: String,
    confirmation_number: String,
    created: String,
    email: String,
    accounts: String,
    amount: String,
    status: &'static str,
}

pub(crate) fn payment_row(t: &Tr, p: &PaymentView) -> PaymentRow {
    let mut accounts: Vec<&str> = p.items.iter().map(|i| i.account_number.as_str()).collect();
    accounts.dedup();
    PaymentRow {
        id: p.id.clone(),
        confirmation_number: p.confirmation_number.clone(),
        created: utc(p.created_at),
        email: p.email.clone(),
        accounts: accounts.join(", "),
        amount: p.amount.to_string(),
        status: status_label(t, p.status),
    }
}

use crate::error::{Format, PageError, WebError};
use crate::i18n::{self, Tr};
use crate::portal::{render, status_label, Chrome};
use crate::{assets, cookies, AppState};
use app::mfa::{LoginStep, CHALLENGE_SECS};
use app::payments::PaymentView;
use app::sessions::{Realm, Session};
use app::staff::{Role, StaffUser, TimelineEntry};
use app::AppError;
use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use domain::ids::{EmailId, PaymentId};
use domain::AccountNumber;
use serde::Deserialize;

pub const STAFF_COOKIE: &str = "sr_staff";
pub const STAFF_COOKIE_SECURE: &str = "__Host-sr_staff";
/// The half-signed-in step (password right, code owed): a challenge token, sent only to
/// `/login...`. It opens no other page: it is not a session.
pub const MFA_COOKIE: &str = "sr_staff_mfa";
/// With TLS: the `__Secure-` prefix (`__Host-` needs `Path=/`, and this cookie is only
/// for `/login`), so a plain-HTTP response cannot set or overwrite it.
pub const MFA_COOKIE_SECURE: &str = "__Secure-sr_staff_mfa";

fn mfa_cookie_name(st: &AppState) -> &'static str {
    cookies::pick(st.cfg.secure_cookies, MFA_COOKIE_SECURE, MFA_COOKIE)
}
/// Longest code field accepted (a 6-digit code or a recovery code, with spaces).
const MAX_CODE: usize = 64;

/// How many rows the list pages show.
const LIST_LIMIT: i64 = 50;
/// Longest search query accepted (a confirmation number, account number or email).
const MAX_QUERY: usize = 254;
const MAX_USERNAME: usize = 64;
const MAX_PASSWORD: usize = 1024;

pub fn staff_cookie_name(st: &AppState) -> &'static str {
    if st.cfg.secure_cookies {
        STAFF_COOKIE_SECURE
    } else {
        STAFF_COOKIE
    }
}

#[derive(Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

/// Per-request context of the back office: language, client address, and the signed-in
/// staff member (a live staff-realm session whose user exists and is not disabled).
pub struct StaffCtx {
    pub t: Tr,
    pub ip: String,
    pub city: String,
    pub signed_in: Option<(Session, StaffUser)>,
    /// The browser's form token, for the sign-in forms.
    pub form_token: String,
    /// The matched route (template, no ids or query): what a refusal is recorded against.
    pub route: String,
    app: app::App,
}

impl FromRequestParts<AppState> for StaffCtx {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<StaffCtx, PageError> {
        let q: Option<LangQuery> = parts
            .uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok());
        let t = i18n::negotiate(q.as_ref().and_then(|q| q.lang.as_deref()), &parts.headers);
        let session = match cookies::get(&parts.headers, staff_cookie_name(st)) {
            Some(token) => st.app.session(Realm::Staff, &token).await?,
            None => None,
        };
        let signed_in = match session {
            Some(s) => st.app.staff_user(&s.user_id).await?.map(|u| (s, u)),
            None => None,
        };
        Ok(StaffCtx {
            t,
            ip: crate::portal::client_ip(parts),
            city: st.app.config().city_name.clone(),
            signed_in,
            form_token: crate::portal::form_token(parts),
            route: parts
                .extensions
                .get::<axum::extract::MatchedPath>()
                .map(|m| m.as_str().to_owned())
                .unwrap_or_else(|| "(no route)".into()),
            app: st.app.clone(),
        })
    }
}

/// Equality of two secrets without an early exit: compares their SHA-256 hashes (fixed
/// length) byte by byte, folding the differences.
fn secrets_equal(a: &str, b: &str) -> bool {
    let (ha, hb) = (app::ids::token_hash(a), app::ids::token_hash(b));
    ha.len() == hb.len()
        && ha
            .bytes()
            .zip(hb.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// May a member with role `have` use a route that needs `need`?
fn allowed(have: Role, need: Role) -> bool {
    have >= need
}

impl StaffCtx {
    pub fn chrome(&self) -> Chrome {
        Chrome {
            t: self.t,
            city: self.city.clone(),
            sri: assets::uswds_js_integrity(),
            signed_in: self.signed_in.is_some(),
            staff: true,
            csrf: self
                .signed_in
                .as_ref()
                .map(|(s, _)| s.csrf_token.clone())
                .unwrap_or_else(|| self.form_token.clone()),
            nav: true,
            admin: self
                .signed_in
                .as_ref()
                .is_some_and(|(_, u)| u.role == Role::Administrator),
        }
    }

    /// The signed-in staff member if their role is at least `need`; otherwise a redirect to
    /// the login page (not signed in) or a 403 page (role too low).
    pub fn require(&self, need: Role) -> Result<&StaffUser, Refusal> {
        match &self.signed_in {
            None => Err(Refusal::from(Redirect::to("/login").into_response())),
            Some((_, u)) if allowed(u.role, need) => Ok(u),
            Some((_, u)) => {
                tracing::info!(staff_id = %u.id, role = u.role.as_str(), need = need.as_str(), "staff route refused: role too low");
                // Recorded in the audit log too (ASVS 16.3.2), off the request's path.
                let (app, id, route, ip) = (
                    self.app.clone(),
                    u.id.clone(),
                    self.route.clone(),
                    self.ip.clone(),
                );
                let detail = format!("role {} needs {}", u.role.as_str(), need.as_str());
                tokio::spawn(async move {
                    let actor = format!("staff:{id}");
                    let event = "staff.access_refused";
                    if let Err(e) = app
                        .sealing_audit(app.record_refusal(&actor, event, &route, &detail, &ip))
                        .await
                    {
                        tracing::warn!(code = e.code(), "could not audit a refused staff route");
                    }
                });
                Err(self.fail(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    self.t.s("staff.error.forbidden"),
                ))
            }
        }
    }

    /// The signed-in staff member if their role is one of `roles` (roles outside the
    /// ladder, such as inspector, are named explicitly).
    pub fn require_one_of(&self, roles: &[Role]) -> Result<&StaffUser, Refusal> {
        match &self.signed_in {
            Some((_, u)) if roles.contains(&u.role) => Ok(u),
            Some((_, u)) if u.role == Role::Administrator => Ok(u),
            _ => self.require(Role::Administrator),
        }
    }

    /// Checks a form's token against the signed-in member's session (403 page otherwise).
    pub fn require_form_token(&self, sent: &str) -> Result<(), Refusal> {
        let ok = self
            .signed_in
            .as_ref()
            .is_some_and(|(s, _)| !sent.is_empty() && secrets_equal(&s.csrf_token, sent));
        if ok {
            Ok(())
        } else {
            Err(self.fail(
                StatusCode::FORBIDDEN,
                "csrf_token_invalid",
                self.t.s("staff.error.csrf"),
            ))
        }
    }

    /// An error page with the back office's layout.
    pub fn fail(&self, status: StatusCode, code: &'static str, message: &str) -> Refusal {
        let page = StaffErrorPage {
            c: self.chrome(),
            code,
            message,
        };
        Refusal::from(match render(status, &page) {
            Ok(r) => r,
            Err(e) => e.into_response(),
        })
    }

    pub fn not_found(&self) -> Refusal {
        self.fail(
            StatusCode::NOT_FOUND,
            "not_found",
            self.t.s("staff.error.not_found"),
        )
    }

    pub fn bad_request(&self) -> Refusal {
        self.fail(
            StatusCode::BAD_REQUEST,
            "bad_request",
            self.t.s("staff.error.bad_request"),
        )
    }

    /// A use case's refusal or failure as a page (the edge error type logs it).
    pub fn app_error(&self, e: AppError) -> Refusal {
        let we = WebError::from_app(e, Format::Html);
        let message = if we.status == StatusCode::NOT_FOUND {
            self.t.s("staff.error.not_found").to_owned()
        } else if we.status.is_server_error() {
            self.t.s("staff.error.internal").to_owned()
        } else {
            we.message
        };
        self.fail(we.status, we.code, &message)
    }
}

/// A page handler's refusal: a redirect or an error page, boxed (responses are large).
pub struct Refusal(Box<Response>);

impl From<Response> for Refusal {
    fn from(r: Response) -> Refusal {
        Refusal(Box::new(r))
    }
}

impl From<PageError> for Refusal {
    fn from(e: PageError) -> Refusal {
        Refusal::from(e.into_response())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        *self.0
    }
}

type Page = Result<Response, Refusal>;

fn page<T: Template>(t: &T) -> Page {
    Ok(render(StatusCode::OK, t)?)
}

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(crate::staff_pages::router())
        .merge(signin::routes())
        .merge(payments::routes())
        .merge(accounts::routes())
        .merge(outbox::routes())
        .fallback(no_such_page)
        .method_not_allowed_fallback(wrong_method)
}

async fn no_such_page(ctx: StaffCtx) -> Refusal {
    ctx.not_found()
}

async fn wrong_method(ctx: StaffCtx) -> Refusal {
    ctx.fail(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        ctx.t.s("staff.error.bad_request"),
    )
}

#[derive(Template)]
#[template(path = "error.html")]
struct StaffErrorPage<'a> {
    c: Chrome,
    code: &'a str,
    message: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_minutes() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13");
    }

    #[test]
    fn same_second_events_follow_the_lifecycle() {
        let e = |at, kind: &str| TimelineEntry {
            at,
            kind: kind.into(),
            detail: String::new(),
        };
        let sorted = payments::in_lifecycle_order(vec![
            e(5, "posted"),
            e(5, "succeeded"),
            e(4, "checkout_opened"),
            e(5, "created"),
        ]);
        let kinds: Vec<_> = sorted.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["checkout_opened", "created", "succeeded", "posted"]);
    }

    #[test]
    fn secrets_compare() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", ""));
    }

    #[test]
    fn roles_are_ordered_for_least_privilege() {
        assert!(allowed(Role::Auditor, VIEW_PAYMENTS));
        assert!(!allowed(Role::Auditor, VIEW_ACCOUNTS));
        assert!(allowed(Role::Clerk, VIEW_ACCOUNTS));
        assert!(allowed(Role::Administrator, VIEW_ACCOUNTS));
    }
}
