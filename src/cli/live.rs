//! `opsdeck` with no command: hosts the workspace with its schedules and shows the live run
//! table, redrawn each second on a terminal, or the event log as lines when piped.

use std::io::IsTerminal;
use std::time::Duration;

use super::output::{event_line, runs_table};
use super::serve::{check_problems, stop_signal};
use super::{Cli, CliError, CliResult, EXIT_OK, open_workspace};
use crate::model::RunQuery;
use crate::runtime::{Host, HostOptions};

pub async fn run(cli: &Cli) -> CliResult {
    let (ws, _log) = open_workspace(cli, true, false)?;
    check_problems(&ws)?;
    let dir = ws.dir.clone();
    let opts = HostOptions::long_lived("opsdeck");
    let host = Host::start(ws, opts)
        .await
        .map_err(|e| CliError::from(e).context("cannot host the workspace"))?;
    let result = show(&host, &dir).await;
    host.shutdown().await;
    result
}

/// Redraws the run table every second on a terminal, or prints events as lines when piped,
/// until Ctrl-C or SIGTERM.
async fn show(host: &Host, dir: &std::path::Path) -> CliResult {
    let tty = std::io::stdout().is_terminal();
    let mut events = host.subscribe();
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = &mut stop => return Ok(EXIT_OK),
            _ = tick.tick(), if tty => {
                let page = host.runs(RunQuery { limit: 15, ..RunQuery::default() }).await?;
                let dlq = host.dlq().await?.len();
                say_raw!(
                    "\x1b[H\x1b[2Jopsdeck  {}  {}  dead-letter: {dlq}\n\n{}\nCtrl-C quits; `opsdeck runs show ID` shows a run.\n",
                    dir.display(),
                    chrono::Utc::now().format("%H:%M:%S UTC"),
                    runs_table(&page.items).render()
                )?;
            }
            ev = events.recv(), if !tty => {
                if let Ok(ev) = ev {
                    say!("{}", event_line(&ev))?;
                }
            }
        }
    }
}
