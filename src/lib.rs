//! opsdeck: a terminal dashboard for live operations and the orchestration runtime behind it.

pub mod canary;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod diag;
pub mod host;
pub mod logging;
pub mod model;
pub mod net;
pub mod proc;
pub mod rng;
pub mod runtime;
pub mod server;
pub mod store;
pub mod sync;
pub mod tui;
