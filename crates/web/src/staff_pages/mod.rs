//! Back-office features beyond the first cut, one module each: the audit-log viewer and
//! documents attached to accounts.

pub mod account_search;
pub mod api_keys;
pub mod audit;
pub mod documents;
pub mod exceptions;
pub mod imports;
pub mod postings;
pub mod profile;
pub mod reconciliation;
pub mod refund_approvals;
pub mod services;
pub mod settings;

use crate::AppState;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(account_search::router())
        .merge(api_keys::router())
        .merge(audit::router())
        .merge(documents::router())
        .merge(exceptions::router())
        .merge(imports::router())
        .merge(postings::router())
        .merge(reconciliation::router())
        .merge(refund_approvals::router())
        .merge(settings::router())
        .merge(services::router())
        .merge(profile::router())
}
