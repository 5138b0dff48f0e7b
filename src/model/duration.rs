//! Human durations as written in config files: `250ms`, `30s`, `5m`, `1h30m`, `2d`.

use std::fmt::Write as _;
use std::time::Duration;

/// Parses a duration made of one or more `<number><unit>` parts (units: ms, s, m, h, d).
/// The error is a sentence fragment that names what was wrong, for use after a location.
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("a duration is empty; write it like 30s, 5m or 1h30m".into());
    }
    if let Some(short) = spelled_out(s) {
        return Err(format!("`{s}` is not a duration; write it as `{short}`"));
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration; write it like 30s, 5m or 1h30m"
            ));
        }
        let (num, after) = rest.split_at(digits);
        if after.starts_with('.') {
            return Err(format!(
                "`{text}` has a decimal; durations take whole numbers, so write 1m30s or 90s instead of 1.5m"
            ));
        }
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, next) = after.split_at(unit_len);
        let n: u128 = num
            .parse()
            .map_err(|_| format!("`{text}` has a number that is too large"))?;
        let ms_per = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "`{text}` is missing a unit after {num}; valid units: ms, s, m, h, d"
                ));
            }
            other => {
                return Err(format!(
                    "`{other}` in `{text}` is not a unit; valid units: ms, s, m, h, d"
                ));
            }
        };
        total = total.saturating_add(n.saturating_mul(ms_per));
        rest = next;
    }
    let ms = u64::try_from(total).map_err(|_| format!("`{text}` is too long"))?;
    Ok(Duration::from_millis(ms))
}

/// Formats a duration compactly for tables: `850ms`, `12.3s`, `4m05s`, `2h10m`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// Formats a duration the way it would be written in a config file (`1h30m`, `30s`, `250ms`).
/// `30 seconds`, `5 min`, `2 hours` as the short form (`30s`, `5m`, `2h`), so the error can
/// say exactly what to write.
fn spelled_out(s: &str) -> Option<String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (num, word) = s.split_at(digits);
    let word = word.trim().to_ascii_lowercase();
    let unit = match word.as_str() {
        "millisecond" | "milliseconds" | "msec" | "msecs" => "ms",
        "second" | "seconds" | "sec" | "secs" => "s",
        "minute" | "minutes" | "min" | "mins" => "m",
        "hour" | "hours" | "hr" | "hrs" => "h",
        "day" | "days" => "d",
        "s" | "m" | "h" | "d" | "ms" if s[digits..].starts_with(' ') => word.as_str(),
        _ => return None,
    };
    Some(format!("{num}{unit}"))
}

pub fn to_spec(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            let _ = write!(out, "{}{unit}", ms / size);
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelled_out_units_get_the_short_form_suggested() {
        assert_eq!(
            parse("30 seconds").unwrap_err(),
            "`30 seconds` is not a duration; write it as `30s`"
        );
        assert_eq!(
            parse("5 Minutes").unwrap_err(),
            "`5 Minutes` is not a duration; write it as `5m`"
        );
        assert_eq!(
            parse("2 h").unwrap_err(),
            "`2 h` is not a duration; write it as `2h`"
        );
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse("30").unwrap_err().contains("missing a unit"));
        assert!(parse("5x").unwrap_err().contains("valid units"));
        assert!(parse("").is_err());
        assert!(parse("1.5m").unwrap_err().contains("write 1m30s or 90s"));
    }

    #[test]
    fn formats_for_tables_and_specs() {
        assert_eq!(format(Duration::from_millis(850)), "850ms");
        assert_eq!(format(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(format(Duration::from_secs(245)), "4m05s");
        assert_eq!(to_spec(Duration::from_secs(5400)), "1h30m");
        assert_eq!(to_spec(Duration::from_millis(1500)), "1s500ms");
    }
}
