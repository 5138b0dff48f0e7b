//! `command` stages: a process in its own process group, the stage input as JSON on stdin,
//! stdout as the output (JSON when it parses), stderr kept. When the attempt ends for any
//! reason the whole group is killed, so nothing the command started outlives it.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::task::JoinHandle;

use super::{Captured, ExecCtx, ExecResult, Failure, Outcome, capture};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::proc::GroupGuard;
use crate::runtime::spec::CommandStage;

enum End {
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
    Cancelled,
}

fn resolve_program(program: &str, workdir: &Path) -> PathBuf {
    let p = Path::new(program);
    if program.contains('/') && p.is_relative() {
        workdir.join(p)
    } else {
        p.to_path_buf()
    }
}

/// How the process ended, as an attempt's outcome.
fn outcome_of(end: End, program: &str, ctx: &ExecCtx<'_>) -> Outcome {
    match end {
        End::Exited(Ok(status)) if status.success() => Outcome::Succeeded,
        End::Exited(Ok(status)) => Outcome::Failed(Failure {
            code: "exit_status",
            message: describe_exit(program, status),
            retryable: true,
            target_unhealthy: true,
        }),
        End::Exited(Err(e)) => Outcome::Failed(Failure {
            code: "wait_failed",
            message: format!("lost track of `{program}`: {e}"),
            retryable: true,
            target_unhealthy: false,
        }),
        End::TimedOut => Outcome::Failed(Failure {
            code: "timeout",
            message: format!(
                "`{program}` did not finish within {} ms; its process group was killed",
                ctx.timeout.as_millis()
            ),
            retryable: true,
            target_unhealthy: true,
        }),
        End::Cancelled => Outcome::Cancelled,
    }
}

pub async fn run(spec: &CommandStage, ctx: &ExecCtx<'_>) -> ExecResult {
    let workdir = spec
        .workdir
        .as_ref()
        .map_or_else(|| ctx.workspace.to_path_buf(), |w| ctx.workspace.join(w));
    let Some(program) = spec.command.first() else {
        return ExecResult::failed(Failure {
            code: "spawn_failed",
            message: "the stage has an empty command".into(),
            retryable: false,
            target_unhealthy: false,
        });
    };
    let mut cmd = Command::new(resolve_program(program, &workdir));
    cmd.args(&spec.command[1..])
        .current_dir(&workdir)
        .envs(&spec.env)
        .env("OPSDECK_RUN_ID", ctx.ids.run_id.to_string())
        .env("OPSDECK_PIPELINE", ctx.ids.pipeline)
        .env("OPSDECK_STAGE", ctx.ids.stage)
        .env("OPSDECK_ATTEMPT", ctx.ids.attempt.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return ExecResult::failed(Failure {
                code: "spawn_failed",
                message: format!("could not start `{program}` in {}: {e}", workdir.display()),
                retryable: false,
                target_unhealthy: true,
            });
        }
    };
    let pid = child.id();
    let mut group = GroupGuard::of(pid);
    if let Some(pid) = pid {
        (ctx.on_spawn)(pid);
    }
    let input = serde_json::to_vec(ctx.input).unwrap_or_default();
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            // A program that never reads its input closes the pipe; that is not an error.
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        });
    }
    let out = child
        .stdout
        .take()
        .map(|s| tokio::spawn(capture(s, ctx.limit)));
    let err = child
        .stderr
        .take()
        .map(|s| tokio::spawn(capture(s, ctx.limit)));

    let end = tokio::select! {
        s = child.wait() => End::Exited(s),
        () = ctx.clock.sleep(ctx.timeout) => End::TimedOut,
        () = ctx.cancel.cancelled() => End::Cancelled,
    };
    group.kill();
    if !matches!(end, End::Exited(_)) {
        let _ = child.wait().await;
    }
    let stdout = drain(out).await;
    let stderr = drain(err)
        .await
        .and_then(|c| (c.total > 0).then(|| c.into_text()));
    let output = stdout.and_then(Captured::into_output);

    let outcome = outcome_of(end, program, ctx);
    ExecResult {
        outcome,
        output,
        stderr,
    }
}

/// Waits for an output reader; after the group is dead the pipes close at once, but a process
/// that escaped the group (by `setsid`) could hold them open, so give up after a while.
async fn drain(handle: Option<JoinHandle<Captured>>) -> Option<Captured> {
    let mut handle = handle?;
    match tokio::time::timeout(Duration::from_secs(2), &mut handle).await {
        Ok(Ok(c)) => Some(c),
        Ok(Err(_)) => None,
        Err(_) => {
            handle.abort();
            None
        }
    }
}

fn describe_exit(program: &str, status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("`{program}` exited with status {code}"),
        (None, Some(sig)) => format!("`{program}` was killed by signal {sig}"),
        _ => format!("`{program}` failed ({status})"),
    }
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat`, field 22): together
/// with the pid it identifies a process even after the pid is reused.
pub fn process_start_time(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Kills the process group of an attempt that was running when its host died, but only if
/// the process is still the same one (same start time), never a stranger that reused the pid.
pub fn kill_orphan(pid: i64, pid_start: Option<i64>) -> bool {
    let (Ok(pid32), Some(expected)) = (u32::try_from(pid), pid_start) else {
        return false;
    };
    if process_start_time(pid32) != Some(expected) {
        return false;
    }
    killpg(Pid::from_raw(pid32 as i32), Signal::SIGKILL).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_identifies_this_process() {
        let me = std::process::id();
        let t = process_start_time(me).unwrap();
        assert_eq!(process_start_time(me), Some(t));
        assert!(
            !kill_orphan(i64::from(me), Some(t + 1)),
            "a different start time must never be killed"
        );
    }
}
