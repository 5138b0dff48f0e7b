//! Pipeline specs: TOML text -> a validated [`Pipeline`], every problem reported with its
//! `file:line:col` before anything runs.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use toml::de::{DeTable, DeValue};

mod graph;
mod stages;

use super::breaker::BreakerConfig;
use super::retry::{Backoff, RetryPolicy};
use super::schedule::Schedule;
use crate::diag::{Checker, Diagnostic, SourceFile, get, suggest, to_json};

/// A validated pipeline: a DAG of stages plus run defaults. Stored as JSON with every run, so a
/// run resumes with the definition it started with even if the file changed since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    pub name: String,
    pub description: Option<String>,
    pub concurrency: u32,
    pub schedule: Option<Schedule>,
    /// Declared parameters and their defaults; `--param` may only set these.
    pub params: Map<String, Value>,
    pub stages: Vec<Stage>,
    /// How runs of this pipeline are compared (`[pipeline.compare]`).
    #[serde(default)]
    pub compare: crate::model::compare::CompareSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub id: String,
    pub description: Option<String>,
    pub needs: Vec<String>,
    pub timeout_ms: u64,
    pub retry: RetryPolicy,
    pub breaker: BreakerConfig,
    /// Assets the stage reads (`asset = "NAME"` or `assets = ["NAME@2", ...]`); each arrives
    /// in its input as `asset.NAME.{version,content}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assets: Vec<crate::model::asset::AssetRef>,
    #[serde(flatten)]
    pub kind: StageKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StageKind {
    Command(CommandStage),
    Http(HttpStage),
    Simulate(SimulateStage),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandStage {
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpStage {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulateStage {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub fail_rate: f64,
    pub seed: u64,
    pub output: Value,
    pub target: Option<String>,
}

pub const KINDS: &[&str] = &["command", "http", "simulate"];
const PIPELINE_KEYS: &[&str] = &[
    "name",
    "description",
    "concurrency",
    "schedule",
    "timeout_ms",
    "retry",
    "breaker",
    "params",
    "compare",
];
const COMMON_KEYS: &[&str] = &[
    "id",
    "kind",
    "description",
    "needs",
    "timeout_ms",
    "retry",
    "breaker",
    "asset",
    "assets",
];
const COMMAND_KEYS: &[&str] = &["command", "env", "workdir"];
const HTTP_KEYS: &[&str] = &["method", "url", "headers", "body"];
const SIMULATE_KEYS: &[&str] = &["latency", "fail_rate", "seed", "output", "target"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];
const DEFAULT_TIMEOUT_MS: i64 = 600_000;
const MAX_TIMEOUT_MS: i64 = 86_400_000;

impl StageKind {
    pub fn name(&self) -> &'static str {
        match self {
            StageKind::Command(_) => "command",
            StageKind::Http(_) => "http",
            StageKind::Simulate(_) => "simulate",
        }
    }
}

impl Stage {
    /// The circuit-breaker key this stage calls: `host:port`, the command line, or the
    /// simulated target. Stages that share a target share a breaker. A command's target is its
    /// whole command line, not its program: five failing `sh -c` scripts say nothing about
    /// another script `sh` runs, and must not stop it (or every pipeline's shell stages).
    pub fn breaker_target(&self) -> Option<String> {
        match &self.kind {
            StageKind::Command(c) => (!c.command.is_empty()).then(|| {
                let line = c.command.join(" ").replace(char::is_control, " ");
                // Long lines are cut for people and told apart by a hash of the whole.
                if line.chars().count() <= 80 {
                    format!("command:{line}")
                } else {
                    let head: String = line.chars().take(60).collect();
                    format!(
                        "command:{head}… #{:08x}",
                        crate::rng::stable_hash(c.command.join("\0").as_bytes()) & 0xffff_ffff
                    )
                }
            }),
            StageKind::Http(h) => reqwest::Url::parse(&h.url).ok().and_then(|u| {
                let host = u.host_str()?.to_string();
                let port = u.port_or_known_default()?;
                Some(format!("http:{host}:{port}"))
            }),
            StageKind::Simulate(s) => s.target.as_ref().map(|t| format!("simulate:{t}")),
        }
    }
}

impl Pipeline {
    pub fn stage(&self, id: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id)
    }

    pub fn stage_ids(&self) -> Vec<&str> {
        self.stages.iter().map(|s| s.id.as_str()).collect()
    }

    /// Applies `KEY=VALUE` pairs from the command line over the declared defaults, converting
    /// each value to the type of its default.
    pub fn params_from_text(
        &self,
        pairs: &[(String, String)],
    ) -> Result<Map<String, Value>, String> {
        params_from_text(&self.name, &self.params, pairs)
    }

    /// Applies a JSON object of params over the defaults; types must match the defaults.
    pub fn params_from_json(
        &self,
        given: &Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let mut out = self.params.clone();
        for (key, value) in given {
            let default = self.declared(key)?;
            let same = matches!(
                (default, value),
                (Value::Null, _)
                    | (Value::Bool(_), Value::Bool(_))
                    | (Value::Number(_), Value::Number(_))
                    | (Value::String(_), Value::String(_))
                    | (Value::Array(_), Value::Array(_))
                    | (Value::Object(_), Value::Object(_))
            );
            if !same {
                return Err(format!(
                    "param `{key}` must have the type of its default {default}, got {value}"
                ));
            }
            out.insert(key.clone(), value.clone());
        }
        Ok(out)
    }

    fn declared(&self, key: &str) -> Result<&Value, String> {
        declared(&self.name, &self.params, key)
    }
}

/// Reads and validates one pipeline file.
pub fn load_file(path: &Path) -> Result<Pipeline, Vec<Diagnostic>> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&name, &text),
        Err(e) => Err(vec![Diagnostic::whole_file(
            name,
            format!("cannot read the file: {e}"),
        )]),
    }
}

/// Validates pipeline TOML, reporting every problem found.
pub fn parse(file_name: &str, text: &str) -> Result<Pipeline, Vec<Diagnostic>> {
    let src = SourceFile::new(file_name, text);
    let doc = Checker::parse(&src)?;
    let mut c = Checker::new(&src);
    let root = doc.get_ref();
    c.known_keys(root, &["pipeline", "stage"], "the file");

    let pipeline = match c.table(root, "pipeline", "the file") {
        Some((t, span)) => Some(pipeline_table(&mut c, t, &span)),
        None => {
            if get(root, "pipeline").is_none() {
                c.error(
                    &(0..0),
                    "the file has no [pipeline] table; add one with at least `name = \"...\"`",
                );
            }
            None
        }
    };
    let defaults = pipeline
        .as_ref()
        .map(|p| p.defaults.clone())
        .unwrap_or_default();

    let mut heads: Vec<StageHead> = Vec::new();
    let mut stages: Vec<Option<Stage>> = Vec::new();
    match get(root, "stage") {
        None => c.error(
            &(0..0),
            "the pipeline has no stages; add at least one [[stage]] table",
        ),
        Some(v) => match v.get_ref() {
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item.get_ref() {
                        DeValue::Table(t) => {
                            let (head, stage) = stages::stage_table(
                                &mut c,
                                t,
                                &item.span(),
                                i,
                                &defaults,
                                pipeline.as_ref(),
                            );
                            heads.push(head);
                            stages.push(stage);
                        }
                        other => c.error(
                            &item.span(),
                            format!("each stage must be a table, found {}", other.type_str()),
                        ),
                    }
                }
            }
            _ => c.error(
                &v.span(),
                "`stage` must be an array of tables; write each stage as [[stage]]",
            ),
        },
    }
    graph::check_graph(&mut c, &heads);

    let problems_found = c.has_problems();
    let problems = c.into_problems();
    match pipeline {
        Some(p) if !problems_found => Ok(Pipeline {
            name: p.name,
            description: p.description,
            concurrency: p.concurrency,
            schedule: p.schedule,
            params: p.params,
            compare: p.compare,
            stages: stages.into_iter().flatten().collect(),
        }),
        _ => Err(problems),
    }
}

#[derive(Clone)]
struct Defaults {
    timeout_ms: u64,
    retry: RetryPolicy,
    breaker: BreakerConfig,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            timeout_ms: DEFAULT_TIMEOUT_MS as u64,
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

struct PipelineHead {
    name: String,
    description: Option<String>,
    concurrency: u32,
    schedule: Option<Schedule>,
    params: Map<String, Value>,
    compare: crate::model::compare::CompareSettings,
    defaults: Defaults,
}

/// What the graph checks need of every stage, even one whose kind-specific keys were wrong.
struct StageHead {
    id: String,
    id_span: Range<usize>,
    needs: Vec<String>,
    needs_spans: Vec<Range<usize>>,
}

fn check_name(c: &mut Checker<'_>, what: &str, name: &str, span: &Range<usize>) {
    if !crate::model::asset::valid_name(name) {
        c.error(span, crate::model::asset::name_rule(what, name));
    }
}

fn pipeline_table(c: &mut Checker<'_>, t: &DeTable<'_>, span: &Range<usize>) -> PipelineHead {
    const CTX: &str = "[pipeline]";
    c.known_keys(t, PIPELINE_KEYS, CTX);
    let name = match c.str(t, "name", CTX) {
        Some((n, s)) => {
            check_name(c, "pipeline name", n, &s);
            n.to_string()
        }
        None => {
            if get(t, "name").is_none() {
                c.missing(span, "name", CTX);
            }
            String::new()
        }
    };
    let description = c.str(t, "description", CTX).map(|(s, _)| s.to_string());
    let concurrency = c
        .int(t, "concurrency", CTX, 1, 1024)
        .map_or(4, |(n, _)| n as u32);
    let schedule =
        c.str(t, "schedule", CTX)
            .and_then(|(text, vspan)| match Schedule::parse(text) {
                Ok(s) => Some(s),
                Err((range, msg)) => {
                    // +1 skips the opening quote; exact for strings without escapes.
                    let start = vspan.start + 1 + range.start;
                    c.error(&(start..start), format!("`schedule`: {msg}"));
                    None
                }
            });
    let timeout_ms = c
        .int(t, "timeout_ms", CTX, 1, MAX_TIMEOUT_MS)
        .map_or(DEFAULT_TIMEOUT_MS, |(n, _)| n) as u64;
    let retry = c
        .table(t, "retry", CTX)
        .map_or_else(RetryPolicy::default, |(rt, _)| {
            retry_table(c, rt, "[pipeline.retry]", &RetryPolicy::default())
        });
    let breaker = c
        .table(t, "breaker", CTX)
        .map_or_else(BreakerConfig::default, |(bt, _)| {
            breaker_table(c, bt, "[pipeline.breaker]", &BreakerConfig::default())
        });
    let params = c
        .table(t, "params", CTX)
        .map(|(pt, _)| match to_json(&DeValue::Table(pt.clone())) {
            Value::Object(m) => m,
            _ => Map::new(),
        })
        .unwrap_or_default();
    let compare = c
        .table(t, "compare", CTX)
        .map(|(ct, _)| compare_table(c, ct))
        .unwrap_or_default();
    PipelineHead {
        name,
        description,
        concurrency,
        schedule,
        params,
        compare,
        defaults: Defaults {
            timeout_ms,
            retry,
            breaker,
        },
    }
}

/// `[pipeline.compare]`: `slower_pct`, `slower_ms`, `key = { stage = "field" }`, `tolerance`.
fn compare_table(c: &mut Checker<'_>, t: &DeTable<'_>) -> crate::model::compare::CompareSettings {
    let ctx = "[pipeline.compare]";
    c.known_keys(t, &["slower_pct", "slower_ms", "key", "tolerance"], ctx);
    let mut s = crate::model::compare::CompareSettings::default();
    if let Some((v, _)) = c.number(t, "slower_pct", ctx, 0.0, 100_000.0) {
        s.slower.pct = v;
    }
    if let Some((v, _)) = c.int(t, "slower_ms", ctx, 0, MAX_TIMEOUT_MS) {
        s.slower.ms = v;
    }
    if let Some((v, _)) = c.number(t, "tolerance", ctx, 0.0, f64::INFINITY) {
        s.tolerance = v;
    }
    if let Some((m, _)) = c.str_map(t, "key", ctx) {
        s.keys = m.into_iter().collect();
    }
    s
}

fn retry_table(c: &mut Checker<'_>, t: &DeTable<'_>, ctx: &str, base: &RetryPolicy) -> RetryPolicy {
    c.known_keys(t, &["max_attempts", "backoff"], ctx);
    let mut out = base.clone();
    if let Some((n, _)) = c.int(t, "max_attempts", ctx, 1, 100) {
        out.max_attempts = n as u32;
    }
    if let Some((bt, _)) = c.table(t, "backoff", ctx) {
        let bctx = format!("`backoff` of {ctx}");
        c.known_keys(bt, &["initial_ms", "multiplier", "max_ms", "jitter"], &bctx);
        let b: &mut Backoff = &mut out.backoff;
        if let Some((n, _)) = c.int(bt, "initial_ms", &bctx, 0, MAX_TIMEOUT_MS) {
            b.initial_ms = n as u64;
        }
        if let Some((m, _)) = c.number(bt, "multiplier", &bctx, 1.0, 100.0) {
            b.multiplier = m;
        }
        if let Some((n, _)) = c.int(bt, "max_ms", &bctx, 0, MAX_TIMEOUT_MS) {
            b.max_ms = n as u64;
        }
        if let Some((j, _)) = c.bool(bt, "jitter", &bctx) {
            b.jitter = j;
        }
        // Checked after merging with the inherited policy, where the two may come from
        // different tables.
        if b.max_ms < b.initial_ms {
            let span = get(bt, "max_ms")
                .or_else(|| get(bt, "initial_ms"))
                .map_or(0..0, toml::Spanned::span);
            c.error(
                &span,
                format!(
                    "`backoff` of {ctx} has `max_ms` {} below `initial_ms` {} (counting values inherited from [pipeline.retry]); `max_ms` must be at least `initial_ms`",
                    b.max_ms, b.initial_ms
                ),
            );
        }
    }
    out
}

fn breaker_table(
    c: &mut Checker<'_>,
    t: &DeTable<'_>,
    ctx: &str,
    base: &BreakerConfig,
) -> BreakerConfig {
    c.known_keys(t, &["failure_threshold", "cooldown_ms"], ctx);
    let mut out = base.clone();
    if let Some((n, _)) = c.int(t, "failure_threshold", ctx, 1, 1000) {
        out.failure_threshold = n as u32;
    }
    if let Some((n, _)) = c.int(t, "cooldown_ms", ctx, 0, MAX_TIMEOUT_MS) {
        out.cooldown_ms = n as u64;
    }
    out
}

/// The default of a declared param, or a sentence naming the declared ones.
fn declared<'p>(
    pipeline: &str,
    params: &'p Map<String, Value>,
    key: &str,
) -> Result<&'p Value, String> {
    params.get(key).ok_or_else(|| {
        if params.is_empty() {
            format!(
                "pipeline `{pipeline}` declares no params; declare them under [pipeline.params]"
            )
        } else {
            let names: Vec<&str> = params.keys().map(String::as_str).collect();
            let hint = suggest(key, &names)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            format!(
                "pipeline `{pipeline}` has no param `{key}`{hint}; declared params: {}",
                names.join(", ")
            )
        }
    })
}

/// `KEY=VALUE` pairs over the declared defaults, each value typed like its default. Shared by
/// local runs and runs started on a server (whose defaults come from its API).
pub fn params_from_text(
    pipeline: &str,
    defaults: &Map<String, Value>,
    pairs: &[(String, String)],
) -> Result<Map<String, Value>, String> {
    let mut out = defaults.clone();
    for (i, (key, text)) in pairs.iter().enumerate() {
        // The last of two would win without a word, as `--override` refuses too.
        if pairs[..i].iter().any(|(k, _)| k == key) {
            return Err(format!(
                "-p names param `{key}` twice; give each param once"
            ));
        }
        let default = declared(pipeline, defaults, key)?;
        let value = match default {
            Value::Bool(_) => text
                .parse::<bool>()
                .map(Value::Bool)
                .map_err(|_| "true or false"),
            Value::Number(n) if n.is_i64() || n.is_u64() => text
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| "an integer"),
            Value::Number(_) => text.parse::<f64>().map(Value::from).map_err(|_| "a number"),
            Value::String(_) | Value::Null => Ok(Value::String(text.clone())),
            Value::Array(_) | Value::Object(_) => serde_json::from_str(text).map_err(|_| "JSON"),
        }
        .map_err(|want| {
            format!("param `{key}` must be {want} (like its default {default}), got `{text}`")
        })?;
        out.insert(key.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        parse("p.toml", text)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const OK: &str = r#"
[pipeline]
name = "etl"
schedule = "every 30s"
[pipeline.retry]
max_attempts = 3
backoff = { initial_ms = 100, multiplier = 2.0, max_ms = 1_000, jitter = true }
[pipeline.params]
limit = 100

[[stage]]
id = "a"
kind = "simulate"
latency = { p50_ms = 10, p95_ms = 40 }

[[stage]]
id = "b"
kind = "command"
needs = ["a"]
command = ["sh", "-c", "cat"]
retry = { max_attempts = 5 }

[[stage]]
id = "c"
kind = "http"
needs = ["a"]
url = "http://127.0.0.1:9/x"
method = "post"
"#;

    #[test]
    fn parses_a_valid_pipeline_with_inherited_defaults() {
        let p = parse("p.toml", OK).unwrap();
        assert_eq!(p.name, "etl");
        assert_eq!(p.stage_ids(), vec!["a", "b", "c"]);
        let b = p.stage("b").unwrap();
        assert_eq!(b.retry.max_attempts, 5);
        assert_eq!(
            b.retry.backoff.max_ms, 1_000,
            "backoff inherited from the pipeline"
        );
        assert_eq!(p.stage("a").unwrap().retry.max_attempts, 3);
        assert!(matches!(&p.stage("c").unwrap().kind, StageKind::Http(h) if h.method == "POST"));
        assert_eq!(
            p.stage("c").unwrap().breaker_target().as_deref(),
            Some("http:127.0.0.1:9")
        );
        // Round-trips through the JSON snapshot stored with each run.
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Pipeline>(&json).unwrap(), p);
    }

    #[test]
    fn a_commands_breaker_is_its_whole_command_line() {
        let p = parse(
            "p.toml",
            &format!(
                "[pipeline]\nname = \"p\"\n[[stage]]\nid = \"a\"\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"exit 1\"]\n[[stage]]\nid = \"b\"\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"echo ok\"]\n[[stage]]\nid = \"c\"\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"{}\\necho done\"]\n",
                "x".repeat(100)
            ),
        )
        .unwrap();
        let key = |id: &str| p.stage(id).unwrap().breaker_target().unwrap();
        assert_eq!(key("a"), "command:sh -c exit 1");
        assert_eq!(
            key("b"),
            "command:sh -c echo ok",
            "another script, another breaker"
        );
        let long = key("c");
        assert!(
            long.starts_with("command:sh -c xxx")
                && long.contains("… #")
                && long.chars().count() < 90,
            "{long}"
        );
        assert!(!long.contains('\n'));
    }

    #[test]
    fn reports_every_problem_with_line_and_column() {
        let errs = errors(
            r#"[pipeline]
name = "x"
colour = "red"

[[stage]]
id = "a"
kind = "shell"

[[stage]]
id = "a"
kind = "simulate"
needs = ["ghost"]
"#,
        );
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(
            errs[0].starts_with("p.toml:3:1: unknown key `colour` in [pipeline]"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].starts_with("p.toml:7:8: unknown stage kind `shell`"),
            "{}",
            errs[1]
        );
        assert!(errs[1].ends_with("valid kinds: command, http, simulate"));
        assert!(
            errs[2].starts_with("p.toml:10:6: duplicate stage id `a` (first defined on line 6)"),
            "{}",
            errs[2]
        );
        assert!(
            errs[3].starts_with("p.toml:12:10: stage `a` needs `ghost`, which is not a stage"),
            "{}",
            errs[3]
        );
    }

    #[test]
    fn names_the_cycle() {
        let errs = errors(
            r#"[pipeline]
name = "x"
[[stage]]
id = "a"
kind = "simulate"
needs = ["c"]
[[stage]]
id = "b"
kind = "simulate"
needs = ["a"]
[[stage]]
id = "c"
kind = "simulate"
needs = ["b"]
"#,
        );
        assert_eq!(
            errs,
            vec![
                "p.toml:6:10: `needs` forms a cycle: a -> c -> b -> a (each stage needs the next)"
            ]
        );
    }

    #[test]
    fn syntax_errors_have_locations() {
        let errs = errors("[pipeline]\nname = \"x\nconcurrency = 2\n");
        assert!(errs[0].starts_with("p.toml:2:"), "{errs:?}");
        assert!(errs[0].contains("TOML syntax error"), "{errs:?}");
    }

    #[test]
    fn typed_params_from_the_command_line() {
        let p = parse("p.toml", OK).unwrap();
        let m = p.params_from_text(&[("limit".into(), "7".into())]).unwrap();
        assert_eq!(m["limit"], Value::from(7));
        let e = p
            .params_from_text(&[("limit".into(), "many".into())])
            .unwrap_err();
        assert_eq!(
            e,
            "param `limit` must be an integer (like its default 100), got `many`"
        );
        let e = p
            .params_from_text(&[("limt".into(), "1".into())])
            .unwrap_err();
        assert!(e.contains("did you mean `limit`"), "{e}");
        let e = p
            .params_from_text(&[("limit".into(), "1".into()), ("limit".into(), "2".into())])
            .unwrap_err();
        assert_eq!(e, "-p names param `limit` twice; give each param once");
    }
}
