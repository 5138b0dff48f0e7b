//! The orchestration engine. Knows nothing of terminals or HTTP APIs.

mod attempt;
pub mod breaker;
pub mod clock;
pub mod cron;
mod error;
pub(crate) mod host;
pub mod lock;
pub mod retry;
pub mod rng;
pub mod schedule;
mod scheduler;
pub mod spec;
pub mod stage;
mod triggers;
pub mod workspace;

pub use error::{Result, RuntimeError};
pub use host::{Host, HostOptions, open_reader, recover_if_unhosted};
