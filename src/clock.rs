//! Time as a dependency: the engine asks a [`Clock`] for "now" and for sleeps, so tests, drills
//! and benchmarks can drive a virtual clock deterministically instead of waiting.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::model::Timestamp;

/// A sleep in progress.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    fn sleep(&self, d: Duration) -> Sleep;

    fn timestamp(&self) -> Timestamp {
        Timestamp::from_datetime(self.now())
    }
}

/// Wall-clock time and real sleeps.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that only moves when told to. Sleepers wake when [`ManualClock::advance`] carries
/// the time past their deadline.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: Arc::new(watch::Sender::new(start)),
        }
    }

    pub fn advance(&self, d: Duration) {
        let step = chrono::Duration::from_std(d).unwrap_or_default();
        self.now.send_modify(|t| *t += step);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep(&self, d: Duration) -> Sleep {
        let mut rx = self.now.subscribe();
        let deadline = *rx.borrow() + chrono::Duration::from_std(d).unwrap_or_default();
        Box::pin(async move {
            while *rx.borrow_and_update() < deadline {
                if rx.changed().await.is_err() {
                    // The clock is gone: nothing will ever advance it, so never wake.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[tokio::test]
    async fn manual_sleeps_wake_only_when_advanced_past_the_deadline() {
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap());
        let sleep = clock.sleep(Duration::from_secs(10));
        let handle = tokio::spawn(sleep);
        clock.advance(Duration::from_secs(5));
        tokio::task::yield_now().await;
        assert!(!handle.is_finished());
        clock.advance(Duration::from_secs(5));
        handle.await.unwrap();
    }
}
