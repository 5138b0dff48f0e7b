//! Claims of waiting runs for one worker, on a connection of their own (PostgreSQL).
//!
//! A slot freed by a run's end is filled by claiming the next waiting run. Done in the end's
//! own commit, the next run waited for that commit, and with several workers a commit waits
//! its turn for the event counter behind the others': the slot stood idle for as long as an
//! attempt's third. Here a claim is a short transaction that writes no event (so it never
//! waits for the counter) on a connection no batch queues on, made while the end commits.
//! Asks that arrive while a claim is on its way are served together by the next one.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::Target;
use super::db::Db;
use super::workers::{self, Claimed};

/// Asks waiting for the claimer; a caller finding it full is answered with nothing (its slot
/// is filled by the worker's loop instead).
const QUEUE: usize = 1024;
/// At most this many asks are served by one claim.
const PER_CLAIM: usize = 64;
/// After failing to connect, asks are answered with nothing for this long before the next try,
/// so that a store that is down costs a refused connection per second, not per run's end.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A handle on this worker's claimer: cheap to clone.
#[derive(Clone)]
pub struct Claimer {
    tx: mpsc::Sender<Ask>,
}

impl std::fmt::Debug for Claimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Claimer")
    }
}

struct Ask {
    n: usize,
    answer: oneshot::Sender<Vec<Claimed>>,
}

impl Claimer {
    /// Starts claiming for worker `me` on a connection to `target` of its own (opened at the
    /// first ask). The thread ends once every handle is dropped.
    pub fn spawn(target: Target, me: String) -> super::Result<Claimer> {
        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("opsdeck-store-claims".into())
            .spawn(move || serve(&target, &me, rx))
            .map_err(|e| super::StoreError(format!("cannot start the run claimer: {e}")))?;
        Ok(Claimer { tx })
    }

    /// Claims up to `n` waiting runs for this worker: those it got (none when nothing waits, the
    /// worker is fenced off or the store cannot be reached, which the claimer logs).
    pub async fn claim(&self, n: usize) -> Vec<Claimed> {
        if n == 0 {
            return Vec::new();
        }
        let (answer, answered) = oneshot::channel();
        if self.tx.try_send(Ask { n, answer }).is_err() {
            return Vec::new();
        }
        answered.await.unwrap_or_default()
    }
}

/// The claimer's thread: serves asks in turn, all those waiting by one claim.
fn serve(target: &Target, me: &str, mut rx: mpsc::Receiver<Ask>) {
    let mut conn: Option<Db> = None;
    let mut refused_at: Option<Instant> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut asks = vec![first];
        while asks.len() < PER_CLAIM {
            match rx.try_recv() {
                Ok(ask) => asks.push(ask),
                Err(_) => break,
            }
        }
        if conn.is_none() && refused_at.is_none_or(|at| at.elapsed() >= RETRY_AFTER) {
            match target.writer().and_then(|mut db| {
                // A claim's commit does not wait for the disk (see `workers::claim`).
                db.batch("SET synchronous_commit = off")?;
                Ok(db)
            }) {
                Ok(db) => {
                    conn = Some(db);
                    refused_at = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot connect to the store to claim runs; the worker's loop claims them instead");
                    refused_at = Some(Instant::now());
                }
            }
        }
        let wanted = asks.iter().fold(0_usize, |sum, a| sum.saturating_add(a.n));
        let mut claimed = match conn.as_mut() {
            Some(db) => match workers::claim(db, me, wanted) {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim runs");
                    if db.is_broken() {
                        conn = None;
                    }
                    Vec::new()
                }
            },
            None => Vec::new(),
        }
        .into_iter();
        for ask in asks {
            let share: Vec<Claimed> = claimed.by_ref().take(ask.n).collect();
            if let Err(unheard) = ask.answer.send(share) {
                // Its asker is gone (the host is stopping): the runs go back for others.
                for run in unheard {
                    let back = conn.as_mut().map(|db| workers::let_go(db, me, run.id));
                    if let Some(Err(e)) = back {
                        tracing::warn!(run = %run.id, error = %e, "could not give back a run claimed for no one; it is let go once seen held without a driver");
                    }
                }
            }
        }
    }
}
