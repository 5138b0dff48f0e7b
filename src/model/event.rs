use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::status::string_enum;
use super::{RunId, Timestamp};

string_enum!(
    /// What changed. Every state change appends one of these; every audited command one `audit`.
    EventKind, "event kind" {
        RunCreated => "run_created",
        RunStarted => "run_started",
        RunFinished => "run_finished",
        RunInterrupted => "run_interrupted",
        RunResumed => "run_resumed",
        RunRetried => "run_retried",
        RunCancelRequested => "run_cancel_requested",
        StageStarted => "stage_started",
        StageFinished => "stage_finished",
        StageRetrying => "stage_retrying",
        StageSkipped => "stage_skipped",
        BreakerChanged => "breaker_changed",
        DlqAdded => "dlq_added",
        DlqRequeued => "dlq_requeued",
        DlqDiscarded => "dlq_discarded",
        ScheduleSkipped => "schedule_skipped",
        CanaryStarted => "canary_started",
        CanaryAction => "canary_action",
        CanaryAnalysis => "canary_analysis",
        /// A new asset version, or a pin or rollback changing which version runs use.
        AssetChanged => "asset_changed",
        /// A command from an actor, done or refused: the audit record, in the live log too.
        Audit => "audit",
        /// An event of a kind this version does not know, written by another version sharing
        /// the store or sent by another version's server (a rolling upgrade). It carries its
        /// own kind and data in its data (`{"kind": …, "data": …}`, see [`Event::read`]), so
        /// streams go on past it and show it, where refusing it would stop them.
        Unknown => "unknown",
    }
);

impl EventKind {
    /// A kind by its name, or a sentence listing the names (for a flag or a query parameter;
    /// the name given is repeated cut to the length a kind may have).
    pub fn named(s: &str) -> Result<EventKind, String> {
        let s = s.trim();
        s.parse().map_err(|_| {
            let kinds: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            format!(
                "`{}` is not an event kind; valid kinds: {} (`unknown`: kinds written by a newer version)",
                super::control::bounded(s, MAX_UNKNOWN_KIND),
                kinds.join(", ")
            )
        })
    }
}

/// Which stored events a reader wants, chosen where they are stored so that only those
/// travel: one run's (read by the run's index), some kinds, or both, up to a sequence number.
/// The default is the whole log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub run: Option<RunId>,
    /// Empty: every kind. [`EventKind::Unknown`] keeps the kinds this version does not know.
    pub kinds: Vec<EventKind>,
    /// Only events numbered at most this: a reader that asked up to the log's end knows it
    /// has looked at everything before it, kept or not, and asks after it next time instead
    /// of scanning again past events the filter leaves out.
    pub until: Option<u64>,
}

/// One entry of the event log. `seq` is gap-free and strictly increasing, so a client that
/// remembers the last `seq` it saw can resume without missing or repeating anything.
/// Decoded through [`Event::read`], like a row of the store, so a kind this version does not
/// know takes the same shape whichever way it came.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub seq: u64,
    pub at: Timestamp,
    pub kind: EventKind,
    pub run_id: Option<RunId>,
    pub stage: Option<String>,
    pub data: Value,
}

/// How many events back a stream may resume by default before it gets a reset instead of the
/// backlog (`[server] resume_horizon`).
pub const DEFAULT_RESUME_HORIZON: u64 = 10_000;

/// Most bytes of an unknown event kind kept (a kind is a short name; the rest of a
/// longer one is dropped rather than carried into every stream).
const MAX_UNKNOWN_KIND: usize = 64;

/// An event as it travels (JSON), its kind as the text it was sent as.
#[derive(Deserialize)]
struct Wire {
    seq: u64,
    at: Timestamp,
    kind: String,
    run_id: Option<RunId>,
    stage: Option<String>,
    data: Value,
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Event, D::Error> {
        let w = Wire::deserialize(d)?;
        Ok(Event::read(w.seq, w.at, &w.kind, w.run_id, w.stage, w.data))
    }
}

impl Event {
    /// An event read back (from the store or from a server). A kind this version does not
    /// know (a newer version's) becomes [`EventKind::Unknown`] with its name and data kept in
    /// its data, `{"kind": …, "data": …}`: shown, never refused.
    pub fn read(
        seq: u64,
        at: Timestamp,
        kind: &str,
        run_id: Option<RunId>,
        stage: Option<String>,
        data: Value,
    ) -> Event {
        let (kind, data) = match kind.parse::<EventKind>() {
            Ok(known) => (known, data),
            Err(_) => {
                let name = super::control::bounded(kind, MAX_UNKNOWN_KIND);
                (
                    EventKind::Unknown,
                    serde_json::json!({"kind": name, "data": data}),
                )
            }
        };
        Event {
            seq,
            at,
            kind,
            run_id,
            stage,
            data,
        }
    }

    /// The event's data as one line a person reads at a glance (`attempt 2 failed in 1.2s:
    /// exit_code: exited with status 1`), for the text views of the log; the JSON views and
    /// an event's own record keep every field. Data of an unexpected shape (an event written
    /// by another version) is shown as it is, so nothing is hidden.
    pub fn summary(&self) -> String {
        summarize(self.kind, &self.data).unwrap_or_else(|| {
            if self.data.as_object().is_some_and(serde_json::Map::is_empty) {
                String::new()
            } else {
                self.data.to_string()
            }
        })
    }
}

/// A string field, or `None` when it is missing or not a string.
fn text<'a>(d: &'a Value, key: &str) -> Option<&'a str> {
    d[key].as_str()
}

/// `: reason` when the data carries a non-empty reason.
fn because(d: &Value) -> String {
    text(d, "reason")
        .filter(|r| !r.is_empty())
        .map(|r| format!(": {r}"))
        .unwrap_or_default()
}

/// `code: message` of an attempt's error (an object), or the error itself (a sentence).
pub fn error_text(e: &Value) -> Option<String> {
    match e {
        Value::String(s) => Some(s.clone()),
        Value::Object(_) => {
            let code = e["code"].as_str().unwrap_or("error");
            Some(match e["message"].as_str().filter(|m| !m.is_empty()) {
                Some(m) => format!("{code}: {m}"),
                None => code.to_string(),
            })
        }
        _ => None,
    }
}

fn took(d: &Value, key: &str) -> Option<String> {
    d[key]
        .as_u64()
        .map(|ms| super::duration::format(std::time::Duration::from_millis(ms)))
}

fn percent(v: &Value) -> Option<String> {
    v.as_f64().map(|w| format!("{w}%"))
}

/// ` in 1.5s: code: message`: how long something took and the error it ended with, if any.
fn ended(d: &Value) -> String {
    let took = took(d, "duration_ms")
        .map(|t| format!(" in {t}"))
        .unwrap_or_default();
    let error = d
        .get("error")
        .and_then(error_text)
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    format!("{took}{error}")
}

/// Most bytes of an unknown event's data shown in its one-line summary.
const MAX_UNKNOWN_SHOWN: usize = 200;

fn summarize(kind: EventKind, d: &Value) -> Option<String> {
    use EventKind as K;
    match kind {
        K::RunCreated | K::RunStarted | K::RunFinished | K::RunResumed => run_text(kind, d),
        K::StageStarted | K::StageFinished | K::StageRetrying => stage_text(kind, d),
        K::CanaryStarted | K::CanaryAction | K::CanaryAnalysis => canary_text(kind, d),
        K::RunInterrupted | K::RunRetried | K::RunCancelRequested | K::StageSkipped => {
            text(d, "reason").map(str::to_string)
        }
        K::BreakerChanged => Some(format!(
            "breaker for {}: {} → {}",
            text(d, "target")?,
            text(d, "from")?,
            text(d, "to")?
        )),
        K::DlqAdded => Some(format!(
            "dead-letter entry {} after {} attempt(s): {}",
            d["dlq_id"].as_u64()?,
            d["attempts"].as_u64()?,
            error_text(&d["error"])?
        )),
        K::DlqRequeued | K::DlqDiscarded => Some(format!(
            "dead-letter entry {}{}",
            d["dlq_id"].as_u64()?,
            because(d)
        )),
        K::ScheduleSkipped => Some(format!(
            "{} ({}){}",
            text(d, "pipeline")?,
            text(d, "schedule")?,
            because(d)
        )),
        K::AssetChanged => Some(format!(
            "{} {}{} by {}{}",
            text(d, "name")?,
            text(d, "action")?,
            d["version"]
                .as_u64()
                .map(|v| format!(" v{v}"))
                .unwrap_or_default(),
            text(d, "actor")?,
            because(d)
        )),
        K::Unknown => Some(format!(
            "an event of kind {} this version does not know: {}",
            text(d, "kind")?,
            super::control::bounded(&d.get("data")?.to_string(), MAX_UNKNOWN_SHOWN)
        )),
        K::Audit => {
            let s = |k: &str| text(d, k).unwrap_or("-");
            Some(format!(
                "{} ({} via {}) {} {} {}{}",
                s("actor"),
                s("role"),
                s("via"),
                s("action"),
                s("target"),
                s("outcome"),
                because(d)
            ))
        }
    }
}

fn run_text(kind: EventKind, d: &Value) -> Option<String> {
    Some(match kind {
        EventKind::RunCreated => {
            let params = d["params"]
                .as_object()
                .filter(|p| !p.is_empty())
                .map(|params| {
                    let list: Vec<String> = params
                        .iter()
                        .map(|(k, v)| match v {
                            Value::String(t) => format!("{k}={t}"),
                            other => format!("{k}={other}"),
                        })
                        .collect();
                    format!(" with {}", list.join(" "))
                })
                .unwrap_or_default();
            let test = text(d, "test")
                .map(|stage| format!(", a test of stage {stage}"))
                .unwrap_or_default();
            format!(
                "{} ({}){params}{test}",
                text(d, "pipeline")?,
                text(d, "trigger")?
            )
        }
        EventKind::RunStarted => text(d, "pipeline")?.to_string(),
        EventKind::RunFinished => format!("{}{}{}", text(d, "status")?, ended(d), because(d)),
        _ => "resumed".into(),
    })
}

fn stage_text(kind: EventKind, d: &Value) -> Option<String> {
    let attempt = d["attempt"].as_u64()?;
    Some(match kind {
        EventKind::StageStarted => format!("attempt {attempt} ({})", text(d, "kind")?),
        EventKind::StageFinished => format!("attempt {attempt} {}{}", text(d, "status")?, ended(d)),
        _ => format!(
            "attempt {attempt} failed ({}); attempt {} in {}",
            error_text(&d["error"])?,
            d["next_attempt"].as_u64()?,
            took(d, "delay_ms")?
        ),
    })
}

fn canary_text(kind: EventKind, d: &Value) -> Option<String> {
    let name = text(d, "canary")?;
    Some(match kind {
        EventKind::CanaryStarted => format!(
            "{name} at {} ({})",
            percent(&d["weight"])?,
            text(d, "source")?
        ),
        EventKind::CanaryAction => format!(
            "{name} {} by {}: {} → {}, {} → {}{}",
            text(d, "action")?,
            text(d, "actor")?,
            text(d, "state_before")?,
            text(d, "state_after")?,
            percent(&d["weight_before"])?,
            percent(&d["weight_after"])?,
            because(d)
        ),
        _ => {
            let checks: Vec<String> = d["checks"]
                .as_array()?
                .iter()
                .map(|c| {
                    format!(
                        "{} {}",
                        c["name"].as_str().unwrap_or("check"),
                        c["verdict"].as_str().unwrap_or("-")
                    )
                })
                .collect();
            format!(
                "{name} {} at {}: {}",
                text(d, "state")?,
                percent(&d["weight"])?,
                if checks.is_empty() {
                    "no checks yet".to_string()
                } else {
                    checks.join(", ")
                }
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: EventKind, data: Value) -> Event {
        Event {
            seq: 1,
            at: Timestamp::from_millis(0),
            kind,
            run_id: Some(RunId(7)),
            stage: Some("build".into()),
            data,
        }
    }

    #[test]
    fn a_name_that_is_not_a_kind_is_refused_with_the_list_and_cut() {
        assert_eq!(
            EventKind::named(" run_finished "),
            Ok(EventKind::RunFinished)
        );
        let e = EventKind::named(&"x".repeat(10_000)).unwrap_err();
        assert!(e.contains("is not an event kind; valid kinds: ") && e.contains("audit"));
        assert!(e.len() < 1_000, "{}", e.len());
    }

    #[test]
    fn events_read_as_sentences_with_their_numbers_and_errors() {
        let cases = [
            (
                EventKind::StageFinished,
                json!({"attempt": 2, "status": "failed", "duration_ms": 1500,
                       "error": {"code": "exit_code", "message": "exited with status 1"}, "pipeline": "p"}),
                "attempt 2 failed in 1.5s: exit_code: exited with status 1",
            ),
            (
                EventKind::StageFinished,
                json!({"attempt": 1, "status": "succeeded", "duration_ms": 20, "error": null}),
                "attempt 1 succeeded in 20ms",
            ),
            (
                EventKind::StageRetrying,
                json!({"attempt": 1, "next_attempt": 2, "delay_ms": 2000,
                       "error": {"code": "timeout", "message": "took longer than 5s"}}),
                "attempt 1 failed (timeout: took longer than 5s); attempt 2 in 2.0s",
            ),
            (
                EventKind::RunCreated,
                json!({"pipeline": "nightly", "trigger": "manual", "params": {"day": "mon", "n": 3},
                       "overrides": {}, "test": null}),
                "nightly (manual) with day=mon n=3",
            ),
            (
                EventKind::BreakerChanged,
                json!({"target": "http://x", "from": "closed", "to": "open"}),
                "breaker for http://x: closed → open",
            ),
            (
                EventKind::CanaryAction,
                json!({"canary": "api", "action": "rollback", "actor": "alice", "reason": "p95 up",
                       "state_before": "progressing", "state_after": "rolled_back",
                       "weight_before": 10.0, "weight_after": 0.0}),
                "api rollback by alice: progressing → rolled_back, 10% → 0%: p95 up",
            ),
            (EventKind::RunResumed, json!({}), "resumed"),
        ];
        for (kind, data, want) in cases {
            assert_eq!(event(kind, data).summary(), want);
        }
    }

    #[test]
    fn data_of_an_unexpected_shape_is_shown_whole() {
        let e = event(EventKind::StageFinished, json!({"status": "failed"}));
        assert_eq!(e.summary(), r#"{"status":"failed"}"#);
        let e = event(EventKind::DlqAdded, json!("odd"));
        assert_eq!(e.summary(), r#""odd""#);
    }

    #[test]
    fn an_event_of_a_kind_a_newer_version_added_is_read_not_refused() {
        // From a newer server's stream: the kind is not known here, the event still is.
        let sent = json!({"seq": 9, "at": "2026-12-02T00:00:00Z",
            "kind": "from_the_future", "run_id": null, "stage": null, "data": {"x": 1}});
        let e: Event = serde_json::from_value(sent).unwrap();
        assert_eq!((e.seq, e.kind), (9, EventKind::Unknown));
        // The same shape as read from the store: its kind and data kept in its data.
        let stored = Event::read(9, e.at, "from_the_future", None, None, json!({"x": 1}));
        assert_eq!(e, stored);
        assert_eq!(e.data, json!({"kind": "from_the_future", "data": {"x": 1}}));
        assert_eq!(
            e.summary(),
            r#"an event of kind from_the_future this version does not know: {"x":1}"#
        );
        // Sent on by a server of this version, it reads the same again.
        let again: Event = serde_json::from_value(serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(again, e);
        // A known kind is read as itself; a long unknown one is cut, and so is its summary.
        let known = Event::read(1, e.at, "run_started", None, None, json!({}));
        assert_eq!(known.kind, EventKind::RunStarted);
        let long = Event::read(
            1,
            e.at,
            &"k".repeat(500),
            None,
            None,
            json!("v".repeat(5000)),
        );
        assert_eq!(long.data["kind"].as_str().unwrap().len(), MAX_UNKNOWN_KIND);
        assert!(long.summary().chars().count() < 400, "{}", long.summary());
    }
}
