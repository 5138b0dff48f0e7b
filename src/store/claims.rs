//! Claims of waiting runs for one worker, on a connection of their own (PostgreSQL).
//!
//! A slot freed by a run's end is filled by claiming the next waiting run. Done in the end's
//! own commit, the next run waited for that commit, and with several workers a commit waits
//! its turn for the event counter behind the others': in the benchmark the slot stood idle
//! about 13 ms after each 21 ms attempt with three workers. Here a claim is one statement that
//! writes no event (so it never waits for the counter), on a connection no batch queues on,
//! made while the end commits.
//! Asks that arrive while a claim is on its way are served together by the next one.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::Target;
use super::db::Db;
use super::workers::{self, Claimed};

/// Asks waiting for the claimer; one that finds it full is told the claimer cannot serve it.
const QUEUE: usize = 1024;
/// At most this many asks are served by one claim.
const PER_CLAIM: usize = 64;
/// After failing to connect, asks are told the claimer cannot serve them for this long before
/// the next try, so that a store that is down costs a refused connection per second, not one
/// per run's end.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Claims that fail in a row are logged once in this long (the count of the others with it).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A handle on this worker's claimer: cheap to clone.
#[derive(Clone)]
pub struct Claimer {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Claimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Claimer")
    }
}

enum Msg {
    Ask {
        n: usize,
        answer: oneshot::Sender<Option<Vec<Claimed>>>,
    },
    /// The host is stopping: the connection closes and the thread ends.
    Close,
}

impl Claimer {
    /// Starts claiming for worker `me` on a connection to `target` of its own (opened at the
    /// first ask). The thread ends at [`Claimer::close`] or once every handle is dropped.
    pub fn spawn(target: Target, me: String) -> super::Result<Claimer> {
        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("opsdeck-store-claims".into())
            .spawn(move || serve(&target, &me, rx))
            .map_err(|e| super::StoreError(format!("cannot start the run claimer: {e}")))?;
        Ok(Claimer { tx })
    }

    /// Claims up to `n` waiting runs for this worker: those it got, none when nothing waits or
    /// the worker is fenced off; `None` when the claimer cannot serve the ask (no connection to
    /// the store, the claim failed, too many asks waiting, or closed), for the caller to claim
    /// another way.
    pub async fn claim(&self, n: usize) -> Option<Vec<Claimed>> {
        if n == 0 {
            return Some(Vec::new());
        }
        let (answer, answered) = oneshot::channel();
        self.tx.try_send(Msg::Ask { n, answer }).ok()?;
        answered.await.ok().flatten()
    }

    /// Closes the claimer's connection and ends its thread (asks after it are not served).
    pub async fn close(&self) {
        let _ = self.tx.send(Msg::Close).await;
    }
}

/// The claimer's connection, and when it last failed.
struct Link<'a> {
    target: &'a Target,
    me: &'a str,
    conn: Option<Db>,
    refused_at: Option<Instant>,
    failing: u64,
    warned_at: Option<Instant>,
}

impl Link<'_> {
    /// Claims `n` runs, or `None` when it cannot (logged, at most once in [`WARN_EVERY`]).
    fn claim(&mut self, n: usize) -> Option<Vec<Claimed>> {
        if self.conn.is_none() && self.refused_at.is_none_or(|at| at.elapsed() >= RETRY_AFTER) {
            let opened = self.target.writer();
            match opened {
                Ok(db) => self.conn = Some(db),
                Err(e) => {
                    self.refused_at = Some(Instant::now());
                    self.failed(&format!("cannot connect to the store to claim runs: {e}"));
                    return None;
                }
            }
        }
        let db = self.conn.as_mut()?;
        match workers::claim(db, self.me, n) {
            Ok(claimed) => {
                self.failing = 0;
                Some(claimed)
            }
            Err(e) => {
                // A connection that broke is opened again at the next ask.
                if db.is_broken() {
                    self.conn = None;
                }
                self.failed(&format!("could not claim runs: {e}"));
                None
            }
        }
    }

    fn failed(&mut self, what: &str) {
        self.failing = self.failing.saturating_add(1);
        if self.warned_at.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            self.warned_at = Some(Instant::now());
            tracing::warn!(
                failures_in_a_row = self.failing,
                "{what}; the worker claims on its write connection meanwhile"
            );
        }
    }
}

/// The claimer's thread: serves asks in turn, all those waiting by one claim.
fn serve(target: &Target, me: &str, mut rx: mpsc::Receiver<Msg>) {
    let mut link = Link {
        target,
        me,
        conn: None,
        refused_at: None,
        failing: 0,
        warned_at: None,
    };
    let mut closing = false;
    while let Some(first) = rx.blocking_recv() {
        let mut asks = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Ask { n, answer } => asks.push((n, answer)),
                Msg::Close => closing = true,
            }
            if asks.len() < PER_CLAIM && !closing {
                next = rx.try_recv().ok();
            }
        }
        if closing {
            // Unanswered asks are told the claimer cannot serve them (their senders drop).
            return;
        }
        let wanted = asks
            .iter()
            .fold(0_usize, |sum, (n, _)| sum.saturating_add(*n));
        let Some(claimed) = link.claim(wanted) else {
            for (_, answer) in asks {
                let _ = answer.send(None);
            }
            continue;
        };
        let mut claimed = claimed.into_iter();
        for (n, answer) in asks {
            let share: Vec<Claimed> = claimed.by_ref().take(n).collect();
            if let Err(Some(unheard)) = answer.send(Some(share)) {
                // Its asker is gone (the host is stopping): the runs go back for others.
                for run in unheard {
                    let back = link.conn.as_mut().map(|db| workers::let_go(db, me, run.id));
                    if let Some(Err(e)) = back {
                        tracing::warn!(run = %run.id, error = %e, "could not give back a run claimed for no one; it is let go once seen held without a driver");
                    }
                }
            }
        }
    }
}
