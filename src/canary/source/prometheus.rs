//! The `prometheus` source: every `interval` the host asks Prometheus, for each version, how
//! many requests and errors there were over that interval and (optionally) how their latencies
//! fall into histogram buckets, through PromQL templates with `{{version}}` and `{{interval}}`,
//! as Flagger, Argo Rollouts and Kayenta do. The counts feed the same metrics and analysis as
//! every other source. Prometheus unreachable, or a query that returns nothing, is an
//! `upstream` condition the pane shows; it never passes silently: promotion waits, and after
//! `pause_after` the analysis pauses too.
//!
//! Routing is separate from metrics: the rollout's weight reaches the traffic through the
//! canary's `traffic` hook (see `canary::traffic`).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use toml::de::DeTable;

use super::{Env, Kind, Source};
use crate::canary::service::Shared;
use crate::diag::Checker;
use crate::model::Version;

#[derive(Debug, Clone, PartialEq)]
pub struct Prometheus {
    /// The server, like `http://127.0.0.1:9090`.
    pub url: String,
    /// How often it is asked, and the range `{{interval}}` stands for.
    pub interval: Duration,
    /// PromQL giving the number of requests of `{{version}}` over `{{interval}}`.
    pub requests: String,
    /// PromQL giving the number of failed requests.
    pub errors: String,
    /// PromQL giving the request count per latency bucket, `by (le)`, cumulative as Prometheus
    /// histograms are.
    pub latency_buckets: Option<String>,
    /// Milliseconds per unit of `le` (1000 for seconds, Prometheus' convention).
    pub le_ms: f64,
    /// The label value `{{version}}` becomes for each version.
    pub legacy_label: String,
    pub canary_label: String,
    /// How long Prometheus may be unusable before the analysis pauses.
    pub pause_after: Duration,
}

/// The largest answer read from Prometheus: a query meant to sum to one number (or one per
/// bucket) that returns more has matched far more series than it should.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// What one query cycle learned for one version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub requests: u64,
    pub errors: u64,
    /// (upper bound in ms, requests in that bucket), ascending; the `+Inf` bucket's requests
    /// are placed at twice the last finite bound.
    pub buckets: Vec<(f64, u64)>,
}

impl Prometheus {
    fn label(&self, v: Version) -> &str {
        match v {
            Version::Legacy => &self.legacy_label,
            Version::Canary => &self.canary_label,
        }
    }

    /// `template` with its placeholders filled for `v`.
    pub fn query(&self, template: &str, v: Version) -> String {
        template.replace("{{version}}", self.label(v)).replace(
            "{{interval}}",
            &crate::model::duration::to_spec(self.interval),
        )
    }

    /// One version's counts over the last interval, or a sentence saying what went wrong.
    pub async fn counts(&self, http: &reqwest::Client, v: Version) -> Result<Counts, String> {
        let requests = scalar(self, http, &self.query(&self.requests, v), "requests", v).await?;
        let errors = scalar(self, http, &self.query(&self.errors, v), "errors", v).await?;
        let buckets = match &self.latency_buckets {
            Some(t) => {
                let rows = vector(self, http, &self.query(t, v), "latency_buckets", v).await?;
                buckets(&rows, self.le_ms)
            }
            None => Vec::new(),
        };
        Ok(Counts {
            requests: requests.max(0.0).round() as u64,
            errors: errors.max(0.0).round() as u64,
            buckets,
        })
    }
}

/// The rows of an instant query: (labels, value).
async fn vector(
    p: &Prometheus,
    http: &reqwest::Client,
    query: &str,
    what: &str,
    v: Version,
) -> Result<Vec<(Value, f64)>, String> {
    let url =
        reqwest::Url::parse_with_params(&format!("{}/api/v1/query", p.url), [("query", query)])
            .map_err(|e| format!("prometheus url {}: {e}", p.url))?;
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("prometheus at {} did not answer: {e}", p.url))?;
    let status = resp.status();
    let bytes = crate::net::read_capped(resp, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| format!("prometheus at {}: {e}", p.url))?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "prometheus at {} answered something that is not JSON: {e}",
            p.url
        )
    })?;
    if !status.is_success() || body["status"] != "success" {
        let why = body["error"].as_str().unwrap_or("no reason given");
        return Err(format!(
            "prometheus refused the {what} query for {v}: {why}"
        ));
    }
    let rows: Vec<(Value, f64)> = body["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    let value = r["value"][1].as_str()?.parse::<f64>().ok()?;
                    value.is_finite().then(|| (r["metric"].clone(), value))
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        return Err(format!(
            "the {what} query for {v} returned nothing (no such series yet, or the interval is shorter than two scrapes)"
        ));
    }
    Ok(rows)
}

/// The single number an instant query gives (summed if it gives several).
async fn scalar(
    p: &Prometheus,
    http: &reqwest::Client,
    query: &str,
    what: &str,
    v: Version,
) -> Result<f64, String> {
    Ok(vector(p, http, query, what, v)
        .await?
        .iter()
        .map(|(_, x)| x)
        .sum())
}

/// Cumulative `le` buckets as per-bucket counts at their upper bounds, in ms.
pub fn buckets(rows: &[(Value, f64)], le_ms: f64) -> Vec<(f64, u64)> {
    let mut cumulative: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|(m, c)| {
            let le = m["le"].as_str()?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse::<f64>().ok()?
            };
            Some((bound, *c))
        })
        .collect();
    cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = Vec::new();
    let (mut below, mut last_finite) = (0.0_f64, 0.0_f64);
    for (bound, count) in cumulative {
        let n = (count - below).max(0.0).round() as u64;
        below = below.max(count);
        let at = if bound.is_finite() {
            last_finite = bound * le_ms;
            last_finite
        } else {
            (last_finite * 2.0).max(1.0)
        };
        if n > 0 {
            out.push((at, n));
        }
    }
    out
}

impl Source for Prometheus {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    /// Asks Prometheus every interval, on the host's task tracker, and records what it says
    /// (or that it could not say) in the canary. Nothing is asked under the canary's lock.
    fn start(&self, canary: &Shared, env: &Env) -> Result<(), String> {
        let p = self.clone();
        let canary = canary.clone();
        let clock = env.clock.clone();
        let shutdown = env.shutdown.clone();
        let http = crate::net::bare_builder()
            .timeout(self.interval.min(Duration::from_secs(30)))
            .build()
            .map_err(|e| format!("canary {}: cannot make an HTTP client: {e}", canary.name()))?;
        env.tasks.spawn(async move {
            let mut tick = tokio::time::interval(p.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let legacy = p.counts(&http, Version::Legacy).await;
                let canary_counts = p.counts(&http, Version::Canary).await;
                let now = clock.now().timestamp();
                match (legacy, canary_counts) {
                    (Ok(l), Ok(c)) => {
                        canary.record_counts(now, Version::Legacy, &l);
                        canary.record_counts(now, Version::Canary, &c);
                        canary.set_upstream(now, None, p.pause_after);
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::warn!(canary = %canary.name(), problem = %e, "prometheus source");
                        canary.set_upstream(now, Some(e), p.pause_after);
                    }
                }
            }
        });
        Ok(())
    }
}

/// Checks a PromQL template: not empty, `{{version}}` in it, no other placeholder, quotes
/// closed and brackets balanced (the rest is Prometheus' to judge, at the first query).
pub fn check_template(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("is empty".into());
    }
    if !text.contains("{{version}}") {
        return Err("does not use {{version}}, so both versions would get the same numbers".into());
    }
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            return Err("has `{{` without `}}`".into());
        };
        let name = &after[..j];
        if name != "version" && name != "interval" {
            return Err(format!(
                "has the placeholder {{{{{name}}}}}; valid placeholders: {{{{version}}}}, {{{{interval}}}}"
            ));
        }
        rest = &after[j + 2..];
    }
    let bare = text
        .replace("{{version}}", "v")
        .replace("{{interval}}", "1m");
    let mut stack = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for ch in bare.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == q {
                quote = None;
            }
            continue;
        }
        match ch {
            '"' | '\'' | '`' => quote = Some(ch),
            '(' | '[' | '{' => stack.push(ch),
            ')' | ']' | '}' => {
                let open = match ch {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    return Err(format!("has an unmatched `{ch}`"));
                }
            }
            _ => {}
        }
    }
    if let Some(q) = quote {
        return Err(format!("has an unclosed {q}"));
    }
    if let Some(open) = stack.pop() {
        return Err(format!("has an unclosed `{open}`"));
    }
    Ok(())
}

fn parse(
    c: &mut Checker<'_>,
    table: Option<&DeTable<'_>>,
    span: &Range<usize>,
    ctx: &str,
) -> Option<Arc<dyn Source>> {
    let Some(t) = table else {
        c.missing(
            span,
            "prometheus",
            &format!("{ctx} with source = \"prometheus\""),
        );
        return None;
    };
    let pctx = format!("`prometheus` of {ctx}");
    c.known_keys(
        t,
        &[
            "url",
            "interval",
            "requests",
            "errors",
            "latency_buckets",
            "le_unit",
            "labels",
            "pause_after",
        ],
        &pctx,
    );
    let url = match c.str(t, "url", &pctx) {
        Some((s, sspan)) => {
            if reqwest::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                Some(s.trim_end_matches('/').to_string())
            } else {
                c.error(
                    &sspan,
                    format!("`url` in {pctx} is `{s}`; write it like http://127.0.0.1:9090"),
                );
                None
            }
        }
        None => {
            c.missing(span, "url", &pctx);
            None
        }
    };
    let interval = c
        .duration(t, "interval", &pctx, Duration::from_secs(1))
        .map_or(Duration::from_secs(10), |(d, _)| d);
    let pause_after = c
        .duration(t, "pause_after", &pctx, Duration::from_secs(1))
        .map_or(Duration::from_secs(60), |(d, _)| d);
    let template = |key: &str, c: &mut Checker<'_>, required: bool| match c.str(t, key, &pctx) {
        Some((s, sspan)) => match check_template(s) {
            Ok(()) => Some(s.to_string()),
            Err(why) => {
                c.error(&sspan, format!("the `{key}` query in {pctx} {why}"));
                None
            }
        },
        None => {
            if required {
                c.missing(span, key, &pctx);
            }
            None
        }
    };
    let requests = template("requests", c, true);
    let errors = template("errors", c, true);
    let latency_buckets = template("latency_buckets", c, false);
    let le_ms = match c.str(t, "le_unit", &pctx) {
        None | Some(("s", _)) => 1_000.0,
        Some(("ms", _)) => 1.0,
        Some(("us", _)) => 0.001,
        Some((other, sspan)) => {
            c.error(
                &sspan,
                format!("`le_unit` in {pctx} is `{other}`; valid units: s, ms, us"),
            );
            1_000.0
        }
    };
    let (mut legacy_label, mut canary_label) = ("legacy".to_string(), "canary".to_string());
    if let Some((lt, _)) = c.table(t, "labels", &pctx) {
        let lctx = format!("`labels` of {pctx}");
        c.known_keys(lt, &["legacy", "canary"], &lctx);
        if let Some((s, _)) = c.str(lt, "legacy", &lctx) {
            legacy_label = s.to_string();
        }
        if let Some((s, _)) = c.str(lt, "canary", &lctx) {
            canary_label = s.to_string();
        }
    }
    Some(Arc::new(Prometheus {
        url: url?,
        interval,
        requests: requests?,
        errors: errors?,
        latency_buckets,
        le_ms,
        legacy_label,
        canary_label,
        pause_after,
    }))
}

pub const KIND: Kind = Kind {
    name: "prometheus",
    table: Some("prometheus"),
    parse,
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_are_checked_before_any_query() {
        let ok =
            r#"sum(increase(http_requests_total{app="x",version="{{version}}"}[{{interval}}]))"#;
        assert_eq!(check_template(ok), Ok(()));
        for (bad, why) in [
            ("", "is empty"),
            ("sum(rate(x[1m]))", "does not use {{version}}"),
            (
                "sum(x{v=\"{{version}}\"}[{{window}}])",
                "placeholder {{window}}",
            ),
            ("sum(x{v=\"{{version}}\"}[1m]", "unclosed `(`"),
            ("sum(x{v=\"{{version}}}[1m]))", "unclosed \""),
            ("x{v=\"{{version}}\"}[1m]])", "unmatched `]`"),
        ] {
            let e = check_template(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn cumulative_buckets_become_counts_at_their_bounds() {
        let rows = vec![
            (json!({"le": "0.1"}), 50.0),
            (json!({"le": "+Inf"}), 100.0),
            (json!({"le": "0.5"}), 90.0),
            (json!({"le": "0.25"}), 80.0),
        ];
        assert_eq!(
            buckets(&rows, 1_000.0),
            vec![(100.0, 50), (250.0, 30), (500.0, 10), (1_000.0, 10)]
        );
    }
}
