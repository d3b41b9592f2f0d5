//! Resident accounts: register, verify, log in and out, reset a password, link utility
//! accounts, the dashboard, bills, and paying several accounts in one checkout.

use crate::AppState;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
}
