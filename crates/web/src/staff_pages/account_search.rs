//! Staff page: find an account (`/accounts?q=`) by number or its beginning, by words of
//! the holder's name or the service street, or by a resident's email (`app::account_search`).

use crate::portal::{render, Chrome};
use crate::staff::{Refusal, StaffCtx};
use crate::AppState;
use app::account_search::Found;
use app::staff::Role;
use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new().route("/accounts", get(search))
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

#[derive(Template)]
#[template(path = "staff/account_search.html")]
struct SearchPage {
    c: Chrome,
    q: String,
    searched: bool,
    found: Vec<Found>,
}

async fn search(
    State(st): State<AppState>,
    ctx: StaffCtx,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Response, Refusal> {
    ctx.require(Role::Clerk)?;
    let Ok(Query(q)) = q else {
        return Err(ctx.bad_request());
    };
    let query = q.q.trim().to_owned();
    let found = st
        .app
        .find_accounts(&query)
        .await
        .map_err(|e| ctx.app_error(e))?;
    Ok(render(
        StatusCode::OK,
        &SearchPage {
            c: ctx.chrome(),
            searched: !query.is_empty(),
            q: query,
            found,
        },
    )?)
}
