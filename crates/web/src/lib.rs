//! The HTTP edge: the resident portal (HTML), the public JSON API, the processor webhook,
//! and the staff back office on its own listener. Holds no business rules: every handler
//! parses input, calls one `app` use case and renders the answer.

pub mod api;
pub mod api_city;
pub mod assets;
mod cookies;
pub mod error;
pub mod forms;
pub mod i18n;
pub mod integrity;
pub mod passkeys;
pub mod portal;
pub mod security;
pub mod staff;
pub mod staff_pages;
pub mod view;

use std::sync::Arc;

use app::App;
use axum::Router;

/// How the edge is reached from outside.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Origin of the resident portal, e.g. `https://pay.city.gov`.
    pub portal_origin: String,
    /// Origin of the staff back office.
    pub staff_origin: String,
    /// Origin of the payment processor's hosted page (allowed as a form target).
    pub processor_origin: String,
    /// `Secure` + `__Host-` cookies. Off only for plain-HTTP loopback demo and tests.
    pub secure_cookies: bool,
    /// Send HSTS (TLS on, directly or at a proxy).
    pub hsts: bool,
    /// Proxies whose `X-Forwarded-For` names the client (the TLS proxy in front).
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// The state every handler and middleware gets: one `Arc`, so the clone axum makes for each
/// middleware of each request is one reference count, not one per field of `App` (the
/// profile of the quick-pay page had 17% of its time in those counts).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub app: App,
    pub cfg: WebConfig,
    /// Bill imports started from the back office on this node, by job id.
    pub imports: staff_pages::imports::Jobs,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(app: App, cfg: WebConfig) -> AppState {
        portal::remember_city_name(&app.config().city_name);
        AppState(Arc::new(Shared {
            app,
            cfg,
            imports: staff_pages::imports::Jobs::default(),
        }))
    }
}

/// Everything served on the public (resident) listener.
pub fn portal_router(state: AppState) -> Router {
    let html = portal::router_with_language(state.clone()).merge(assets::router());
    let api = api::router().merge(integrity::router());
    security::public_layers(html.merge(api), state.clone()).with_state(state)
}

/// Everything served on the staff listener (loopback by default).
pub fn staff_router(state: AppState) -> Router {
    security::staff_layers(
        staff::router()
            .merge(assets::router())
            .route("/healthz", axum::routing::get(api::healthz)),
        state.clone(),
    )
    .with_state(state)
}
