//! `opsdeck stage test PIPELINE STAGE`: one stage alone, in test mode, with the input it had
//! in the pipeline's last successful run (or one given), and optionally other asset versions.
//! The test is recorded like a run (`opsdeck runs --tests` lists them) but kept out of run
//! lists, schedules, metrics, breakers and the dead-letter queue.

use std::path::PathBuf;

use clap::Subcommand;

use super::run::start_and_follow;
use super::{Cli, CliError, CliResult, open_workspace, parse_run_id, with_backend};
use crate::model::asset::StageTest;
use crate::model::{RunId, StartRun};

#[derive(Debug, Subcommand)]
pub enum StageCommand {
    /// Run one stage alone in test mode and print its output (exit 0 if it succeeds)
    Test {
        pipeline: String,
        stage: String,
        /// The stage's input as a JSON file (`-` for standard input), like {"params": {}, "stages": {}}
        #[arg(long, value_name = "FILE", conflicts_with = "from_run")]
        input: Option<PathBuf>,
        /// Take the input the stage had in this run [default: the pipeline's last successful run]
        #[arg(long, value_name = "RUN", value_parser = parse_run_id)]
        from_run: Option<RunId>,
        /// Use version N of asset NAME; repeatable
        #[arg(long = "override", value_name = "NAME=N", value_parser = crate::model::asset::parse_override)]
        overrides: Vec<(String, u32)>,
        /// Print the finished test run as JSON
        #[arg(long)]
        json: bool,
    },
}

/// The JSON in `file` (or standard input for `-`), or a sentence naming the file and line.
fn read_input(file: &std::path::Path) -> Result<serde_json::Value, CliError> {
    use std::io::Read as _;
    let shown = file.display();
    let limit = 16 * 1024 * 1024;
    let mut text = String::new();
    let read = if file == std::path::Path::new("-") {
        std::io::stdin().take(limit + 1).read_to_string(&mut text)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(limit + 1).read_to_string(&mut text))
    };
    read.map_err(|e| CliError::bad_input(format!("cannot read {shown}: {e}")))?;
    if text.len() as u64 > limit {
        return Err(CliError::bad_input(format!(
            "{shown} is over {limit} bytes; a stage input may be at most that"
        )));
    }
    serde_json::from_str(&text).map_err(|e| {
        CliError::bad_input(format!(
            "{shown}:{}:{}: not JSON: {e}",
            e.line(),
            e.column()
        ))
    })
}

pub async fn run(cli: &Cli, cmd: &StageCommand) -> CliResult {
    let StageCommand::Test {
        pipeline,
        stage,
        input,
        from_run,
        overrides,
        json,
    } = cmd;
    let input = input.as_deref().map(read_input).transpose()?;
    let req = StartRun {
        pipeline: pipeline.clone(),
        params: serde_json::Map::new(),
        overrides: crate::model::asset::overrides_from(overrides).map_err(CliError::bad_input)?,
        test: Some(Box::new(StageTest {
            stage: stage.clone(),
            input,
            from_run: *from_run,
        })),
    };
    let ws = if cli.remote.is_some() {
        None
    } else {
        Some(open_workspace(cli, true, false)?.0)
    };
    let json = *json;
    with_backend(
        cli,
        ws,
        format!("opsdeck stage test {pipeline} {stage}"),
        &format!("cannot test stage `{stage}` of `{pipeline}`"),
        async move |b| {
            let code = start_and_follow(b, req, json, "").await?;
            if !json {
                print_output(b, stage).await?;
            }
            Ok(code)
        },
    )
    .await
}

/// The output (or error) of the newest test of `stage`, after its run ended.
async fn print_output(b: &dyn crate::client::Backend, stage: &str) -> Result<(), CliError> {
    let page = b
        .runs(crate::model::RunQuery {
            tests: true,
            limit: 1,
            ..Default::default()
        })
        .await?;
    let Some(summary) = page.items.first() else {
        return Ok(());
    };
    let run = b.run(summary.id).await?;
    let Some(last) = run.stage(stage).and_then(|s| s.last_attempt()) else {
        return Ok(());
    };
    if let Some(out) = &last.output {
        say_raw!(
            "{}\n",
            crate::model::printable_text(&crate::model::diff::pretty(out))
        )?;
    }
    if let Some(e) = &last.error {
        say!("error {}: {}", e.code, crate::model::printable(&e.message))?;
    }
    Ok(())
}
