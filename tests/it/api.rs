//! The HTTP API on a real loopback socket: the envelope and every error code, auth and roles
//! (denials audited), the rate limit, body limits, SSE resume, `/metrics`, canary routes.

use std::time::Duration;

use futures::StreamExt;
use opsdeck::config::server::hex;
use opsdeck::host::{Host, HostOptions};
use opsdeck::server::auth::sha256;
use opsdeck::server::{self, AppState};
use serde_json::{Value, json};

use crate::support::{TestWorkspace, until};

const VIEWER: &str = "viewer-token";
const OPERATOR: &str = "operator-token";

struct Api {
    base: String,
    http: reqwest::Client,
    host: Host,
    _ws: TestWorkspace,
}

fn config(rate_limit: u32) -> String {
    format!(
        r#"[server]
body_limit = 4096
rate_limit = {rate_limit}
[[server.tokens]]
name = "dash"
role = "viewer"
sha256 = "{}"
[[server.tokens]]
name = "ci"
role = "operator"
sha256 = "{}"

[canary.edge]
source = "ingest"
steps = [ {{weight = 10, pause = "1h"}}, {{weight = 100}} ]
"#,
        hex(&sha256(VIEWER)),
        hex(&sha256(OPERATOR))
    )
}

async fn start(rate_limit: u32) -> Api {
    let ws = TestWorkspace::new();
    ws.write("opsdeck.toml", &config(rate_limit));
    ws.pipeline("etl", crate::support::ETL);
    let host = Host::start(ws.open(), HostOptions::long_lived("api test"))
        .await
        .unwrap();
    let cfg = opsdeck::host::Workspace::open(&ws.path("")).unwrap().server;
    let state = AppState::new(host.clone(), cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, server::app(state)).await.unwrap() });
    Api {
        base: format!("http://{addr}"),
        http: crate::support::http(),
        host,
        _ws: ws,
    }
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut r = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            headers,
        )
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let (s, v, _) = self.call("GET", path, Some(token), None).await;
        (s, v)
    }

    async fn post(&self, path: &str, token: &str, body: &str) -> (u16, Value) {
        let (s, v, _) = self.call("POST", path, Some(token), Some(body)).await;
        (s, v)
    }

    async fn metrics(&self) -> String {
        let r = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    }

    async fn run_etl(&self) -> i64 {
        let (s, v) = self.post("/v1/pipelines/etl/runs", OPERATOR, "{}").await;
        assert_eq!(s, 200, "{v}");
        let id = v["data"]["id"].as_i64().unwrap();
        let host = self.host.clone();
        until("the run to finish", || {
            let host = host.clone();
            async move {
                host.run(opsdeck::model::RunId(id))
                    .await
                    .is_ok_and(|r| r.status.is_finished())
            }
        })
        .await;
        id
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_envelope_and_every_error_code() {
    let api = start(1_000).await;
    let id = api.run_etl().await;
    let (s, v) = api.get(&format!("/v1/runs/{id}"), VIEWER).await;
    assert_eq!(s, 200);
    assert!(
        v["error"].is_null() && v["data"]["pipeline"] == "etl",
        "{v}"
    );
    let (s, v) = api.get("/v1/overview", VIEWER).await;
    assert_eq!(s, 200);
    assert!(
        !v["data"]["workspace"].as_str().unwrap().contains('/'),
        "no server paths: {v}"
    );

    let cases: Vec<(&str, &str, Option<&str>, u16, &str)> = vec![
        ("GET", "/v1/runs/999", None, 404, "not_found"),
        ("GET", "/v1/runs/abc", None, 404, "not_found"),
        ("GET", "/v1/nothing-here", None, 404, "not_found"),
        ("GET", "/v1/runs?limit=0", None, 400, "validation"),
        ("GET", "/v1/runs?status=sideways", None, 400, "validation"),
        (
            "POST",
            "/v1/runs/1/cancel",
            Some("{not json"),
            400,
            "validation",
        ),
        (
            "POST",
            "/v1/runs/1/cancel",
            Some(r#"{"reason": 5}"#),
            400,
            "validation",
        ),
        (
            "POST",
            "/v1/runs/1/cancel",
            Some(r#"{"reasn": "typo"}"#),
            400,
            "validation",
        ),
        (
            "POST",
            &*Box::leak(format!("/v1/runs/{id}/cancel").into_boxed_str()),
            Some(r#"{"reason": "done with it"}"#),
            409,
            "conflict",
        ),
        (
            "POST",
            &*Box::leak(format!("/v1/runs/{id}/cancel").into_boxed_str()),
            Some("{}"),
            400,
            "validation",
        ),
        (
            "POST",
            "/v1/canaries/edge/actions",
            Some(r#"{"action": "explode", "reason": "x"}"#),
            400,
            "validation",
        ),
        (
            "POST",
            "/v1/canaries/nope/actions",
            Some(r#"{"action": "pause", "reason": "x"}"#),
            404,
            "not_found",
        ),
        (
            "POST",
            "/v1/pipelines/etl/runs",
            Some("[]"),
            400,
            "validation",
        ),
        (
            "POST",
            "/v1/pipelines/nope/runs",
            Some("{}"),
            404,
            "not_found",
        ),
        (
            "POST",
            "/v1/canaries/edge/actions",
            Some(r#"{"action": "set_weight", "weight": 150, "reason": "x"}"#),
            400,
            "validation",
        ),
        ("DELETE", "/v1/pipelines", None, 404, "not_found"),
        ("POST", "/healthz", None, 404, "not_found"),
    ];
    for (method, path, body, status, want) in cases {
        let (s, v, _) = api.call(method, path, Some(OPERATOR), body).await;
        assert_eq!(
            (s, code(&v)),
            (status, want),
            "{method} {path} {body:?}: {v}"
        );
        assert!(v["data"].is_null() && !v["error"]["message"].as_str().unwrap().is_empty());
    }
    let (_, v, _) = api
        .call(
            "POST",
            "/v1/runs/1/cancel",
            Some(OPERATOR),
            Some(r#"{"reasn": "typo"}"#),
        )
        .await;
    assert_eq!(
        v["error"]["details"]["field"], "reasn",
        "the unknown field is named: {v}"
    );
    for (path, body, field) in [
        ("/v1/runs/1/cancel", r#"{"reason": 5}"#, "reason"),
        ("/v1/pipelines/etl/runs", r#"{"params": [1]}"#, "params"),
    ] {
        let (_, v, _) = api.call("POST", path, Some(OPERATOR), Some(body)).await;
        assert_eq!(
            v["error"]["details"]["field"], field,
            "a wrong type names its field: {v}"
        );
    }
    let big = format!(r#"{{"reason": "{}"}}"#, "x".repeat(10_000));
    let (s, v, _) = api
        .call("POST", "/v1/runs/1/cancel", Some(OPERATOR), Some(&big))
        .await;
    assert_eq!((s, code(&v)), (413, "payload_too_large"), "{v}");
    api.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_roles_denials_and_the_rate_limit() {
    let api = start(3).await;
    let (s, v, _) = api.call("GET", "/v1/runs", None, None).await;
    assert_eq!((s, code(&v)), (401, "unauthenticated"));
    let (s, v, _) = api.call("GET", "/v1/runs", Some("guess"), None).await;
    assert_eq!((s, code(&v)), (401, "unauthenticated"));
    assert_eq!(api.get("/v1/runs", VIEWER).await.0, 200);
    let (_, o) = api.get("/v1/overview", VIEWER).await;
    assert_eq!(
        o["data"]["role"], "viewer",
        "dashboards learn to hide controls"
    );
    let (s, v, _) = api.call("GET", "/healthz", None, None).await;
    assert_eq!(
        (s, &v["data"]["status"]),
        (200, &json!("ok")),
        "healthz needs no token"
    );
    let (s, _, _) = api.call("GET", "/metrics", None, None).await;
    assert_eq!(s, 200, "metrics need no token");

    // A viewer reads but may not act; the refusal is audited.
    let (s, v) = api.post("/v1/pipelines/etl/runs", VIEWER, "{}").await;
    assert_eq!((s, code(&v)), (403, "forbidden"));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs operator"),
        "{v}"
    );
    let (s, v) = api
        .post(
            "/v1/canaries/edge/actions",
            VIEWER,
            r#"{"action": "rollback", "reason": "x"}"#,
        )
        .await;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");

    // The operator may, three times a minute here; the fourth is 429 with Retry-After.
    let act = |body: &'static str| {
        let api = &api;
        async move {
            api.post("/v1/canaries/edge/actions", OPERATOR, body)
                .await
                .0
        }
    };
    let (s, v) = api
        .post(
            "/v1/canaries/edge/actions",
            OPERATOR,
            r#"{"action": "set_weight", "weight": 20, "reason": "hold"}"#,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["weight_after"], 20.0);
    assert_eq!(act(r#"{"action": "resume", "reason": "go"}"#).await, 200);
    assert_eq!(act(r#"{"action": "pause", "reason": "stop"}"#).await, 200);
    let (s, v, headers) = api
        .call(
            "POST",
            "/v1/canaries/edge/actions",
            Some(OPERATOR),
            Some(r#"{"action": "resume", "reason": "again"}"#),
        )
        .await;
    assert_eq!((s, code(&v)), (429, "rate_limited"), "{v}");
    assert!(headers.get("retry-after").is_some());

    // Observations from an external router, and the weight it should use.
    let (s, v) = api.get("/v1/canaries/edge/weight", VIEWER).await;
    assert_eq!((s, v["data"]["weight"].as_f64()), (200, Some(20.0)));

    tokio::time::sleep(Duration::from_millis(300)).await;
    for bad in ["action=bogus", "since=yesterday", "limit=0", "actor="] {
        let (s, v) = api.get(&format!("/v1/audit?{bad}"), VIEWER).await;
        assert_eq!((s, code(&v)), (400, "validation"), "{bad}: {v}");
    }
    let (s, v) = api.get("/v1/audit?action=canary&since=1h", VIEWER).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["action"].as_str().unwrap().starts_with("canary.")),
        "{v}"
    );
    let (s, v) = api.get("/v1/audit?limit=50", VIEWER).await;
    assert_eq!(s, 200);
    let records = v["data"].as_array().unwrap();
    let has = |action: &str, outcome: &str| {
        records
            .iter()
            .any(|r| r["action"] == action && r["outcome"].as_str().unwrap().starts_with(outcome))
    };
    assert!(
        has("authenticate", "denied: unauthenticated"),
        "{records:?}"
    );
    assert!(has("run.start", "denied: forbidden"), "{records:?}");
    assert!(has("canary.set_weight", "ok"), "{records:?}");
    assert!(has("canary.resume", "denied: rate_limited"), "{records:?}");
    let sets: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "canary.set_weight" && r["outcome"] == "ok")
        .collect();
    assert_eq!(sets.len(), 1, "one audit line per action: {sets:?}");
    assert!(
        sets[0]["details"]["analysis"].is_object(),
        "with the analysis at that moment"
    );
    let set = records
        .iter()
        .find(|r| r["action"] == "canary.set_weight" && r["actor"] == "ci")
        .unwrap();
    assert_eq!(
        (set["role"].as_str(), set["reason"].as_str()),
        (Some("operator"), Some("hold"))
    );
    api.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_resume_without_gaps_and_metrics_move() {
    let api = start(1_000).await;
    let before = api.metrics().await;
    assert!(before.trim_end().ends_with("# EOF"), "{before}");
    api.run_etl().await;
    api.run_etl().await;
    let after = api.metrics().await;
    assert!(
        after.contains(r#"opsdeck_runs{pipeline="etl",status="succeeded"} 2"#),
        "{after}"
    );
    assert!(
        after.contains(
            r#"opsdeck_stage_attempts_total{pipeline="etl",stage="extract",status="succeeded"} 2"#
        ),
        "{after}"
    );
    assert!(
        after.contains(r#"opsdeck_stage_duration_seconds_count{pipeline="etl",stage="extract"} 2"#),
        "{after}"
    );
    for line in after
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit(' ').next().unwrap();
        assert!(
            value.parse::<f64>().is_ok(),
            "a sample line ends in a number: {line}"
        );
    }

    // Read the stream from the start, stop part-way, and resume from the last id seen.
    let read = |since: Option<&str>, n: usize| {
        let (http, base) = (api.http.clone(), api.base.clone());
        let since = since.map(str::to_string);
        async move {
            let r = match &since {
                Some(id) => http
                    .get(format!("{base}/v1/events"))
                    .header("last-event-id", id),
                None => http.get(format!("{base}/v1/events?since=0")),
            }
            .bearer_auth(VIEWER);
            let resp = r.send().await.unwrap();
            assert_eq!(resp.headers()["content-type"], "text/event-stream");
            let mut body = resp.bytes_stream();
            let mut text = String::new();
            let mut ids = Vec::new();
            while ids.len() < n {
                let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    let frame: String = text.drain(..end + 2).collect();
                    if let Some(id) = frame.lines().find_map(|l| l.strip_prefix("id: ")) {
                        ids.push(id.parse::<u64>().unwrap());
                    }
                }
            }
            ids.truncate(n);
            ids
        }
    };
    let total = api.host.overview().await.unwrap().last_seq as usize;
    assert!(total >= 6, "two runs make several events");
    let first = read(None, 3).await;
    assert_eq!(first, vec![1, 2, 3]);
    let rest = read(Some("3"), total - 3).await;
    let expected: Vec<u64> = (4..=total as u64).collect();
    assert_eq!(
        rest, expected,
        "resumed after id 3 with no gap and no duplicate"
    );
    let bad = api
        .http
        .get(format!("{}/v1/events", api.base))
        .bearer_auth(VIEWER)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    api.host.shutdown().await;
}

#[test]
fn serve_refuses_to_expose_an_unprotected_runtime_and_tokens_are_made_once() {
    let ws = TestWorkspace::new();
    let out = ws.run(&["serve", "--bind", "0.0.0.0:0"]);
    out.expect_code(2);
    assert!(out.stderr().contains("without tokens"), "{}", out.stderr());
    let made = ws.run(&["token", "new", "alice", "--role", "operator"]);
    made.expect_code(0);
    let text = made.stdout();
    let token = text.lines().next().unwrap();
    assert!(token.starts_with("opsdeck_") && token.len() > 40);
    let toml: String = text
        .lines()
        .skip_while(|l| !l.starts_with("[[server.tokens]]"))
        .collect::<Vec<_>>()
        .join("\n");
    ws.write("opsdeck.toml", &toml);
    let cfg = opsdeck::host::Workspace::open(&ws.path("")).unwrap().server;
    assert_eq!(
        opsdeck::server::auth::find(&cfg.tokens, token).map(|t| t.name.as_str()),
        Some("alice")
    );
    assert!(
        !std::fs::read_to_string(ws.path("opsdeck.toml"))
            .unwrap()
            .contains(token),
        "the token itself is never stored"
    );
    let bad = ws.run(&["token", "new", "bob", "--role", "root"]);
    bad.expect_code(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_control_route_refuses_a_viewer_and_audits_it() {
    let api = start(1_000).await;
    let id = api.run_etl().await;
    let routes = [
        ("/v1/pipelines/etl/runs".to_string(), "{}", "run.start"),
        (format!("/v1/runs/{id}/cancel"), "{}", "run.cancel"),
        (format!("/v1/runs/{id}/retry"), "{}", "run.retry"),
        (format!("/v1/runs/{id}/resume"), "{}", "run.resume"),
        ("/v1/dlq/1/requeue".to_string(), "{}", "dlq.requeue"),
        ("/v1/dlq/1/discard".to_string(), "{}", "dlq.discard"),
        (
            "/v1/canaries/edge/actions".to_string(),
            r#"{"action": "pause", "reason": "x"}"#,
            "canary.pause",
        ),
        (
            "/v1/canaries/edge/fault".to_string(),
            r#"{"error_rate": 0.1}"#,
            "canary.fault",
        ),
        (
            "/v1/canaries/edge/observations".to_string(),
            r#"{"observations": []}"#,
            "canary.observe",
        ),
    ];
    for (path, body, _) in &routes {
        let (s, v) = api.post(path, VIEWER, body).await;
        assert_eq!((s, code(&v)), (403, "forbidden"), "{path}: {v}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, v) = api.get("/v1/audit?limit=100", OPERATOR).await;
    let records = v["data"].as_array().unwrap();
    for (path, _, action) in &routes {
        assert!(
            records.iter().any(|r| r["action"] == *action
                && r["actor"] == "dash"
                && r["outcome"] == "denied: forbidden"),
            "{path} is audited as {action}: {records:?}"
        );
    }
    // The operator gets past the role check on each (the answer depends on the state).
    for (path, body, _) in &routes {
        let (s, v) = api.post(path, OPERATOR, body).await;
        assert_ne!(code(&v), "forbidden", "{path}: {s} {v}");
    }
    api.host.shutdown().await;
}
