//! The `[[stage]]` tables: what every stage has, and each kind's own keys.

use std::collections::BTreeMap;
use std::ops::Range;

use serde_json::{Map, Value};

use toml::de::{DeTable, DeValue};

use super::{
    COMMAND_KEYS, COMMON_KEYS, CommandStage, Defaults, HTTP_KEYS, HttpStage, KINDS, MAX_TIMEOUT_MS,
    METHODS, PipelineHead, SIMULATE_KEYS, SimulateStage, Stage, StageHead, StageKind,
    breaker_table, check_name, retry_table,
};
use crate::diag::{Checker, get, suggest, to_json};
use crate::model::asset::AssetRef;
use crate::rng::seed_of;

/// The stage's id (checked) and the name messages call it by.
fn stage_id(
    c: &mut Checker<'_>,
    t: &DeTable<'_>,
    span: &Range<usize>,
    index: usize,
) -> (String, Range<usize>, String) {
    let numbered = format!("stage #{}", index + 1);
    let (id, id_span) = match c.str(t, "id", &numbered) {
        Some((id, s)) => {
            check_name(c, "stage id", id, &s);
            (id.to_string(), s)
        }
        None => {
            if get(t, "id").is_none() {
                c.missing(span, "id", &numbered);
            }
            (String::new(), span.clone())
        }
    };
    let ctx = if id.is_empty() {
        numbered
    } else {
        format!("stage `{id}`")
    };
    (id, id_span, ctx)
}

/// The stage's kind, if it names a known one.
fn stage_kind(
    c: &mut Checker<'_>,
    t: &DeTable<'_>,
    span: &Range<usize>,
    ctx: &str,
) -> Option<String> {
    match c.str(t, "kind", ctx) {
        Some((k, _)) if KINDS.contains(&k) => Some(k.to_string()),
        Some((k, s)) => {
            let hint = suggest(k, KINDS)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            c.error(
                &s,
                format!(
                    "unknown stage kind `{k}` in {ctx}{hint}; valid kinds: {}",
                    KINDS.join(", ")
                ),
            );
            None
        }
        None => {
            if get(t, "kind").is_none() {
                c.missing(span, "kind", ctx);
            }
            None
        }
    }
}

/// Unknown keys: a key of another kind is a different mistake from a typo, so it says whose
/// key it is; without a known kind only keys no kind accepts are flagged.
fn check_stage_keys(c: &mut Checker<'_>, t: &DeTable<'_>, kind: Option<&str>, ctx: &str) {
    const BY_KIND: [(&str, &[&str]); 3] = [
        ("command", COMMAND_KEYS),
        ("http", HTTP_KEYS),
        ("simulate", SIMULATE_KEYS),
    ];
    let all_specific: Vec<&str> = BY_KIND
        .iter()
        .flat_map(|(_, k)| k.iter().copied())
        .collect();
    let Some(kind) = kind else {
        let all: Vec<&str> = COMMON_KEYS.iter().chain(&all_specific).copied().collect();
        c.known_keys(t, &all, ctx);
        return;
    };
    let specific = BY_KIND
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(&[][..], |(_, keys)| *keys);
    let known: Vec<&str> = COMMON_KEYS.iter().chain(specific).copied().collect();
    for (key, _) in t {
        let name = key.get_ref().as_ref();
        if known.contains(&name) {
            continue;
        }
        if let Some((other, _)) = BY_KIND.iter().find(|(_, keys)| keys.contains(&name)) {
            c.error(
                &key.span(),
                format!(
                    "`{name}` is a key of {other} stages, not of {kind} stages like {ctx}; valid keys: {}",
                    known.join(", ")
                ),
            );
        }
    }
    c.known_keys_ignoring(t, &known, &all_specific, &format!("{ctx} (kind {kind})"));
}

pub(super) fn stage_table(
    c: &mut Checker<'_>,
    t: &DeTable<'_>,
    span: &Range<usize>,
    index: usize,
    defaults: &Defaults,
    pipeline: Option<&PipelineHead>,
) -> (StageHead, Option<Stage>) {
    let (id, id_span, ctx) = stage_id(c, t, span, index);
    let kind_name = stage_kind(c, t, span, &ctx);
    check_stage_keys(c, t, kind_name.as_deref(), &ctx);
    let description = c.str(t, "description", &ctx).map(|(s, _)| s.to_string());
    let (needs, needs_spans): (Vec<String>, Vec<Range<usize>>) = c
        .str_list(t, "needs", &ctx)
        .map(|(v, _)| v.into_iter().unzip())
        .unwrap_or_default();
    let timeout_ms = c
        .int(t, "timeout_ms", &ctx, 1, MAX_TIMEOUT_MS)
        .map_or(defaults.timeout_ms, |(n, _)| n as u64);
    let retry = c.table(t, "retry", &ctx).map_or_else(
        || defaults.retry.clone(),
        |(rt, _)| retry_table(c, rt, &format!("`retry` of {ctx}"), &defaults.retry),
    );
    let breaker = c.table(t, "breaker", &ctx).map_or_else(
        || defaults.breaker.clone(),
        |(bt, _)| breaker_table(c, bt, &format!("`breaker` of {ctx}"), &defaults.breaker),
    );
    let assets = stage_assets(c, t, &ctx);
    let kind = match kind_name.as_deref() {
        Some("command") => command_stage(c, t, span, &ctx).map(StageKind::Command),
        Some("http") => http_stage(c, t, span, &ctx).map(StageKind::Http),
        Some("simulate") => {
            let pipeline_name = pipeline.map_or("", |p| p.name.as_str());
            Some(StageKind::Simulate(simulate_stage(
                c,
                t,
                &ctx,
                pipeline_name,
                &id,
            )))
        }
        _ => None,
    };
    let head = StageHead {
        id: id.clone(),
        id_span,
        needs: needs.clone(),
        needs_spans,
    };
    let stage = kind.map(|kind| Stage {
        id,
        description,
        needs,
        timeout_ms,
        retry,
        breaker,
        assets,
        kind,
    });
    (head, stage)
}

/// `asset = "NAME"` or `assets = ["NAME", "OTHER@2"]`: each a valid name, at most one
/// reference to an asset per stage.
fn stage_assets(c: &mut Checker<'_>, t: &DeTable<'_>, ctx: &str) -> Vec<AssetRef> {
    let mut given: Vec<(String, Range<usize>)> = Vec::new();
    if let Some((one, s)) = c.str(t, "asset", ctx) {
        given.push((one.to_string(), s));
    }
    if let Some((list, s)) = c.str_list(t, "assets", ctx) {
        if !given.is_empty() {
            c.error(
                &s,
                format!("{ctx} has both `asset` and `assets`; name every asset in `assets`"),
            );
        }
        given.extend(list);
    }
    let mut out: Vec<AssetRef> = Vec::new();
    for (text, span) in given {
        match AssetRef::parse(&text) {
            Ok(r) if out.iter().any(|o| o.name == r.name) => c.error(
                &span,
                format!("{ctx} names asset `{}` twice; name each asset once", r.name),
            ),
            Ok(r) => out.push(r),
            Err(e) => c.error(&span, format!("{e} (in {ctx})")),
        }
    }
    out
}

fn command_stage(
    c: &mut Checker<'_>,
    t: &DeTable<'_>,
    span: &Range<usize>,
    ctx: &str,
) -> Option<CommandStage> {
    let command = match c.str_list(t, "command", ctx) {
        Some((argv, s)) => {
            if argv.first().is_none_or(|(p, _)| p.trim().is_empty()) {
                c.error(
                    &s,
                    format!(
                        "`command` in {ctx} must name a program, like [\"python3\", \"job.py\"]"
                    ),
                );
                return None;
            }
            argv.into_iter().map(|(a, _)| a).collect()
        }
        None => {
            if get(t, "command").is_none() {
                c.missing(span, "command", ctx);
            }
            return None;
        }
    };
    let env = c
        .str_map(t, "env", ctx)
        .map(|(v, _)| v.into_iter().collect())
        .unwrap_or_default();
    let workdir = c.str(t, "workdir", ctx).map(|(s, _)| s.to_string());
    Some(CommandStage {
        command,
        env,
        workdir,
    })
}

fn http_stage(
    c: &mut Checker<'_>,
    t: &DeTable<'_>,
    span: &Range<usize>,
    ctx: &str,
) -> Option<HttpStage> {
    // Every field is checked even when an earlier one is wrong, so all problems are reported.
    let url = match c.str(t, "url", ctx) {
        Some((u, s)) => match reqwest::Url::parse(u) {
            Ok(parsed)
                if matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some() =>
            {
                Some(u.to_string())
            }
            Ok(parsed) => {
                c.error(
                    &s,
                    format!(
                        "`url` in {ctx} must be http or https, not `{}`",
                        parsed.scheme()
                    ),
                );
                None
            }
            Err(e) => {
                c.error(&s, format!("`url` in {ctx} is not a valid URL ({e})"));
                None
            }
        },
        None => {
            if get(t, "url").is_none() {
                c.missing(span, "url", ctx);
            }
            None
        }
    };
    let method = match c.str(t, "method", ctx) {
        Some((m, s)) => {
            let upper = m.to_ascii_uppercase();
            if METHODS.contains(&upper.as_str()) {
                Some(upper)
            } else {
                c.error(
                    &s,
                    format!(
                        "`method` in {ctx} is `{m}`; valid methods: {}",
                        METHODS.join(", ")
                    ),
                );
                None
            }
        }
        None => Some("GET".to_string()),
    };
    let mut headers = Some(BTreeMap::new());
    if let Some((pairs, s)) = c.str_map(t, "headers", ctx) {
        for (k, v) in pairs {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(&v).is_err()
            {
                c.error(
                    &s,
                    format!("header `{k}` in {ctx} is not a valid HTTP header"),
                );
                headers = None;
            } else if let Some(h) = headers.as_mut() {
                h.insert(k, v);
            }
        }
    }
    let body = match get(t, "body") {
        None => None,
        Some(v)
            if matches!(
                v.get_ref(),
                DeValue::String(_) | DeValue::Table(_) | DeValue::Array(_)
            ) =>
        {
            Some(to_json(v.get_ref()))
        }
        Some(v) => {
            c.error(
                &v.span(),
                format!(
                    "`body` in {ctx} must be a string (sent as it is) or a table or array (sent as JSON), found {}",
                    v.get_ref().type_str()
                ),
            );
            return None;
        }
    };
    Some(HttpStage {
        method: method?,
        url: url?,
        headers: headers?,
        body,
    })
}

fn simulate_stage(
    c: &mut Checker<'_>,
    t: &DeTable<'_>,
    ctx: &str,
    pipeline: &str,
    id: &str,
) -> SimulateStage {
    let (mut p50_ms, mut p95_ms) = (0.0, 0.0);
    if let Some((lt, _)) = c.table(t, "latency", ctx) {
        let lctx = format!("`latency` of {ctx}");
        c.known_keys(lt, &["p50_ms", "p95_ms"], &lctx);
        if let Some((v, _)) = c.number(lt, "p50_ms", &lctx, 0.0, MAX_TIMEOUT_MS as f64) {
            p50_ms = v;
            p95_ms = v;
        }
        if let Some((v, s)) = c.number(lt, "p95_ms", &lctx, 0.0, MAX_TIMEOUT_MS as f64) {
            if v < p50_ms {
                c.error(
                    &s,
                    format!("`p95_ms` in {lctx} ({v}) must be at least `p50_ms` ({p50_ms})"),
                );
            }
            p95_ms = v;
        }
    }
    let fail_rate = c
        .number(t, "fail_rate", ctx, 0.0, 1.0)
        .map_or(0.0, |(v, _)| v);
    let seed = c.int(t, "seed", ctx, 0, i64::MAX).map_or_else(
        || seed_of(&[pipeline.as_bytes(), id.as_bytes()]),
        |(v, _)| v as u64,
    );
    let output =
        get(t, "output").map_or_else(|| Value::Object(Map::new()), |v| to_json(v.get_ref()));
    let target = c.str(t, "target", ctx).map(|(s, _)| s.to_string());
    SimulateStage {
        p50_ms,
        p95_ms,
        fail_rate,
        seed,
        output,
        target,
    }
}
