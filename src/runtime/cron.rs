//! Cron expressions for schedules, evaluated in UTC by the `croner` crate: five fields (minute
//! hour day-of-month month day-of-week) or six with seconds first, lists, ranges, steps,
//! month and weekday names, `L` (last), `W` (nearest weekday), `#` (nth weekday), and the
//! `@hourly`-style macros. When both day fields are restricted a day matches either one, as in
//! Vixie cron. What this module adds is the error: the field at fault, pointed at.

use std::ops::Range;

use chrono::{DateTime, TimeZone, Utc};
use croner::parser::{CronParser, Seconds, Year};

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron(croner::Cron);

/// A problem in an expression, with the byte range of the offending part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    pub span: Range<usize>,
    pub message: String,
}

const MACROS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Each field's name and what it takes, for the five-field form (seconds come first in the
/// six-field form).
const FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31, L or W"),
    ("month", "1-12 or jan-dec"),
    ("day of week", "0-7 or sun-sat, # or L"),
];

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// The whitespace-separated parts of `s` with their byte offsets.
fn parts(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, ch) in s.char_indices() {
        match (ch.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(st)) => {
                out.push((st, &s[st..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(st) = start {
        out.push((st, &s[st..]));
    }
    out
}

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, CronError> {
        let whole = 0..text.len();
        let t = text.trim();
        if t.starts_with('@') {
            if !MACROS.contains(&t.to_ascii_lowercase().as_str()) {
                return Err(CronError {
                    span: whole,
                    message: format!(
                        "`{t}` is not a cron macro; valid macros: {}",
                        MACROS.join(", ")
                    ),
                });
            }
            let daily = t.eq_ignore_ascii_case("@midnight").then_some("@daily");
            return Cron::checked(parser().parse(daily.unwrap_or(t)), text);
        }
        let fields = parts(text);
        if !(5..=6).contains(&fields.len()) {
            return Err(CronError {
                span: whole,
                message: format!(
                    "a cron expression has 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first; `{t}` has {}",
                    fields.len()
                ),
            });
        }
        match parser().parse(text) {
            Ok(c) => Cron::checked(Ok(c), text),
            Err(e) => Err(locate(text, &fields, &e.to_string())),
        }
    }

    /// A parsed expression that fires at least once, or why not.
    fn checked(
        parsed: Result<croner::Cron, croner::errors::CronError>,
        text: &str,
    ) -> Result<Cron, CronError> {
        let c = parsed.map_err(|e| CronError {
            span: 0..text.len(),
            message: format!("`{}` is not a cron expression: {e}", text.trim()),
        })?;
        let probe = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single();
        if probe.is_none_or(|p| c.find_next_occurrence(&p, false).is_err()) {
            return Err(CronError {
                span: 0..text.len(),
                message: format!("`{}` never fires (no such date)", text.trim()),
            });
        }
        Ok(Cron(c))
    }

    /// The first matching instant strictly after `t`, or `None` when there is none.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.0.find_next_occurrence(&t, false).ok()
    }
}

/// Finds the field at fault: the first whose replacement by `*` makes the expression parse.
fn locate(text: &str, fields: &[(usize, &str)], detail: &str) -> CronError {
    let first = FIELDS.len() - fields.len();
    for (i, (offset, part)) in fields.iter().enumerate() {
        let mut trial: Vec<&str> = fields.iter().map(|(_, p)| *p).collect();
        trial[i] = "*";
        if parser().parse(&trial.join(" ")).is_ok() {
            let (name, takes) = FIELDS[first + i];
            return CronError {
                span: *offset..offset + part.len(),
                message: format!(
                    "`{part}` is not valid in the {name} field; use {takes}, `*`, lists, ranges and steps"
                ),
            };
        }
    }
    CronError {
        span: 0..text.len(),
        message: format!("`{}` is not a cron expression: {detail}", text.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap()
    }

    #[test]
    fn steps_ranges_and_names() {
        let c = Cron::parse("*/15 9-17 * * mon-fri").unwrap();
        // Saturday 2026-11-21 10:07 -> Monday 09:00.
        assert_eq!(
            c.next_after(at(2026, 11, 21, 10, 7)),
            Some(at(2026, 11, 23, 9, 0))
        );
        assert_eq!(
            c.next_after(at(2026, 11, 23, 9, 0)),
            Some(at(2026, 11, 23, 9, 15))
        );
        assert_eq!(
            c.next_after(at(2026, 11, 23, 17, 45)),
            Some(at(2026, 11, 24, 9, 0))
        );
    }

    #[test]
    fn macros_and_month_rollover() {
        let c = Cron::parse("@monthly").unwrap();
        assert_eq!(
            c.next_after(at(2026, 12, 5, 0, 0)),
            Some(at(2027, 1, 1, 0, 0))
        );
        let sunday7 = Cron::parse("0 0 * * 7").unwrap();
        assert_eq!(
            sunday7.next_after(at(2026, 11, 23, 0, 0)),
            Some(at(2026, 11, 29, 0, 0))
        );
        assert!(Cron::parse("@midnight").is_ok());
    }

    #[test]
    fn either_day_field_matches_when_both_restricted() {
        let c = Cron::parse("0 0 1 * mon").unwrap();
        // Tue 2026-11-24 -> Mon 2026-11-30 comes before Dec 1.
        assert_eq!(
            c.next_after(at(2026, 11, 24, 0, 0)),
            Some(at(2026, 11, 30, 0, 0))
        );
        assert_eq!(
            c.next_after(at(2026, 11, 30, 0, 0)),
            Some(at(2026, 12, 1, 0, 0))
        );
    }

    #[test]
    fn seconds_last_days_and_nth_weekdays() {
        let c = Cron::parse("30 0 0 * * *").unwrap();
        assert_eq!(
            c.next_after(at(2026, 11, 23, 0, 0)),
            Some(at(2026, 11, 23, 0, 0) + chrono::Duration::seconds(30))
        );
        let last = Cron::parse("0 0 L * *").unwrap();
        assert_eq!(
            last.next_after(at(2026, 2, 3, 0, 0)),
            Some(at(2026, 2, 28, 0, 0))
        );
        let second_friday = Cron::parse("0 9 * * fri#2").unwrap();
        assert_eq!(
            second_friday.next_after(at(2026, 12, 1, 0, 0)),
            Some(at(2026, 12, 11, 9, 0))
        );
    }

    #[test]
    fn errors_point_at_the_field() {
        let e = Cron::parse("0 25 * * *").unwrap_err();
        assert_eq!(e.span, 2..4);
        assert!(e.message.contains("hour field; use 0-23"), "{}", e.message);
        assert!(
            Cron::parse("0 0 * *")
                .unwrap_err()
                .message
                .contains("5 fields")
        );
        assert!(
            Cron::parse("0 0 30 feb *")
                .unwrap_err()
                .message
                .contains("never fires")
        );
        assert!(
            Cron::parse("@sometimes")
                .unwrap_err()
                .message
                .contains("@hourly")
        );
        let e = Cron::parse("*/5 * * * funday").unwrap_err();
        assert_eq!(e.span, 10..16, "{e:?}");
    }
}
