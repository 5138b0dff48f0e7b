use super::RunId;

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

    // The preconditions of the run commands, in one place: the host refuses with these
    // sentences, and the dashboard asks the same functions to grey out its keys.

    pub fn can_cancel(self) -> bool {
        !self.is_finished()
    }

    pub fn can_retry(self) -> bool {
        matches!(self, RunStatus::Failed | RunStatus::Cancelled)
    }

    pub fn can_resume(self) -> bool {
        self == RunStatus::Interrupted
    }

    /// Why run `id` in this status cannot be cancelled, or `None` when it can.
    pub fn cancel_refusal(self, id: RunId) -> Option<String> {
        (!self.can_cancel())
            .then(|| format!("run {id} already finished ({self}); there is nothing to cancel"))
    }

    /// Why run `id` in this status cannot be retried, or `None` when it can.
    pub fn retry_refusal(self, id: RunId) -> Option<String> {
        if self.can_retry() {
            return None;
        }
        match self {
            RunStatus::Interrupted => Some(format!(
                "run {id} was interrupted, not failed; continue it with `opsdeck runs resume {id}`"
            )),
            RunStatus::Pending | RunStatus::Running => Some(format!(
                "run {id} is still {self}; wait for it or cancel it first"
            )),
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled => Some(format!(
                "run {id} is {self}; only failed or cancelled runs can be retried"
            )),
        }
    }

    /// Why run `id` in this status cannot be resumed, or `None` when it can.
    pub fn resume_refusal(self, id: RunId) -> Option<String> {
        if self.can_resume() {
            return None;
        }
        match self {
            RunStatus::Pending | RunStatus::Running => Some(format!("run {id} is already running")),
            RunStatus::Failed | RunStatus::Cancelled => Some(format!(
                "run {id} is {self}, not interrupted; only interrupted runs can be resumed; re-run its failed stages with `opsdeck runs retry {id}`"
            )),
            RunStatus::Succeeded | RunStatus::Interrupted => Some(format!(
                "run {id} is {self}, not interrupted; only interrupted runs can be resumed"
            )),
        }
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
