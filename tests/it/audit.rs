//! One audited control path: each control from the dashboard (through the app's requests and
//! the real worker), the CLI and the API leaves exactly one audit record with actor, role, via,
//! reason and outcome; refusals leave refusal records; `opsdeck audit` filters locally and
//! remotely.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use opsdeck::client::{Backend, Embedded};
use opsdeck::host::{Host, HostOptions};
use opsdeck::model::{Actor, AuditQuery, AuditRecord, Role, Via};
use opsdeck::tui::action::Action;
use opsdeck::tui::app::{App, Config};
use opsdeck::tui::request::{Msg, Request, Worker};
use opsdeck::tui::theme::{ColorDepth, Theme};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::support::TestWorkspace;

const FRAGILE: &str = r#"[pipeline]
name = "fragile"
[[stage]]
id = "call"
kind = "command"
command = ["sh", "-c", "[ -f ok ] || exit 3"]
"#;

const SLOW: &str = r#"[pipeline]
name = "slow"
[[stage]]
id = "wait"
kind = "command"
command = ["sleep", "30"]
"#;

const CANARY: &str = r#"[canary.api]
source = "simulate"
steps = [ {weight = 10, pause = "1h"}, {weight = 100} ]
simulate = { rps = 5 }
"#;

fn workspace() -> TestWorkspace {
    let ws = TestWorkspace::new();
    ws.pipeline("fragile", FRAGILE);
    ws.pipeline("slow", SLOW);
    ws.write("opsdeck.toml", CANARY);
    ws
}

fn all(host_records: &[AuditRecord], action: &str) -> Vec<AuditRecord> {
    host_records
        .iter()
        .filter(|r| r.action == action)
        .cloned()
        .collect()
}

async fn audit_of(host: &Host) -> Vec<AuditRecord> {
    host.audit_log(AuditQuery {
        limit: 1_000,
        ..AuditQuery::default()
    })
    .await
    .unwrap()
}

/// Drives an app: keys in, requests out through the real worker against `backend`, answers
/// back in, until the app has nothing more to ask.
struct Driven {
    app: App,
    worker: Worker,
    rx: mpsc::UnboundedReceiver<Msg>,
}

impl Driven {
    fn new(backend: Arc<dyn Backend>) -> Driven {
        let (tx, rx) = mpsc::unbounded_channel();
        let actor = Actor::new("dana", Role::Admin, Via::Dashboard);
        let config = Config::with_theme(Theme::load("dark", None, ColorDepth::TrueColor).unwrap());
        Driven {
            app: App::new(config, Rect::new(0, 0, 120, 40), Utc::now()),
            worker: Worker::new(backend, actor, tx),
            rx,
        }
    }

    /// Sends what the app asked for (but the live stream) and applies the answers.
    async fn settle(&mut self) {
        for _ in 0..20 {
            let reqs: Vec<Request> = self
                .app
                .take_requests()
                .into_iter()
                .filter(|r| !matches!(r, Request::Subscribe { .. }))
                .collect();
            if reqs.is_empty() {
                return;
            }
            let n = reqs.len();
            for r in reqs {
                self.worker.exec(r);
            }
            for _ in 0..n {
                let msg = tokio::time::timeout(Duration::from_secs(20), self.rx.recv())
                    .await
                    .unwrap()
                    .unwrap();
                self.app.apply(msg);
            }
        }
    }

    fn keys(&mut self, s: &str) {
        for c in s.chars() {
            self.app
                .on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
    }

    fn enter(&mut self) {
        self.app
            .on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_controls_leave_one_audit_record_each() {
    let ws = workspace();
    let host = Host::start(ws.open(), HostOptions::long_lived("audit test"))
        .await
        .unwrap();
    let failed = host
        .start_run(
            "fragile",
            &serde_json::Map::new(),
            opsdeck::model::Trigger::Manual,
        )
        .await
        .unwrap();
    host.wait(failed).await.unwrap();
    let mut d = Driven::new(Arc::new(Embedded::new(host.clone())));
    d.settle().await;

    // Requeue the dead letter from the DLQ pane, through its confirmation.
    std::fs::write(ws.path("ok"), "").unwrap();
    d.keys("5");
    d.settle().await;
    d.keys("R");
    d.keys("partner is back");
    d.enter();
    d.settle().await;
    // Roll the canary back from the canary pane.
    d.keys("3");
    d.settle().await;
    d.keys("x");
    d.keys("bad deploy");
    d.enter();
    d.settle().await;
    // Promote the ended canary: refused before it is asked (the key says why).
    d.app.on_action(Action::Promote);
    assert!(
        d.app
            .flash
            .as_ref()
            .is_some_and(|f| f.error && f.text.contains("is rolled back")),
        "{:?}",
        d.app.flash
    );
    assert!(d.app.take_requests().is_empty(), "nothing reaches the host");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let records = audit_of(&host).await;
    let requeues = all(&records, "dlq.requeue");
    assert_eq!(requeues.len(), 1, "{records:#?}");
    let r = &requeues[0];
    assert_eq!(
        (
            r.actor.as_str(),
            r.role,
            r.via,
            r.reason.as_str(),
            r.outcome.as_str()
        ),
        (
            "dana",
            Some(Role::Admin),
            Some(Via::Dashboard),
            "partner is back",
            "ok"
        )
    );
    let rollbacks = all(&records, "canary.rollback");
    assert_eq!(rollbacks.len(), 1, "{records:#?}");
    assert_eq!(
        (rollbacks[0].reason.as_str(), rollbacks[0].via),
        ("bad deploy", Some(Via::Dashboard))
    );
    assert!(rollbacks[0].details["analysis"].is_object());
    // The audit record is in the live event log too, where the Events pane shows it.
    let events = host.events(0, 10_000).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind.as_str() == "audit" && e.data["action"] == "dlq.requeue")
            .count(),
        1
    );
    host.shutdown().await;
}

#[test]
fn cli_controls_and_refusals_are_audited_and_audit_filters_work() {
    let ws = workspace();
    ws.run(&["run", "fragile"]).expect_code(1);
    // A refused retry: the run is still going. Start a slow run on a serving host so it is
    // in flight, then retry it from the CLI (through the host's API).
    let port = crate::support::free_port();
    let server = crate::support::serve(&ws, port);
    let mut follower = ws
        .cmd()
        .args(["run", "slow", "--reason", "load test"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut slow = 0;
    crate::support::eventually("the slow run to start", || {
        let runs = ws.run(&["runs", "--pipeline", "slow", "--json"]).json();
        slow = runs[0]["id"].as_i64().unwrap_or(0);
        runs[0]["status"] == "running"
    });
    let refused = ws.run(&["runs", "retry", &slow.to_string(), "--reason", "again"]);
    refused.expect_error(2, "still running");
    let no_reason = ws.run(&["runs", "cancel", &slow.to_string()]);
    no_reason.expect_error(2, "--reason");
    ws.run(&["runs", "cancel", &slow.to_string(), "--reason", "enough"])
        .expect_code(0);
    assert!(
        follower.wait().unwrap().code() == Some(1),
        "the followed run ended cancelled"
    );
    ws.run(&["canary", "rollback", "api", "--reason", "pager"])
        .expect_code(0);
    let ended = ws.run(&["canary", "promote", "api", "--reason", "go"]);
    ended.expect_error(2, "is rolled back");

    let audit = |args: &[&str]| -> Vec<Value> {
        let mut a = vec!["audit", "--json"];
        a.extend_from_slice(args);
        ws.run(&a).json().as_array().unwrap().clone()
    };
    let retries = audit(&["--action", "run.retry"]);
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(
        (
            retries[0]["actor"].as_str(),
            retries[0]["via"].as_str(),
            retries[0]["outcome"].as_str(),
            retries[0]["reason"].as_str()
        ),
        (
            Some("alice"),
            Some("cli"),
            Some("failed: conflict"),
            Some("again")
        )
    );
    let canary = audit(&["--action", "canary"]);
    let outcomes: Vec<(&str, &str)> = canary
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("canary.promote", "failed: conflict"),
            ("canary.rollback", "ok")
        ],
        "newest first, refusals included"
    );
    assert!(audit(&["--actor", "nobody"]).is_empty());
    assert_eq!(audit(&["--limit", "1"]).len(), 1);
    assert!(audit(&["--since", "1h"]).len() >= 4);
    let future = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    assert!(audit(&["--since", &future]).is_empty());
    let table = ws.run(&["audit", "--action", "run"]).stdout();
    assert!(
        table.starts_with("TIME") && table.contains("run.cancel") && table.contains("enough"),
        "{table}"
    );
    ws.run(&["audit", "--since", "yesterday"])
        .expect_error(2, "neither a time nor a duration");

    // The same through --remote, from the served host.
    let url = format!("http://127.0.0.1:{port}");
    let remote = ws
        .run(&[
            "--remote",
            &url,
            "audit",
            "--action",
            "run.cancel",
            "--json",
        ])
        .json();
    assert_eq!(remote.as_array().unwrap().len(), 1, "{remote}");
    assert_eq!(remote[0]["reason"], "enough");
    assert_eq!(
        remote[0]["via"], "cli",
        "the CLI's actor, relayed by the host"
    );
    crate::support::stop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_resuming_interrupted_runs_says_so_in_the_audit_log() {
    let ws = workspace();
    let host = Host::start(ws.open(), HostOptions::new("first host"))
        .await
        .unwrap();
    let run = host
        .start_run(
            "slow",
            &serde_json::Map::new(),
            opsdeck::model::Trigger::Manual,
        )
        .await
        .unwrap();
    host.shutdown().await;
    let host = Host::start(ws.open(), HostOptions::long_lived("second host"))
        .await
        .unwrap();
    let records = audit_of(&host).await;
    let resumed = all(&records, "run.resume");
    assert_eq!(resumed.len(), 1, "{records:#?}");
    assert_eq!(
        (
            resumed[0].actor.as_str(),
            resumed[0].via,
            resumed[0].target.clone(),
            resumed[0].outcome.as_str()
        ),
        ("opsdeck", Some(Via::Automatic), format!("run/{run}"), "ok")
    );
    host.shutdown().await;
}

#[test]
fn audit_filters_are_checked_and_refusals_keep_at_most_a_kilobyte_of_reason() {
    let ws = workspace();
    ws.run(&["audit", "--action", "bogus"]).expect_error(
        2,
        "give a group (run, dlq, canary, asset, store, authenticate)",
    );
    ws.run(&["audit", "--actor", ""])
        .expect_error(2, "cannot be empty");
    ws.run(&["audit", "--limit", "0"])
        .expect_error(2, "a whole number from 1 to 10000");
    // A leading minus reaches the same sentences, not clap's "unexpected argument".
    ws.run(&["audit", "--limit", "-5"])
        .expect_error(2, "`-5` is not a limit");
    ws.run(&["audit", "--since", "-1h"])
        .expect_error(2, "neither a time nor a duration");
    ws.run(&["canary", "set-weight", "api", "20", "--reason", "hold"])
        .expect_code(0);
    let set = ws
        .run(&["audit", "--action", "canary.set-weight", "--json"])
        .json();
    assert_eq!(
        set.as_array().unwrap().len(),
        1,
        "the CLI's spelling works: {set}"
    );

    let long = "x".repeat(5_000);
    ws.run(&["runs", "cancel", "99", "--reason", &long])
        .expect_error(2, "at most 1024");
    let refused = ws
        .run(&["audit", "--action", "run.cancel", "--json"])
        .json();
    let kept = refused[0]["reason"].as_str().unwrap();
    assert!(
        kept.len() < 1_200 && kept.contains("truncated by opsdeck"),
        "{} bytes kept",
        kept.len()
    );
    assert_eq!(refused[0]["outcome"], "failed: validation");
}
