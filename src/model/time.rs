use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant with millisecond precision, always written as RFC 3339 with exactly three
/// fractional digits (`2026-11-23T17:57:00.120Z`), so records sort and diff as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// Truncates to whole milliseconds, the precision that is stored.
    pub fn from_datetime(dt: DateTime<Utc>) -> Self {
        let ms = dt.timestamp_millis();
        Timestamp(DateTime::from_timestamp_millis(ms).unwrap_or(dt))
    }

    /// From milliseconds since the Unix epoch; out-of-range values clamp to the epoch.
    pub fn from_millis(ms: i64) -> Self {
        Timestamp(DateTime::from_timestamp_millis(ms).unwrap_or_default())
    }

    pub fn datetime(self) -> DateTime<Utc> {
        self.0
    }

    pub fn millis(self) -> i64 {
        self.0.timestamp_millis()
    }

    /// Milliseconds from `earlier` to `self`, never negative (clocks can step backwards).
    pub fn millis_since(self, earlier: Timestamp) -> i64 {
        (self.millis() - earlier.millis()).max(0)
    }

    pub fn parse(s: &str) -> Result<Self, chrono::ParseError> {
        Ok(Self::from_datetime(
            DateTime::parse_from_rfc3339(s)?.with_timezone(&Utc),
        ))
    }

    /// A point in time as people give one for `--since`: RFC 3339 (`2026-11-29T20:00:00Z`), or
    /// a duration ago (`90m`, `1h`, `2d`) counted back from `now`.
    pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<Self, String> {
        let t = text.trim();
        if let Ok(ts) = Timestamp::parse(t) {
            return Ok(ts);
        }
        let ago = super::duration::parse(t).map_err(|_| {
            format!(
                "`{t}` is neither a time nor a duration; write a time like 2026-11-29T20:00:00Z or a duration ago like 90m, 1h or 2d"
            )
        })?;
        let ago = chrono::Duration::from_std(ago)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .ok_or_else(|| format!("`{t}` reaches back before any time opsdeck can record"))?;
        Ok(Timestamp::from_datetime(ago))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_a_duration_ago() {
        let now = Timestamp::parse("2026-11-29T12:00:00Z").unwrap().datetime();
        let at = |s: &str| Timestamp::parse_since(s, now).map(|t| t.to_string());
        assert_eq!(at("90m").unwrap(), "2026-11-29T10:30:00.000Z");
        assert_eq!(
            at("2026-11-28T01:02:03Z").unwrap(),
            "2026-11-28T01:02:03.000Z"
        );
        assert!(
            at("yesterday")
                .unwrap_err()
                .contains("neither a time nor a duration")
        );
        assert!(at("999999999999d").is_err(), "no overflow, a sentence");
    }

    #[test]
    fn always_three_fraction_digits_in_utc() {
        let t = Timestamp::from_millis(1_795_000_000_000);
        assert_eq!(t.to_string(), "2026-11-18T11:06:40.000Z");
        let parsed = Timestamp::parse("2026-11-18T10:46:40.123456+01:00").unwrap();
        assert_eq!(parsed.to_string(), "2026-11-18T09:46:40.123Z");
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            "\"2026-11-18T09:46:40.123Z\""
        );
    }
}
