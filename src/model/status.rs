/// A status name that is not one of the valid choices; the message lists them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not a {what}; valid choices: {choices}")]
pub struct ParseStatusError {
    pub(crate) given: String,
    pub(crate) what: &'static str,
    pub(crate) choices: String,
}

/// Defines a lowercase string enum with one source of truth for its names, so parsing, printing,
/// SQL and JSON can never disagree.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable name used in JSON, SQL and on the command line.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::model::ParseStatusError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::model::ParseStatusError {
                        given: s.to_string(),
                        what: $what,
                        choices: [$($text),+].join(", "),
                    }),
                }
            }
        }
    };
}
pub(crate) use string_enum;

string_enum!(
    /// Where a run is in its life. `interrupted` means its host died mid-run; it can be resumed.
    RunStatus, "run status" {
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
        Interrupted => "interrupted",
    }
);

impl RunStatus {
    /// True once nothing more will happen to the run without an explicit retry or requeue.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

string_enum!(
    /// Where a stage is within its run.
    StageStatus, "stage status" {
        Pending => "pending",
        Running => "running",
        Retrying => "retrying",
        Succeeded => "succeeded",
        Failed => "failed",
        Skipped => "skipped",
        Cancelled => "cancelled",
        Interrupted => "interrupted",
    }
);

impl StageStatus {
    /// True when the stage will not run again unless the run is retried or requeued.
    pub fn is_done(self) -> bool {
        matches!(
            self,
            StageStatus::Succeeded
                | StageStatus::Failed
                | StageStatus::Skipped
                | StageStatus::Cancelled
        )
    }
}

string_enum!(
    /// The outcome of one attempt of a stage.
    AttemptStatus, "attempt status" {
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
        Interrupted => "interrupted",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_errors_list_choices() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(*s));
        }
        let err = "done".parse::<RunStatus>().unwrap_err().to_string();
        assert_eq!(
            err,
            "`done` is not a run status; valid choices: pending, running, succeeded, failed, cancelled, interrupted"
        );
        assert_eq!(
            serde_json::to_string(&StageStatus::Retrying).unwrap(),
            "\"retrying\""
        );
    }
}
