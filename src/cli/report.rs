//! `opsdeck report`: an incident report for a period, in markdown or HTML.

use std::path::{Path, PathBuf};

use clap::Args;

use super::snapshot::write_whole;
use super::{Cli, CliError, CliResult, EXIT_OK, open_workspace, parse_run_id, with_backend};
use crate::client::Backend;
use crate::model::{RunId, Timestamp};
use crate::tui::report::{ReportFormat, Scope, build};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// From when: RFC 3339, or a duration ago such as 90m or 1h
    #[arg(long, value_name = "TIME")]
    pub since: String,
    /// Until when (same forms) [default: now]
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// A canary whose charts to include; repeatable [default: every canary]
    #[arg(long, value_name = "NAME")]
    pub canary: Vec<String>,
    /// Two runs to compare stage by stage in the report
    #[arg(long, num_args = 2, value_names = ["BASE", "CANDIDATE"], value_parser = parse_run_id)]
    pub compare: Vec<RunId>,
    /// md or html
    #[arg(long, default_value = "md")]
    pub format: String,
    /// Where to write it (charts of a markdown report go beside it as PNG files)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
}

pub async fn run(cli: &Cli, args: &ReportArgs) -> CliResult {
    let now = chrono::Utc::now();
    let since = Timestamp::parse_since(&args.since, now)
        .map_err(|e| CliError::bad_input(format!("--since: {e}")))?;
    let until = match &args.until {
        Some(u) => Timestamp::parse_since(u, now)
            .map_err(|e| CliError::bad_input(format!("--until: {e}")))?,
        None => Timestamp::from_datetime(now),
    };
    if until < since {
        return Err(CliError::bad_input(format!(
            "--until ({until}) is before --since ({since})"
        )));
    }
    let format = ReportFormat::parse(&args.format).map_err(CliError::bad_input)?;
    if args.output == Path::new("-") && format == ReportFormat::Markdown {
        return Err(CliError::bad_input(
            "a markdown report writes its charts beside it as files: give -o FILE, or --format html for standard output",
        ));
    }
    let stem = args
        .output
        .file_stem()
        .map_or_else(|| "report".into(), |s| s.to_string_lossy().into_owned());
    let ws = if cli.remote.is_some() {
        None
    } else {
        Some(open_workspace(cli, true, false)?.0)
    };
    super::warn_if_charts_unhosted(cli, ws.as_ref());
    let config = super::dashboard::snapshot_config(cli)?;
    let scope = Scope {
        since,
        until,
        canaries: args.canary.clone(),
        compare: match args.compare.as_slice() {
            [a, b] => Some((*a, *b)),
            _ => None,
        },
        format,
        stem,
        config,
        now,
    };
    let output = args.output.clone();
    with_backend(
        cli,
        ws,
        "opsdeck report".into(),
        "cannot write the report",
        async move |b: &dyn Backend| {
            let report = build(b, scope).await.map_err(CliError::bad_input)?;
            let dir = output
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf();
            for (name, bytes) in &report.beside {
                write_whole(&dir.join(name), bytes)?;
            }
            write_whole(&output, &report.document)?;
            if output != Path::new("-") {
                eprintln!("opsdeck: wrote {}", output.display());
            }
            Ok(EXIT_OK)
        },
    )
    .await
}
