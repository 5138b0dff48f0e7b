//! The command palette (`:`): typed commands in one table, and every command of the focused
//! pane by its keymap name (`:rollback`, `:retry_run`), so what the palette completes, what it
//! accepts and what the help and README list cannot drift apart.

use super::action::Action;
use super::app::App;
use super::help;
use super::panes::PaneId;
use super::popup::Popup;
use super::request::Request;
use super::theme::Theme;
use crate::model::{Command, Fault, RunId};

/// What a typed command takes after its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    None,
    /// A pipeline name, required.
    Pipeline,
    /// A pipeline name, optional.
    MaybePipeline,
    /// A canary name, optional (the selected canary otherwise).
    MaybeCanary,
    Theme,
    /// `ERRORS% [MS]` or `off`.
    Fault,
    /// Two run ids.
    Runs2,
}

/// A command typed in the palette.
#[derive(Debug, Clone, Copy)]
pub struct Typed {
    pub name: &'static str,
    pub arg: Arg,
    pub doc: &'static str,
}

const fn typed(name: &'static str, arg: Arg, doc: &'static str) -> Typed {
    Typed { name, arg, doc }
}

/// Every typed command, in the order the README lists them.
pub const TYPED: &[Typed] = &[
    typed(
        "runs",
        Arg::MaybePipeline,
        "show runs (`:runs NAME` for one pipeline)",
    ),
    typed(
        "run",
        Arg::Pipeline,
        "start a run of a pipeline: `:run NAME`, or with other asset versions: `:run NAME rules=2`",
    ),
    typed("stage", Arg::None, "show the stage input and output"),
    typed(
        "canary",
        Arg::MaybeCanary,
        "show canary rollouts (`:canary NAME` selects one)",
    ),
    typed(
        "fault",
        Arg::Fault,
        "simulated canary: `:fault ERRORS% [MS]` adds errors and latency, `:fault off` clears",
    ),
    typed(
        "compare",
        Arg::Runs2,
        "compare two runs stage by stage: `:compare 41 42`",
    ),
    typed("dlq", Arg::None, "show the dead-letter queue"),
    typed("events", Arg::None, "show the event log"),
    typed("theme", Arg::Theme, "switch the theme: `:theme NAME`"),
    typed("help", Arg::None, "show the keys of the focused pane"),
    typed("quit", Arg::None, "quit opsdeck"),
];

/// Whether `word` names a typed command.
pub fn known(word: &str) -> bool {
    TYPED.iter().any(|t| t.name == word)
}

/// What a palette line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Nothing,
    Runs(Option<String>),
    /// A pipeline, and the asset versions to use instead of the pinned ones.
    Run(String, crate::model::asset::Overrides),
    Show(PaneId),
    Canary(Option<String>),
    Fault(Fault),
    Compare(RunId, RunId),
    Theme(String),
    Help,
    Quit,
    /// A command of the focused pane, for the canary named (canary actions) if any.
    Action(Action, Option<String>),
}

const FAULT_USAGE: &str =
    "write `:fault 8` for 8% more errors, `:fault 0 300` for 300ms more latency, or `:fault off`";

/// Reads `:fault ERRORS% [MS]` or `:fault off`; the error is a sentence with the usage.
fn fault(args: &[&str]) -> Result<Fault, String> {
    match args {
        ["off" | "clear"] => Ok(Fault::default()),
        [errors] | [errors, _] => {
            let bad = || format!("`:fault {}` is not a fault; {FAULT_USAGE}", args.join(" "));
            let pct = errors
                .trim_end_matches('%')
                .parse::<f64>()
                .map_err(|_| bad())?;
            let ms = args
                .get(1)
                .map_or(Ok(0.0), |m| m.trim_end_matches("ms").parse::<f64>())
                .map_err(|_| bad())?;
            // Percentage points here; the model takes a fraction and checks both ranges.
            Fault::new(pct / 100.0, ms).map_err(|e| format!("{e}; {FAULT_USAGE}"))
        }
        _ => Err(format!("`:fault` needs numbers; {FAULT_USAGE}")),
    }
}

/// `:compare A B`, or `:compare` alone for the pane.
fn compare(args: &[&str]) -> Result<Parsed, String> {
    const USAGE: &str = "write `:compare BASE CANDIDATE` with two run ids, like `:compare 41 42`";
    match args {
        [] => Ok(Parsed::Show(PaneId::Compare)),
        [a, b] => {
            let id = |s: &str| {
                s.trim_start_matches('#')
                    .parse::<RunId>()
                    .map_err(|_| format!("`{s}` is not a run id; {USAGE}"))
            };
            Ok(Parsed::Compare(id(a)?, id(b)?))
        }
        _ => Err(format!("`:compare` takes two run ids; {USAGE}")),
    }
}

/// Reads a palette line against the typed commands and the focused pane's `actions`.
pub fn parse(line: &str, actions: &[Action]) -> Result<Parsed, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&cmd, args)) = words.split_first() else {
        return Ok(Parsed::Nothing);
    };
    let arg = args.first().map(|a| (*a).to_string());
    Ok(match cmd {
        "runs" => Parsed::Runs(arg),
        "run" => {
            let name = arg.ok_or("`:run` needs a pipeline name, like `:run checkout-etl`")?;
            let pairs = args[1..]
                .iter()
                .map(|a| crate::model::asset::parse_override(a))
                .collect::<Result<Vec<_>, _>>()?;
            Parsed::Run(name, crate::model::asset::overrides_from(&pairs)?)
        }
        "stage" => Parsed::Show(PaneId::Stage),
        "canary" | "canaries" => Parsed::Canary(arg),
        "fault" => Parsed::Fault(fault(args)?),
        "compare" => compare(args)?,
        "dlq" => Parsed::Show(PaneId::Dlq),
        "events" => Parsed::Show(PaneId::Events),
        "theme" => Parsed::Theme(arg.ok_or("`:theme` needs a name")?),
        "help" => Parsed::Help,
        "quit" | "q" => Parsed::Quit,
        other => match Action::from_name(other).filter(|a| actions.contains(a)) {
            Some(a) => Parsed::Action(a, arg),
            None => {
                let mut names: Vec<&str> = TYPED.iter().map(|t| t.name).collect();
                names.extend(actions.iter().map(|a| a.name()));
                return Err(format!(
                    "unknown command `{other}`; commands: {}",
                    names.join(", ")
                ));
            }
        },
    })
}

/// What can follow the typed text: command names (typed ones, then the pane's), then the
/// names a command takes (`pools`: pipelines, themes, canaries).
pub fn candidates(
    typed: &str,
    actions: &[Action],
    pools: (&[String], &[String], &[String]),
) -> Vec<(String, String)> {
    let words: Vec<&str> = typed.split_whitespace().collect();
    let completing_first = words.len() <= 1 && !typed.ends_with(' ');
    if completing_first {
        let prefix = words.first().copied().unwrap_or("");
        let mut found: Vec<(String, String)> = TYPED
            .iter()
            .map(|t| (t.name, t.doc))
            .chain(actions.iter().map(|a| (a.name(), a.doc())))
            .filter(|(c, _)| c.starts_with(prefix))
            .map(|(c, d)| (c.to_string(), d.to_string()))
            .collect();
        // An exact match comes first, so completing `run` keeps `run` rather than `runs`.
        found.sort_by_key(|(c, _)| c != prefix);
        return found;
    }
    let prefix = if typed.ends_with(' ') {
        ""
    } else {
        words.last().copied().unwrap_or("")
    };
    let (pipelines, themes, canaries) = pools;
    let first = words.first().copied().unwrap_or("");
    let pool: &[String] = match TYPED.iter().find(|t| t.name == first).map(|t| t.arg) {
        Some(Arg::Pipeline | Arg::MaybePipeline) => pipelines,
        Some(Arg::Theme) => themes,
        Some(Arg::MaybeCanary) => canaries,
        None if Action::from_name(first).is_some_and(|a| actions.contains(&a)) => canaries,
        _ => &[],
    };
    pool.iter()
        .filter(|n| n.starts_with(prefix))
        .map(|n| (n.clone(), String::new()))
        .collect()
}

/// What the palette's commands do to the dashboard.
impl App {
    /// What the palette accepts by name: the focused pane's commands, and the canary
    /// commands (which take a canary's name) from anywhere.
    fn palette_actions(&self) -> Vec<Action> {
        let mut actions = help::pane_actions(self.focused());
        for a in help::pane_actions(&self.panes.canary) {
            if !actions.contains(&a) {
                actions.push(a);
            }
        }
        actions
    }

    pub(super) fn update_palette(&mut self) {
        let pipelines: Vec<String> = self
            .overview
            .as_ref()
            .map(|o| o.pipelines.iter().map(|p| p.name.clone()).collect())
            .unwrap_or_default();
        let themes = Theme::names(self.config.theme_dir.as_deref());
        let canaries: Vec<String> = self
            .panes
            .canary
            .canaries
            .iter()
            .map(|c| c.name.clone())
            .collect();
        let actions = self.palette_actions();
        if let Some(Popup::Palette(p)) = self.popups.last_mut() {
            let typed = p.input.lines().join(" ");
            p.candidates = candidates(&typed, &actions, (&pipelines, &themes, &canaries));
            p.selected = p.selected.min(p.candidates.len().saturating_sub(1));
        }
    }

    pub(super) fn run_command(&mut self, line: &str) {
        match parse(line, &self.palette_actions()) {
            Ok(Parsed::Fault(fault)) if !self.config.read_only => self.inject(fault, line),
            Ok(parsed) => self.run_parsed(parsed),
            Err(e) => self.flash(e, true),
        }
    }

    fn run_parsed(&mut self, parsed: Parsed) {
        let read_only = self.config.read_only;
        match parsed {
            Parsed::Nothing => {}
            Parsed::Runs(pipeline) => {
                self.focus_pane(PaneId::Runs);
                self.panes.runs.detail = None;
                let filter = pipeline
                    .map(|p| format!("pipeline:{p}"))
                    .unwrap_or_default();
                if let Err(e) = self.set_filter(PaneId::Runs, filter) {
                    self.flash(e, true);
                }
            }
            Parsed::Run(..) | Parsed::Fault(_) if read_only => {
                self.flash(self.read_only_why(), true);
            }
            Parsed::Run(name, overrides) => self.run_named(name, overrides),
            Parsed::Show(pane) => self.focus_pane(pane),
            Parsed::Canary(name) => {
                self.focus_pane(PaneId::Canary);
                self.select_canary(name.as_deref());
            }
            Parsed::Fault(fault) => self.inject(fault, ":fault"),
            Parsed::Compare(a, b) => self.compare(a, b),
            Parsed::Theme(name) => self.switch_theme(&name),
            Parsed::Help => self.popups.push(Popup::Help { scroll: 0 }),
            Parsed::Quit => self.quit_flow(false),
            Parsed::Action(a, name) => {
                if !help::pane_actions(self.focused()).contains(&a) {
                    self.focus_pane(PaneId::Canary);
                }
                if self.select_canary(name.as_deref()) {
                    self.on_action(a);
                }
            }
        }
    }

    /// Injects `fault` into the selected canary; the palette line is the audit's reason.
    fn inject(&mut self, fault: Fault, line: &str) {
        let Some(c) = self.panes.canary.selected() else {
            return self.flash("`:fault` acts on the selected canary; there is none", true);
        };
        let cmd = Command::Fault {
            canary: c.name.clone(),
            fault,
        };
        self.outbox.push(Request::Control {
            cmd,
            reason: format!("`:{}` in the dashboard's command palette", line.trim()),
        });
    }

    fn run_named(&mut self, name: String, overrides: crate::model::asset::Overrides) {
        let names: Vec<String> = self
            .overview
            .as_ref()
            .map(|o| o.pipelines.iter().map(|p| p.name.clone()).collect())
            .unwrap_or_default();
        if names.contains(&name) {
            self.start_run_with(name, overrides);
        } else {
            self.flash(
                format!(
                    "there is no pipeline `{name}`; pipelines: {}",
                    names.join(", ")
                ),
                true,
            );
        }
    }

    /// Selects the canary named (when one is), fetching its charts; false when there is none.
    fn select_canary(&mut self, name: Option<&str>) -> bool {
        let Some(name) = name else { return true };
        match self.panes.canary.select(name) {
            Ok(()) => {
                self.outbox.extend(self.panes.canary.series_request());
                true
            }
            Err(e) => {
                self.flash(e, true);
                false
            }
        }
    }

    fn switch_theme(&mut self, name: &str) {
        if self.config.no_color {
            return self.flash(
                "NO_COLOR is set, so opsdeck stays monochrome; unset it to use colour themes",
                true,
            );
        }
        match Theme::load(name, self.config.theme_dir.as_deref(), self.config.depth) {
            Ok(t) => {
                self.config.theme = t;
                self.flash(format!("theme {name}"), false);
            }
            Err(e) => {
                let problems: Vec<String> = e.iter().map(ToString::to_string).collect();
                self.flash(problems.join("; "), true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_knows_commands_then_names() {
        let pipes = ["checkout-etl".to_string(), "daily-report".to_string()];
        let themes = ["dark".to_string(), "light".to_string()];
        let canaries = ["checkout-api".to_string()];
        let pools = (&pipes[..], &themes[..], &canaries[..]);
        let names = |v: Vec<(String, String)>| v.into_iter().map(|(c, _)| c).collect::<Vec<_>>();
        assert_eq!(names(candidates("ru", &[], pools)), ["runs", "run"]);
        assert_eq!(
            names(candidates("run", &[], pools)),
            ["run", "runs"],
            "an exact match first"
        );
        assert_eq!(
            names(candidates("run ", &[], pools)),
            ["checkout-etl", "daily-report"]
        );
        assert_eq!(names(candidates("run d", &[], pools)), ["daily-report"]);
        assert_eq!(names(candidates("theme l", &[], pools)), ["light"]);
        assert!(candidates("quit x", &[], pools).is_empty());
        let canary = [Action::Rollback, Action::Promote];
        assert_eq!(names(candidates("rol", &canary, pools)), ["rollback"]);
        assert_eq!(
            names(candidates("rollback ", &canary, pools)),
            ["checkout-api"]
        );
    }

    #[test]
    fn lines_parse_into_commands_or_say_why_not() {
        assert_eq!(parse("runs etl", &[]), Ok(Parsed::Runs(Some("etl".into()))));
        assert_eq!(
            parse("rollback checkout-api", &[Action::Rollback]),
            Ok(Parsed::Action(
                Action::Rollback,
                Some("checkout-api".into())
            ))
        );
        assert!(
            parse("rollback x", &[])
                .unwrap_err()
                .starts_with("unknown command `rollback`")
        );
        let Ok(Parsed::Fault(f)) = parse("fault 8 250", &[]) else {
            panic!("a fault");
        };
        assert!((f.error_rate - 0.08).abs() < 1e-9 && (f.latency_ms - 250.0).abs() < 1e-9);
        assert!(parse("fault 150", &[]).unwrap_err().contains("from 0 to 1"));
        assert!(
            parse("fault lots", &[])
                .unwrap_err()
                .contains("`:fault off`")
        );
        assert_eq!(parse("", &[]), Ok(Parsed::Nothing));
    }
}
