//! Pipeline schedules: one task per scheduled pipeline, sleeping on the host's clock until the
//! next fire. A fire is skipped (and says so in the event log) while the previous scheduled
//! run of the same pipeline is still going, so slow runs never pile up.

use std::sync::Arc;

use serde_json::json;

use super::engine::{Engine, start_run};
use super::spec::Pipeline;
use crate::model::{EventKind, RunId, StartRun, Trigger};
use crate::store::Op;

pub(crate) fn start(engine: &Arc<Engine>) {
    for p in engine.pipelines.iter() {
        if p.schedule.is_some() {
            let (inner2, p) = (engine.clone(), p.clone());
            engine.tasks.spawn(schedule_loop(inner2, p));
        }
    }
}

async fn schedule_loop(engine: Arc<Engine>, pipeline: Arc<Pipeline>) {
    let Some(schedule) = pipeline.schedule.clone() else {
        return;
    };
    let mut next = schedule.first_fire(engine.clock.now());
    let mut last: Option<RunId> = None;
    while let Some(at) = next {
        let wait = (at - engine.clock.now()).to_std().unwrap_or_default();
        tokio::select! {
            () = engine.clock.sleep(wait) => {}
            () = engine.shutdown.cancelled() => return,
        }
        match last {
            Some(prev) if engine.is_active(prev) => {
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
        next = schedule.next_fire(at, engine.clock.now());
    }
}
