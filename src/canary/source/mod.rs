//! Where a canary's metrics come from. Each source is one file here: how its part of
//! `[canary.NAME]` is checked, and what it does in a host (make traffic each second, listen
//! as a proxy, accept observations). The rest of opsdeck only sees the [`Source`] trait and
//! the [`KINDS`] table, so a new source is one new file and one line in that table.

pub mod ingest;
pub mod prometheus;
pub mod proxy;
pub mod simulate;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use toml::de::DeTable;

use super::Rollout;
use super::service::Shared;
use crate::clock::Clock;
use crate::diag::Checker;
use crate::model::Fault;

/// A canary's metric source, as configured.
pub trait Source: fmt::Debug + Send + Sync {
    /// The name written as `source = "..."`.
    fn name(&self) -> &'static str;

    /// Traffic the host makes itself once a second (the `simulate` source); `None` for sources
    /// that measure traffic from outside.
    fn feed(&self, _seed: u64) -> Option<Box<dyn Feed>> {
        None
    }

    /// Starts what the source needs while a host runs (a proxy's listener). Errors name the
    /// canary and what could not be started.
    fn start(&self, _canary: &Shared, _env: &Env) -> Result<(), String> {
        Ok(())
    }

    /// Whether an external router may post observations for this canary.
    fn takes_observations(&self) -> bool {
        false
    }

    /// The address the source listens on while a host runs (a proxy's), checked against the
    /// other listeners of `opsdeck.toml` before anything starts.
    fn listens(&self) -> Option<std::net::SocketAddr> {
        None
    }
}

/// Traffic made inside the host, driven once a second by the canary clock.
pub trait Feed: fmt::Debug + Send {
    /// Sends one second of requests, `t_s` seconds after the traffic began, through `rollout`.
    fn second(&mut self, rollout: &mut Rollout, now: i64, t_s: u64);
    /// Adds trouble to the canary's traffic (the default fault clears it).
    fn inject(&mut self, fault: Fault);
    /// A host that starts and finds the rollout ended starts it again (demos).
    fn restarts_ended(&self) -> bool;
}

/// What a source gets from the host that starts it.
pub struct Env {
    pub clock: Arc<dyn Clock>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

/// Checks a source's own table (`table`: the value of [`Kind::table`] in `[canary.NAME]`, if
/// present); `span` is the canary table's, for missing keys; `ctx` names it in messages.
pub type Parse = fn(
    c: &mut Checker<'_>,
    table: Option<&DeTable<'_>>,
    span: &Range<usize>,
    ctx: &str,
) -> Option<Arc<dyn Source>>;

/// One kind of source, as `[canary.NAME]` names it.
pub struct Kind {
    pub name: &'static str,
    /// The key of the source's own table in `[canary.NAME]` (`proxy = {...}`), if it has one.
    pub table: Option<&'static str>,
    pub parse: Parse,
}

/// Every source opsdeck knows, in the order the docs list them.
pub const KINDS: &[Kind] = &[simulate::KIND, proxy::KIND, ingest::KIND, prometheus::KIND];

/// The source named `name`.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The valid `source = ...` values.
pub fn names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name).collect()
}
