//! `opsdeck canary`: list rollouts, show one (once or watching), and act on one with a reason.
//! While a host serves the workspace, it answers and acts; otherwise reads show the saved
//! status and actions host the workspace for the moment they take, like runs.

use std::fmt::Write as _;

use clap::{Args, Subcommand};

use super::output::{Table, print_json, short, took};
use super::{
    Cli, CliError, CliResult, EXIT_OK, command, open_workspace, reader, served, with_backend,
};
use crate::canary::service::saved_statuses;
use crate::client::Backend;
use crate::host::Workspace;
use crate::model::{CanaryAction, CanaryState, CanaryStatus, Command, Outcome, Verdict};
use crate::tui::widgets::glyph;

#[derive(Debug, Subcommand)]
pub enum CanaryCommand {
    /// Every canary of the workspace with its state and weight
    List {
        #[arg(long)]
        json: bool,
    },
    /// One canary: state, step, weight, checks with their numbers, triggers, last action
    Status {
        name: String,
        #[arg(long)]
        json: bool,
        /// Redraw every two seconds until Ctrl-C
        #[arg(long, conflicts_with = "json")]
        watch: bool,
    },
    /// Move to the next step now
    Promote(ActArgs),
    /// Send all traffic to the canary: the rollout is done
    PromoteFull(ActArgs),
    /// Stop advancing (automatic rollback still protects)
    Pause(ActArgs),
    /// Continue advancing; the current step's pause starts again
    Resume(ActArgs),
    /// Set the canary's weight in percent (0-100) and pause
    SetWeight {
        name: String,
        #[arg(value_parser = parse_percent, value_name = "PERCENT")]
        weight: u32,
        /// Why, for the audit log
        #[arg(long)]
        reason: String,
    },
    /// Send all traffic to legacy now
    Rollback(ActArgs),
    /// Stop the rollout without a verdict on the canary: all traffic to legacy (`aborted`)
    Abort(ActArgs),
    /// Start a rollout that ended again from its first step
    Restart(ActArgs),
}

#[derive(Debug, Args)]
pub struct ActArgs {
    pub name: String,
    /// Why, for the audit log
    #[arg(long)]
    pub reason: String,
}

fn parse_percent(s: &str) -> Result<u32, String> {
    match s.trim_end_matches('%').parse::<u32>() {
        Ok(n) if n <= 100 => Ok(n),
        _ => Err(format!(
            "`{s}` is not a weight; give a whole percentage from 0 to 100, like 25"
        )),
    }
}

fn statuses(ws: &Workspace) -> Result<Vec<CanaryStatus>, CliError> {
    Ok(saved_statuses(&ws.canaries, &reader(ws)?))
}

fn one(ws: &Workspace, name: &str) -> Result<CanaryStatus, CliError> {
    ws.canary(name).map_err(CliError::bad_input)?;
    statuses(ws)?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| CliError::bad_input(format!("there is no canary `{name}`")))
}

/// The dashboard's symbols, so the CLI and the dashboard read the same.
pub fn state_symbol(s: CanaryState) -> &'static str {
    match s {
        CanaryState::Progressing => glyph::RUNNING,
        CanaryState::Paused => glyph::PAUSED,
        CanaryState::Promoted => glyph::OK,
        CanaryState::RolledBack => glyph::ROLLED_BACK,
        CanaryState::Aborted => glyph::CANCELLED,
    }
}

pub fn verdict_symbol(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => glyph::OK,
        Verdict::Fail => glyph::FAILED,
        Verdict::Inconclusive => glyph::INCONCLUSIVE,
    }
}

/// The compact text view of `status` and `status --watch`.
pub fn render(s: &CanaryStatus) -> String {
    let mut o = String::new();
    let step = s.steps.get(s.step);
    let pause = step.and_then(|st| st.pause_s).map_or_else(
        || "final".into(),
        |p| format!("pause {}", took(Some(p as i64 * 1000))),
    );
    let _ = writeln!(o, "Name:        {}", s.name);
    let _ = writeln!(
        o,
        "State:       {} {}   (source {})",
        state_symbol(s.state),
        s.state,
        s.source
    );
    // The step's time as the controller counts it (host seconds), not the wall clock's: they
    // part while no host runs the rollout, and only the first decides a promotion.
    let held = i64::try_from(s.step_elapsed_s)
        .ok()
        .and_then(|secs| secs.checked_mul(1000));
    let _ = writeln!(
        o,
        "Step:        {}/{}   weight {}%   ({pause}, {} held)",
        s.step + 1,
        s.steps.len(),
        s.weight,
        took(held)
    );
    let _ = writeln!(
        o,
        "Requests:    legacy {}   canary {}   (since the rollout began)",
        s.requests.get("legacy").cloned().unwrap_or_default(),
        s.requests.get("canary").cloned().unwrap_or_default()
    );
    if let Some(outcome) = &s.outcome {
        let _ = writeln!(o, "Outcome:     {outcome}");
    }
    if let Some(u) = &s.upstream {
        let _ = writeln!(o, "Upstream:    {u}");
    }
    if let Some(t) = &s.traffic {
        let _ = writeln!(o, "Traffic:     {}", t.describe());
    }
    // The time the verdicts were decided on (for an ended rollout: the analysis that ended it).
    let decided = s.checks.first().and_then(|c| c.at).or(s.analysis_at);
    let at = decided.map_or_else(
        || "not yet".into(),
        |t| t.datetime().format("%H:%M:%S UTC").to_string(),
    );
    let what = if s.state.is_final() {
        " (the one that decided the rollout; request counts above are live)"
    } else {
        ""
    };
    let _ = writeln!(o, "Analysis:    {at}{what}");
    for c in &s.checks {
        let proven = if c.proven_within_slo {
            " (proven within SLO)"
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "  {} {:<12} {:<12} {}{proven}",
            verdict_symbol(c.verdict),
            c.name,
            c.verdict.as_str(),
            c.summary
        );
    }
    if !s.triggers.is_empty() {
        let _ = writeln!(o, "Triggers:");
        for t in &s.triggers {
            let mark = if t.fired { "✗ FIRED" } else { "  ok   " };
            let _ = writeln!(o, "  {mark} {:<19} {}", t.name, t.summary);
        }
    }
    if let Some(a) = &s.last_action {
        let _ = writeln!(
            o,
            "Last action: {} by {} at {} ({}% -> {}%): {}",
            a.action,
            a.actor,
            a.at.datetime().format("%H:%M:%S UTC"),
            a.weight_before,
            a.weight_after,
            a.reason
        );
    }
    o
}

fn print_status(s: &CanaryStatus, json: bool) -> CliResult {
    if json {
        print_json(s)?;
    } else {
        say_raw!("{}", render(s))?;
    }
    Ok(EXIT_OK)
}

fn print_list(all: &[CanaryStatus], json: bool) -> CliResult {
    if json {
        print_json(&all)?;
        return Ok(EXIT_OK);
    }
    if all.is_empty() {
        say!("no canaries; add a [canary.NAME] table to the workspace's opsdeck.toml")?;
        return Ok(EXIT_OK);
    }
    let mut t = Table::new(vec![
        "NAME",
        "STATE",
        "WEIGHT",
        "STEP",
        "SOURCE",
        "CHECKS",
        "LAST ACTION",
    ]);
    for s in all {
        let checks: Vec<String> = s
            .checks
            .iter()
            .map(|c| format!("{} {}", c.name, c.verdict))
            .collect();
        t.row(vec![
            s.name.clone(),
            format!("{} {}", state_symbol(s.state), s.state),
            format!("{}%", s.weight),
            format!("{}/{}", s.step + 1, s.steps.len()),
            s.source.clone(),
            if checks.is_empty() {
                "-".into()
            } else {
                checks.join(", ")
            },
            s.last_action.as_ref().map_or_else(
                || "-".into(),
                |a| short(&format!("{} by {}: {}", a.action, a.actor, a.reason), 50),
            ),
        ]);
    }
    say_raw!("{}", t.render())?;
    Ok(EXIT_OK)
}

/// The canary, action and reason of an action command (`None` for list and status).
fn action_of(cmd: &CanaryCommand) -> Option<(&str, CanaryAction, &str)> {
    Some(match cmd {
        CanaryCommand::List { .. } | CanaryCommand::Status { .. } => return None,
        CanaryCommand::SetWeight {
            name,
            weight,
            reason,
        } => (name, CanaryAction::SetWeight(*weight), reason),
        CanaryCommand::Promote(a) => (&a.name, CanaryAction::Promote, &a.reason),
        CanaryCommand::PromoteFull(a) => (&a.name, CanaryAction::PromoteFull, &a.reason),
        CanaryCommand::Pause(a) => (&a.name, CanaryAction::Pause, &a.reason),
        CanaryCommand::Resume(a) => (&a.name, CanaryAction::Resume, &a.reason),
        CanaryCommand::Rollback(a) => (&a.name, CanaryAction::Rollback, &a.reason),
        CanaryCommand::Abort(a) => (&a.name, CanaryAction::Abort, &a.reason),
        CanaryCommand::Restart(a) => (&a.name, CanaryAction::Restart, &a.reason),
    })
}

/// One canary action down the host's control path; `via` names a serving host's address.
async fn act(
    b: &dyn Backend,
    via: Option<&str>,
    name: &str,
    action: CanaryAction,
    reason: &str,
) -> CliResult {
    let cmd = Command::Canary {
        canary: name.to_string(),
        action,
        expect: None,
    };
    let Outcome::Canary { record: rec, .. } = command(b, cmd, reason).await? else {
        return Err(CliError::failed(
            "the host did not answer with the action it took",
        ));
    };
    let via = via.map(|v| format!(" via {v}")).unwrap_or_default();
    say!(
        "canary {name}: {} -> {}, weight {}% -> {}% ({} by {}{via})",
        rec.state_before,
        rec.state_after,
        rec.weight_before,
        rec.weight_after,
        rec.action,
        rec.actor
    )?;
    Ok(EXIT_OK)
}

pub async fn run(cli: &Cli, cmd: &CanaryCommand) -> CliResult {
    let watching = matches!(cmd, CanaryCommand::Status { watch: true, .. });
    // With --remote everything goes through the server (watching reads the local store).
    if !watching && let Some(remote) = served(cli, None)? {
        return on_host(&remote, cmd).await;
    }
    let (ws, _log) = open_workspace(cli, false, false)?;
    // While a host serves the workspace, it answers, and takes the action itself: its
    // canaries are the ones routing traffic, whatever opsdeck.toml says now, so a file edited
    // or broken since the host started never stands between an on-call engineer and a
    // rollback. (List and status are its live view; the store has the last analysis.)
    if !watching && let Some(remote) = served(cli, Some(&ws))? {
        return on_host(&remote, cmd).await;
    }
    // A canary table that does not check out must not look like "no canaries".
    let bad = crate::diag::render_all(ws.problems.iter().filter(|d| d.file == "opsdeck.toml"));
    if !bad.is_empty() {
        return Err(CliError::bad_input(bad));
    }
    let (name, action, reason) = match cmd {
        CanaryCommand::List { json } => return print_list(&statuses(&ws)?, *json),
        CanaryCommand::Status {
            name, watch: true, ..
        } => return watch_status(&ws, name).await,
        CanaryCommand::Status { name, json, .. } => {
            print_status(&one(&ws, name)?, *json)?;
            if !*json && crate::host::lock::HostLock::holder(&ws.state_dir()).is_none() {
                say!(
                    "No host runs this workspace: the rollout stands still (its step's time does not count) until `opsdeck serve` or the dashboard hosts it."
                )?;
            }
            return Ok(EXIT_OK);
        }
        _ => match action_of(cmd) {
            Some((name, action, reason)) => (name.to_string(), action, reason.to_string()),
            None => return Ok(EXIT_OK),
        },
    };
    // An unknown name is refused by the host's control path, like any refusal: audited.
    with_backend(
        cli,
        Some(ws),
        format!("opsdeck canary {} {name}", action.name().replace('_', "-")),
        &cannot(action, &name),
        async move |b| act(b, None, &name, action, &reason).await,
    )
    .await
}

fn cannot(action: CanaryAction, name: &str) -> String {
    format!("cannot {} canary {name}", action.name().replace('_', " "))
}

/// A command answered by a serving host: its live view, or the action down its control path
/// (where an unknown name is refused, and audited, like any other refusal).
async fn on_host(remote: &crate::client::Remote, cmd: &CanaryCommand) -> CliResult {
    let base = remote.base();
    match cmd {
        CanaryCommand::List { json } => print_list(&remote.canaries().await?, *json),
        CanaryCommand::Status { name, json, .. } => {
            let all = remote.canaries().await?;
            let Some(s) = all.iter().find(|s| s.name == *name) else {
                let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
                return Err(CliError::bad_input(if names.is_empty() {
                    format!("there is no canary `{name}`: the host at {base} runs none")
                } else {
                    format!(
                        "{} (on the host at {base})",
                        crate::canary::config::unknown(name, &names)
                    )
                }));
            };
            print_status(s, *json)
        }
        _ => match action_of(cmd) {
            Some((name, action, reason)) => act(remote, Some(base), name, action, reason)
                .await
                .map_err(|e| e.context(&cannot(action, name))),
            None => Ok(EXIT_OK),
        },
    }
}

async fn watch_status(ws: &Workspace, name: &str) -> CliResult {
    ws.canary(name).map_err(CliError::bad_input)?;
    loop {
        let s = one(ws, name)?;
        // Clear and home only on a terminal; piped output gets plain snapshots.
        let mut screen = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            String::from("\x1b[2J\x1b[H")
        } else {
            String::from("\n")
        };
        screen.push_str(&render(&s));
        screen.push_str("\n(watching; Ctrl-C stops)\n");
        say_raw!("{screen}")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(EXIT_OK),
            () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
    }
}
