//! Integration tests: one binary with a module per area (every file directly in `tests/` would
//! link separately). They use the real binary, real processes, real SQLite files and real HTTP
//! on loopback.
// End-to-end scenarios read top to bottom as one story each, so long test functions are allowed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::missing_panics_doc,
    clippy::too_many_lines
)]

mod api;
mod assets;
mod audit;
mod backends;
mod canary;
mod cli;
mod compare;
mod crash;
mod dag_props;
mod engine;
mod fuzz;
mod layers;
mod postgres;
mod prometheus;
mod pty;
mod snapshot;
mod store_ops;
mod store_suite;
mod support;
mod tui;
mod validate;
mod workers;
