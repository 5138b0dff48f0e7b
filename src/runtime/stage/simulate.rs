//! `simulate` stages: seeded latency (log-normal from p50 and p95) and failures, so demos,
//! drills and benchmarks behave like real work without anything installed. The same seed, run,
//! stage and attempt always give the same latency and outcome.

use std::time::Duration;

use serde_json::Value;

use super::{ExecCtx, ExecResult, Failure, Outcome, Output};
use crate::model::asset::INPUT_KEY;
use crate::rng::{Rng, seed_of};
use crate::runtime::spec::SimulateStage;

/// z-score of the 95th percentile of a standard normal distribution.
const Z95: f64 = 1.644_853_626_951_472_2;

/// One latency sample in milliseconds.
pub fn sample_latency_ms(p50: f64, p95: f64, rng: &mut Rng) -> f64 {
    if p95 <= p50 {
        return p50;
    }
    if p50 <= 0.0 {
        return p95 * rng.next_f64();
    }
    let sigma = (p95.ln() - p50.ln()) / Z95;
    // Cap the tail so one unlucky draw cannot stall a demo for minutes.
    (p50.ln() + sigma * rng.normal()).exp().min(p95 * 5.0)
}

/// What the stage's assets change: an asset whose text is a JSON object may set `latency`
/// (`{p50_ms, p95_ms}`) and add or replace keys of `output`, so a simulated stage behaves as
/// its rule table or prompt says (the demo's slower second version of a rule table).
fn with_assets(spec: &SimulateStage, input: &Value) -> (f64, f64, Value) {
    let (mut p50, mut p95, mut output) = (spec.p50_ms, spec.p95_ms, spec.output.clone());
    let Some(assets) = input.get(INPUT_KEY).and_then(Value::as_object) else {
        return (p50, p95, output);
    };
    for asset in assets.values() {
        let Some(Ok(Value::Object(doc))) = asset
            .get("content")
            .and_then(Value::as_str)
            .map(serde_json::from_str::<Value>)
        else {
            continue;
        };
        if let Some(l) = doc.get("latency") {
            p50 = l
                .get("p50_ms")
                .and_then(Value::as_f64)
                .unwrap_or(p50)
                .max(0.0);
            p95 = l
                .get("p95_ms")
                .and_then(Value::as_f64)
                .unwrap_or(p95)
                .max(0.0);
        }
        if let (Some(Value::Object(extra)), Value::Object(out)) = (doc.get("output"), &mut output) {
            for (k, v) in extra {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    (p50, p95, output)
}

pub async fn run(spec: &SimulateStage, ctx: &ExecCtx<'_>) -> ExecResult {
    let (p50, p95, output) = with_assets(spec, ctx.input);
    let mut rng = Rng::new(seed_of(&[
        &spec.seed.to_le_bytes(),
        &ctx.ids.run_id.to_le_bytes(),
        ctx.ids.stage.as_bytes(),
        &ctx.ids.attempt.to_le_bytes(),
    ]));
    let latency = Duration::from_secs_f64(sample_latency_ms(p50, p95, &mut rng) / 1000.0);
    let fails = rng.next_f64() < spec.fail_rate;
    let target = spec.target.as_deref().unwrap_or("simulated target");
    if latency > ctx.timeout {
        tokio::select! {
            () = ctx.clock.sleep(ctx.timeout) => {}
            () = ctx.cancel.cancelled() => return ExecResult { outcome: Outcome::Cancelled, output: None, stderr: None },
        }
        return ExecResult::failed(Failure {
            code: "timeout",
            message: format!(
                "{target} did not answer within {} ms",
                ctx.timeout.as_millis()
            ),
            retryable: true,
            target_unhealthy: true,
        });
    }
    if !latency.is_zero() {
        tokio::select! {
            () = ctx.clock.sleep(latency) => {}
            () = ctx.cancel.cancelled() => return ExecResult { outcome: Outcome::Cancelled, output: None, stderr: None },
        }
    }
    if fails {
        return ExecResult::failed(Failure {
            code: "simulated",
            message: format!("{target} failed (simulated, fail_rate {})", spec.fail_rate),
            retryable: true,
            target_unhealthy: true,
        });
    }
    let bytes = output.to_string().len() as u64;
    ExecResult {
        outcome: Outcome::Succeeded,
        output: Some(Output {
            value: output,
            truncated: false,
            bytes,
        }),
        stderr: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_match_the_spec() {
        let mut rng = Rng::new(3);
        let mut v: Vec<f64> = (0..20_000)
            .map(|_| sample_latency_ms(100.0, 400.0, &mut rng))
            .collect();
        v.sort_by(f64::total_cmp);
        let p50 = v[10_000];
        let p95 = v[19_000];
        assert!((90.0..110.0).contains(&p50), "p50 {p50}");
        assert!((360.0..440.0).contains(&p95), "p95 {p95}");
        assert!((sample_latency_ms(50.0, 50.0, &mut rng) - 50.0).abs() < f64::EPSILON);
    }
}
