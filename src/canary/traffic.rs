//! Routing that opsdeck does not own. Metrics and routing are separate, as with Argo Rollouts'
//! traffic routers: the built-in proxy applies a rollout's weight itself, and a
//! `traffic = { command = [...] }` or `traffic = { webhook = "..." }` hook applies it to an
//! nginx, Envoy or mesh split. The hook is called with the new weight on every change (and
//! once when a host starts, so a restarted host re-asserts the split), retried with backoff,
//! and each outcome is audited as `canary.traffic` and shown in the canary's status.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use toml::de::DeTable;

use super::service::{Deps, Shared};
use crate::diag::Checker;
use crate::model::{Actor, AuditRecord, TrafficState};
use crate::proc::{GroupGuard, read_head};
use crate::store::Op;

/// Bytes of a hook's output kept for the status and the audit record.
const OUTPUT_LIMIT: usize = 2 * 1024;
/// The longest wait between attempts; a hook that keeps failing is tried this often for good.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// How the weight reaches the router.
#[derive(Debug, Clone, PartialEq)]
pub enum Hook {
    /// A program and its arguments; `{{weight}}` and `{{canary}}` in them are filled in, and
    /// `OPSDECK_CANARY` and `OPSDECK_WEIGHT` are set. Exit status 0 means applied.
    Command(Vec<String>),
    /// A URL that is POSTed `{"canary", "weight"}`; a 2xx answer means applied.
    Webhook(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    pub hook: Hook,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Attempts after the first before a failure is audited (it is still retried afterwards,
    /// every 30 s, until it works or the weight changes).
    pub retries: u32,
}

impl Traffic {
    pub fn via(&self) -> &'static str {
        match self.hook {
            Hook::Command(_) => "command",
            Hook::Webhook(_) => "webhook",
        }
    }

    /// One attempt to apply `weight_bp`: the hook's output when it worked, or a sentence
    /// saying why not.
    pub async fn apply(
        &self,
        http: &reqwest::Client,
        dir: &Path,
        canary: &str,
        weight_bp: u32,
    ) -> Result<String, String> {
        let weight = percent(weight_bp);
        match &self.hook {
            Hook::Command(argv) => run_command(argv, dir, canary, &weight, self.timeout).await,
            Hook::Webhook(url) => {
                let resp = http
                    .post(url)
                    .timeout(self.timeout)
                    .json(&json!({"canary": canary, "weight": f64::from(weight_bp) / 100.0}))
                    .send()
                    .await
                    .map_err(|e| format!("the traffic webhook {url} did not answer: {e}"))?;
                let status = resp.status();
                let body = crate::net::read_capped(resp, OUTPUT_LIMIT)
                    .await
                    .map_or_else(|e| e, |b| cut(&String::from_utf8_lossy(&b)));
                if status.is_success() {
                    Ok(body)
                } else {
                    Err(format!(
                        "the traffic webhook {url} answered {status}: {body}"
                    ))
                }
            }
        }
    }
}

/// A weight in percent as the hook receives it: `25`, `2.5`.
fn percent(weight_bp: u32) -> String {
    (f64::from(weight_bp) / 100.0).to_string()
}

/// The last line of a hook's words, at most 200 characters.
fn cut(text: &str) -> String {
    let line = text.trim().lines().last().unwrap_or("").trim();
    match line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

async fn run_command(
    argv: &[String],
    dir: &Path,
    canary: &str,
    weight: &str,
    timeout: Duration,
) -> Result<String, String> {
    let fill = |a: &String| {
        a.replace("{{weight}}", weight)
            .replace("{{canary}}", canary)
    };
    let Some(program) = argv.first() else {
        return Err("the traffic command is empty".into());
    };
    // Like a stage's command: a relative path with a `/` is the workspace's.
    let exe = if program.contains('/') && Path::new(program).is_relative() {
        dir.join(program)
    } else {
        PathBuf::from(program)
    };
    let mut child = tokio::process::Command::new(exe)
        .args(argv[1..].iter().map(fill))
        .current_dir(dir)
        .env("OPSDECK_CANARY", canary)
        .env("OPSDECK_WEIGHT", weight)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("could not start the traffic command `{program}`: {e}"))?;
    let mut group = GroupGuard::of(child.id());
    let out = child
        .stdout
        .take()
        .map(|s| tokio::spawn(read_head(s, OUTPUT_LIMIT)));
    let err = child
        .stderr
        .take()
        .map(|s| tokio::spawn(read_head(s, OUTPUT_LIMIT)));
    let ended = tokio::time::timeout(timeout, child.wait()).await;
    group.kill();
    let text = |h: Option<tokio::task::JoinHandle<(Vec<u8>, u64)>>| async {
        match h {
            Some(h) => match tokio::time::timeout(Duration::from_secs(2), h).await {
                Ok(Ok((bytes, _))) => cut(&String::from_utf8_lossy(&bytes)),
                _ => String::new(),
            },
            None => String::new(),
        }
    };
    match ended {
        Ok(Ok(status)) if status.success() => Ok(text(out).await),
        Ok(Ok(status)) => {
            let stderr = text(err).await;
            let code = status
                .code()
                .map_or_else(|| "a signal".to_string(), |c| format!("status {c}"));
            Err(if stderr.is_empty() {
                format!("the traffic command `{program}` exited with {code}")
            } else {
                format!("the traffic command `{program}` exited with {code}: {stderr}")
            })
        }
        Ok(Err(e)) => Err(format!(
            "lost track of the traffic command `{program}`: {e}"
        )),
        Err(_) => {
            let _ = child.wait().await;
            Err(format!(
                "the traffic command `{program}` did not finish within {}; it was killed",
                crate::model::duration::to_spec(timeout)
            ))
        }
    }
}

/// Checks `traffic = {...}` of a canary table, if there is one.
pub fn parse(c: &mut Checker<'_>, t: &DeTable<'_>, ctx: &str) -> Option<Option<Traffic>> {
    let Some((tt, tspan)) = c.table(t, "traffic", ctx) else {
        return Some(None);
    };
    let tctx = format!("`traffic` of {ctx}");
    let before = c.problem_count();
    c.known_keys(tt, &["command", "webhook", "timeout", "retries"], &tctx);
    let command = c.str_list(tt, "command", &tctx);
    let webhook = c.str(tt, "webhook", &tctx);
    let hook = match (command, webhook) {
        (Some((argv, span)), None) => {
            if argv.is_empty() || argv[0].0.trim().is_empty() {
                c.error(
                    &span,
                    format!("`command` in {tctx} is empty; give a program and its arguments, like [\"./set-weight\", \"{{{{weight}}}}\"]"),
                );
                None
            } else {
                Some(Hook::Command(argv.into_iter().map(|(a, _)| a).collect()))
            }
        }
        (None, Some((url, span))) => {
            if reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                Some(Hook::Webhook(url.to_string()))
            } else {
                c.error(
                    &span,
                    format!(
                        "`webhook` in {tctx} is `{url}`; write it like http://127.0.0.1:8080/weight"
                    ),
                );
                None
            }
        }
        (Some(_), Some((_, span))) => {
            c.error(
                &span,
                format!("{tctx} has both `command` and `webhook`; keep one"),
            );
            None
        }
        (None, None) => {
            if c.problem_count() == before {
                c.error(
                    &tspan,
                    format!("{tctx} needs `command = [...]` or `webhook = \"URL\"`"),
                );
            }
            None
        }
    };
    let timeout = c
        .duration(tt, "timeout", &tctx, Duration::from_millis(100))
        .map_or(Duration::from_secs(10), |(d, _)| d);
    let retries = c
        .int(tt, "retries", &tctx, 0, 100)
        .map_or(5, |(n, _)| u32::try_from(n).unwrap_or(5));
    if c.problem_count() > before {
        return None;
    }
    Some(hook.map(|hook| Traffic {
        hook,
        timeout,
        retries,
    }))
}

/// The task that applies a canary's weight through its hook: it follows `weights` (the latest
/// weight wins; one in between that was never applied is skipped), retries with backoff, and
/// reports each outcome to the canary and the audit log.
pub async fn worker(
    traffic: Arc<Traffic>,
    shared: Shared,
    mut weights: watch::Receiver<u32>,
    deps: Deps,
) {
    let http = match crate::net::client_builder().build() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(canary = %shared.name(), "no HTTP client for the traffic hook: {e}");
            return;
        }
    };
    let name = shared.name();
    'weights: loop {
        let weight = *weights.borrow_and_update();
        let mut attempts = 0u32;
        let mut backoff = FIRST_BACKOFF;
        let mut audited_failure = false;
        loop {
            attempts = attempts.saturating_add(1);
            let result = tokio::select! {
                () = deps.shutdown.cancelled() => return,
                r = traffic.apply(&http, &deps.dir, &name, weight) => r,
            };
            let now = deps.clock.now().timestamp();
            let ok = result.is_ok();
            let exhausted = !ok && attempts > traffic.retries;
            let state = if ok {
                TrafficState::Applied
            } else if exhausted {
                TrafficState::Failing
            } else {
                TrafficState::Applying
            };
            let message = match &result {
                Ok(out) => (!out.is_empty()).then(|| out.clone()),
                Err(why) => Some(why.clone()),
            };
            shared.traffic_outcome(weight, state, attempts, message.clone(), now);
            // Audited once per outcome: applied, or given up on (then retried quietly).
            if ok || (exhausted && !audited_failure) {
                audited_failure |= exhausted;
                let ops = audit(
                    &name,
                    &traffic,
                    weight,
                    attempts,
                    ok,
                    message.as_deref(),
                    now,
                );
                deps.writer.send(ops.to_vec()).await;
            }
            if ok {
                break;
            }
            let wait = if exhausted { MAX_BACKOFF } else { backoff };
            backoff = (backoff * 2).min(MAX_BACKOFF);
            tokio::select! {
                () = deps.shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                changed = weights.changed() => {
                    if changed.is_err() { return; }
                    continue 'weights;
                }
            }
        }
        tokio::select! {
            () = deps.shutdown.cancelled() => return,
            changed = weights.changed() => if changed.is_err() { return },
        }
    }
}

fn audit(
    name: &str,
    traffic: &Traffic,
    weight_bp: u32,
    attempts: u32,
    ok: bool,
    message: Option<&str>,
    now: i64,
) -> [Op; 2] {
    let actor = Actor::automatic();
    Op::audited(
        AuditRecord {
            at: super::controller::ts(now),
            actor: actor.name,
            role: Some(actor.role),
            via: Some(actor.via),
            action: "canary.traffic".into(),
            target: format!("canary/{name}"),
            reason: format!(
                "apply weight {}% through the traffic {}",
                percent(weight_bp),
                traffic.via()
            ),
            outcome: if ok {
                "ok".into()
            } else {
                "failed: upstream".into()
            },
            details: json!({
                "weight": f64::from(weight_bp) / 100.0,
                "via": traffic.via(),
                "attempts": attempts,
                "message": message,
            }),
        },
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_reach_the_hook_as_plain_percentages() {
        assert_eq!(percent(2_500), "25");
        assert_eq!(percent(250), "2.5");
        assert_eq!(percent(0), "0");
        assert_eq!(percent(10_000), "100");
    }

    #[test]
    fn long_output_is_cut_to_its_last_line() {
        assert_eq!(cut("first\nsecond\n"), "second");
        let long = "x".repeat(500);
        assert_eq!(cut(&long).chars().count(), 201);
    }

    #[tokio::test]
    async fn a_command_hook_gets_the_weight_and_its_failure_says_why() {
        let http = crate::net::client_builder().build().unwrap();
        let t = Traffic {
            hook: Hook::Command(vec![
                "sh".into(),
                "-c".into(),
                "test \"$1\" = 25 && test \"$OPSDECK_WEIGHT\" = 25 && echo set {{canary}} $1"
                    .into(),
                "hook".into(),
                "{{weight}}".into(),
            ]),
            timeout: Duration::from_secs(10),
            retries: 0,
        };
        assert_eq!(
            t.apply(&http, Path::new("."), "pay", 2_500).await,
            Ok("set pay 25".into())
        );
        let e = t
            .apply(&http, Path::new("."), "pay", 500)
            .await
            .unwrap_err();
        assert!(e.contains("exited with status 1"), "{e}");
        let slow = Traffic {
            hook: Hook::Command(vec!["sleep".into(), "5".into()]),
            timeout: Duration::from_millis(200),
            retries: 0,
        };
        let e = slow
            .apply(&http, Path::new("."), "pay", 500)
            .await
            .unwrap_err();
        assert!(e.contains("did not finish within"), "{e}");
    }
}
