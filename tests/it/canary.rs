//! Canary rollouts end to end: the proxy on loopback between two real upstream servers, the
//! CLI (status, actions, refusals), drills, and config errors.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opsdeck::clock::{Clock, ManualClock};
use opsdeck::host::{Host, HostOptions};
use opsdeck::model::{CanaryState, Version};

use crate::support::{TestWorkspace, until};

/// An upstream that answers with its name, or 500 once `failing` is set.
pub(crate) async fn upstream(name: &'static str, failing: Arc<AtomicBool>) -> SocketAddr {
    let app = axum::Router::new().fallback(move || {
        let failing = failing.clone();
        async move {
            if failing.load(Ordering::SeqCst) {
                (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "broken".to_string(),
                )
            } else {
                (axum::http::StatusCode::OK, format!("hello from {name}"))
            }
        }
    });
    crate::support::serve_router(app).await
}

/// An upstream that never answers.
async fn hung() -> SocketAddr {
    let app = axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(3_600)).await;
        "too late"
    });
    crate::support::serve_router(app).await
}

/// A hung canary is never invisible: its requests time out as errors (504 to the client), and a
/// client that gives up first is counted too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_and_abandoned_canary_requests_count_as_errors() {
    let legacy = upstream("legacy", Arc::new(AtomicBool::new(false))).await;
    let canary = hung().await;
    let (port, port2) = (crate::support::free_port(), crate::support::free_port());
    let ws = TestWorkspace::new();
    ws.write(
        "opsdeck.toml",
        &format!(
            r#"[canary.timeouts]
source = "proxy"
proxy = {{ listen = "127.0.0.1:{port}", legacy = "http://{legacy}", canary = "http://{canary}", timeout = "300ms" }}
steps = [ {{weight = 99, pause = "1h"}}, {{weight = 100}} ]
route = {{ key = "header:x-user-id" }}

[canary.abandoned]
source = "proxy"
proxy = {{ listen = "127.0.0.1:{port2}", legacy = "http://{legacy}", canary = "http://{canary}", timeout = "1h" }}
steps = [ {{weight = 99, pause = "1h"}}, {{weight = 100}} ]
route = {{ key = "header:x-user-id" }}
"#
        ),
    );
    ws.run(&["validate", ws.path("opsdeck.toml").to_str().unwrap()])
        .expect_code(0);
    let mut opts = HostOptions::long_lived("timeouts");
    opts.seed = Some(3);
    let host = Host::start(ws.open(), opts).await.unwrap();
    let http = crate::support::http();
    // Through the proxy with a 300 ms timeout: a 504 that names the version.
    let r = http
        .get(format!("http://127.0.0.1:{port}/pay"))
        .header("x-user-id", "u1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 504);
    assert_eq!(r.headers()["x-opsdeck-version"], "canary");
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("did not answer within 300ms")
    );
    // A client that gives up after 200 ms on the other proxy.
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert!(
        quick
            .get(format!("http://127.0.0.1:{port2}/pay"))
            .header("x-user-id", "u1")
            .send()
            .await
            .is_err()
    );
    // Both were recorded as canary errors.
    for name in ["timeouts", "abandoned"] {
        until(&format!("{name} to count its error"), || {
            let host = host.clone();
            async move {
                host.canary(name)
                    .unwrap()
                    .requests
                    .get("canary")
                    .and_then(serde_json::Value::as_u64)
                    == Some(1)
            }
        })
        .await;
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_splits_sticks_labels_and_rolls_back_within_one_interval() {
    let broken = Arc::new(AtomicBool::new(false));
    let legacy = upstream("legacy", Arc::new(AtomicBool::new(false))).await;
    let canary = upstream("canary", broken.clone()).await;
    let port = crate::support::free_port();
    let ws = TestWorkspace::new();
    ws.write(
        "opsdeck.toml",
        &format!(
            r#"[canary.shop]
source = "proxy"
proxy = {{ listen = "127.0.0.1:{port}", legacy = "http://{legacy}", canary = "http://{canary}" }}
steps = [ {{weight = 30, pause = "1h"}}, {{weight = 100}} ]
analysis = {{ interval = "1s", min_requests = 50 }}
route = {{ key = "header:x-user-id" }}
"#
        ),
    );
    let clock = ManualClock::new(chrono::Utc::now());
    let mut opts = HostOptions::long_lived("proxy test");
    opts.clock = Arc::new(clock.clone());
    opts.seed = Some(7);
    let host = Host::start(ws.open(), opts).await.unwrap();
    let http = crate::support::http();
    let url = format!("http://127.0.0.1:{port}/checkout?x=1");
    let call = |user: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http
                .get(&url)
                .header("x-user-id", user)
                .send()
                .await
                .unwrap();
            let version = r.headers()["x-opsdeck-version"]
                .to_str()
                .unwrap()
                .to_string();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            (version, status, body)
        }
    };

    // The split follows the weight, each user sticks to a version, and the header says which.
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut canary_count = 0;
    for i in 0..600 {
        let user = format!("user-{i}");
        let (version, status, body) = call(user.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            format!("hello from {version}"),
            "the header names the version that answered"
        );
        canary_count += usize::from(version == "canary");
        seen.insert(user, version);
    }
    let share = canary_count as f64 / 600.0;
    assert!(
        (share - 0.30).abs() < 0.07,
        "canary share {share} at weight 30%"
    );
    for i in (0..600).step_by(37) {
        let user = format!("user-{i}");
        assert_eq!(call(user.clone()).await.0, seen[&user], "{user} is sticky");
    }

    // Let the host analyse that healthy second: nothing happens.
    let second = |clock: ManualClock, host: Host| async move {
        clock.advance(Duration::from_secs(1));
        let now = clock.timestamp().millis() / 1000;
        until("the host to analyse the second", || {
            let host = host.clone();
            async move {
                host.canary("shop")
                    .unwrap()
                    .analysis_at
                    .is_some_and(|t| t.millis() / 1000 >= now)
            }
        })
        .await;
    };
    second(clock.clone(), host.clone()).await;
    assert_eq!(host.canary("shop").unwrap().state, CanaryState::Progressing);

    // The canary upstream starts failing: the next analysis (one interval later) rolls back.
    broken.store(true, Ordering::SeqCst);
    let failing_from = clock.timestamp().millis() / 1000;
    for i in 0..300 {
        let _ = call(format!("user-{i}")).await;
    }
    second(clock.clone(), host.clone()).await;
    let s = host.canary("shop").unwrap();
    assert_eq!(s.state, CanaryState::RolledBack, "{:?}", s.checks);
    let rec = s.last_action.unwrap();
    assert_eq!(
        (rec.actor.as_str(), rec.action.as_str()),
        ("opsdeck", "rollback")
    );
    assert!(
        rec.at.millis() / 1000 - failing_from <= 1,
        "rolled back within one interval"
    );
    assert!(rec.reason.contains("error_rate"), "{}", rec.reason);

    // After the rollback every request goes to legacy, canary users included.
    for i in 0..100 {
        let (version, status, _) = call(format!("user-{i}")).await;
        assert_eq!((version.as_str(), status), (Version::Legacy.as_str(), 200));
    }
    host.shutdown().await;

    // The state survives a restart, and the action is in the event log and the audit log.
    let host = Host::start(ws.open(), HostOptions::new("check"))
        .await
        .unwrap();
    assert_eq!(host.canary("shop").unwrap().state, CanaryState::RolledBack);
    let events = host.events(0, 10_000).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind.as_str() == "canary_action" && e.data["action"] == "rollback")
    );
    host.shutdown().await;
    let audit = opsdeck::store::Reader::open(&ws.path(".opsdeck/state.db"))
        .unwrap()
        .audit(&opsdeck::model::AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(audit[0].action, "canary.rollback");
    assert_eq!(audit[0].target, "canary/shop");
    assert!(audit[0].details["analysis"]["checks"].is_array());
}

const SIMULATED: &str = r#"[canary.api]
source = "simulate"
steps = [ {weight = 5, pause = "10m"}, {weight = 50, pause = "10m"}, {weight = 100} ]
simulate = { rps = 20 }
"#;

#[test]
fn the_cli_shows_and_acts_with_reasons_and_refuses_what_does_not_fit() {
    let ws = TestWorkspace::new();
    ws.write("opsdeck.toml", SIMULATED);
    let list = ws.run(&["canary", "list", "--json"]);
    list.expect_code(0);
    assert_eq!(list.json()[0]["name"], "api");
    let status = ws.run(&["canary", "status", "api", "--json"]);
    status.expect_code(0);
    let s = status.json();
    for key in [
        "name",
        "state",
        "weight",
        "step",
        "source",
        "checks",
        "last_action",
    ] {
        assert!(s.get(key).is_some(), "status --json has `{key}`: {s}");
    }
    assert_eq!(
        (s["state"].as_str(), s["weight"].as_f64()),
        (Some("progressing"), Some(5.0))
    );

    let out = ws.run(&[
        "canary",
        "set-weight",
        "api",
        "20",
        "--reason",
        "hold at 20 for the sale",
    ]);
    out.expect_code(0);
    assert!(
        out.stdout().contains("weight 5% -> 20%"),
        "{}",
        out.stdout()
    );
    let s = ws.run(&["canary", "status", "api", "--json"]).json();
    assert_eq!(
        (s["state"].as_str(), s["weight"].as_f64()),
        (Some("paused"), Some(20.0))
    );
    assert_eq!(s["last_action"]["reason"], "hold at 20 for the sale");
    let text = ws.run(&["canary", "status", "api"]).stdout();
    assert!(
        text.contains("paused") && text.contains("set_weight by alice"),
        "{text}"
    );

    ws.run(&[
        "canary",
        "rollback",
        "api",
        "--reason",
        "errors in checkout",
    ])
    .expect_code(0);
    let again = ws.run(&["canary", "rollback", "api", "--reason", "twice"]);
    again.expect_error(2, "already rolled back");
    let resume = ws.run(&["canary", "resume", "api", "--reason", "x"]);
    resume.expect_error(2, "`restart` starts it again");
    ws.run(&["canary", "restart", "api", "--reason", "fixed build"])
        .expect_code(0);

    let unknown = ws.run(&["canary", "status", "apj"]);
    unknown.expect_error(2, "did you mean `api`");
    // An action on an unknown canary is refused by the control path, and audited there.
    ws.run(&["canary", "promote", "apj", "--reason", "typo"])
        .expect_error(2, "there is no canary `apj` (did you mean `api`?)");
    let audit = ws.run(&["audit", "--action", "canary", "--json"]);
    let refused = audit.json();
    assert!(
        refused
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["target"] == "canary/apj" && r["outcome"] != "ok"),
        "{refused}"
    );
    let no_reason = ws.run(&["canary", "pause", "api"]);
    no_reason.expect_error(2, "--reason");
    ws.run(&["canary", "pause", "api", "--reason", " "]).expect_error(
        2,
        "cannot pause canary api: a reason is required: it is recorded in the audit log with the action; give it with --reason",
    );
    let bad_weight = ws.run(&["canary", "set-weight", "api", "150", "--reason", "x"]);
    bad_weight.expect_code(2);
}

#[test]
fn drills_report_outcomes_for_one_seed_and_many() {
    let ws = TestWorkspace::new();
    let spike = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/drills/error-spike.toml"
    );
    let one = ws.run(&["drill", spike, "--json"]);
    one.expect_code(0);
    let r = one.json();
    assert_eq!(r["outcome"], "rolled_back");
    assert!(r["time_to_rollback_s"].as_u64().unwrap() <= 30);
    assert!(r["time_to_promote_s"].is_null());
    for key in [
        "canary_requests",
        "canary_errors",
        "bad_requests_served",
        "steps",
    ] {
        assert!(r.get(key).is_some(), "{key}");
    }
    let many = ws.run(&["drill", spike, "--seeds", "4", "--json"]);
    many.expect_code(0);
    let m = many.json();
    assert_eq!(m["seeds"], 4);
    assert_eq!(m["outcomes"]["rolled_back"], 4);
    assert_eq!(m["results"].as_array().unwrap().len(), 4);
    assert!(m["time_to_rollback_s"]["median"].is_number());

    // A rollout the scenario's time cuts short says so, in text as in JSON.
    ws.write(
        "short.toml",
        "[scenario]\nduration = \"2m\"\n[canary_config]\nanalysis = { interval = \"10s\" }\n",
    );
    let short = ws.path("short.toml");
    let one = ws.run(&["drill", short.to_str().unwrap()]);
    one.expect_code(0);
    assert!(
        one.stdout()
            .contains("seed 1: progressing, undecided: the scenario's `duration` ended"),
        "{}",
        one.stdout()
    );
    let many = ws.run(&["drill", short.to_str().unwrap(), "--seeds", "2"]);
    assert!(
        many.stdout().contains("2 undecided: the scenario's"),
        "{}",
        many.stdout()
    );

    ws.write("bad.toml", "[scenario]\nrps = \"fast\"\n");
    let bad = ws.run(&["drill", ws.path("bad.toml").to_str().unwrap()]);
    bad.expect_code(2);
    assert!(
        bad.stderr()
            .contains("bad.toml:2:7: `rps` in [scenario] must be a number"),
        "{}",
        bad.stderr()
    );
}

#[test]
fn a_bad_canary_table_is_reported_with_its_place() {
    let ws = TestWorkspace::new();
    ws.write(
        "opsdeck.toml",
        "[canary.api]\nsource = \"simulate\"\nslo = { max_p95_increase = \"ten\" }\n",
    );
    let out = ws.run(&["validate", ws.path("opsdeck.toml").to_str().unwrap()]);
    out.expect_code(2);
    assert!(
        out.stdout().contains(
            "opsdeck.toml:3:28: `max_p95_increase` in `slo` of [canary.api] must be a number"
        ),
        "{}",
        out.stdout()
    );
    let status = ws.run(&["canary", "list"]);
    status.expect_error(2, "opsdeck.toml:3:28");

    // A candidate config under another name is checked as settings, by its content; and an
    // upstream that is the proxy itself is caught before anything starts.
    ws.write(
        "candidate.toml",
        "[canary.web]\nsource = \"proxy\"\nproxy = { listen = \"127.0.0.1:8080\", legacy = \"http://localhost:8080\", canary = \"http://127.0.0.1:9002/?v=2\" }\n",
    );
    let out = ws.run(&["validate", ws.path("candidate.toml").to_str().unwrap()]);
    out.expect_code(2);
    for want in [
        "candidate.toml:3:47: `legacy` in `proxy` of [canary.web] is `http://localhost:8080`; that is this proxy's own `listen` address",
        "candidate.toml:3:81: `canary` in `proxy` of [canary.web] is `http://127.0.0.1:9002/?v=2`; an upstream is a base URL",
    ] {
        assert!(out.stdout().contains(want), "{want}\n{}", out.stdout());
    }
    ws.write("candidate.toml", "[canary.web]\nsource = \"simulate\"\n");
    let out = ws.run(&["validate", ws.path("candidate.toml").to_str().unwrap()]);
    out.expect_code(0);
    assert!(
        out.stdout()
            .contains("candidate.toml: ok: settings, canaries web"),
        "{}",
        out.stdout()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_injected_into_a_live_simulated_canary_rolls_it_back() {
    let ws = TestWorkspace::new();
    ws.write(
        "opsdeck.toml",
        r#"[canary.api]
source = "simulate"
steps = [ {weight = 20, pause = "1h"}, {weight = 100} ]
analysis = { interval = "5s" }
simulate = { rps = 200 }
"#,
    );
    let clock = ManualClock::new(chrono::Utc::now());
    let mut opts = HostOptions::long_lived("fault test");
    opts.clock = Arc::new(clock.clone());
    let host = Host::start(ws.open(), opts).await.unwrap();
    // A proxy or ingest canary takes real traffic; only simulated ones take faults.
    let fault = |canary: &str, error_rate| opsdeck::model::Command::Fault {
        canary: canary.into(),
        fault: opsdeck::model::Fault::new(error_rate, 0.0).unwrap(),
    };
    assert!(
        crate::support::act(&host, fault("nope", 0.0), "")
            .await
            .is_err()
    );
    crate::support::act(&host, fault("api", 0.2), "drill")
        .await
        .unwrap();
    let mut rolled_back_at = None;
    let legacy = |host: &Host| {
        host.canary("api").unwrap().requests["legacy"]
            .as_u64()
            .unwrap_or(0)
    };
    for s in 1..=60 {
        // One simulated second at a time: wait until the host has served it.
        let before = legacy(&host);
        clock.advance(Duration::from_secs(1));
        until("the host to run the second", || {
            let host = host.clone();
            async move { host.canary("api").unwrap().state.is_final() || legacy(&host) > before }
        })
        .await;
        if host.canary("api").unwrap().state == CanaryState::RolledBack {
            rolled_back_at = Some(s);
            break;
        }
    }
    let at = rolled_back_at.expect("a canary failing 20% of requests is rolled back");
    assert!(at <= 15, "rolled back after {at} simulated seconds");
    let series = host.canary_series("api", 5, 12).unwrap();
    assert_eq!(series.len(), 12);
    assert!(
        series
            .iter()
            .any(|p| p.canary.error_rate.is_some_and(|e| e > 0.1)),
        "{series:?}"
    );
    host.shutdown().await;
}

#[test]
fn cli_actions_go_through_the_api_of_a_serving_host() {
    let ws = TestWorkspace::new();
    // And a proxied canary whose upstreams are gone: each request is a 502 and an error, and
    // the log says so (once a minute, not once a request).
    let (edge, gone) = (crate::support::free_port(), crate::support::free_port());
    ws.write(
        "opsdeck.toml",
        &format!(
            "{SIMULATED}[canary.edge]\nsource = \"proxy\"\nproxy = {{ listen = \"127.0.0.1:{edge}\", legacy = \"http://127.0.0.1:{gone}\", canary = \"http://127.0.0.1:{gone}\" }}\n"
        ),
    );
    let port = crate::support::free_port();
    let server = crate::support::serve(&ws, port);
    for _ in 0..3 {
        use std::io::{Read as _, Write as _};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", edge)).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    }
    crate::support::eventually("the proxy to log the gone upstream", || {
        crate::support::log_text(&ws).contains("proxy: the legacy upstream could not be reached")
    });
    assert_eq!(
        crate::support::log_text(&ws)
            .matches("proxy: the legacy upstream could not be reached")
            .count(),
        1,
        "once a minute, not once a request"
    );
    // A live rollout is not restarted (its evidence would go without a word).
    ws.run(&["canary", "restart", "api", "--reason", "again"])
        .expect_error(2, "roll it back first");
    // A second `serve` of the workspace is told who hosts it, not that a port is taken.
    ws.run(&["serve", "--bind", &format!("127.0.0.1:{port}")])
        .expect_error(1, "the workspace is hosted by `opsdeck serve`");
    // opsdeck.toml edited into something broken while the host runs: the host still takes
    // the rollback (its canaries are the ones routing traffic), and knows its canaries' names.
    ws.write("opsdeck.toml", "[canary.api]\nsorce = \"simulate\"\n");
    ws.run(&["canary", "status", "apj"]).expect_error(
        2,
        "did you mean `api`?); canaries: api, edge (on the host at http://",
    );
    let out = ws.run(&["canary", "rollback", "api", "--reason", "pager went off"]);
    out.expect_code(0);
    assert!(
        out.stdout()
            .contains(&format!("via http://127.0.0.1:{port}")),
        "{}",
        out.stdout()
    );
    let again = ws.run(&["canary", "rollback", "api", "--reason", "twice"]);
    again.expect_error(2, "already rolled back");
    let remote = ws.run(&[
        "--remote",
        &format!("http://127.0.0.1:{port}"),
        "canary",
        "status",
        "api",
        "--json",
    ]);
    remote.expect_code(0);
    assert_eq!(remote.json()["state"], "rolled_back");
    crate::support::stop(server);
}

#[test]
fn canary_list_keeps_every_word_when_piped() {
    let ws = TestWorkspace::new();
    ws.write(
        "opsdeck.toml",
        "[canary.api]\nsource = \"simulate\"\nsteps = [ {weight = 20, pause = \"1h\"}, {weight = 100} ]\n",
    );
    let reason =
        "holding the rollout while the payments team checks the eu-west settlement batch END";
    ws.run(&["canary", "pause", "api", "--reason", reason])
        .expect_code(0);
    let list = ws.run(&["canary", "list"]);
    list.expect_code(0);
    assert!(list.stdout().contains(reason), "{}", list.stdout());
}

/// The traffic status of canary `pay`, once it satisfies `f`.
async fn traffic_until(
    host: &Host,
    what: &str,
    f: impl Fn(&opsdeck::model::TrafficStatus) -> bool,
) -> opsdeck::model::TrafficStatus {
    until(what, || {
        let host = host.clone();
        let ok = host.canary("pay").unwrap().traffic.as_ref().is_some_and(&f);
        async move { ok }
    })
    .await;
    host.canary("pay").unwrap().traffic.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traffic_command_applies_every_weight_retries_and_is_audited() {
    use opsdeck::model::{CanaryAction, Command as Cmd, TrafficState};
    let ws = TestWorkspace::new();
    ws.write(
        "set-weight.sh",
        "#!/bin/sh\nif [ -e broken ]; then echo 'router said no' >&2; exit 3; fi\necho \"$1 $OPSDECK_CANARY\" >> weights.log\necho \"split set to $1\"\n",
    );
    std::fs::set_permissions(
        ws.path("set-weight.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    ws.write(
        "opsdeck.toml",
        r#"[canary.pay]
source = "ingest"
steps = [ {weight = 10, pause = "1h"}, {weight = 50, pause = "1h"}, {weight = 100} ]
traffic = { command = ["./set-weight.sh", "{{weight}}"], retries = 1, timeout = "5s" }
"#,
    );
    let host = Host::start(ws.open(), HostOptions::long_lived("traffic test"))
        .await
        .unwrap();
    let log = || std::fs::read_to_string(ws.path("weights.log")).unwrap_or_default();
    let canary = |action| Cmd::Canary {
        canary: "pay".into(),
        action,
        expect: None,
    };
    // A host that starts asserts the weight it starts at.
    let t = traffic_until(&host, "10% applied", |t| {
        t.state == TrafficState::Applied && (t.weight - 10.0).abs() < 1e-9
    })
    .await;
    assert_eq!((t.via.as_str(), t.attempts), ("command", 1));
    assert_eq!(t.message.as_deref(), Some("split set to 10"));
    assert!(
        t.describe().contains("10% applied by the command"),
        "{}",
        t.describe()
    );
    crate::support::act(&host, canary(CanaryAction::Promote), "looks fine")
        .await
        .unwrap();
    traffic_until(&host, "50% applied", |t| {
        t.state == TrafficState::Applied && (t.weight - 50.0).abs() < 1e-9
    })
    .await;
    assert_eq!(log(), "10 pay\n50 pay\n");

    // The router refuses: retried, then shown as failing with its words.
    ws.write("broken", "");
    crate::support::act(&host, canary(CanaryAction::Rollback), "drill")
        .await
        .unwrap();
    let t = traffic_until(&host, "0% failing", |t| t.state == TrafficState::Failing).await;
    assert_eq!((t.weight, t.attempts), (0.0, 2));
    let line = t.describe();
    assert!(
        line.contains("0% NOT applied") && line.contains("router said no"),
        "{line}"
    );
    assert_eq!(log(), "10 pay\n50 pay\n", "nothing applied while broken");

    // The next weight supersedes the one that never got through.
    std::fs::remove_file(ws.path("broken")).unwrap();
    crate::support::act(&host, canary(CanaryAction::Restart), "fixed the router")
        .await
        .unwrap();
    traffic_until(&host, "10% applied again", |t| {
        t.state == TrafficState::Applied && (t.weight - 10.0).abs() < 1e-9
    })
    .await;
    assert_eq!(log(), "10 pay\n50 pay\n10 pay\n");
    host.shutdown().await;

    // Each outcome is in the audit log, opsdeck as the actor.
    let audit = opsdeck::store::Reader::open(&ws.path(".opsdeck/state.db"))
        .unwrap()
        .audit(&opsdeck::model::AuditQuery {
            limit: 50,
            ..Default::default()
        })
        .unwrap();
    let traffic: Vec<(String, f64, String)> = audit
        .iter()
        .rev()
        .filter(|r| r.action == "canary.traffic")
        .map(|r| {
            assert_eq!(
                (r.actor.as_str(), r.target.as_str()),
                ("opsdeck", "canary/pay")
            );
            (
                r.outcome.clone(),
                r.details["weight"].as_f64().unwrap(),
                r.details["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        traffic,
        vec![
            ("ok".into(), 10.0, "split set to 10".into()),
            ("ok".into(), 50.0, "split set to 50".into()),
            (
                "failed: upstream".into(),
                0.0,
                "the traffic command `./set-weight.sh` exited with status 3: router said no".into()
            ),
            ("ok".into(), 10.0, "split set to 10".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traffic_webhook_is_posted_the_weight_and_retried() {
    use opsdeck::model::TrafficState;
    let posted: Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Arc::default();
    let seen = posted.clone();
    let app = axum::Router::new().route(
        "/weight",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let seen = seen.clone();
            async move {
                let mut v = seen.lock().unwrap();
                v.push(body);
                // The first call finds the router busy.
                if v.len() == 1 {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy")
                } else {
                    (axum::http::StatusCode::OK, "ok")
                }
            }
        }),
    );
    let addr = crate::support::serve_router(app).await;
    let ws = TestWorkspace::new();
    ws.write(
        "opsdeck.toml",
        &format!(
            r#"[canary.pay]
source = "ingest"
steps = [ {{weight = 2.5, pause = "1h"}}, {{weight = 100}} ]
traffic = {{ webhook = "http://{addr}/weight" }}
"#
        ),
    );
    let host = Host::start(ws.open(), HostOptions::long_lived("webhook test"))
        .await
        .unwrap();
    let t = traffic_until(&host, "2.5% applied", |t| t.state == TrafficState::Applied).await;
    assert_eq!((t.via.as_str(), t.weight, t.attempts), ("webhook", 2.5, 2));
    let bodies = posted.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    assert_eq!(
        bodies[1],
        serde_json::json!({"canary": "pay", "weight": 2.5})
    );
    host.shutdown().await;
}

/// An upstream that answers with the headers it was sent (as JSON), a hop-by-hop header named
/// in `Connection`, and, at `/slow`, a body whose last byte comes 400 ms after the head.
async fn echo() -> SocketAddr {
    let app = axum::Router::new()
        .route(
            "/slow",
            axum::routing::get(|| async {
                let chunks = futures::stream::unfold(0, |i| async move {
                    if i == 2 {
                        return None;
                    }
                    if i == 1 {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                    }
                    Some((Ok::<_, std::io::Error>(format!("part {i}\n")), i + 1))
                });
                axum::body::Body::from_stream(chunks)
            }),
        )
        .fallback(|headers: axum::http::HeaderMap| async move {
            let seen: HashMap<String, String> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            (
                [("x-hop", "secret"), ("connection", "x-hop")],
                axum::Json(seen),
            )
        });
    crate::support::serve_router(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_says_who_asked_drops_hop_by_hop_headers_and_times_to_the_last_byte() {
    let up = echo().await;
    let port = crate::support::free_port();
    let ws = TestWorkspace::new();
    ws.write(
        "opsdeck.toml",
        &format!(
            r#"[canary.echo]
source = "proxy"
proxy = {{ listen = "127.0.0.1:{port}", legacy = "http://{up}", canary = "http://{up}" }}
steps = [ {{weight = 50, pause = "1h"}}, {{weight = 100}} ]
route = {{ key = "header:x-user-id" }}
"#
        ),
    );
    let host = Host::start(ws.open(), HostOptions::long_lived("proxy headers"))
        .await
        .unwrap();
    let http = crate::support::http();
    let r = http
        .get(format!("http://127.0.0.1:{port}/who"))
        .header("x-user-id", "u1")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "for=6.6.6.6")
        .header("proxy-connection", "keep-alive")
        .header("connection", "x-private")
        .header("x-private", "connection-scoped")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(!r.headers().contains_key("x-hop"), "{:?}", r.headers());
    let seen: HashMap<String, String> = r.json().await.unwrap();
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen:?}");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], format!("127.0.0.1:{port}"));
    for gone in ["forwarded", "proxy-connection", "x-private"] {
        assert!(
            !seen.contains_key(gone),
            "{gone} reached the upstream: {seen:?}"
        );
    }
    assert_eq!(seen["x-user-id"], "u1", "end-to-end headers pass");

    // Latency runs to the body's last byte, not the response head.
    let r = http
        .get(format!("http://127.0.0.1:{port}/slow"))
        .header("x-user-id", "u2")
        .send()
        .await
        .unwrap();
    let version = r.headers()["x-opsdeck-version"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(r.text().await.unwrap(), "part 0\npart 1\n");
    until("the slow request to be recorded", || {
        let host = host.clone();
        let version = version.clone();
        async move {
            host.canary_series("echo", 60, 2).unwrap().iter().any(|p| {
                let v = if version == "canary" {
                    p.canary
                } else {
                    p.legacy
                };
                v.p99_ms.is_some_and(|ms| ms >= 400.0)
            })
        }
    })
    .await;
    host.shutdown().await;
}
