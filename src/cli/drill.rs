//! `opsdeck drill SCENARIO.toml [--seeds N] [--json]`: a whole rollout on a virtual clock.

use std::path::PathBuf;

use clap::Args;

use super::output::print_json;
use super::{CliError, CliResult, EXIT_OK};
use crate::canary::drill::{self, DrillResult};

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The scenario file (see assets/drills/)
    pub scenario: PathBuf,
    /// Run seeds 1..=N instead of the scenario's seed, in parallel, and print the distribution
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub seeds: Option<u64>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// Seconds as a person reads a duration: `35m`, `2m30s`, `45s`.
fn dur(s: u64) -> String {
    crate::model::duration::to_spec(std::time::Duration::from_secs(s))
}

/// A statistic in seconds (a median may be a half), read like `dur`.
fn dur_f(s: f64) -> String {
    crate::model::duration::to_spec(std::time::Duration::from_secs_f64(s.max(0.0)))
}

fn secs(x: Option<u64>) -> String {
    x.map_or_else(|| "-".into(), dur)
}

/// What the verdict adds to the outcome, when it is not simply correct.
fn verdict(v: &str) -> String {
    match v {
        "correct" | "" => String::new(),
        "undecided" => format!(", {UNDECIDED}"),
        other => format!(", a {}", other.replace('_', " ")),
    }
}

/// Why a rollout is undecided, and what to do.
const UNDECIDED: &str =
    "undecided: the scenario's `duration` ended before the rollout did (lengthen it)";

fn line(r: &DrillResult) -> String {
    format!(
        "seed {}: {}{} (rollback {}, promote {}); canary requests {}, errors {}, bad requests served {}",
        r.seed,
        r.outcome.replace('_', " "),
        verdict(&r.verdict),
        secs(r.time_to_rollback_s),
        secs(r.time_to_promote_s),
        r.canary_requests,
        r.canary_errors,
        r.bad_requests_served
    )
}

pub fn run(args: &DrillArgs) -> CliResult {
    let scenario = drill::load(&args.scenario)
        .map_err(|problems| CliError::bad_input(crate::diag::render_all(&problems)))?;
    match args.seeds {
        None => {
            let r = drill::run(&scenario, scenario.seed);
            if args.json {
                print_json(&r)?;
            } else {
                say!("{}", line(&r))?;
                for s in &r.steps {
                    say!(
                        "  {:>6}  {:<12} by {:<8} weight {:>5}%  {}",
                        dur(s.at_s),
                        s.action,
                        s.actor,
                        s.weight,
                        s.reason
                    )?;
                }
            }
        }
        Some(n) => {
            let seeds: Vec<u64> = (1..=n).collect();
            let summary = drill::run_seeds(&scenario, &seeds);
            if args.json {
                print_json(&summary)?;
            } else {
                let outcomes: Vec<String> = summary
                    .outcomes
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                say!("{} seeds: {}", summary.seeds, outcomes.join(", "))?;
                say!(
                    "false rollbacks: {}, missed regressions: {}",
                    summary.false_rollbacks,
                    summary.missed_regressions
                )?;
                let undecided = summary
                    .results
                    .iter()
                    .filter(|r| r.verdict == "undecided")
                    .count();
                if undecided > 0 {
                    say!("{undecided} {UNDECIDED}")?;
                }
                if let Some(t) = &summary.time_to_rollback_s {
                    say!(
                        "time to rollback: median {}, max {}",
                        dur_f(t.median),
                        dur_f(t.max)
                    )?;
                }
                if let Some(t) = &summary.time_to_promote_s {
                    say!(
                        "time to promote: median {}, max {}",
                        dur_f(t.median),
                        dur_f(t.max)
                    )?;
                }
            }
        }
    }
    Ok(EXIT_OK)
}
