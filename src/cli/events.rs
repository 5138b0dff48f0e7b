//! `opsdeck events`: the event log from a sequence number, optionally following it, narrowed
//! to one run or to some kinds (what an on-call engineer watching one run wants to see).

use std::time::Duration;

use clap::Args;

use super::output::event_line;
use super::{Cli, CliError, CliResult, EXIT_OK, open_workspace, reader};
use crate::model::{Event, EventKind, LogFilter, RunId};

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events after this sequence number
    #[arg(long, default_value_t = 0, value_name = "SEQ", value_parser = parse_seq, allow_hyphen_values = true)]
    pub since: u64,
    /// Print at most this many events
    #[arg(long, value_parser = parse_count, allow_hyphen_values = true)]
    pub limit: Option<u64>,
    /// One JSON object per line, each with its `seq`
    #[arg(long)]
    pub json: bool,
    /// Keep printing new events as they are appended (Ctrl-C stops)
    #[arg(long, short)]
    pub follow: bool,
    /// Only this run's events
    #[arg(long, value_name = "RUN", value_parser = super::parse_run_id)]
    pub run: Option<RunId>,
    /// Only events of these kinds (repeat the flag or separate them with commas), such as
    /// `stage_finished,run_finished`
    #[arg(long, value_name = "KIND", value_delimiter = ',', value_parser = EventKind::named)]
    pub kind: Vec<EventKind>,
}

fn parse_seq(s: &str) -> Result<u64, String> {
    s.trim().parse().map_err(|_| {
        format!("`{s}` is not a sequence number; give a whole number such as 1200 (0 is the start of the log)")
    })
}

fn parse_count(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "`{s}` is not a number of events; give a whole number of at least 1"
        )),
    }
}

fn print(e: &Event, json: bool) -> Result<(), CliError> {
    if json {
        let line = serde_json::to_string(e)
            .map_err(|err| CliError::failed(format!("could not format event {}: {err}", e.seq)))?;
        say!("{line}")
    } else {
        say!("{}", event_line(e))
    }
}

/// Where the events come from: the local store, or a served runtime's API.
enum Source {
    Local(crate::store::Reader),
    Remote(crate::client::Remote),
}

impl Source {
    /// The next page after `since` of the events `filter` keeps, chosen where they are stored
    /// (one run's by the run's index).
    async fn page(
        &self,
        filter: &LogFilter,
        since: u64,
        limit: usize,
    ) -> Result<Vec<Event>, CliError> {
        use crate::client::Backend;
        match self {
            Source::Local(r) => r
                .log_events(filter, since, limit)
                .map_err(|e| CliError::failed(e.0)),
            Source::Remote(r) => Ok(r.log_events_after(filter, since, limit).await?),
        }
    }

    /// The log's last sequence number.
    async fn last_seq(&self) -> Result<u64, CliError> {
        match self {
            Source::Local(r) => r.last_seq().map_err(|e| CliError::failed(e.0)),
            Source::Remote(r) => Ok(crate::client::Backend::overview(r).await?.last_seq),
        }
    }

    /// Refuses a run that does not exist, so a typo is named instead of printing nothing.
    async fn check_run(&self, id: RunId) -> Result<(), CliError> {
        match self {
            Source::Local(r) => {
                if r.run_exists(id).map_err(|e| CliError::failed(e.0))? {
                    Ok(())
                } else {
                    Err(CliError::bad_input(format!(
                        "there is no run {id}; list runs with `opsdeck runs`"
                    )))
                }
            }
            Source::Remote(r) => {
                // The served log names a run that does not exist, so one event is enough.
                let one_run = LogFilter {
                    run: Some(id),
                    ..LogFilter::default()
                };
                crate::client::Backend::log_events_after(r, &one_run, 0, 1).await?;
                Ok(())
            }
        }
    }
}

pub async fn run(cli: &Cli, args: &EventsArgs) -> CliResult {
    let (r, _log) = match super::served(cli, None)? {
        Some(remote) => (Source::Remote(remote), None),
        None => {
            let (ws, log) = open_workspace(cli, false, false)?;
            let r = reader(&ws)?;
            // As the API answers: a number past the end is a mistake (a log from another
            // workspace, a typo), not a wait for events that may never come.
            let last = r.last_seq().map_err(|e| CliError::failed(e.0))?;
            if args.since > last {
                return Err(CliError::bad_input(format!(
                    "--since is {}, but the event log ends at {last}; give at most {last}, or leave it out to start from the first event",
                    args.since
                )));
            }
            (Source::Local(r), Some(log))
        }
    };
    if let Some(id) = args.run {
        r.check_run(id).await?;
    }
    let mut since = args.since;
    // Only the events the filter keeps come back, a page at a time, so memory stays one page
    // whatever the log's length.
    let mut left = args
        .limit
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let filtered = args.run.is_some() || !args.kind.is_empty();
    loop {
        // With a filter, up to the log's end as it is now: once that is read, everything
        // before it has been looked at, and the next look starts there, not at the last event
        // kept (which, for a rare kind, may be far back). Without one, every event read is
        // printed, so the last one is where the next look starts (and a server of the
        // version before, which knows no `until`, is asked nothing new).
        let end = if filtered {
            Some(r.last_seq().await?)
        } else {
            None
        };
        let filter = LogFilter {
            run: args.run,
            kinds: args.kind.clone(),
            until: end,
        };
        while left > 0 {
            let want = left.min(1_000);
            let page = r.page(&filter, since, want).await?;
            if let Some(last) = page.last() {
                since = last.seq;
            }
            for e in &page {
                print(e, args.json)?;
                left -= 1;
            }
            if page.len() < want {
                // Nothing more (up to `end`): no need to ask for an empty page.
                if let Some(end) = end {
                    since = since.max(end);
                }
                break;
            }
        }
        if !args.follow || left == 0 {
            return Ok(EXIT_OK);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(EXIT_OK),
        }
    }
}
