//! Everything a key can do, as a named enum. The names are what keymap files bind and what the
//! command palette accepts; the doc strings are what the help shows, so they cannot disagree.

macro_rules! actions {
    ($($variant:ident => $name:literal, $doc:literal;)+) => {
        /// A dashboard command that keys (and the command palette) can invoke.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action { $($variant),+ }

        impl Action {
            pub const ALL: &'static [Action] = &[$(Action::$variant),+];

            /// The name used in keymap files.
            pub fn name(self) -> &'static str {
                match self { $(Action::$variant => $name),+ }
            }

            /// One line for the help overlay.
            pub fn doc(self) -> &'static str {
                match self { $(Action::$variant => $doc),+ }
            }

            pub fn from_name(name: &str) -> Option<Action> {
                match name { $($name => Some(Action::$variant),)+ _ => None }
            }
        }
    };
}

actions! {
    Quit => "quit", "Quit; asks first while runs are in flight (in a run, a stage opened from another pane, a diff or a filter: go back)";
    Interrupt => "interrupt", "Quit from anywhere, asking first while runs are in flight; exits with status 130";
    Back => "back", "Go back: leave a run or a stage opened from another pane, close a diff, clear a filter, close a dialog";
    Help => "help", "Show the keys of the focused pane";
    Palette => "command_palette", "Open the command palette";
    Messages => "messages", "Show the footer's recent messages in full, newest first";
    SaveScreen => "save_screen", "Save the screen as shown, as SVG and text, in the reports directory (ui.reports_dir)";
    PaneRuns => "pane_runs", "Show runs";
    PaneStage => "pane_stage", "Show the stage input and output";
    PaneCanary => "pane_canary", "Show canary rollouts";
    PaneCompare => "pane_compare", "Compare two runs stage by stage (mark them with space in Runs)";
    PaneDlq => "pane_dlq", "Show the dead-letter queue";
    PaneAssets => "pane_assets", "Show versioned assets: versions, pins, diffs, tests and rollback";
    PaneEvents => "pane_events", "Show the event log and the audit records in it";
    PanePipelines => "pane_pipelines", "Show each pipeline's DAG with per-stage health over recent runs";
    Confirm => "confirm", "In a dialog: confirm (and in a filter: keep it)";
    Complete => "complete", "In the command palette: complete the word; in a form: the next field";
    Up => "up", "Move up";
    Down => "down", "Move down";
    PageUp => "page_up", "Move up a page";
    PageDown => "page_down", "Move down a page";
    Top => "top", "Go to the top";
    Bottom => "bottom", "Go to the bottom";
    Open => "open", "Open what is selected, whole: a run, a stage, an event's record, a rollout's details";
    Filter => "filter", "Filter the list: words, field:value (status:, pipeline:, stage:, kind:) and #ID";
    Sort => "sort", "Sort by newest, oldest, longest or pipeline";
    NewRun => "new_run", "Start a run of a pipeline, picked from a list";
    Mark => "mark", "Mark the run for comparison; with two marked, compare them";
    EditAsset => "edit_asset", "Write a new version of the asset in an editor, saved with a reason (not pinned)";
    TestStage => "test_stage", "Test a stage that uses the asset alone with the selected version, beside its last production output";
    PinVersion => "pin_version", "Pin the selected version: runs use it from now (asks first)";
    RollbackAsset => "rollback_asset", "Roll the asset back to the version pinned before (asks first)";
    SwitchList => "switch_list", "Switch lists: assets and their versions; the next pipeline";
    RetryRun => "retry_run", "Retry the run from its failed stages (asks first)";
    CancelRun => "cancel_run", "Cancel the run (asks first)";
    NextAttempt => "next_attempt", "Show the next attempt";
    PrevAttempt => "prev_attempt", "Show the previous attempt";
    NextSection => "next_section", "Show the next section: input, output, stderr, error";
    PrevSection => "prev_section", "Show the previous section";
    Diff => "diff", "Diff the output against a baseline run (the previous success), or close the diff";
    PickBaseline => "pick_baseline", "Choose the baseline run for the diff";
    DiffLayout => "toggle_diff_layout", "Switch the diff between unified and side by side";
    Wrap => "toggle_wrap", "Wrap long lines, or cut them with an ellipsis and scroll sideways";
    ScrollLeft => "scroll_left", "Scroll long lines left";
    ScrollRight => "scroll_right", "Scroll long lines right (the end of a long stderr line)";
    OpenStage => "open_stage", "Open the dead-letter entry's stage: each attempt's input, output, stderr and error, the last attempt first";
    Requeue => "requeue", "Requeue the dead-letter entry (asks first)";
    Discard => "discard", "Discard the dead-letter entry (asks first)";
    Follow => "follow", "Follow the newest events";
    Promote => "promote", "Promote the canary to its next step (asks first)";
    PromoteFull => "promote_full", "Send all traffic to the canary (asks first)";
    PauseResume => "pause_resume", "Pause or resume the rollout (asks first)";
    SetWeight => "set_weight", "Set the canary's weight and pause (asks first; up and down change it by 5)";
    Rollback => "rollback", "Roll the canary back: all traffic to legacy (asks first)";
    Restart => "restart", "Start the rollout again from its first step with fresh analysis (asks first)";
    ChartSpan => "chart_span", "Charts over 5, 15 or 60 minutes";
    ChartQuantile => "chart_quantile", "Latency chart: p50, p95 or p99";
}

impl Action {
    /// Actions the dashboard handles itself, whatever pane has the focus.
    pub const GLOBAL: &'static [Action] = &[
        Action::PaneRuns,
        Action::PaneStage,
        Action::PaneCanary,
        Action::PaneCompare,
        Action::PaneDlq,
        Action::PaneAssets,
        Action::PaneEvents,
        Action::PanePipelines,
        Action::Palette,
        Action::Messages,
        Action::SaveScreen,
        Action::Help,
        Action::Back,
        Action::Quit,
        Action::Interrupt,
    ];

    /// Moving in a list or scrolling text.
    pub const MOTIONS: &'static [Action] = &[
        Action::Down,
        Action::Up,
        Action::PageDown,
        Action::PageUp,
        Action::Top,
        Action::Bottom,
    ];

    /// Whether the action changes the runtime (refused and hidden in read-only mode).
    pub fn is_control(self) -> bool {
        matches!(
            self,
            Action::NewRun
                | Action::RetryRun
                | Action::CancelRun
                | Action::Requeue
                | Action::Discard
                | Action::Promote
                | Action::PromoteFull
                | Action::PauseResume
                | Action::SetWeight
                | Action::Rollback
                | Action::Restart
                | Action::EditAsset
                | Action::TestStage
                | Action::PinVersion
                | Action::RollbackAsset
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
        for a in Action::ALL {
            assert_eq!(Action::from_name(a.name()), Some(*a));
            assert!(!a.doc().is_empty());
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Action::ALL.len());
    }
}
