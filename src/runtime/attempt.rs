//! One attempt of one stage: breaker admission, execution, breaker bookkeeping, and the
//! attempt's record, committed before the run's driver hears of it (so a stage is never
//! treated as done before its result is durable).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::breaker::{Admission, Transition};
use super::driver::{Msg, STOP_FENCED, STOP_SHUTDOWN};
use super::engine::Engine;
use super::spec::{Pipeline, Stage};
use super::stage::{
    AttemptIds, ExecCtx, ExecResult, Failure, Outcome, execute, process_start_time,
};
use crate::model::{AttemptStatus, EventKind, RunId, Timestamp, duration};
use crate::store::{NewEvent, Op, clip_json};

/// How an attempt ended, as the driver needs to know it.
#[derive(Debug)]
pub(crate) enum AttemptEnd {
    Succeeded(Value),
    Failed(Failure),
    /// Cancelled or interrupted: the driver knows which from its own stop state.
    Stopped,
}

pub(crate) struct AttemptJob {
    pub engine: Arc<Engine>,
    pub run_id: RunId,
    pub pipeline: Arc<Pipeline>,
    pub idx: usize,
    pub n: u32,
    pub input: Value,
    pub started_at: Timestamp,
    /// An isolated stage test: it neither asks nor tells the stage's breaker.
    pub test: bool,
    pub cancel: CancellationToken,
    pub stop: Arc<AtomicU8>,
    pub tx: mpsc::UnboundedSender<Msg>,
}

/// Records a breaker's change: its event, and its state in the store, where a restarted host
/// and the other workers find it (they follow the event, see `Runtime::follow_breaker`).
pub(crate) async fn breaker_event(engine: &Engine, target: &str, t: Transition) {
    tracing::info!(target_name = target, from = %t.from, to = %t.to, "circuit breaker changed");
    let at = engine.clock.timestamp();
    let opened_at = engine
        .breakers
        .with(target, |b| b.opened_at())
        .map(Timestamp::from_datetime);
    let worker = engine.worker.as_ref().map(|w| w.id.clone());
    engine
        .writer
        .send(vec![
            Op::SaveBreaker {
                target: target.to_string(),
                state: t.to.as_str().to_string(),
                opened_at,
                at,
                worker: worker.clone(),
            },
            Op::Event(NewEvent {
                at,
                kind: EventKind::BreakerChanged,
                run_id: None,
                stage: None,
                data: json!({"target": target, "from": t.from, "to": t.to, "opened_at": opened_at, "worker": worker}),
            }),
        ])
        .await;
}

/// Asks the stage's breaker for admission: `Err` with the wait when it is open, else whether
/// this attempt is the half-open probe.
async fn admit(engine: &Engine, stage: &Stage, target: Option<&str>) -> Result<bool, Duration> {
    let Some(t) = target else { return Ok(false) };
    let (admission, transition) = engine
        .breakers
        .with(t, |b| b.admit(&stage.breaker, engine.clock.now()));
    if let Some(tr) = transition {
        breaker_event(engine, t, tr).await;
    }
    match admission {
        Admission::Allowed { probe } => Ok(probe),
        Admission::Rejected { retry_after } => Err(retry_after),
    }
}

/// Runs the stage (its process, request or simulation), recording its process id as soon
/// as it has one.
async fn execute_stage(job: &AttemptJob, stage: &Stage) -> ExecResult {
    let engine = &job.engine;
    let writer = engine.writer.clone();
    let stage_id = stage.id.clone();
    let (run_id, n) = (job.run_id, job.n);
    let on_spawn = move |pid: u32| {
        writer.send_now(vec![Op::AttemptProcess {
            run_id,
            stage: stage_id.clone(),
            n,
            pid: i64::from(pid),
            pid_start: process_start_time(pid),
        }]);
    };
    let ctx = ExecCtx {
        input: &job.input,
        timeout: Duration::from_millis(stage.timeout_ms),
        cancel: &job.cancel,
        clock: engine.clock.as_ref(),
        limit: engine.limit,
        workspace: &engine.dir,
        http: &engine.http,
        ids: AttemptIds {
            run_id: job.run_id.0,
            pipeline: &job.pipeline.name,
            stage: &stage.id,
            attempt: job.n,
        },
        on_spawn: &on_spawn,
    };
    execute(stage, &ctx).await
}

/// Tells the breaker how an admitted attempt went.
async fn record_with_breaker(
    engine: &Engine,
    stage: &Stage,
    target: &str,
    probe: bool,
    outcome: &Outcome,
) {
    let now = engine.clock.now();
    let transition = engine.breakers.with(target, |b| match outcome {
        Outcome::Succeeded => b.record(true, probe, &stage.breaker, now),
        Outcome::Failed(f) => b.record(!f.target_unhealthy, probe, &stage.breaker, now),
        Outcome::Cancelled => {
            b.release_probe(probe);
            None
        }
    });
    if let Some(tr) = transition {
        breaker_event(engine, target, tr).await;
    }
}

/// The attempt's status and error as stored.
fn status_of(outcome: &Outcome, stop: u8) -> (AttemptStatus, Option<(String, String)>) {
    match outcome {
        Outcome::Succeeded => (AttemptStatus::Succeeded, None),
        Outcome::Failed(f) => (
            AttemptStatus::Failed,
            Some((f.code.to_string(), f.message.clone())),
        ),
        Outcome::Cancelled if stop == STOP_SHUTDOWN => (
            AttemptStatus::Interrupted,
            Some((
                "interrupted".to_string(),
                "the host shut down during this attempt".to_string(),
            )),
        ),
        Outcome::Cancelled => (
            AttemptStatus::Cancelled,
            Some((
                "cancelled".to_string(),
                "the run was cancelled during this attempt".to_string(),
            )),
        ),
    }
}

/// The writes that record a finished attempt and its `stage_finished` event.
fn finish_ops(
    job: &AttemptJob,
    stage: &Stage,
    result: &ExecResult,
    finished_at: Timestamp,
) -> Vec<Op> {
    let (status, error) = status_of(&result.outcome, job.stop.load(Ordering::SeqCst));
    let (output, output_truncated, output_bytes) = match &result.output {
        // The executor already kept only the head (plus its marker): store it as it is.
        Some(o) if o.truncated => (Some(o.value.to_string()), true, Some(o.bytes)),
        Some(o) => {
            let (text, cut, _) = clip_json(&o.value, job.engine.limit);
            (Some(text), cut, Some(o.bytes))
        }
        None => (None, false, None),
    };
    let duration_ms = finished_at.millis_since(job.started_at);
    let error_json = error
        .as_ref()
        .map(|(code, message)| json!({"code": code, "message": message}));
    let mut data = json!({"attempt": job.n, "status": status, "duration_ms": duration_ms, "error": error_json, "pipeline": job.pipeline.name});
    // Among several workers, which one ran it: each counts its own attempts in `/metrics`
    // (summed across workers, as Prometheus sums instances), and an operator sees where.
    if let (Some(w), Some(map)) = (&job.engine.worker, data.as_object_mut()) {
        map.insert("worker".into(), json!(w.id));
    }
    vec![
        Op::FinishAttempt {
            run_id: job.run_id,
            stage: stage.id.clone(),
            n: job.n,
            status,
            finished_at,
            duration_ms,
            output,
            output_truncated,
            output_bytes,
            stderr: result.stderr.clone(),
            error,
        },
        Op::stage_event(
            finished_at,
            EventKind::StageFinished,
            job.run_id,
            &stage.id,
            data,
        ),
    ]
}

/// The error code of an attempt the open circuit breaker stopped before it ran.
pub(crate) const BREAKER_OPEN: &str = "breaker_open";

pub(crate) async fn run(job: AttemptJob) {
    let engine = &job.engine;
    let stage = &job.pipeline.stages[job.idx];
    let target = stage.breaker_target().filter(|_| !job.test);
    let result = match admit(engine, stage, target.as_deref()).await {
        // The message is kept with the attempt and read later: it says when the probe is due
        // (a time), not "in about 59.9s", which is wrong a minute on.
        Err(after) => ExecResult::failed(Failure {
            code: BREAKER_OPEN,
            message: format!(
                "the circuit breaker for {} was open after repeated failures; it let a probe through from {} (after {})",
                target.as_deref().unwrap_or_default(),
                crate::model::Timestamp::from_millis(
                    engine
                        .clock
                        .timestamp()
                        .millis()
                        .saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX))
                ),
                duration::format(after)
            ),
            retryable: true,
            target_unhealthy: false,
        }),
        Ok(probe) => {
            let result = execute_stage(&job, stage).await;
            if let Some(t) = &target {
                record_with_breaker(engine, stage, t, probe, &result.outcome).await;
            }
            result
        }
    };
    let writes = if job.stop.load(Ordering::SeqCst) == STOP_FENCED || engine.writer.fenced() {
        // The run is another worker's now: this attempt is recorded as it found it.
        Vec::new()
    } else {
        // Handed to the driver, which queues them right before its own writes that follow
        // (the stage's status, the next stages' starts or the run's end), so that they reach
        // the writer together and share a commit.
        finish_ops(&job, stage, &result, engine.clock.timestamp())
    };
    let end = match result.outcome {
        Outcome::Succeeded => AttemptEnd::Succeeded(result.output.map_or(Value::Null, |o| o.value)),
        Outcome::Failed(f) => AttemptEnd::Failed(f),
        Outcome::Cancelled => AttemptEnd::Stopped,
    };
    let _ = job.tx.send(Msg::Done {
        idx: job.idx,
        n: job.n,
        end,
        writes,
    });
}
