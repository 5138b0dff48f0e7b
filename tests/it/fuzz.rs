//! Properties over random input: every route's body, query string and `Last-Event-ID` on a
//! real loopback server answers in the envelope and never with a 500; the pipeline,
//! `opsdeck.toml`, theme and keymap parsers never panic and explain every refusal with
//! `FILE:LINE:COL` (or the file's name, for a problem with the file as a whole).

use std::fmt::Write as _;
use std::time::Duration;

use opsdeck::config::server::hex;
use opsdeck::host::{Host, HostOptions};
use opsdeck::server::auth::sha256;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use crate::support::TestWorkspace;

const OPERATOR: &str = "fuzz-operator";

/// Keys the parsers know, so random documents reach past the first unknown key.
const KEYS: &[&str] = &[
    "name",
    "kind",
    "id",
    "needs",
    "command",
    "url",
    "method",
    "timeout_ms",
    "retry",
    "max_attempts",
    "backoff",
    "concurrency",
    "schedule",
    "source",
    "steps",
    "weight",
    "pause",
    "analysis",
    "interval",
    "slo",
    "rollback",
    "route",
    "key",
    "proxy",
    "listen",
    "legacy",
    "canary",
    "prometheus",
    "requests",
    "errors",
    "traffic",
    "webhook",
    "bind",
    "tokens",
    "role",
    "sha256",
    "rate_limit",
    "resume_horizon",
    "inherits",
    "palette",
    "ui.text",
    "ui.title",
    "alert",
    "fg",
    "bg",
    "modifiers",
    "normal",
    "global",
    "runs",
    "q",
    "j",
    "output",
    "fail_rate",
    "latency",
    "p50_ms",
    "p95_ms",
    "header_timeout",
    "max_connections",
];

const TABLES: &[&str] = &[
    "[pipeline]",
    "[[stage]]",
    "[pipeline.retry]",
    "[canary.a]",
    "[canary.a.prometheus]",
    "[server]",
    "[[server.tokens]]",
    "[palette]",
    "[keys.normal]",
    "[keys.global]",
    "[settings]",
];

fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-z0-9 :/.{}%_-]{0,12}".prop_map(|s| format!("{s:?}")),
        Just("\"10s\"".to_string()),
        Just("\"5m\"".to_string()),
        Just("\"#ff0000\"".to_string()),
        Just("\"{{version}}\"".to_string()),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..4).prop_map(|kv| {
                let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k:?} = {v}")).collect();
                format!("{{ {} }}", body.join(", "))
            }),
        ]
    })
}

/// A document of table headers and `key = value` lines from the parsers' vocabulary, now and
/// then with a random line thrown in.
fn document() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        4 => (prop::sample::select(KEYS), value()).prop_map(|(k, v)| format!("{k:?} = {v}")),
        1 => prop::sample::select(TABLES).prop_map(str::to_string),
        1 => any::<String>(),
    ];
    prop_oneof![
        4 => prop::collection::vec(line, 0..16).prop_map(|l| l.join("\n")),
        1 => any::<String>(),
    ]
}

/// A refusal names the file on its first line (`FILE:LINE:COL: ...`, or `FILE: ...` for the
/// file as a whole).
fn explained(problems: &str, file: &str) -> Result<(), TestCaseError> {
    let first = problems.lines().next().unwrap_or("");
    prop_assert!(
        first.contains(&format!("{file}:")),
        "the first line names {file}: {problems}"
    );
    Ok(())
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn parsers_never_panic_and_name_the_place() {
    let dir = tempfile::tempdir().unwrap();
    runner(512)
        .run(&document(), |text| {
            // A pipeline file.
            if let Err(problems) = opsdeck::runtime::spec::parse("p.toml", &text) {
                let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
                explained(&all.join("\n"), "p.toml")?;
            }
            // A workspace's opsdeck.toml.
            std::fs::write(dir.path().join("opsdeck.toml"), &text).unwrap();
            if let Err(e) = opsdeck::host::Workspace::open(dir.path()) {
                explained(&e.to_string(), "opsdeck.toml")?;
            }
            // A user's theme and keymap.
            std::fs::write(dir.path().join("fuzz.toml"), &text).unwrap();
            let theme = opsdeck::tui::theme::Theme::load(
                "fuzz",
                Some(dir.path()),
                opsdeck::tui::theme::ColorDepth::TrueColor,
            );
            if let Err(problems) = theme {
                let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
                prop_assert!(all.iter().all(|p| p.contains("fuzz.toml")), "{all:?}");
            }
            if let Err(problems) = opsdeck::tui::keymap::Keymap::load("fuzz", Some(dir.path())) {
                let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
                prop_assert!(all.iter().all(|p| p.contains("fuzz.toml")), "{all:?}");
            }
            Ok(())
        })
        .unwrap();
}

/// A JSON value of any shape, with the API's field names among its keys.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::from),
        prop::sample::select(vec![
            "promote",
            "set_weight",
            "rollback",
            "restart",
            "pause",
            "canary",
            "legacy",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "reason",
                        "params",
                        "action",
                        "weight",
                        "expect",
                        "state",
                        "step",
                        "observations",
                        "version",
                        "latency_ms",
                        "error",
                        "error_rate",
                        "x",
                    ]),
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

/// A request body: JSON of any shape, or bytes of any kind.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => json().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// A query string: known and unknown names with values of any kind, percent-encoded.
fn query() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec![
        "limit", "offset", "cursor", "since", "pipeline", "status", "text", "sort", "actor",
        "action", "run", "step", "points", "x",
    ]);
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        ".{0,12}",
        Just("18446744073709551616".to_string()),
        Just("-1".to_string()),
    ];
    prop::collection::vec((name, value), 0..4).prop_map(|pairs| {
        let mut q = String::new();
        for (k, v) in pairs {
            let mut enc = String::new();
            for b in v.bytes() {
                let _ = write!(enc, "%{b:02X}");
            }
            let _ = write!(q, "{}{k}={enc}", if q.is_empty() { "?" } else { "&" });
        }
        q
    })
}

const POSTS: &[&str] = &[
    "/v1/pipelines/etl/runs",
    "/v1/pipelines/nope/runs",
    "/v1/runs/1/cancel",
    "/v1/runs/1/retry",
    "/v1/runs/1/resume",
    "/v1/runs/x/retry",
    "/v1/dlq/1/requeue",
    "/v1/dlq/1/discard",
    "/v1/canaries/edge/actions",
    "/v1/canaries/edge/observations",
    "/v1/canaries/edge/fault",
    "/v1/canaries/nope/actions",
];

const GETS: &[&str] = &[
    "/healthz",
    "/v1/overview",
    "/v1/pipelines",
    "/v1/pipelines/etl",
    "/v1/runs",
    "/v1/runs/1",
    "/v1/runs/99999999999999999999",
    "/v1/runs/1/stages/extract",
    "/v1/dlq",
    "/v1/dlq/1",
    "/v1/canaries",
    "/v1/canaries/edge",
    "/v1/canaries/edge/series",
    "/v1/canaries/edge/weight",
    "/v1/audit",
    "/v1/events/log",
    "/v1/nowhere",
    "/metrics",
];

/// The answer is the envelope (or an event stream or the metrics text), never a 500.
async fn check(resp: reqwest::Response, what: &str) -> Result<(), String> {
    let status = resp.status().as_u16();
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if status >= 500 {
        return Err(format!("{what}: {status}"));
    }
    if kind.starts_with("text/event-stream") || kind.starts_with("application/openmetrics-text") {
        return Ok(());
    }
    let text = resp.text().await.map_err(|e| format!("{what}: {e}"))?;
    let v: Value = serde_json::from_str(&text).map_err(|_| format!("{what}: not JSON: {text}"))?;
    if !(v.get("data").is_some() && v.get("error").is_some()) {
        return Err(format!("{what}: not the envelope: {text}"));
    }
    Ok(())
}

#[test]
fn every_route_answers_random_input_in_the_envelope() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ws = TestWorkspace::new();
    ws.write(
        "opsdeck.toml",
        &format!(
            "[server]\nrate_limit = 1000000\nread_rate_limit = 10000000\nanon_rate_limit = 1000000\nbody_limit = 4096\n[[server.tokens]]\nname = \"fuzz\"\nrole = \"admin\"\nsha256 = \"{}\"\n\n[canary.edge]\nsource = \"ingest\"\nsteps = [ {{weight = 10, pause = \"1h\"}}, {{weight = 100}} ]\n",
            hex(&sha256(OPERATOR))
        ),
    );
    ws.pipeline("etl", crate::support::ETL);
    let (host, base) = rt.block_on(async {
        let host = Host::start(ws.open(), HostOptions::long_lived("fuzz"))
            .await
            .unwrap();
        let cfg = opsdeck::host::Workspace::open(&ws.path("")).unwrap().server;
        let (addr, _state) = crate::support::serve_api(&host, cfg).await;
        (host, format!("http://{addr}"))
    });
    let http = crate::support::http();
    let case = (
        prop::sample::select(POSTS),
        body(),
        prop::sample::select(GETS),
        query(),
        prop_oneof![".{0,24}", any::<u64>().prop_map(|n| n.to_string())],
        any::<bool>(),
    );
    runner(128)
        .run(&case, |(post, bytes, get, q, last_id, with_token)| {
            rt.block_on(async {
                let auth = |r: reqwest::RequestBuilder| {
                    if with_token {
                        r.bearer_auth(OPERATOR)
                    } else {
                        r
                    }
                };
                let r = auth(http.post(format!("{base}{post}")))
                    .header("content-type", "application/json")
                    .body(bytes.clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                check(
                    r,
                    &format!("POST {post} {}", String::from_utf8_lossy(&bytes)),
                )
                .await?;
                let r = auth(http.get(format!("{base}{get}{q}")))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                check(r, &format!("GET {get}{q}")).await?;
                // The stream's resume point: a 400 in the envelope, or a stream.
                let mut req = auth(http.get(format!("{base}/v1/events{q}")));
                if let Ok(v) = reqwest::header::HeaderValue::from_str(&last_id) {
                    req = req.header("last-event-id", v);
                }
                let r = tokio::time::timeout(Duration::from_secs(10), req.send())
                    .await
                    .map_err(|_| "no answer to /v1/events".to_string())?
                    .map_err(|e| e.to_string())?;
                check(r, &format!("GET /v1/events{q} Last-Event-ID {last_id:?}")).await
            })
            .map_err(TestCaseError::fail)
        })
        .unwrap();
    rt.block_on(host.shutdown());
}
