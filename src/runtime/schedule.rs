//! When a pipeline runs on its own: `every 30s` intervals or cron expressions.

use std::ops::Range;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cron::Cron;
use crate::model::duration;

/// A parsed schedule that remembers how it was written, for display and round-tripping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Every(Duration),
    Cron(Box<Cron>),
}

impl Schedule {
    /// Parses `every <duration>` or a cron expression; errors carry the byte range in `text`.
    pub fn parse(text: &str) -> Result<Schedule, (Range<usize>, String)> {
        let trimmed = text.trim_start();
        let lead = text.len() - trimmed.len();
        if let Some(rest) = trimmed.strip_prefix("every ") {
            let d = duration::parse(rest).map_err(|m| (0..text.len(), m))?;
            if d < Duration::from_secs(1) {
                return Err((
                    0..text.len(),
                    format!(
                        "`{}` is too frequent; the shortest interval is 1s",
                        text.trim()
                    ),
                ));
            }
            return Ok(Schedule {
                text: text.trim().to_string(),
                kind: Kind::Every(d),
            });
        }
        match Cron::parse(trimmed) {
            Ok(c) => Ok(Schedule {
                text: text.trim().to_string(),
                kind: Kind::Cron(Box::new(c)),
            }),
            Err(_) if trimmed.split_whitespace().count() < 3 && !trimmed.starts_with('@') => Err((
                0..text.len(),
                format!(
                    "`{}` is not a schedule; write `every 30s` or a cron expression such as `*/5 * * * *`",
                    text.trim()
                ),
            )),
            Err(e) => Err((lead + e.span.start..lead + e.span.end, e.message)),
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// When the schedule first fires after a host starts at `now`: interval schedules fire at
    /// once (so a freshly started host shows activity), cron schedules at their next minute.
    pub fn first_fire(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every(_) => Some(now),
            Kind::Cron(c) => c.next_after(now),
        }
    }

    /// The fire after one at `last`, never in the past relative to `now` (missed ticks are
    /// skipped rather than replayed in a burst).
    pub fn next_fire(&self, last: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every(d) => {
                let step = chrono::Duration::from_std(*d).ok()?;
                let mut next = last + step;
                if next < now {
                    next = now;
                }
                Some(next)
            }
            Kind::Cron(c) => c.next_after(last.max(now)),
        }
    }
}

impl Schedule {
    /// [`Schedule::first_fire`] for several workers: an interval's fires fall on multiples of
    /// it since the epoch, so every worker names the same ticks (one fires each).
    pub fn first_shared_fire(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every(d) => align_up(now, *d),
            Kind::Cron(c) => c.next_after(now),
        }
    }

    /// [`Schedule::next_fire`] on the same grid as [`Schedule::first_shared_fire`].
    pub fn next_shared_fire(
        &self,
        last: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every(d) => {
                let step = chrono::Duration::from_std(*d).ok()?;
                align_up((last + step).max(now), *d)
            }
            Kind::Cron(c) => c.next_after(last.max(now)),
        }
    }
}

/// `t` rounded up to a multiple of `every` since the epoch.
fn align_up(t: DateTime<Utc>, every: std::time::Duration) -> Option<DateTime<Utc>> {
    let step = i64::try_from(every.as_millis()).ok().filter(|s| *s > 0)?;
    let ms = t.timestamp_millis();
    let up = ms
        .checked_add(step - 1)?
        .div_euclid(step)
        .checked_mul(step)?;
    DateTime::from_timestamp_millis(up)
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Schedule::parse(&s).map_err(|(_, m)| serde::de::Error::custom(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn every_fires_at_once_then_at_intervals_skipping_missed_ticks() {
        let s = Schedule::parse("every 30s").unwrap();
        let t0 = Utc
            .with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
            .single()
            .unwrap();
        assert_eq!(s.first_fire(t0), Some(t0));
        assert_eq!(
            s.next_fire(t0, t0),
            Some(t0 + chrono::Duration::seconds(30))
        );
        let late = t0 + chrono::Duration::seconds(95);
        assert_eq!(s.next_fire(t0, late), Some(late));
    }

    #[test]
    fn cron_and_errors() {
        let s = Schedule::parse("*/5 * * * *").unwrap();
        let t0 = Utc
            .with_ymd_and_hms(2026, 11, 23, 12, 1, 30)
            .single()
            .unwrap();
        assert_eq!(
            s.first_fire(t0),
            Some(
                Utc.with_ymd_and_hms(2026, 11, 23, 12, 5, 0)
                    .single()
                    .unwrap()
            )
        );
        assert!(
            Schedule::parse("every 10ms")
                .unwrap_err()
                .1
                .contains("too frequent")
        );
        assert!(
            Schedule::parse("hourly")
                .unwrap_err()
                .1
                .contains("not a schedule")
        );
        assert_eq!(Schedule::parse("0 99 * * *").unwrap_err().0, 2..4);
    }
}
