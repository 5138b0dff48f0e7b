//! What the dashboard asks of its backend and what comes back. Requests run on tasks of their
//! own (heavy preparation on the blocking pool) and report with a typed [`Msg`], so the UI
//! thread never waits on the backend and the backend never waits on the UI.

use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use super::prepare::{DiffView, PreparedIo, prepare_diff, prepare_io};
use crate::client::{Backend, StreamItem};
use crate::model::{
    Actor, ApiError, CanaryStatus, Command, DlqEntry, DlqId, DlqQuery, ErrorCode, Event,
    MAX_DLQ_LIMIT, Outcome, Overview, Page, Run, RunId, RunQuery, RunStatus, RunSummary,
    SeriesPoint,
};

#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Overview,
    /// Live events after `since`, forwarded until the dashboard ends.
    Subscribe {
        since: u64,
    },
    RecentEvents {
        limit: usize,
    },
    /// Up to `limit` stored events just before `before`.
    OlderEvents {
        before: u64,
        limit: usize,
    },
    Runs {
        q: RunQuery,
        tag: u64,
    },
    Run {
        id: RunId,
    },
    StageIo {
        id: RunId,
        stage: String,
    },
    /// Diff a candidate output against a baseline run's output of the same stage; without an
    /// explicit baseline, the previous successful run of the pipeline.
    Diff {
        pipeline: String,
        stage: String,
        candidate: RunId,
        attempt: u32,
        output: Option<Value>,
        baseline: Option<RunId>,
    },
    BaselineCandidates {
        pipeline: String,
        stage: String,
        before: RunId,
    },
    /// Two runs stage by stage, with both runs for the timelines.
    Compare {
        base: RunId,
        candidate: RunId,
    },
    Dlq,
    Canaries,
    /// The pipeline lens: each stage's health over the recent runs.
    PipelineStats {
        pipeline: String,
    },
    Assets,
    /// One asset at `version` (the pinned one when `None`), and the text of version
    /// `against` for a diff.
    Asset {
        name: String,
        version: Option<u32>,
        against: Option<u32>,
    },
    CanarySeries {
        name: String,
        step_s: i64,
        points: usize,
    },
    /// Files to write into `dir` (a saved screen), each whole or not at all.
    SaveFiles {
        dir: std::path::PathBuf,
        files: Vec<(String, Vec<u8>)>,
    },
    /// A state change, down the host's one control path with this dashboard's actor.
    Control {
        cmd: Command,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Overview(Overview),
    RecentEvents(Vec<Event>),
    OlderEvents(Vec<Event>),
    Stream(StreamItem),
    Runs {
        tag: u64,
        offset: u64,
        page: Page<RunSummary>,
    },
    Run(Box<Run>),
    StageIo(Box<PreparedIo>),
    Diff(Box<DiffView>),
    DiffUnavailable(String),
    BaselineCandidates {
        stage: String,
        runs: Vec<RunSummary>,
    },
    Compare(Box<super::panes::compare::CompareView>),
    CompareFailed(String),
    PipelineStats(Box<crate::model::lens::PipelineStats>),
    Assets(Vec<crate::model::asset::AssetSummary>),
    Asset {
        detail: Box<crate::model::asset::AssetDetail>,
        pinned: Option<String>,
    },
    Dlq(Page<DlqEntry, DlqId>),
    Canaries(Vec<CanaryStatus>),
    CanarySeries {
        name: String,
        step_s: i64,
        points: Vec<SeriesPoint>,
    },
    /// Files were written: where.
    Saved(Vec<std::path::PathBuf>),
    /// A control action succeeded: what it changed.
    Done(Outcome),
    /// A request failed: a sentence for the footer.
    Failed(String),
}

/// Runs requests against the backend and sends the results back.
#[derive(Clone)]
pub struct Worker {
    backend: Arc<dyn Backend>,
    actor: Arc<Actor>,
    tx: mpsc::UnboundedSender<Msg>,
}

fn failed(what: &str, e: &ApiError) -> Msg {
    Msg::Failed(format!("{what}: {e}"))
}

impl Worker {
    /// `actor` is who the dashboard's commands are recorded as (a server names the token's
    /// owner instead).
    pub fn new(backend: Arc<dyn Backend>, actor: Actor, tx: mpsc::UnboundedSender<Msg>) -> Self {
        Worker {
            backend,
            actor: Arc::new(actor),
            tx,
        }
    }

    pub fn exec(&self, req: Request) {
        let (backend, tx, actor) = (self.backend.clone(), self.tx.clone(), self.actor.clone());
        tokio::spawn(async move {
            if let Request::Subscribe { since } = req {
                let mut stream = backend.events(Some(since));
                while let Some(item) = stream.next().await {
                    if tx.send(Msg::Stream(item)).is_err() {
                        return;
                    }
                }
                let _ = tx.send(Msg::Stream(StreamItem::Connected(false)));
                return;
            }
            let msg = handle(backend.as_ref(), &actor, req).await;
            let _ = tx.send(msg);
        });
    }
}

/// Answers a read request (a snapshot's: commands and the live stream are the dashboard's).
pub async fn answer(b: &dyn Backend, req: Request) -> Msg {
    let nobody = Actor::new(
        "snapshot",
        crate::model::Role::Viewer,
        crate::model::Via::Cli,
    );
    match req {
        Request::Control { .. } | Request::Subscribe { .. } => {
            Msg::Failed("a snapshot changes nothing".into())
        }
        other => handle(b, &nobody, other).await,
    }
}

/// A comparison with both runs, for the timelines.
async fn compare_msg(b: &dyn Backend, base: RunId, candidate: RunId) -> Msg {
    let got = async {
        let c = b.compare(base, candidate).await?;
        Ok::<_, ApiError>((c, b.run(base).await?, b.run(candidate).await?))
    };
    match got.await {
        Ok((c, x, y)) => Msg::Compare(Box::new(super::panes::compare::CompareView::new(c, &x, &y))),
        Err(e) => Msg::CompareFailed(format!(
            "cannot compare run {base} with run {candidate}: {e}"
        )),
    }
}

/// One asset, with the text of version `against` for a diff.
async fn asset_msg(b: &dyn Backend, name: &str, version: Option<u32>, against: Option<u32>) -> Msg {
    let got = async {
        let d = b.asset(name, version).await?;
        let pinned = match against {
            Some(v) => b.asset(name, Some(v)).await?.shown.content,
            None => None,
        };
        Ok::<_, ApiError>((d, pinned))
    };
    match got.await {
        Ok((d, pinned)) => Msg::Asset {
            detail: Box::new(d),
            pinned,
        },
        Err(e) => failed(&format!("cannot load asset `{name}`"), &e),
    }
}

async fn handle(b: &dyn Backend, actor: &Actor, req: Request) -> Msg {
    match req {
        Request::Overview => b
            .overview()
            .await
            .map_or_else(|e| failed("cannot load the overview", &e), Msg::Overview),
        Request::Subscribe { .. } => {
            Msg::Failed("internal: subscribe is handled by the worker".into())
        }
        Request::RecentEvents { limit } => b
            .recent_events(limit)
            .await
            .map_or_else(|e| failed("cannot load events", &e), Msg::RecentEvents),
        Request::OlderEvents { before, limit } => {
            let since = before.saturating_sub(limit as u64 + 1);
            let take = usize::try_from(before.saturating_sub(since + 1)).unwrap_or(limit);
            b.events_after(since, take)
                .await
                .map_or_else(|e| failed("cannot load older events", &e), Msg::OlderEvents)
        }
        Request::Runs { q, tag } => {
            let offset = q.offset;
            b.runs(q).await.map_or_else(
                |e| failed("cannot load runs", &e),
                |page| Msg::Runs { tag, offset, page },
            )
        }
        Request::Run { id } => b.run(id).await.map_or_else(
            |e| failed(&format!("cannot load run {id}"), &e),
            |r| Msg::Run(Box::new(r)),
        ),
        Request::StageIo { id, stage } => match b.stage_io(id, &stage).await {
            Ok(io) => match tokio::task::spawn_blocking(move || prepare_io(io)).await {
                Ok(p) => Msg::StageIo(Box::new(p)),
                Err(e) => Msg::Failed(format!("cannot prepare stage `{stage}`: {e}")),
            },
            Err(e) => failed(&format!("cannot load stage `{stage}` of run {id}"), &e),
        },
        Request::Diff {
            pipeline,
            stage,
            candidate,
            attempt,
            output,
            baseline,
        } => diff(b, pipeline, stage, candidate, attempt, output, baseline).await,
        Request::BaselineCandidates {
            pipeline,
            stage,
            before,
        } => baselines(b, pipeline, stage, before).await,
        Request::Compare { base, candidate } => compare_msg(b, base, candidate).await,
        Request::PipelineStats { pipeline } => b
            .pipeline_stats(&pipeline, crate::model::lens::DEFAULT_LENS_RUNS)
            .await
            .map_or_else(
                |e| failed(&format!("cannot load the lens of `{pipeline}`"), &e),
                |s| Msg::PipelineStats(Box::new(s)),
            ),
        Request::Assets => b
            .assets()
            .await
            .map_or_else(|e| failed("cannot load assets", &e), Msg::Assets),
        Request::Asset {
            name,
            version,
            against,
        } => asset_msg(b, &name, version, against).await,
        Request::Dlq => b.dlq(DlqQuery::newest(MAX_DLQ_LIMIT)).await.map_or_else(
            |e| failed("cannot load the dead-letter queue", &e),
            Msg::Dlq,
        ),
        Request::Canaries => b
            .canaries()
            .await
            .map_or_else(|e| failed("cannot load canaries", &e), Msg::Canaries),
        Request::CanarySeries {
            name,
            step_s,
            points,
        } => match b.canary_series(&name, step_s, points).await {
            Ok(points) => Msg::CanarySeries {
                name,
                step_s,
                points,
            },
            Err(e) => failed(&format!("cannot load the charts of canary {name}"), &e),
        },
        Request::Control { cmd, reason } => control_msg(b, actor, cmd, &reason).await,
        Request::SaveFiles { dir, files } => {
            match tokio::task::spawn_blocking(move || save_files(&dir, &files)).await {
                Ok(Ok(paths)) => Msg::Saved(paths),
                Ok(Err(e)) => Msg::Failed(e),
                Err(e) => Msg::Failed(format!("cannot save the screen: {e}")),
            }
        }
    }
}

/// Writes each file into `dir` (made if missing) through a temporary file, so none is ever
/// half written.
fn save_files(
    dir: &std::path::Path,
    files: &[(String, Vec<u8>)],
) -> Result<Vec<std::path::PathBuf>, String> {
    let fail = |e: std::io::Error| format!("cannot save the screen in {}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut out = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                fail(e)
            })?;
        out.push(path);
    }
    Ok(out)
}

async fn baselines(b: &dyn Backend, pipeline: String, stage: String, before: RunId) -> Msg {
    let q = RunQuery {
        pipeline: Some(pipeline),
        before: Some(before),
        limit: 50,
        ..RunQuery::default()
    };
    b.runs(q).await.map_or_else(
        |e| failed("cannot list earlier runs", &e),
        |page| Msg::BaselineCandidates {
            stage,
            runs: page.items,
        },
    )
}

async fn control_msg(b: &dyn Backend, actor: &Actor, cmd: Command, reason: &str) -> Msg {
    let what = format!("cannot {} {}", cmd.action(), cmd.target());
    match b.control(cmd, actor, reason).await {
        Ok(outcome) => Msg::Done(outcome),
        // A refusal is the host's own sentence, which names what it refused and why: shown
        // first and whole, not behind the command's internal name.
        Err(e) if matches!(e.code, ErrorCode::Conflict | ErrorCode::Validation) => {
            Msg::Failed(e.message)
        }
        Err(e) => failed(&what, &e),
    }
}

async fn diff(
    b: &dyn Backend,
    pipeline: String,
    stage: String,
    candidate: RunId,
    attempt: u32,
    output: Option<Value>,
    baseline: Option<RunId>,
) -> Msg {
    let (base_id, why) = match baseline {
        Some(id) => (id, "chosen".to_string()),
        None => {
            let q = RunQuery {
                pipeline: Some(pipeline.clone()),
                status: Some(RunStatus::Succeeded),
                before: Some(candidate),
                limit: 1,
                ..RunQuery::default()
            };
            match b.runs(q).await {
                Ok(page) => match page.items.first() {
                    Some(r) => (r.id, "the previous success".to_string()),
                    None => {
                        return Msg::DiffUnavailable(format!(
                            "no earlier successful run of `{pipeline}` to compare with; press b to choose a run"
                        ));
                    }
                },
                Err(e) => return failed("cannot find a baseline run", &e),
            }
        }
    };
    let io = match b.stage_io(base_id, &stage).await {
        Ok(io) => io,
        Err(e) => {
            return Msg::DiffUnavailable(format!(
                "run {base_id} has no output for stage `{stage}` ({e})"
            ));
        }
    };
    // The baseline is the stage's last successful attempt there (else its last attempt).
    let base = io
        .attempts
        .iter()
        .rev()
        .find(|a| a.status == crate::model::AttemptStatus::Succeeded)
        .or(io.attempts.last());
    let base_output = base.and_then(|a| a.output.clone());
    let view = tokio::task::spawn_blocking(move || {
        prepare_diff(
            &stage,
            (base_id, &why, base_output.as_ref()),
            (candidate, attempt, output.as_ref()),
        )
    })
    .await;
    match view {
        Ok(v) => Msg::Diff(Box::new(v)),
        Err(e) => Msg::Failed(format!("cannot compute the diff: {e}")),
    }
}
