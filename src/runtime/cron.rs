//! Five-field cron expressions (minute hour day-of-month month day-of-week), evaluated in UTC.
//!
//! Supports `*`, lists, ranges, steps, month and weekday names, and the `@hourly`-style macros.
//! When both day fields are restricted a day matches either one, as in Vixie cron.

use std::ops::Range;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};

/// A parsed cron expression as bit sets, one per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_restricted: bool,
    weekdays_restricted: bool,
}

/// A problem in an expression, with the byte range of the offending part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    pub span: Range<usize>,
    pub message: String,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    },
    Field {
        name: "day of week",
        min: 0,
        max: 7,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    },
];

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, CronError> {
        let expanded = match text.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            t if t.starts_with('@') => {
                return Err(CronError {
                    span: 0..text.len(),
                    message: format!(
                        "`{t}` is not a cron macro; valid macros: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"
                    ),
                });
            }
            _ => text,
        };
        let is_macro = expanded.as_ptr() != text.as_ptr();
        let parts: Vec<(usize, &str)> = split_with_offsets(expanded);
        if parts.len() != 5 {
            return Err(CronError {
                span: 0..text.len(),
                message: format!(
                    "a cron expression has 5 fields (minute hour day-of-month month day-of-week), `{}` has {}",
                    text.trim(),
                    parts.len()
                ),
            });
        }
        let mut sets = [0u64; 5];
        for (i, (offset, part)) in parts.iter().enumerate() {
            let base = if is_macro { 0 } else { *offset };
            sets[i] = parse_field(part, &FIELDS[i]).map_err(|(span, message)| CronError {
                span: if is_macro {
                    0..text.len()
                } else {
                    base + span.start..base + span.end
                },
                message,
            })?;
        }
        let mut weekdays = sets[4];
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f;
        }
        let cron = Cron {
            minutes: sets[0],
            hours: sets[1] as u32,
            days: sets[2] as u32,
            months: sets[3] as u16,
            weekdays: weekdays as u8,
            days_restricted: parts[2].1 != "*",
            weekdays_restricted: parts[4].1 != "*",
        };
        let probe = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single();
        if probe.and_then(|t| cron.next_after(t)).is_none() {
            return Err(CronError {
                span: 0..text.len(),
                message: format!("`{}` never fires (no such date)", text.trim()),
            });
        }
        Ok(cron)
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first matching minute strictly after `t`, or `None` if none within eight years.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut cur = t.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let limit = t + Duration::days(366 * 8);
        while cur <= limit {
            if self.months & (1 << cur.month()) == 0 {
                let (y, m) = if cur.month() == 12 {
                    (cur.year() + 1, 1)
                } else {
                    (cur.year(), cur.month() + 1)
                };
                cur = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()?;
                continue;
            }
            if !self.day_matches(cur.date_naive()) {
                cur = (cur.date_naive() + Duration::days(1))
                    .and_hms_opt(0, 0, 0)?
                    .and_utc();
                continue;
            }
            if self.hours & (1 << cur.hour()) == 0 {
                cur = cur.with_minute(0)? + Duration::hours(1);
                continue;
            }
            if self.minutes & (1 << cur.minute()) == 0 {
                cur += Duration::minutes(1);
                continue;
            }
            return Some(cur);
        }
        None
    }
}

fn split_with_offsets(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(st)) => {
                out.push((st, &s[st..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(st) = start {
        out.push((st, &s[st..]));
    }
    out
}

type FieldError = (Range<usize>, String);

fn parse_field(text: &str, field: &Field) -> Result<u64, FieldError> {
    let mut set = 0u64;
    let mut offset = 0;
    for item in text.split(',') {
        let span = offset..offset + item.len();
        offset += item.len() + 1;
        let (range_part, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    (span.clone(), format!("`{s}` is not a valid step in the {} field; a step is a positive number", field.name))
                })?;
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range_part == "*" {
            (field.min, field.max)
        } else if let Some((a, b)) = range_part.split_once('-') {
            (value(a, field, &span)?, value(b, field, &span)?)
        } else {
            let v = value(range_part, field, &span)?;
            (v, if item.contains('/') { field.max } else { v })
        };
        if lo > hi {
            return Err((
                span,
                format!(
                    "`{item}` in the {} field is a range that runs backwards",
                    field.name
                ),
            ));
        }
        let mut v = lo;
        while v <= hi {
            set |= 1 << v;
            v += step;
        }
    }
    Ok(set)
}

fn value(text: &str, field: &Field, span: &Range<usize>) -> Result<u32, FieldError> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = field.names.iter().position(|n| *n == lower) {
        let base = u32::from(field.min == 1);
        return Ok(i as u32 + base);
    }
    match text.parse::<u32>() {
        Ok(v) if (field.min..=field.max).contains(&v) => Ok(v),
        _ => {
            let names = if field.names.is_empty() {
                String::new()
            } else {
                format!(" or a name ({})", field.names.join(", "))
            };
            Err((
                span.clone(),
                format!(
                    "`{text}` is not valid in the {} field; use {}-{}{names}",
                    field.name, field.min, field.max
                ),
            ))
        }
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
    }
}
