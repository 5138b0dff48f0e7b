use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An id given on the command line or in a URL that is not a positive number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not a valid {what} id; ids are positive numbers such as 42")]
pub struct ParseIdError {
    given: String,
    what: &'static str,
}

macro_rules! numeric_id {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Through i64's own Display, so width and alignment flags work in tables.
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let trimmed = s.trim().trim_start_matches('#');
                match trimmed.parse::<i64>() {
                    Ok(n) if n > 0 => Ok($name(n)),
                    _ => Err(ParseIdError { given: s.to_string(), what: $what }),
                }
            }
        }
    };
}

numeric_id!(
    /// A run's id: numbers grow with creation time, so they sort and page naturally.
    RunId, "run"
);
numeric_id!(
    /// A dead-letter queue entry's id.
    DlqId, "dead-letter entry"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_hash_prefixed_ids() {
        assert_eq!("42".parse::<RunId>(), Ok(RunId(42)));
        assert_eq!("#7".parse::<DlqId>(), Ok(DlqId(7)));
        assert_eq!(
            "abc".parse::<RunId>().unwrap_err().to_string(),
            "`abc` is not a valid run id; ids are positive numbers such as 42"
        );
        assert!("0".parse::<RunId>().is_err());
        assert_eq!(
            format!("[{:<4}]", RunId(7)),
            "[7   ]",
            "padding works in tables"
        );
    }
}
