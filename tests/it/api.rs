//! The HTTP API on a real loopback socket: the envelope and every error code, auth and roles
//! (denials audited), the rate limit, body limits, SSE resume, `/metrics`, canary routes.

use std::fmt::Write as _;
use std::time::Duration;

use futures::StreamExt;
use opsdeck::config::server::hex;
use opsdeck::host::{Host, HostOptions};
use opsdeck::server::AppState;
use opsdeck::server::auth::sha256;
use serde_json::{Value, json};

use crate::support::{TestWorkspace, until};

const VIEWER: &str = "viewer-token";
const OPERATOR: &str = "operator-token";
const ADMIN: &str = "admin-token";

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
[[server.tokens]]
name = "root"
role = "admin"
sha256 = "{}"

[canary.edge]
source = "ingest"
steps = [ {{weight = 10, pause = "1h"}}, {{weight = 100}} ]
"#,
        hex(&sha256(VIEWER)),
        hex(&sha256(OPERATOR)),
        hex(&sha256(ADMIN))
    )
}

async fn start(rate_limit: u32) -> Api {
    let ws = TestWorkspace::new();
    ws.write("opsdeck.toml", &config(rate_limit));
    ws.pipeline("etl", crate::support::ETL);
    serve_ws(ws).await.0
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
    for weight in ["50.5", "-1", "\"abc\"", "101"] {
        let body = format!(r#"{{"action": "set_weight", "weight": {weight}, "reason": "x"}}"#);
        let (s, v, _) = api
            .call(
                "POST",
                "/v1/canaries/edge/actions",
                Some(OPERATOR),
                Some(&body),
            )
            .await;
        assert_eq!(s, 400, "{weight}: {v}");
        assert_eq!(
            v["error"]["message"],
            format!("`weight` is {weight}; a weight is a whole percentage from 0 to 100"),
            "{v}"
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
            "canary.action",
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
        (
            "/v1/assets/rules".to_string(),
            r#"{"content": "limit = 5", "reason": "x"}"#,
            "asset.put",
        ),
        (
            "/v1/assets/rules/pin".to_string(),
            r#"{"version": 1, "reason": "x"}"#,
            "asset.pin",
        ),
        (
            "/v1/assets/rules/rollback".to_string(),
            r#"{"reason": "x"}"#,
            "asset.rollback",
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
    // The role comes first: a viewer learns nothing of ids, names or bodies it may not use.
    for (path, body) in [
        ("/v1/pipelines/nope/runs", "{}"),
        ("/v1/pipelines/etl/runs", "[]"),
        ("/v1/runs/nope/cancel", "{}"),
        ("/v1/runs/999999/retry", "{\"reason\": 7}"),
        ("/v1/dlq/x/requeue", "{}"),
        ("/v1/canaries/nope/actions", "{\"action\": \"explode\"}"),
        ("/v1/canaries/edge/actions", "not json"),
        ("/v1/canaries/edge/fault", "{\"error_rate\": 9}"),
        ("/v1/canaries/edge/observations", "{\"observations\": 1}"),
    ] {
        let (s, v) = api.post(path, VIEWER, body).await;
        assert_eq!((s, code(&v)), (403, "forbidden"), "{path} {body}: {v}");
    }
    // Dropping a dead letter, injecting a fault and putting or pinning an asset are the
    // admin's; the rest (rolling an asset back included) the operator's.
    for (path, body, action) in &routes {
        let (s, v) = api.post(path, OPERATOR, body).await;
        if ["dlq.discard", "canary.fault", "asset.put", "asset.pin"].contains(action) {
            assert_eq!((s, code(&v)), (403, "forbidden"), "{path}: {v}");
            let (s, v) = api.post(path, ADMIN, body).await;
            assert_ne!(code(&v), "forbidden", "{path}: {s} {v}");
        } else {
            assert_ne!(code(&v), "forbidden", "{path}: {s} {v}");
        }
    }
    // A viewer reads assets.
    let (s, v) = api.get("/v1/assets", VIEWER).await;
    assert_eq!(
        (s, v["data"][0]["name"].as_str()),
        (200, Some("rules")),
        "{v}"
    );
    let (s, v) = api.get("/v1/assets/rules?version=1", VIEWER).await;
    assert_eq!(
        (s, v["data"]["shown"]["content"].as_str()),
        (200, Some("limit = 5")),
        "{v}"
    );
    let (s, v) = api.get("/v1/assets/rules?version=x", VIEWER).await;
    assert_eq!((s, code(&v)), (400, "validation"), "{v}");
    api.host.shutdown().await;
}

/// A server whose log holds several pages of events, with a resume horizon of 600.
async fn long_log() -> (Api, u64) {
    let ws = TestWorkspace::new();
    ws.write(
        "opsdeck.toml",
        &format!(
            "[server]\nresume_horizon = 600\n[[server.tokens]]\nname = \"dash\"\nrole = \"viewer\"\nsha256 = \"{}\"\n",
            hex(&sha256(VIEWER))
        ),
    );
    let mut stages = String::new();
    for i in 0..60 {
        let _ = writeln!(
            stages,
            "[[stage]]\nid = \"s{i}\"\nkind = \"simulate\"\noutput = {{ n = {i} }}"
        );
    }
    ws.pipeline("wide", &format!("[pipeline]\nname = \"wide\"\n{stages}"));
    let (api, _) = serve_ws(ws).await;
    while api.host.overview().await.unwrap().last_seq < 700 {
        crate::support::run_to_end(&api.host, "wide").await;
    }
    let last = api.host.overview().await.unwrap().last_seq;
    (api, last)
}

/// An SSE response from `/v1/events` with `Last-Event-ID: since`, read frame by frame.
struct Frames {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    text: String,
}

impl Frames {
    async fn open(api: &Api, since: &str) -> Frames {
        let resp = api
            .http
            .get(format!("{}/v1/events", api.base))
            .bearer_auth(VIEWER)
            .header("last-event-id", since)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        Frames {
            body: Box::pin(resp.bytes_stream()),
            text: String::new(),
        }
    }

    /// The next `n` frames that carry an event: (event, id).
    async fn take(&mut self, n: usize) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        while out.len() < n {
            if let Some(end) = self.text.find("\n\n") {
                let frame: String = self.text.drain(..end + 2).collect();
                let id = frame.lines().find_map(|l| l.strip_prefix("id: "));
                let event = frame.lines().find_map(|l| l.strip_prefix("event: "));
                if let (Some(id), Some(event)) = (id, event) {
                    out.push((event.to_string(), id.parse().unwrap()));
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.body.next())
                .await
                .expect("the stream goes on")
                .unwrap()
                .unwrap();
            self.text.push_str(&String::from_utf8_lossy(&chunk));
        }
        out
    }
}

/// The first `n` SSE frames from `/v1/events` with `Last-Event-ID: since`: (event, id).
async fn frames(api: &Api, since: &str, n: usize) -> Vec<(String, u64)> {
    Frames::open(api, since).await.take(n).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_pages_through_the_log_and_far_back_gets_a_reset() {
    let (api, last) = long_log().await;
    // Within the horizon, over more than one page: every event once, in order.
    let from = last - 550;
    let got = frames(&api, &from.to_string(), 550).await;
    let ids: Vec<u64> = got.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids, (from + 1..=last).collect::<Vec<_>>());
    assert!(got.iter().all(|(e, _)| e != "reset"));

    // Further back than the horizon: a reset naming where the stream goes on, not the backlog;
    // then live events follow it.
    let mut stream = Frames::open(&api, "0").await;
    let reset = stream.take(1).await;
    assert_eq!(reset[0].0, "reset", "{reset:?}");
    assert!(reset[0].1 >= last, "{reset:?}");
    // A run started once the reset is out (one started before could end before the stream
    // starts, leaving nothing to follow it).
    let host = api.host.clone();
    let more = tokio::spawn(async move { crate::support::run_to_end(&host, "wide").await });
    let live = stream.take(2).await;
    assert_eq!(
        (live[0].1, live[1].1),
        (reset[0].1 + 1, reset[0].1 + 2),
        "live events follow the reset: {reset:?} {live:?}"
    );
    more.await.unwrap();
    drop(stream);

    // The same through the remote client: it reports the reset and goes on from there.
    let remote = opsdeck::client::Remote::new(&api.base, Some(VIEWER.into()));
    let mut stream = opsdeck::client::Backend::events(&remote, Some(0));
    let mut reset = None;
    while reset.is_none() {
        match tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .unwrap()
            .unwrap()
        {
            opsdeck::client::StreamItem::Reset { last_seq } => reset = Some(last_seq),
            opsdeck::client::StreamItem::Event(e) => panic!("no backlog expected, got {}", e.seq),
            opsdeck::client::StreamItem::Connected(_) => {}
        }
    }
    assert!(reset.unwrap() > last);
    api.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_point_past_the_end_of_the_log_is_refused() {
    let api = start(1_000).await;
    api.run_etl().await;
    let last = api.host.overview().await.unwrap().last_seq;
    for bad in [
        (last + 10_000).to_string(),
        i64::MAX.to_string(),
        u64::MAX.to_string(),
    ] {
        let r = api
            .http
            .get(format!("{}/v1/events", api.base))
            .bearer_auth(VIEWER)
            .header("last-event-id", &bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "Last-Event-ID {bad}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(code(&v), "validation");
        assert_eq!(v["error"]["details"]["field"], "Last-Event-ID");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("but the event log ends at"),
            "{v}"
        );
        for path in [
            format!("/v1/events?since={bad}"),
            format!("/v1/events/log?since={bad}"),
        ] {
            let (s, v, _) = api.call("GET", &path, Some(VIEWER), None).await;
            assert_eq!((s, code(&v)), (400, "validation"), "{path}: {v}");
            assert_eq!(v["error"]["details"]["field"], "since");
        }
    }
    // At the end exactly is fine: only what came after it (an audit record may commit just
    // after the run's last event).
    let (s, v) = api
        .get(&format!("/v1/events/log?since={last}"), VIEWER)
        .await;
    assert_eq!(s, 200, "{v}");
    let after = v["data"].as_array().unwrap();
    assert!(
        after.iter().all(|e| e["seq"].as_u64().unwrap() > last),
        "{v}"
    );
    // One run's events: the same as the whole log's for that run, and a run id that cannot be
    // one is named.
    let (_, all) = api.get("/v1/events/log?limit=10000", VIEWER).await;
    let run = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["run_id"].as_u64())
        .unwrap();
    let (s, v) = api
        .get(&format!("/v1/events/log?run={run}&limit=10000"), VIEWER)
        .await;
    assert_eq!(s, 200, "{v}");
    let expected: Vec<&Value> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["run_id"].as_u64() == Some(run))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(
        v["data"].as_array().unwrap().iter().collect::<Vec<_>>(),
        expected
    );
    // Kinds are chosen by the server, alone, with a run, and up to a number; a kind that does
    // not exist is named with the list.
    let of_kinds = |run: Option<u64>, until: u64| -> Vec<&Value> {
        all["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "run_finished" || e["kind"] == "stage_finished")
            .filter(|e| run.is_none() || e["run_id"].as_u64() == run)
            .filter(|e| e["seq"].as_u64().unwrap() <= until)
            .collect()
    };
    assert!(!of_kinds(None, u64::MAX).is_empty());
    let first = of_kinds(None, u64::MAX)[0]["seq"].as_u64().unwrap();
    for (query, expected) in [
        (
            "kind=run_finished,stage_finished".to_string(),
            Some(of_kinds(None, u64::MAX)),
        ),
        (
            format!("kind=stage_finished,run_finished&run={run}"),
            Some(of_kinds(Some(run), u64::MAX)),
        ),
        (
            format!("kind=stage_finished,run_finished&until={first}"),
            Some(of_kinds(None, first)),
        ),
        // `kind` given twice is refused, as any query the API does not take.
        ("kind=stage_finished&kind=run_finished".to_string(), None),
    ] {
        let (s, v, _) = api
            .call(
                "GET",
                &format!("/v1/events/log?limit=10000&{query}"),
                Some(VIEWER),
                None,
            )
            .await;
        let Some(expected) = expected else {
            assert_eq!(s, 400, "{query}: {v}");
            continue;
        };
        assert_eq!(s, 200, "{query}: {v}");
        assert!(!expected.is_empty(), "{query}");
        assert_eq!(
            v["data"].as_array().unwrap().iter().collect::<Vec<_>>(),
            expected,
            "{query}"
        );
    }
    let (s, v, _) = api
        .call(
            "GET",
            "/v1/events/log?kind=run_finished,bogus",
            Some(VIEWER),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (400, "validation"), "{v}");
    assert_eq!(v["error"]["details"]["field"], "kind");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`bogus` is not an event kind") && message.contains("run_finished"),
        "{v}"
    );
    // Past a run's last event the page is empty; a run that does not exist is named.
    let last = all["data"].as_array().unwrap().last().unwrap()["seq"]
        .as_u64()
        .unwrap();
    let (s, v) = api
        .get(&format!("/v1/events/log?run={run}&since={last}"), VIEWER)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"], json!([]));
    let (s, v, _) = api
        .call("GET", "/v1/events/log?run=999999", Some(VIEWER), None)
        .await;
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("999999"),
        "{v}"
    );
    for bad in ["0", "abc", "-3"] {
        let (s, v, _) = api
            .call(
                "GET",
                &format!("/v1/events/log?run={bad}"),
                Some(VIEWER),
                None,
            )
            .await;
        assert_eq!((s, code(&v)), (400, "validation"), "{v}");
        assert_eq!(v["error"]["details"]["field"], "run");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("`{bad}` is not a valid run id")),
            "{v}"
        );
    }
    api.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_only_this_machine_may_ask() {
    let ws = TestWorkspace::new();
    ws.pipeline("etl", crate::support::ETL);
    let (api, _) = serve_ws(ws).await;
    let (host, addr) = (
        api.host.clone(),
        api.base.trim_start_matches("http://").to_string(),
    );
    let http = crate::support::http();
    let post = |host_header: Option<&'static str>, origin: Option<&'static str>| {
        let (http, addr) = (http.clone(), addr.clone());
        async move {
            let mut r = http
                .post(format!("http://{addr}/v1/pipelines/etl/runs"))
                .header("content-type", "application/json")
                .body("{}");
            if let Some(h) = host_header {
                r = r.header("host", h);
            }
            if let Some(o) = origin {
                r = r.header("origin", o);
            }
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    // A page on another site, through DNS rebinding, or posting across origins: refused.
    for (h, o) in [
        (Some("attacker.example"), None),
        (
            Some("attacker.example:7070"),
            Some("http://attacker.example:7070"),
        ),
        (None, Some("http://attacker.example")),
        (None, Some("null")),
    ] {
        let (s, v) = post(h, o).await;
        assert_eq!((s, code(&v)), (403, "forbidden"), "{h:?} {o:?}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("[[server.tokens]]"),
            "{v}"
        );
    }
    assert_eq!(host.overview().await.unwrap().last_seq, 0, "nothing ran");
    // This machine, by name or address, from a local page or none: allowed.
    for (h, o) in [
        (None, None),
        (Some("localhost:7070"), None),
        (None, Some("http://localhost:3000")),
    ] {
        let (s, v) = post(h, o).await;
        assert_eq!(s, 200, "{h:?} {o:?}: {v}");
    }
    host.shutdown().await;
}

/// A server with the viewer and operator tokens and `settings` in its `[server]` table; the
/// state is returned too, for what a test drives directly (the minute's denial flush).
async fn serve_with(settings: &str) -> (Api, AppState) {
    let ws = TestWorkspace::new();
    ws.write(
        "opsdeck.toml",
        &format!(
            "[server]\n{settings}\n[[server.tokens]]\nname = \"dash\"\nrole = \"viewer\"\nsha256 = \"{}\"\n[[server.tokens]]\nname = \"ci\"\nrole = \"operator\"\nsha256 = \"{}\"\n",
            hex(&sha256(VIEWER)),
            hex(&sha256(OPERATOR))
        ),
    );
    ws.pipeline("etl", crate::support::ETL);
    serve_ws(ws).await
}

/// Hosts and serves `ws` as it is.
async fn serve_ws(ws: TestWorkspace) -> (Api, AppState) {
    let host = Host::start(ws.open(), HostOptions::long_lived("api test"))
        .await
        .unwrap();
    let cfg = opsdeck::host::Workspace::open(&ws.path("")).unwrap().server;
    let (addr, state) = crate::support::serve_api(&host, cfg).await;
    let api = Api {
        base: format!("http://{addr}"),
        http: crate::support::http(),
        host,
        _ws: ws,
    };
    (api, state)
}

async fn audit_rows(api: &Api) -> Vec<opsdeck::model::AuditRecord> {
    api.host
        .audit_log(opsdeck::model::AuditQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_floods_are_limited_and_folded_in_the_audit_log() {
    let (api, state) = serve_with("anon_rate_limit = 20").await;
    let long = format!("/v1/runs/{}", "x".repeat(30_000));
    let mut limited = 0;
    for i in 0..300 {
        let token = (i % 2 == 1).then_some("not-a-token");
        let (s, v, h) = api.call("GET", &long, token, None).await;
        match s {
            401 => assert_eq!(code(&v), "unauthenticated"),
            429 => {
                limited += 1;
                assert!(h.contains_key("retry-after"), "{h:?}");
                assert!(
                    v["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("without a valid token")
                );
            }
            other => panic!("{other}: {v}"),
        }
    }
    assert!(limited >= 250, "only {limited} of 300 were limited");
    // A valid token is not held back by what anonymous clients did from the same address.
    assert_eq!(api.get("/v1/runs", VIEWER).await.0, 200);
    let rows = until_rows(&api, 2).await;
    assert_eq!(
        rows.len(),
        2,
        "one record per actor for the minute so far: {rows:?}"
    );
    for r in &rows {
        assert!(r.target.len() <= 256, "{}", r.target.len());
        assert_eq!(r.details["peer"], "127.0.0.1");
    }
    // The minute ends: one more record per actor, with how many more denials it stands for.
    state.flush_denials().await;
    let rows = until_rows(&api, 4).await;
    let counted: u64 = rows
        .iter()
        .map(|r| r.details["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 300, "{rows:?}");
    api.host.shutdown().await;
}

/// The audit rows, once there are `n` (the denials are written without waiting).
async fn until_rows(api: &Api, n: usize) -> Vec<opsdeck::model::AuditRecord> {
    until("the audit rows", || async {
        audit_rows(api).await.len() >= n
    })
    .await;
    audit_rows(api).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_time_out_and_connections_and_streams_are_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (api, _state) = serve_with(
        "header_timeout = \"1s\"\nmax_connections = 3\nsse_per_token = 2\nsse_total = 3",
    )
    .await;
    let addr = api.base.trim_start_matches("http://").to_string();
    // Half a request, then silence: the server closes the connection rather than wait.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the slow client was never cut off");
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    // Event streams: two per token, three in all; each over the cap is a 429 with Retry-After.
    let open = |token: &'static str| {
        let (http, base) = (api.http.clone(), api.base.clone());
        async move {
            http.get(format!("{base}/v1/events"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let a = open(VIEWER).await;
    let b = open(VIEWER).await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let c = open(VIEWER).await;
    assert_eq!(c.status().as_u16(), 429);
    assert!(c.headers().contains_key("retry-after"));
    let c: Value = c.json().await.unwrap();
    assert!(
        c["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sse_per_token"),
        "{c}"
    );
    // The third stream, another token's. Its request can race the refused one's connection
    // back into the client's pool and open a fourth connection, which the connection cap
    // refuses: then it is asked again, and only that refusal is let through.
    let mut tries = 0;
    let d = loop {
        let d = open(OPERATOR).await;
        if d.status().as_u16() == 200 {
            break d;
        }
        let refusal: Value = d.json().await.unwrap();
        let why = refusal["error"]["message"].as_str().unwrap_or_default();
        assert!(why.contains("max_connections"), "{refusal}");
        tries += 1;
        assert!(tries < 200, "the third stream was never let in: {refusal}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let e = open(OPERATOR).await;
    assert_eq!(e.status().as_u16(), 429, "three streams in all");
    // Connections: the three streams hold three; a fourth connection is answered at once.
    let fresh = crate::support::http();
    let f = fresh
        .get(format!("{}/v1/runs", api.base))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap();
    assert_eq!(f.status().as_u16(), 429);
    assert!(f.headers().contains_key("retry-after"));
    let f: Value = f.json().await.unwrap();
    assert!(
        f["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_connections"),
        "{f}"
    );
    // A stream that ends frees its place.
    drop(d);
    until("the stream's place to be free", || async {
        open(OPERATOR).await.status().as_u16() == 200
    })
    .await;
    drop((a, b));
    api.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_queue_pages_and_one_entry_has_its_input() {
    let ws = TestWorkspace::new();
    ws.write("opsdeck.toml", &config(1_000));
    let mut spec =
        String::from("[pipeline]\nname = \"flaky\"\n[pipeline.retry]\nmax_attempts = 1\n");
    for i in 0..130 {
        let _ = writeln!(
            spec,
            "[[stage]]\nid = \"s{i}\"\nkind = \"simulate\"\nfail_rate = 1.0\ntarget = \"t{i}\""
        );
    }
    ws.pipeline("flaky", &spec);
    let (api, _) = serve_ws(ws).await;
    crate::support::run_to_end(&api.host, "flaky").await;
    let (s, v) = api.get("/v1/dlq", VIEWER).await;
    assert_eq!(s, 200, "{v}");
    let page = &v["data"];
    assert_eq!(page["total"], 130, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 100, "a page, not the whole queue");
    assert!(
        items.iter().all(|e| e["input"].is_null()),
        "lists leave inputs out"
    );
    let ids: Vec<i64> = items.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    let next = page["next"].as_i64().unwrap();
    let (_, v) = api.get(&format!("/v1/dlq?cursor={next}"), VIEWER).await;
    let rest = v["data"]["items"].as_array().unwrap();
    assert_eq!(rest.len(), 30);
    assert!(v["data"]["next"].is_null());
    assert!(rest.iter().all(|e| e["id"].as_i64().unwrap() < next));
    let (s, v) = api.get(&format!("/v1/dlq/{}", ids[0]), VIEWER).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["data"]["input"].is_object(),
        "one entry has its input: {v}"
    );
    for bad in ["/v1/dlq?limit=0", "/v1/dlq?limit=1001", "/v1/dlq?cursor=x"] {
        let (s, v) = api.get(bad, VIEWER).await;
        assert_eq!((s, code(&v)), (400, "validation"), "{bad}: {v}");
    }
    let (s, v) = api.get("/v1/dlq?limit=-1", VIEWER).await;
    assert_eq!((s, code(&v)), (400, "validation"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`limit` in the query string must be a whole number"),
        "{v}"
    );
    let (s, v) = api.get("/v1/dlq/999999", VIEWER).await;
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
    api.host.shutdown().await;
}

#[test]
fn operators_are_told_about_clear_text_and_shared_token_files() {
    let ws = TestWorkspace::new();
    ws.write("opsdeck.toml", &config(1_000));
    // Beyond loopback, with tokens: it serves, and says what travels in clear text.
    let port = crate::support::free_port();
    let child = ws
        .cmd()
        .args(["serve", "--bind", &format!("0.0.0.0:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let host_json = ws.path(".opsdeck/host.json");
    crate::support::eventually("serve to publish its address", || {
        std::fs::read_to_string(&host_json).is_ok_and(|t| t.contains(&port.to_string()))
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("clear text") && err.contains("TLS proxy"),
        "{err}"
    );

    // A token file others can read: used, with a warning; one only its owner reads: quietly.
    ws.write("token", OPERATOR);
    for (mode, warned) in [(0o644, true), (0o600, false)] {
        std::fs::set_permissions(
            ws.path("token"),
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .unwrap();
        let out = ws.run(&[
            "runs",
            "--remote",
            "http://127.0.0.1:9",
            "--token-file",
            ws.path("token").to_str().unwrap(),
        ]);
        let err = out.stderr();
        assert_eq!(
            err.contains("can be read by others") && err.contains("chmod 600"),
            warned,
            "mode {mode:o}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_limited_per_token_and_metrics_can_need_one() {
    let (api, _) =
        serve_with("read_rate_limit = 5\nanon_rate_limit = 3\nmetrics_need_token = true").await;
    // Five reads a minute for this token, then a 429 with Retry-After; another token is not
    // held back by it.
    for _ in 0..5 {
        assert_eq!(api.get("/v1/overview", VIEWER).await.0, 200);
    }
    let (s, v, h) = api.call("GET", "/v1/overview", Some(VIEWER), None).await;
    assert_eq!((s, code(&v)), (429, "rate_limited"), "{v}");
    assert!(h.contains_key("retry-after"));
    assert_eq!(api.get("/v1/overview", OPERATOR).await.0, 200);
    // /metrics needs a token here; /healthz does not, but anonymous callers are limited.
    let (s, v, _) = api.call("GET", "/metrics", None, None).await;
    assert_eq!((s, code(&v)), (401, "unauthenticated"), "{v}");
    let (s, text, _) = api.call("GET", "/metrics", Some(OPERATOR), None).await;
    assert_eq!(s, 200);
    assert!(text.as_str().is_some_and(|t| t.contains("# EOF")), "{text}");
    let mut answered = Vec::new();
    for _ in 0..6 {
        answered.push(api.call("GET", "/healthz", None, None).await.0);
    }
    assert!(
        answered.contains(&200) && answered.contains(&429),
        "{answered:?}"
    );
    api.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_compare_over_the_api() {
    let api = start(1_000).await;
    let (a, b) = (api.run_etl().await, api.run_etl().await);
    let (s, v) = api
        .get(&format!("/v1/compare?base={a}&candidate={b}"), VIEWER)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["verdict"], "same", "{v}");
    assert_eq!(v["data"]["stages"][0]["id"], "extract");
    assert_eq!(v["data"]["stages"][0]["output_equal"], true);
    let (s, v) = api.get(&format!("/v1/compare?base={a}"), VIEWER).await;
    assert_eq!((s, code(&v)), (400, "validation"), "{v}");
    let (s, v) = api
        .get(&format!("/v1/compare?base={a}&candidate=424242"), VIEWER)
        .await;
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
    api.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_sockets_stalled_bodies_and_repeated_refusals_hold_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (api, state) = serve_with("header_timeout = \"1s\"\nread_rate_limit = 3").await;
    let addr = api.base.trim_start_matches("http://").to_string();
    // A socket that never sends a byte is closed (it would hold a connection slot for ever).
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), idle.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "an idle socket was never closed");
    // A viewer's control request is refused before its body is read, however slowly it comes.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(
        format!(
            "POST /v1/dlq/1/discard HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {VIEWER}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), slow.read_exact(&mut head))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 403");
    // A reason that would drive a terminal is refused.
    let (s, v) = api
        .post(
            "/v1/pipelines/etl/runs",
            OPERATOR,
            r#"{"reason": "fix\u001b[2J"}"#,
        )
        .await;
    assert_eq!((s, code(&v)), (400, "validation"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("control character"),
        "{v}"
    );
    // Forty refusals of one token and a read limit run over: folded, not forty lines.
    for i in 0..40 {
        let (s, _) = api
            .post(&format!("/v1/dlq/{i}/discard"), VIEWER, "{}")
            .await;
        assert_eq!(s, 403);
    }
    for _ in 0..6 {
        let _ = api.get("/v1/overview", OPERATOR).await;
    }
    let rows = until_rows(&api, 2).await;
    let of = |rows: &[opsdeck::model::AuditRecord], action: &str| {
        rows.iter()
            .filter(|r| r.action == action)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(of(&rows, "dlq.discard").len(), 1, "{rows:?}");
    assert_eq!(of(&rows, "read").len(), 1, "{rows:?}");
    state.flush_denials().await;
    let rows = until_rows(&api, 4).await;
    let discards = of(&rows, "dlq.discard");
    let counted: u64 = discards
        .iter()
        .map(|r| r.details["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 41, "the slow one and forty: {discards:?}");
    assert!(
        discards.iter().any(|r| r.target.starts_with("several")),
        "{discards:?}"
    );
    api.host.shutdown().await;
}
