//! The resident's email notices: "email me when a new bill is ready" (off until asked for).

use super::account::to_login;
use super::{render, Chrome, Ctx};
use crate::error::PageError;
use crate::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new().route("/account/notices", get(page).post(save))
}

#[derive(Template)]
#[template(path = "portal/notices.html")]
struct NoticesPage {
    c: Chrome,
    on: bool,
    saved: bool,
}

async fn page(State(st): State<AppState>, ctx: Ctx) -> Result<Response, PageError> {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    let on = st.app.bill_notices(&s.user_id).await?;
    render(
        StatusCode::OK,
        &NoticesPage {
            c: ctx.chrome(),
            on,
            saved: false,
        },
    )
}

#[derive(Deserialize)]
struct NoticesForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    bill_ready: Option<String>,
}

async fn save(
    State(st): State<AppState>,
    ctx: Ctx,
    Form(f): Form<NoticesForm>,
) -> Result<Response, PageError> {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    ctx.check_csrf(&f.csrf)?;
    let on = f.bill_ready.as_deref() == Some("1");
    st.app.set_bill_notices(&s.user_id, on, &ctx.ip).await?;
    render(
        StatusCode::OK,
        &NoticesPage {
            c: ctx.chrome(),
            on,
            saved: true,
        },
    )
}
