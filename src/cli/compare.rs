//! `opsdeck compare BASE CANDIDATE`: two runs stage by stage. Exit 0 when nothing regressed,
//! 1 when something did, so a CI job can gate on it.

use clap::Args;

use super::output::{Table, print_json, short};
use super::{Cli, CliError, CliResult, EXIT_OK, open_workspace, parse_run_id, reader, served};
use crate::client::Backend;
use crate::model::compare::{Comparison, StageVerdict, compare};
use crate::model::{Run, RunId};

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The run compared against (before the change)
    #[arg(value_parser = parse_run_id)]
    pub base: RunId,
    /// The run under judgement (after the change)
    #[arg(value_parser = parse_run_id)]
    pub candidate: RunId,
    /// Print the comparison as JSON
    #[arg(long)]
    pub json: bool,
}

fn missing(id: RunId) -> CliError {
    CliError::bad_input(format!(
        "there is no run {id}; list runs with `opsdeck runs`"
    ))
}

pub async fn run(cli: &Cli, args: &CompareArgs) -> CliResult {
    let c = if let Some(remote) = served(cli, None)? {
        remote.compare(args.base, args.candidate).await?
    } else {
        let (ws, _log) = open_workspace(cli, false, false)?;
        let r = reader(&ws)?;
        let get = |id: RunId| -> Result<Run, CliError> {
            r.run(id)
                .map_err(|e| CliError::failed(e.0))?
                .ok_or_else(|| missing(id))
        };
        let (base, candidate) = (get(args.base)?, get(args.candidate)?);
        if let Some(why) = crate::model::compare::incomparable(&base, &candidate) {
            return Err(CliError::bad_input(why));
        }
        // Compared as the candidate's pipeline says (`[pipeline.compare]`).
        let settings = ws
            .pipeline(&candidate.pipeline)
            .map(|p| p.compare.clone())
            .unwrap_or_default();
        compare(&base, &candidate, &settings)
    };
    if args.json {
        print_json(&c)?;
    } else {
        print_comparison(&c)?;
    }
    Ok(if c.regressed() { 1 } else { EXIT_OK })
}

fn ms(v: Option<i64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v} ms"))
}

fn print_comparison(c: &Comparison) -> Result<(), CliError> {
    let pipelines = if c.pipeline[0] == c.pipeline[1] {
        format!("`{}`", c.pipeline[0])
    } else {
        format!("`{}` and `{}`", c.pipeline[0], c.pipeline[1])
    };
    say!(
        "run {} against run {} ({pipelines}): {}",
        c.candidate,
        c.base,
        c.verdict
    )?;
    let mut t = Table::new(vec![
        "STAGE", "VERDICT", "STATUS", "TIME", "DELTA", "OUTPUT",
    ]);
    for s in &c.stages {
        let status =
            |v: Option<crate::model::StageStatus>| v.map_or("-".to_string(), |s| s.to_string());
        let delta = match (s.delta_ms, s.delta_pct) {
            (Some(d), Some(p)) => format!("{d:+} ms ({p:+.0}%)"),
            (Some(d), None) => format!("{d:+} ms"),
            _ => "-".into(),
        };
        let output = match (s.output_equal, s.changes.len()) {
            (Some(true), _) => "equal".to_string(),
            (Some(false), n) => {
                let first = s.changes.first().map_or("", |c| c.path.as_str());
                format!("{n} changed ({first}{})", if n > 1 { ", …" } else { "" })
            }
            (None, _) => s.note.clone().unwrap_or_else(|| "-".into()),
        };
        t.row(vec![
            s.id.clone(),
            s.verdict.to_string(),
            format!("{} → {}", status(s.status[0]), status(s.status[1])),
            format!("{} → {}", ms(s.duration_ms[0]), ms(s.duration_ms[1])),
            delta,
            short(&output, 60),
        ]);
    }
    say_raw!("{}", t.render())?;
    for s in c
        .stages
        .iter()
        .filter(|s| s.verdict == StageVerdict::Regressed)
    {
        if let Some(n) = &s.note {
            say!("regressed: {}: {n}", s.id)?;
        }
    }
    let v = |x: Option<u32>| x.map_or_else(|| "-".to_string(), |x| x.to_string());
    for a in &c.assets {
        let below = if a.downstream_changed.is_empty() {
            String::new()
        } else {
            format!("; changed downstream: {}", a.downstream_changed.join(", "))
        };
        say!(
            "asset {} {} → {}: used by {}{below}",
            a.name,
            v(a.base_version),
            v(a.candidate_version),
            a.stages.join(", ")
        )?;
    }
    if !c.unexplained.is_empty() && !c.assets.is_empty() {
        say!(
            "not explained by a changed asset: {}",
            c.unexplained.join(", ")
        )?;
    }
    Ok(())
}
