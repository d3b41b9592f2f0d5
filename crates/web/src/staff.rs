//! The staff back office, on its own listener with its own cookie.

use crate::AppState;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
}
