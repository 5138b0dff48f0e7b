//! Pipeline schedules: one task per scheduled pipeline, sleeping on the host's clock until the
//! next fire. A fire is skipped (and says so in the event log) while the previous scheduled
//! run of the same pipeline is still going, so slow runs never pile up.

use std::sync::Arc;

use serde_json::json;

use super::engine::{Engine, start_run};
use super::spec::Pipeline;
use crate::model::{EventKind, RunId, StartRun, Timestamp, Trigger};
use crate::store::{Op, workers};

pub(crate) fn start(engine: &Arc<Engine>) {
    for p in engine.catalog().iter() {
        if p.schedule.is_some() {
            let (inner2, p) = (engine.clone(), p.clone());
            engine.tasks.spawn(schedule_loop(inner2, p));
        }
    }
}

/// Claims the tick at `at` for this worker: `None` if another worker has it, else the
/// scheduled run still going, if any.
async fn fire_once(
    engine: &Arc<Engine>,
    pipeline: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Option<Option<RunId>> {
    let (name, tick) = (
        pipeline.to_string(),
        Timestamp::from_datetime(at).to_string(),
    );
    let before = Timestamp::from_datetime(at - chrono::Duration::hours(1)).to_string();
    let claimed = engine
        .writer
        .on_conn(move |db| {
            if !workers::claim_tick(db, &name, &tick, &before)? {
                return Ok(None);
            }
            workers::unfinished_scheduled(db, &name).map(Some)
        })
        .await;
    match claimed {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(pipeline = %pipeline, error = %e, "could not claim a schedule tick; skipped");
            None
        }
    }
}

async fn schedule_loop(engine: Arc<Engine>, pipeline: Arc<Pipeline>) {
    let Some(schedule) = pipeline.schedule.clone() else {
        return;
    };
    let shared = engine.worker.is_some();
    let mut next = if shared {
        schedule.first_shared_fire(engine.clock.now())
    } else {
        schedule.first_fire(engine.clock.now())
    };
    let mut last: Option<RunId> = None;
    while let Some(at) = next {
        let wait = (at - engine.clock.now()).to_std().unwrap_or_default();
        tokio::select! {
            () = engine.clock.sleep(wait) => {}
            () = engine.shutdown.cancelled() => return,
        }
        let going = match &engine.worker {
            // Several workers: one of them fires each tick, and skips it while the
            // previous scheduled run (on whichever worker) is going.
            Some(_) => match fire_once(&engine, &pipeline.name, at).await {
                Some(going) => going,
                None => {
                    next = schedule.next_shared_fire(at, engine.clock.now());
                    continue;
                }
            },
            None => last.filter(|prev| engine.is_active(*prev)),
        };
        match going {
            Some(prev) => {
                engine
                    .writer
                    .send(vec![Op::run_event(
                        engine.clock.timestamp(),
                        EventKind::ScheduleSkipped,
                        prev,
                        json!({"pipeline": pipeline.name, "schedule": schedule.text(),
                               "reason": format!("run {prev} from the previous fire is still going")}),
                    )])
                    .await;
            }
            _ => match start_run(
                &engine,
                &StartRun {
                    pipeline: pipeline.name.clone(),
                    ..StartRun::default()
                },
                Trigger::Schedule,
                |_| Vec::new(),
            )
            .await
            {
                Ok(id) => last = Some(id),
                Err(e) => {
                    tracing::warn!(pipeline = %pipeline.name, error = %e, "a scheduled run could not start");
                }
            },
        }
        next = if shared {
            schedule.next_shared_fire(at, engine.clock.now())
        } else {
            schedule.next_fire(at, engine.clock.now())
        };
    }
}
