#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The one integration-test binary: each test starts the real server (portal, staff, the
//! sandbox processor on its own port) on 127.0.0.1:0 with a fresh data directory, and
//! talks HTTP to it. SQLite by default; PostgreSQL too when STRONGROOM_TEST_DATABASE_URL
//! is set (each test gets its own database).

mod account_search;
mod account_security;
mod api;
mod api_keys;
mod audit;
mod authz;
mod bill_import;
mod breach;
mod browser;
mod city_day;
mod city_webhooks;
mod cli;
mod crash;
mod every_route;
mod exceptions;
mod finance;
mod hardening;
mod harness;
mod integrity;
mod journeys;
mod nodes;
mod openapi;
mod passkeys;
mod pii;
mod refunds;
mod resident_mfa;
mod security;
mod services;
mod staff;
mod uploads;
mod webhooks;
