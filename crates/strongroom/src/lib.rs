//! The `strongroom` binary's library half: configuration, wiring and background workers,
//! shared by `main.rs` and the integration tests.

pub mod audit;
pub mod backup;
pub mod bench;
pub mod bench_web;
pub mod config;
pub mod demo_finance;
pub mod demo_services;
pub mod integrity;
pub mod keys;
pub mod logging;
pub mod migrate;
pub mod scan;
pub mod server;
