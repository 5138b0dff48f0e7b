//! The one control path. Every state change a person or a script asks for, from a key in the
//! dashboard, a CLI command or an API request, arrives here as a [`Command`] with an [`Actor`]
//! and a reason. It is checked once (role, reason, then the command's own preconditions in the
//! runtime or the canary controller), performed, and audited: a done command's audit record
//! and `audit` event commit in the same transaction as the change; a refused one leaves a
//! refusal record with its error code.

use serde_json::{Value, json};

use super::Host;
use crate::canary::service::audit_details;
use crate::model::{
    Actor, ApiError, AuditRecord, Command, ErrorCode, MAX_REASON_BYTES, Outcome, RunId, Timestamp,
    Trigger, Via,
};
use crate::store::{Op, clip};

/// Why a command did not happen: the actor may not ask (`denied`), or the host would not or
/// could not do it (`failed`). The audit outcome says which.
enum Refusal {
    Denied(ApiError),
    Failed(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Failed(e)
    }
}

fn record(
    at: Timestamp,
    cmd: &Command,
    actor: &Actor,
    reason: &str,
    outcome: String,
    details: Value,
) -> AuditRecord {
    AuditRecord {
        at,
        actor: actor.name.clone(),
        role: Some(actor.role),
        via: Some(actor.via),
        action: cmd.action(),
        target: crate::model::bounded(
            &crate::model::printable(&cmd.target()),
            crate::model::MAX_TARGET_BYTES,
        ),
        reason: reason.to_string(),
        outcome,
        details,
    }
}

/// The run a command is about, so its `audit` event opens that run in the dashboard.
fn run_of(cmd: &Command) -> Option<RunId> {
    match cmd {
        Command::CancelRun { run } | Command::RetryRun { run } | Command::ResumeRun { run } => {
            Some(*run)
        }
        _ => None,
    }
}

/// Who may ask for what, and whether the request is complete, before any work.
fn admit(cmd: &Command, actor: &Actor, reason: &str) -> Result<(), Refusal> {
    let needed = cmd.needs_role();
    if !actor.role.allows(needed) {
        let who = match actor.via {
            Via::Api => format!("the token `{}`", actor.name),
            _ => format!("`{}`", actor.name),
        };
        return Err(Refusal::Denied(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "{who} has role {}; {} needs {needed} or above",
                actor.role,
                cmd.action()
            ),
        )));
    }
    if reason.len() > MAX_REASON_BYTES {
        return Err(Refusal::Failed(ApiError::new(
            ErrorCode::Validation,
            format!(
                "the reason is {} bytes; it may be at most {MAX_REASON_BYTES} (a sentence for the audit log)",
                reason.len()
            ),
        )));
    }
    if let Some(c) = reason.chars().find(|c| c.is_control()) {
        return Err(Refusal::Failed(ApiError::new(
            ErrorCode::Validation,
            format!(
                "the reason holds a control character ({}); write it as one line of plain text",
                crate::model::control_name(c)
            ),
        )));
    }
    if cmd.needs_reason() && reason.is_empty() {
        let how = match actor.via {
            Via::Cli => "give it with --reason",
            Via::Api => "send it as `reason`",
            Via::Dashboard | Via::Automatic => "type it in the dialog",
        };
        return Err(Refusal::Failed(ApiError::new(
            ErrorCode::Validation,
            // Said without the action: every caller already says which (`cannot pause canary
            // api: ...`, the request, the dialog).
            format!("a reason is required: it is recorded in the audit log with the action; {how}"),
        )));
    }
    Ok(())
}

impl Host {
    /// Checks, performs and audits one command. The outcome says what changed, so a client
    /// refreshes only that.
    pub async fn control(
        &self,
        cmd: Command,
        actor: &Actor,
        reason: &str,
    ) -> Result<Outcome, ApiError> {
        let reason = reason.trim();
        let result = match admit(&cmd, actor, reason) {
            Ok(()) if self.inner.shutdown.is_cancelled() => Err(Refusal::Failed(ApiError::new(
                ErrorCode::Conflict,
                "the host is shutting down",
            ))),
            Ok(()) => self.perform(&cmd, actor, reason).await,
            Err(r) => Err(r),
        };
        match result {
            Ok(outcome) => {
                tracing::info!(action = %cmd.action(), target = %cmd.target(), actor = %actor.name, via = %actor.via, reason, "control");
                Ok(outcome)
            }
            Err(Refusal::Denied(e)) => Err(self.refused(&cmd, actor, reason, "denied", e).await),
            Err(Refusal::Failed(e)) => Err(self.refused(&cmd, actor, reason, "failed", e).await),
        }
    }

    /// Audits a command refused before it reached [`Host::control`] (a read-only server, a
    /// token over its rate), as a denial, and returns the error.
    pub async fn deny(&self, cmd: &Command, actor: &Actor, reason: &str, e: ApiError) -> ApiError {
        self.refused(cmd, actor, reason.trim(), "denied", e).await
    }

    /// Records a refusal (its reason cut to the limit: a refused request must not be a way to
    /// fill the log) and commits it before the refusal is answered.
    async fn refused(
        &self,
        cmd: &Command,
        actor: &Actor,
        reason: &str,
        how: &str,
        e: ApiError,
    ) -> ApiError {
        let (kept, _, _) = clip(crate::model::printable(reason), MAX_REASON_BYTES);
        let rec = record(
            self.inner.clock.timestamp(),
            cmd,
            actor,
            &kept,
            format!("{how}: {}", e.code),
            json!({ "message": e.message }),
        );
        if let Err(err) = self
            .inner
            .writer
            .commit(Op::audited(rec, run_of(cmd)).into())
            .await
        {
            tracing::error!(error = %err, "could not record a refusal in the audit log");
        }
        e
    }

    async fn perform(
        &self,
        cmd: &Command,
        actor: &Actor,
        reason: &str,
    ) -> Result<Outcome, Refusal> {
        let at = self.inner.clock.timestamp();
        let audit = |details: Value| -> Vec<Op> {
            Op::audited(
                record(at, cmd, actor, reason, "ok".into(), details),
                run_of(cmd),
            )
            .into()
        };
        let rt = &self.inner.runtime;
        let outcome = match cmd {
            Command::StartRun(req) => {
                let run = rt
                    .start(req, Trigger::Manual, |id| {
                        audit(json!({ "run": id, "overrides": req.overrides,
                                      "test": req.test.as_ref().map(|t| &t.stage) }))
                    })
                    .await
                    .map_err(ApiError::from)?;
                Outcome::RunStarted { run }
            }
            Command::CancelRun { run } => {
                rt.cancel_run(*run, reason, audit(json!({})))
                    .await
                    .map_err(ApiError::from)?;
                Outcome::RunCancelled { run: *run }
            }
            Command::RetryRun { run } => {
                rt.retry_run(*run, reason, audit(json!({})))
                    .await
                    .map_err(ApiError::from)?;
                Outcome::RunRetried { run: *run }
            }
            Command::ResumeRun { run } => {
                rt.resume_run(*run, audit(json!({})))
                    .await
                    .map_err(ApiError::from)?;
                Outcome::RunResumed { run: *run }
            }
            Command::Requeue { entry } => {
                let run = rt
                    .requeue(*entry, reason, audit(json!({})))
                    .await
                    .map_err(ApiError::from)?;
                Outcome::Requeued { entry: *entry, run }
            }
            Command::Discard { entry } => {
                let e = rt
                    .discard(*entry, reason, audit(json!({})))
                    .await
                    .map_err(ApiError::from)?;
                Outcome::Discarded {
                    entry: *entry,
                    run: e.run_id,
                }
            }
            Command::Canary {
                canary,
                action,
                expect,
            } => {
                let (record, mut ops) = self
                    .inner
                    .canaries
                    .act(canary, *action, *expect, (&actor.name, reason))
                    .map_err(ApiError::from)?;
                ops.extend(audit(audit_details(&record)));
                self.inner
                    .writer
                    .commit(ops)
                    .await
                    .map_err(ApiError::from)?;
                Outcome::Canary {
                    canary: canary.clone(),
                    record,
                }
            }
            Command::Fault { canary, fault } => {
                self.inner
                    .canaries
                    .inject(canary, *fault)
                    .map_err(ApiError::from)?;
                let details =
                    json!({ "error_rate": fault.error_rate, "latency_ms": fault.latency_ms });
                self.inner
                    .writer
                    .commit(audit(details))
                    .await
                    .map_err(ApiError::from)?;
                Outcome::Fault {
                    canary: canary.clone(),
                    fault: *fault,
                }
            }
            Command::PutAsset { .. } | Command::PinAsset { .. } | Command::RollbackAsset { .. } => {
                self.asset_command(cmd, actor, reason, audit).await?
            }
        };
        Ok(outcome)
    }
}
