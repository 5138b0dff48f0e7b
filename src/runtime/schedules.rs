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
    engine.tasks.spawn(follow(engine.clone()));
}

/// How often the pipeline files are looked at for schedules added, changed or removed.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps one loop per scheduled pipeline as the pipeline files are now: a schedule added to a
/// file while the host runs starts firing, one changed fires on its new terms, one removed
/// (or whose file no longer reads) stops. The loops of the first look fire as at a start;
/// later ones wait for their schedule's next tick, so an edit never fires a run by itself.
async fn follow(engine: Arc<Engine>) {
    let mut running: Vec<(String, String, tokio_util::sync::CancellationToken)> = Vec::new();
    let mut first = true;
    let mut seen: Option<Arc<super::catalog::Pipelines>> = None;
    loop {
        let catalog = engine.catalog();
        // The same catalogue as at the last look (no file changed): nothing to compare.
        if seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &catalog)) {
            tokio::select! {
                () = tokio::time::sleep(LOOK_EVERY) => continue,
                () = engine.shutdown.cancelled() => return,
            }
        }
        seen = Some(catalog.clone());
        let wanted: Vec<(String, String)> = catalog
            .iter()
            .filter_map(|p| {
                p.schedule
                    .as_ref()
                    .map(|s| (p.name.clone(), s.text().to_string()))
            })
            .collect();
        let now: Vec<(String, String)> = running
            .iter()
            .map(|(n, t, _)| (n.clone(), t.clone()))
            .collect();
        let (stop, begin) = changes(&now, &wanted);
        running.retain(|(name, _, token)| {
            let keep = !stop.contains(name);
            if !keep {
                token.cancel();
                tracing::info!(pipeline = %name, "its schedule changed or was removed; its loop stops");
            }
            keep
        });
        for name in begin {
            if let Ok(p) = catalog.get(&name) {
                let token = engine.shutdown.child_token();
                let text = p
                    .schedule
                    .as_ref()
                    .map(|s| s.text().to_string())
                    .unwrap_or_default();
                if !first {
                    tracing::info!(pipeline = %name, schedule = %text, "a schedule was added or changed; it fires from its next tick");
                }
                engine.tasks.spawn(schedule_loop(
                    engine.clone(),
                    p.clone(),
                    token.clone(),
                    first,
                ));
                running.push((name, text, token));
            }
        }
        first = false;
        tokio::select! {
            () = tokio::time::sleep(LOOK_EVERY) => {}
            () = engine.shutdown.cancelled() => return,
        }
    }
}

/// Which schedule loops to stop and which to start, from those running and those the files
/// ask for (pipeline name, schedule text): a changed schedule is stopped and started again.
fn changes(
    running: &[(String, String)],
    wanted: &[(String, String)],
) -> (Vec<String>, Vec<String>) {
    let stop = running
        .iter()
        .filter(|r| !wanted.contains(r))
        .map(|(n, _)| n.clone())
        .collect();
    let begin = wanted
        .iter()
        .filter(|w| !running.contains(w))
        .map(|(n, _)| n.clone())
        .collect();
    (stop, begin)
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

/// Fires `pipeline`'s schedule until `stop` (the host shutting down, or the schedule changed
/// in its file). `at_start`: the host is starting, so an interval schedule fires at once.
async fn schedule_loop(
    engine: Arc<Engine>,
    pipeline: Arc<Pipeline>,
    stop: tokio_util::sync::CancellationToken,
    at_start: bool,
) {
    let Some(schedule) = pipeline.schedule.clone() else {
        return;
    };
    let shared = engine.worker.is_some();
    let now = engine.clock.now();
    let mut next = match (shared, at_start) {
        (true, true) => schedule.first_shared_fire(now),
        (false, true) => schedule.first_fire(now),
        (true, false) => schedule.next_shared_fire(now, now),
        (false, false) => schedule.next_fire(now, now),
    };
    let mut last: Option<RunId> = None;
    while let Some(at) = next {
        let wait = (at - engine.clock.now()).to_std().unwrap_or_default();
        tokio::select! {
            () = engine.clock.sleep(wait) => {}
            () = stop.cancelled() => return,
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

#[cfg(test)]
mod tests {
    use super::changes;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, t)| ((*n).to_string(), (*t).to_string()))
            .collect()
    }

    #[test]
    fn added_changed_and_removed_schedules_start_and_stop_their_loops() {
        let running = pairs(&[("a", "every 1m"), ("b", "0 2 * * *"), ("c", "every 5s")]);
        let wanted = pairs(&[("a", "every 1m"), ("b", "0 3 * * *"), ("d", "every 1h")]);
        let (stop, begin) = changes(&running, &wanted);
        assert_eq!(stop, ["b", "c"]);
        assert_eq!(begin, ["b", "d"]);
        let (stop, begin) = changes(&wanted, &wanted);
        assert!(stop.is_empty() && begin.is_empty());
    }
}
