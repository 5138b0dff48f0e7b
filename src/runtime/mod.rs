//! Pipelines: specs, the per-run DAG driver, stage kinds, retries, breakers, the dead-letter
//! queue and schedules. Knows nothing of canaries, terminals or HTTP APIs; the host builds a
//! [`Runtime`] from the store, clock and task tracker it owns.

mod assets;
mod attempt;
pub mod breaker;
pub mod catalog;
pub mod cron;
mod driver;
mod engine;
mod error;
pub mod retry;
pub mod schedule;
mod schedules;
pub mod spec;
pub mod stage;

pub use engine::{Handed, Parts, Runtime, WorkerSlot};
pub use error::{Result, RuntimeError};
