//! `[canary.NAME]` tables of `opsdeck.toml` (and `[canary_config]` of a drill scenario), checked
//! with locations like pipelines, with the seed runbook's values as defaults.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::de::DeTable;

use super::source::simulate::{self, Simulate};
use super::source::{self, Source};
use crate::diag::{Checker, suggest};

/// One rollout step: the canary's weight in basis points and how long to hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub weight_bp: u32,
    /// `None` on the last step, which ends the rollout.
    pub pause_s: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub interval_s: u64,
    /// The span of the recent figures shown beside each check.
    pub window_s: u64,
    pub min_requests: u64,
    /// The confidence at which a check fails (and proves the canary within the SLO).
    pub confidence: f64,
    /// Step weights (basis points) that may only be promoted to once every check proves the
    /// canary within the SLO, not just does not show it over: `require_proven = [50, 100]`.
    pub require_proven: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slo {
    /// Canary error rate at most this much above legacy (0.005 = half a percentage point).
    pub max_error_rate_delta: f64,
    /// Canary P95 at most this fraction above legacy's (0.10 = 10%).
    pub max_p95_increase: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rollback {
    pub error_rate_above: f64,
    pub p95_above_ms: f64,
    pub p95_for_s: u64,
    pub availability_below: f64,
    pub availability_for_s: u64,
}

/// Where the route key of a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKey {
    Header(String),
    Cookie(String),
    ClientIp,
}

impl RouteKey {
    pub fn describe(&self) -> String {
        match self {
            RouteKey::Header(h) => format!("header:{h}"),
            RouteKey::Cookie(c) => format!("cookie:{c}"),
            RouteKey::ClientIp => "client-ip".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CanaryConfig {
    pub name: String,
    pub source: Arc<dyn Source>,
    pub steps: Vec<Step>,
    pub analysis: Analysis,
    pub slo: Slo,
    pub rollback: Rollback,
    pub route: RouteKey,
    /// `latency = { exclude_errors = true }`: errors count as requests and errors but not in
    /// latency (an upstream that fails fast would otherwise flatter the canary's P95).
    pub exclude_errors_from_latency: bool,
    /// A hook that applies the weight to a router opsdeck does not own.
    pub traffic: Option<Arc<super::traffic::Traffic>>,
}

/// The keys of `[canary.NAME]` besides each source's own table.
const KEYS: &[&str] = &[
    "source", "steps", "analysis", "slo", "rollback", "route", "latency", "traffic",
];

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            interval_s: 10,
            window_s: 300,
            min_requests: 1_000,
            confidence: 0.99,
            require_proven: Vec::new(),
        }
    }
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            max_error_rate_delta: 0.005,
            max_p95_increase: 0.10,
        }
    }
}

impl Default for Rollback {
    fn default() -> Self {
        Rollback {
            error_rate_above: 0.05,
            p95_above_ms: 2_000.0,
            p95_for_s: 300,
            availability_below: 0.99,
            availability_for_s: 900,
        }
    }
}

/// The plan a canary follows when it names none. A decision takes a number of canary requests,
/// not minutes, so the first step's weight sets how soon a regression is found: at 200
/// requests a second, 12% is the smallest first step measured whose drills find a 50% slower
/// P95 within a minute and a 20% slower one within five (`canary::drill` measures it over many
/// seeds). Three steps of ten minutes after it (25%, 50%, 75%) keep 35 minutes of evidence
/// before all traffic moves, which is what keeps a canary 0.3 points over its error margin from
/// ever being promoted.
pub fn default_steps() -> Vec<Step> {
    [
        (12, Some(300)),
        (25, Some(600)),
        (50, Some(600)),
        (75, Some(600)),
        (100, None),
    ]
    .into_iter()
    .map(|(w, p)| Step {
        weight_bp: w * 100,
        pause_s: p,
    })
    .collect()
}

impl CanaryConfig {
    /// About how many analyses a rollout takes (its pauses over the interval, at least 60):
    /// what the change detector's threshold is set from.
    pub fn planned_looks(&self) -> u64 {
        let secs: u64 = self.steps.iter().filter_map(|s| s.pause_s).sum();
        (secs / self.analysis.interval_s.max(1)).max(60)
    }

    /// A simulated canary with every default, for tests and drills.
    pub fn simulated(name: &str, sim: Simulate) -> CanaryConfig {
        CanaryConfig {
            name: name.into(),
            source: Arc::new(sim),
            steps: default_steps(),
            analysis: Analysis::default(),
            slo: Slo::default(),
            rollback: Rollback::default(),
            route: RouteKey::Header("x-user-id".into()),
            exclude_errors_from_latency: false,
            traffic: None,
        }
    }
}

/// The canary named `name` among `configs`, or a sentence with the valid choices.
pub fn find(configs: &[Arc<CanaryConfig>], name: &str) -> Result<Arc<CanaryConfig>, String> {
    if let Some(c) = configs.iter().find(|c| c.name == name) {
        return Ok(c.clone());
    }
    let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
    if names.is_empty() {
        return Err(format!(
            "there is no canary `{name}`: this workspace defines none (add a [canary.NAME] table to opsdeck.toml)"
        ));
    }
    Err(unknown(name, &names))
}

/// The sentence for a canary name that is not among `names` (at least one): the closest name
/// if one is close, and every name.
pub fn unknown(name: &str, names: &[&str]) -> String {
    crate::diag::unknown_name("canary", "canaries", name, names)
}

/// Checks every `[canary.NAME]` table under `root` (the whole `opsdeck.toml`).
pub fn parse_all(c: &mut Checker<'_>, root: &DeTable<'_>) -> Vec<CanaryConfig> {
    let Some((t, _)) = c.table(root, "canary", "the file") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in t {
        let name = key.get_ref().to_string();
        let ctx = format!("[canary.{name}]");
        if !valid_name(&name) {
            c.error(
                &key.span(),
                format!("the canary name `{name}` may hold only letters, digits, `-` and `_`"),
            );
            continue;
        }
        match value.get_ref() {
            toml::de::DeValue::Table(table) => {
                if let Some(cfg) = parse_one(c, &name, table, &value.span(), &ctx, true) {
                    out.push(cfg);
                }
            }
            _ => c.error(&value.span(), format!("{ctx} must be a table")),
        }
    }
    out
}

/// Every `[canary.*]` table and `[server]`, with the addresses they listen on checked against
/// each other: two listeners on one address cannot both start, and finding out when `opsdeck
/// serve` starts (with a bare "address in use") is too late.
pub fn parse_with_server(
    c: &mut Checker<'_>,
    root: &DeTable<'_>,
) -> (Vec<CanaryConfig>, crate::config::server::ServerConfig) {
    let canaries = parse_all(c, root);
    let server = crate::config::server::parse(c, root);
    let mut taken: Vec<(std::net::SocketAddr, String)> = Vec::new();
    // Only a `bind` written down: without one, the API's address is whatever `--bind` says.
    let bind_given = crate::diag::get(root, "server").is_some_and(|v| match v.get_ref() {
        toml::de::DeValue::Table(t) => crate::diag::get(t, "bind").is_some(),
        _ => false,
    });
    if bind_given {
        taken.push((server.bind, "the API (`bind` in [server])".to_string()));
    }
    for cfg in &canaries {
        let Some(addr) = cfg.source.listens() else {
            continue;
        };
        let clash = |a: &std::net::SocketAddr| {
            a.port() == addr.port()
                && (a.ip() == addr.ip() || a.ip().is_unspecified() || addr.ip().is_unspecified())
        };
        if let Some((_, who)) = taken.iter().find(|(a, _)| clash(a)) {
            let span = listen_span(root, &cfg.name).unwrap_or(0..0);
            c.error(
                &span,
                format!(
                    "`listen` in `proxy` of [canary.{}] is {addr}, where {who} listens too; give each its own port",
                    cfg.name
                ),
            );
        } else {
            taken.push((addr, format!("[canary.{}]'s proxy", cfg.name)));
        }
    }
    (canaries, server)
}

/// Where `listen` of `[canary.NAME]`'s `proxy` is written.
fn listen_span(root: &DeTable<'_>, name: &str) -> Option<Range<usize>> {
    let mut v = crate::diag::get(root, "canary")?;
    for key in [name, "proxy", "listen"] {
        let toml::de::DeValue::Table(t) = v.get_ref() else {
            return None;
        };
        v = crate::diag::get(t, key)?;
    }
    Some(v.span())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
}

/// Checks one canary table. `needs_source` is false for drill scenarios, which always simulate.
pub fn parse_one(
    c: &mut Checker<'_>,
    name: &str,
    t: &DeTable<'_>,
    span: &Range<usize>,
    ctx: &str,
    needs_source: bool,
) -> Option<CanaryConfig> {
    let before = c.problem_count();
    let known: Vec<&str> = KEYS
        .iter()
        .copied()
        .chain(source::KINDS.iter().filter_map(|k| k.table))
        .collect();
    c.known_keys(t, &known, ctx);
    let kind = match c.str(t, "source", ctx) {
        Some((s, sspan)) => {
            let Some(kind) = source::kind(s) else {
                let names = source::names();
                let hint = suggest(s, &names)
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                c.error(
                    &sspan,
                    format!(
                        "`source` in {ctx} is `{s}`{hint}; valid sources: {}",
                        names.join(", ")
                    ),
                );
                return None;
            };
            kind
        }
        None if needs_source => {
            if crate::diag::get(t, "source").is_none() {
                c.error(
                    span,
                    format!(
                        "{ctx} is missing the required key `source`; valid sources: {}",
                        source::names().join(", ")
                    ),
                );
            }
            return None;
        }
        None => &simulate::KIND,
    };
    // Another source's table is a mistake, not settings kept for later: the canary would run
    // without what it says (a `proxy` table under `source = "simulate"` proxies nothing).
    for other in source::KINDS.iter().filter(|k| k.name != kind.name) {
        if let Some(v) = other.table.and_then(|name| crate::diag::get(t, name)) {
            c.error(
                &v.span(),
                format!(
                    "`{}` in {ctx} is the table of source = \"{}\", but this canary's source is `{}`; remove it or change `source`",
                    other.table.unwrap_or_default(),
                    other.name,
                    kind.name
                ),
            );
        }
    }
    let steps = steps(c, t, ctx);
    let analysis = analysis(c, t, ctx);
    let slo = slo(c, t, ctx);
    let rollback = rollback(c, t, ctx);
    let route = route(c, t, ctx);
    let mut exclude_errors_from_latency = false;
    if let Some((lt, _)) = c.table(t, "latency", ctx) {
        let lctx = format!("`latency` of {ctx}");
        c.known_keys(lt, &["exclude_errors"], &lctx);
        if let Some((b, _)) = c.bool(lt, "exclude_errors", &lctx) {
            exclude_errors_from_latency = b;
        }
    }
    let traffic = super::traffic::parse(c, t, ctx);
    let own = kind
        .table
        .and_then(|key| c.table(t, key, ctx))
        .map(|(table, _)| table);
    let source = (kind.parse)(c, own, span, ctx)?;
    if c.problem_count() > before {
        return None;
    }
    Some(CanaryConfig {
        name: name.into(),
        source,
        steps: steps?,
        analysis,
        slo,
        rollback,
        route: route?,
        exclude_errors_from_latency,
        traffic: traffic?.map(Arc::new),
    })
}

fn steps(c: &mut Checker<'_>, t: &DeTable<'_>, ctx: &str) -> Option<Vec<Step>> {
    let Some(v) = crate::diag::get(t, "steps") else {
        return Some(default_steps());
    };
    let toml::de::DeValue::Array(items) = v.get_ref() else {
        c.error(
            &v.span(),
            format!(
                "`steps` in {ctx} must be an array of tables like {{weight = 5, pause = \"5m\"}}"
            ),
        );
        return None;
    };
    if items.is_empty() {
        c.error(
            &v.span(),
            format!(
                "`steps` in {ctx} is empty; give at least one step, ending with {{weight = 100}}"
            ),
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    let last = items.len() - 1;
    for (i, item) in items.iter().enumerate() {
        let sctx = format!("step {} of {ctx}", i + 1);
        let toml::de::DeValue::Table(st) = item.get_ref() else {
            c.error(
                &item.span(),
                format!("{sctx} must be a table like {{weight = 5, pause = \"5m\"}}"),
            );
            ok = false;
            continue;
        };
        c.known_keys(st, &["weight", "pause"], &sctx);
        let Some((w, wspan)) = c.number(st, "weight", &sctx, 0.0, 100.0) else {
            if crate::diag::get(st, "weight").is_none() {
                c.missing(&item.span(), "weight", &sctx);
            }
            ok = false;
            continue;
        };
        let weight_bp = (w * 100.0).round() as u32;
        if weight_bp == 0 {
            // Nothing would reach the canary: no evidence, so the rollout could never move.
            c.error(
                &wspan,
                format!(
                    "{sctx} has weight {w}, which sends the canary nothing, so the rollout could never pass it; give a weight above 0 (a rollback is what sets 0)"
                ),
            );
            ok = false;
        } else if let Some(prev) = out.last().map(|s: &Step| s.weight_bp)
            && weight_bp <= prev
        {
            c.error(
                &wspan,
                format!("{sctx} has weight {w}, not above the step before; weights must rise"),
            );
            ok = false;
        }
        let pause = c
            .duration(st, "pause", &sctx, Duration::from_secs(1))
            .map(|(d, _)| d.as_secs());
        if i < last && pause.is_none() && crate::diag::get(st, "pause").is_none() {
            c.missing(&item.span(), "pause", &sctx);
            ok = false;
        }
        if i == last
            && weight_bp == 10_000
            && let Some(p) = crate::diag::get(st, "pause")
        {
            // Reaching the last step completes the rollout: a pause there would never be held.
            c.error(
                &p.span(),
                format!(
                    "{sctx} is the last step, where the rollout completes: it takes no `pause`"
                ),
            );
            ok = false;
        }
        out.push(Step {
            weight_bp,
            pause_s: if i == last { None } else { pause },
        });
    }
    if ok && out.last().is_some_and(|s| s.weight_bp != 10_000) {
        c.error(
            &v.span(),
            format!(
                "the last of `steps` in {ctx} must have weight 100, which completes the rollout"
            ),
        );
        ok = false;
    }
    ok.then_some(out)
}

fn analysis(c: &mut Checker<'_>, t: &DeTable<'_>, ctx: &str) -> Analysis {
    let mut a = Analysis::default();
    let Some((at, _)) = c.table(t, "analysis", ctx) else {
        return a;
    };
    let actx = format!("`analysis` of {ctx}");
    c.known_keys(
        at,
        &[
            "interval",
            "window",
            "min_requests",
            "confidence",
            "require_proven",
        ],
        &actx,
    );
    if let Some((d, _)) = c.duration(at, "interval", &actx, Duration::from_secs(1)) {
        a.interval_s = d.as_secs();
    }
    if let Some((d, _)) = c.duration(at, "window", &actx, Duration::from_secs(10)) {
        a.window_s = d.as_secs();
    }
    if let Some((n, _)) = c.int(at, "min_requests", &actx, 1, i64::MAX) {
        a.min_requests = n as u64;
    }
    if let Some((x, _)) = c.number(at, "confidence", &actx, 0.5, 0.999_999) {
        a.confidence = x;
    }
    if let Some(v) = crate::diag::get(at, "require_proven") {
        let weights: Option<Vec<u32>> = match v.get_ref() {
            toml::de::DeValue::Array(items) => items
                .iter()
                .map(|i| match i.get_ref() {
                    toml::de::DeValue::Integer(n) => n
                        .as_str()
                        .parse::<u32>()
                        .ok()
                        .filter(|w| (1..=100).contains(w))
                        .map(|w| w * 100),
                    _ => None,
                })
                .collect(),
            _ => None,
        };
        match weights {
            Some(w) => a.require_proven = w,
            None => c.error(
                &v.span(),
                format!(
                    "`require_proven` in {actx} must be a list of step weights from 1 to 100, like [50, 100]"
                ),
            ),
        }
    }
    a
}

fn slo(c: &mut Checker<'_>, t: &DeTable<'_>, ctx: &str) -> Slo {
    let mut s = Slo::default();
    let Some((st, _)) = c.table(t, "slo", ctx) else {
        return s;
    };
    let sctx = format!("`slo` of {ctx}");
    c.known_keys(st, &["max_error_rate_delta", "max_p95_increase"], &sctx);
    if let Some((x, _)) = c.number(st, "max_error_rate_delta", &sctx, 0.0, 1.0) {
        s.max_error_rate_delta = x;
    }
    if let Some((x, _)) = c.number(st, "max_p95_increase", &sctx, 0.0, 100.0) {
        s.max_p95_increase = x;
    }
    s
}

fn rollback(c: &mut Checker<'_>, t: &DeTable<'_>, ctx: &str) -> Rollback {
    let mut r = Rollback::default();
    let Some((rt, _)) = c.table(t, "rollback", ctx) else {
        return r;
    };
    let rctx = format!("`rollback` of {ctx}");
    c.known_keys(
        rt,
        &[
            "error_rate_above",
            "p95_above_ms",
            "p95_for",
            "availability_below",
            "availability_for",
        ],
        &rctx,
    );
    if let Some((x, _)) = c.number(rt, "error_rate_above", &rctx, 0.0, 1.0) {
        r.error_rate_above = x;
    }
    if let Some((x, _)) = c.number(rt, "p95_above_ms", &rctx, 1.0, 600_000.0) {
        r.p95_above_ms = x;
    }
    if let Some((d, _)) = c.duration(rt, "p95_for", &rctx, Duration::ZERO) {
        r.p95_for_s = d.as_secs();
    }
    if let Some((x, _)) = c.number(rt, "availability_below", &rctx, 0.0, 1.0) {
        r.availability_below = x;
    }
    if let Some((d, _)) = c.duration(rt, "availability_for", &rctx, Duration::ZERO) {
        r.availability_for_s = d.as_secs();
    }
    r
}

fn route(c: &mut Checker<'_>, t: &DeTable<'_>, ctx: &str) -> Option<RouteKey> {
    let Some((rt, _)) = c.table(t, "route", ctx) else {
        return Some(RouteKey::Header("x-user-id".into()));
    };
    let rctx = format!("`route` of {ctx}");
    c.known_keys(rt, &["key"], &rctx);
    let (key, span) = c.str(rt, "key", &rctx)?;
    let parsed = if key == "client-ip" {
        Some(RouteKey::ClientIp)
    } else if let Some(h) = key.strip_prefix("header:").filter(|h| !h.is_empty()) {
        Some(RouteKey::Header(h.to_ascii_lowercase()))
    } else {
        key.strip_prefix("cookie:")
            .filter(|k| !k.is_empty())
            .map(|k| RouteKey::Cookie(k.to_string()))
    };
    if parsed.is_none() {
        c.error(
            &span,
            format!("`key` in {rctx} is `{key}`; write header:NAME, cookie:NAME or client-ip"),
        );
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Vec<CanaryConfig>, Vec<String>> {
        crate::diag::check_text("opsdeck.toml", text, parse_all)
            .map_err(|d| d.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn the_design_example_parses_with_its_defaults() {
        let cfgs = check(
            r#"
[canary.checkout-api]
source = "simulate"
steps = [ {weight = 5, pause = "5m"}, {weight = 10, pause = "10m"}, {weight = 25, pause = "10m"},
          {weight = 50, pause = "10m"}, {weight = 100} ]
analysis = { interval = "10s", window = "5m", min_requests = 1000 }
slo = { max_error_rate_delta = 0.005, max_p95_increase = 0.10 }
rollback = { error_rate_above = 0.05, p95_above_ms = 2000, p95_for = "5m",
             availability_below = 0.99, availability_for = "15m" }
route = { key = "header:x-user-id" }
simulate = { rps = 50, legacy = { p50_ms = 60, p95_ms = 180, error_rate = 0.004 },
             canary = { p50_ms = 60, p95_ms = 180, error_rate = 0.004 } }
"#,
        )
        .unwrap();
        let c = &cfgs[0];
        let weights: Vec<u32> = c.steps.iter().map(|s| s.weight_bp / 100).collect();
        assert_eq!(weights, [5, 10, 25, 50, 100]);
        assert_eq!(c.analysis, Analysis::default());
        assert_eq!(c.slo, Slo::default());
        assert_eq!(c.rollback, Rollback::default());
        assert_eq!(c.route, RouteKey::Header("x-user-id".into()));
        let minimal = check("[canary.a]\nsource = \"ingest\"\n").unwrap();
        assert_eq!(minimal[0].steps, default_steps());
        assert_eq!(minimal[0].source.name(), "ingest");
    }

    #[test]
    fn traffic_hooks_are_checked() {
        let cfgs = check(
            "[canary.a]\nsource = \"ingest\"\ntraffic = { command = [\"./w\", \"{{weight}}\"], retries = 2 }\n",
        )
        .unwrap();
        let t = cfgs[0].traffic.as_ref().unwrap();
        assert_eq!(
            (t.via(), t.retries, t.timeout),
            ("command", 2, std::time::Duration::from_secs(10))
        );
        for (text, want) in [
            (
                "traffic = { }",
                "opsdeck.toml:3:11: `traffic` of [canary.a] needs `command = [...]` or `webhook = \"URL\"`",
            ),
            (
                "traffic = { command = [] }",
                "`command` in `traffic` of [canary.a] is empty",
            ),
            (
                "traffic = { webhook = \"ftp://x\" }",
                "write it like http://127.0.0.1:8080/weight",
            ),
            (
                "traffic = { webhook = \"http://x\", command = [\"a\"] }",
                "has both `command` and `webhook`; keep one",
            ),
            (
                "traffic = { command = [\"a\"], retries = -1 }",
                "`retries` in `traffic` of [canary.a] must be an integer from 0 to 100",
            ),
            ("traffic = { command = [\"a\"], tries = 1 }", "tries"),
        ] {
            let errs = check(&format!("[canary.a]\nsource = \"ingest\"\n{text}\n")).unwrap_err();
            assert!(errs.join("\n").contains(want), "{text}: {errs:?}");
        }
    }

    #[test]
    fn a_missing_source_lists_the_sources_and_another_sources_table_is_refused() {
        let errs = check("[canary.a]\nroute = { key = \"client-ip\" }\n").unwrap_err();
        assert!(
            errs[0].contains(
                "is missing the required key `source`; valid sources: simulate, proxy, ingest"
            ),
            "{errs:?}"
        );
        let errs =
            check("[canary.a]\nsource = \"simulate\"\nproxy = { listen = \"127.0.0.1:1\" }\n")
                .unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("opsdeck.toml:3:9: `proxy` in [canary.a] is the table of source = \"proxy\", but this canary's source is `simulate`"),
            "{errs:?}"
        );
    }

    #[test]
    fn two_listeners_on_one_address_are_refused_where_the_second_is_written() {
        let with_server = |text: &str| {
            crate::diag::check_text("opsdeck.toml", text, |c, root| parse_with_server(c, root).0)
                .map_err(|d| d.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        let proxy = |name: &str, listen: &str| {
            format!(
                "[canary.{name}]\nsource = \"proxy\"\nproxy = {{ listen = \"{listen}\", legacy = \"http://127.0.0.1:9001\", canary = \"http://127.0.0.1:9002\" }}\n"
            )
        };
        let errs = with_server(&format!(
            "[server]\nbind = \"127.0.0.1:7070\"\n{}{}{}",
            proxy("a", "127.0.0.1:7070"),
            proxy("b", "0.0.0.0:8080"),
            proxy("c", "127.0.0.1:8080"),
        ))
        .unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("opsdeck.toml:5:20: `listen` in `proxy` of [canary.a] is 127.0.0.1:7070, where the API (`bind` in [server]) listens too"),
            "{errs:?}"
        );
        assert!(
            errs[1].contains("[canary.c] is 127.0.0.1:8080, where [canary.b]'s proxy listens too"),
            "{errs:?}"
        );
        // Without a `bind` written down, the API's port is whatever `--bind` says.
        assert!(with_server(&proxy("a", "127.0.0.1:7070")).is_ok());
    }

    #[test]
    fn mistakes_are_reported_with_their_place_and_the_choices() {
        let errs = check(
            r#"[canary.a]
source = "mirror"
[canary.b]
source = "proxy"
proxy = { listen = "nowhere", legacy = "http://127.0.0.1:9001" }
steps = [ {weight = 10, pause = "5m"}, {weight = 5, pause = "1m"}, {weight = 100} ]
route = { key = "query:user" }
analysis = { confidence = 2, interval = "10x" }
"#,
        )
        .unwrap_err();
        let all = errs.join("\n");
        assert!(all.contains("opsdeck.toml:2:10: `source` in [canary.a] is `mirror`; valid sources: simulate, proxy, ingest"), "{all}");
        assert!(all.contains("opsdeck.toml:5:20: `listen`"), "{all}");
        assert!(all.contains("missing the required key `canary`"), "{all}");
        assert!(all.contains("weights must rise"), "{all}");
        let zero = check("[canary.z]\nsource = \"ingest\"\nsteps = [ {weight = 0, pause = \"1m\"}, {weight = 100} ]\n")
            .unwrap_err()
            .join("\n");
        assert!(
            zero.contains("opsdeck.toml:3:21: step 1 of [canary.z] has weight 0")
                && zero.contains("give a weight above 0"),
            "{zero}"
        );
        assert!(
            all.contains("header:NAME, cookie:NAME or client-ip"),
            "{all}"
        );
        assert!(
            all.contains("`confidence` in `analysis` of [canary.b] must be a number from 0.5"),
            "{all}"
        );
        assert!(all.contains("`10x`"), "{all}");
        let errs =
            check("[canary.c]\nsource = \"ingest\"\nsteps = [{weight = 5, pause = \"1m\"}]\n")
                .unwrap_err();
        assert!(errs[0].contains("must have weight 100"), "{errs:?}");
        let errs = check(
            "[canary.c]\nsource = \"ingest\"\nsteps = [{weight = 5, pause = \"1m\"}, {weight = 100, pause = \"1h\"}]\n",
        )
        .unwrap_err();
        assert!(
            errs[0].contains("step 2 of [canary.c] is the last step, where the rollout completes: it takes no `pause`"),
            "{errs:?}"
        );
    }
}
