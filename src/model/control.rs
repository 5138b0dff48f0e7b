//! The vocabulary of the one control path: who acts ([`Actor`]), what they ask for
//! ([`Command`]), what came of it ([`Outcome`]), and the audit record every attempt leaves.
//! A key in the dashboard, a CLI command and an API request all become a `Command` with an
//! `Actor` and a reason, so they are checked, performed and audited in one place.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::status::string_enum;
use super::{ActionRecord, CanaryAction, CanaryState, DlqId, Fault, RunId, StartRun, Timestamp};

/// Where a canary stands: its state, step (0-based) and weight in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CanaryAt {
    pub state: CanaryState,
    pub step: usize,
    pub weight: f64,
}

string_enum!(
    /// What an actor may do. Each role includes the ones before it.
    Role, "role" {
        Viewer => "viewer",
        Operator => "operator",
        Admin => "admin",
    }
);

impl Role {
    fn rank(self) -> u8 {
        match self {
            Role::Viewer => 0,
            Role::Operator => 1,
            Role::Admin => 2,
        }
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self.rank() >= needed.rank()
    }
}

string_enum!(
    /// How a command reached the host, so the audit log tells a key press from a script.
    Via, "via" {
        Dashboard => "dashboard",
        Cli => "cli",
        Api => "api",
        /// opsdeck itself: automatic promotion and rollback.
        Automatic => "automatic",
    }
);

/// Who asks for a change: an API token's name and role, or the person at this terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub name: String,
    pub role: Role,
    pub via: Via,
}

/// The name automatic actions are recorded under.
pub const AUTOMATIC_ACTOR: &str = "opsdeck";

impl Actor {
    pub fn new(name: impl Into<String>, role: Role, via: Via) -> Actor {
        Actor {
            name: name.into(),
            role,
            via,
        }
    }

    /// opsdeck acting on its own (a canary's automatic promotion or rollback).
    pub fn automatic() -> Actor {
        Actor::new(AUTOMATIC_ACTOR, Role::Admin, Via::Automatic)
    }
}

/// The least role that may ask for an action, by its audit name (`dlq.discard`): checked
/// before anything else about a request, so a token that may not ask learns nothing of the
/// target. Dropping a dead letter destroys its input, a fault breaks traffic on purpose, and a
/// new or pinned asset version changes what production runs: those are the admin's; every
/// other change (rolling an asset back included) is an operator's.
pub fn role_for(action: &str) -> Role {
    match action {
        "dlq.discard" | "canary.fault" | "asset.put" | "asset.pin" => Role::Admin,
        _ => Role::Operator,
    }
}

/// Every state change a person (or a script) can ask for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    StartRun(StartRun),
    CancelRun {
        run: RunId,
    },
    /// Re-run a failed or cancelled run from its failed stages.
    RetryRun {
        run: RunId,
    },
    /// Continue an interrupted run.
    ResumeRun {
        run: RunId,
    },
    /// Give a dead-lettered stage a new attempt in its run.
    Requeue {
        entry: DlqId,
    },
    /// Drop a dead-letter entry; its run stays failed.
    Discard {
        entry: DlqId,
    },
    Canary {
        canary: String,
        action: CanaryAction,
        /// Where the canary stood when the person decided (a dashboard dialog): the action
        /// applies only if it still stands there, never relative to a state nobody saw.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect: Option<CanaryAt>,
    },
    /// Add (or, with no trouble, clear) a fault on a simulated canary.
    Fault {
        canary: String,
        fault: Fault,
    },
    /// Store a new version of an asset (and pin it when `pin`).
    PutAsset {
        name: String,
        content: String,
        #[serde(default)]
        pin: bool,
    },
    /// Make `version` the one runs use.
    PinAsset {
        name: String,
        version: u32,
    },
    /// Undo the current pin: the version pinned before it is used again.
    RollbackAsset {
        name: String,
    },
}

impl Command {
    /// The audit log's name for the command: `run.retry`, `dlq.requeue`, `canary.rollback`.
    pub fn action(&self) -> String {
        match self {
            Command::StartRun(_) => "run.start".into(),
            Command::CancelRun { .. } => "run.cancel".into(),
            Command::RetryRun { .. } => "run.retry".into(),
            Command::ResumeRun { .. } => "run.resume".into(),
            Command::Requeue { .. } => "dlq.requeue".into(),
            Command::Discard { .. } => "dlq.discard".into(),
            Command::Canary { action, .. } => format!("canary.{}", action.name()),
            Command::Fault { .. } => "canary.fault".into(),
            Command::PutAsset { .. } => "asset.put".into(),
            Command::PinAsset { .. } => "asset.pin".into(),
            Command::RollbackAsset { .. } => "asset.rollback".into(),
        }
    }

    /// What the command acts on, as the audit log names it: `run/12`, `canary/checkout-api`.
    pub fn target(&self) -> String {
        match self {
            Command::StartRun(req) => format!("pipeline/{}", req.pipeline),
            Command::CancelRun { run } | Command::RetryRun { run } | Command::ResumeRun { run } => {
                format!("run/{run}")
            }
            Command::Requeue { entry } | Command::Discard { entry } => format!("dlq/{entry}"),
            Command::Canary { canary, .. } | Command::Fault { canary, .. } => {
                format!("canary/{canary}")
            }
            Command::PutAsset { name, .. }
            | Command::PinAsset { name, .. }
            | Command::RollbackAsset { name } => format!("asset/{name}"),
        }
    }

    /// What it asks for, in words: `retry run 12`, `requeue dead-letter entry 3`,
    /// `set_weight canary checkout-api`.
    pub fn describe(&self) -> String {
        match self {
            Command::StartRun(req) => format!("start a run of `{}`", req.pipeline),
            Command::CancelRun { run } => format!("cancel run {run}"),
            Command::RetryRun { run } => format!("retry run {run}"),
            Command::ResumeRun { run } => format!("resume run {run}"),
            Command::Requeue { entry } => format!("requeue dead-letter entry {entry}"),
            Command::Discard { entry } => format!("discard dead-letter entry {entry}"),
            Command::Canary { canary, action, .. } => {
                format!("{} canary {canary}", action.name().replace('_', " "))
            }
            Command::Fault { canary, .. } => format!("inject a fault into canary {canary}"),
            Command::PutAsset { name, .. } => format!("store a new version of asset {name}"),
            Command::PinAsset { name, version } => format!("pin version {version} of asset {name}"),
            Command::RollbackAsset { name } => format!("roll back asset {name}"),
        }
    }

    /// The least role that may ask for it.
    pub fn needs_role(&self) -> Role {
        role_for(&self.action())
    }

    /// Whether it must say why: everything the dashboard confirms does. Starting and resuming
    /// a run, faults (drills) and storing an unpinned asset version may go without.
    pub fn needs_reason(&self) -> bool {
        !matches!(
            self,
            Command::StartRun(_)
                | Command::ResumeRun { .. }
                | Command::Fault { .. }
                | Command::PutAsset { pin: false, .. }
        )
    }
}

/// What a command did, so a client refreshes only what it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    RunStarted {
        run: RunId,
    },
    /// An active run is being stopped; a pending or interrupted one is already cancelled.
    RunCancelled {
        run: RunId,
    },
    RunRetried {
        run: RunId,
    },
    RunResumed {
        run: RunId,
    },
    Requeued {
        entry: DlqId,
        run: RunId,
    },
    Discarded {
        entry: DlqId,
        run: RunId,
    },
    Canary {
        canary: String,
        record: ActionRecord,
    },
    Fault {
        canary: String,
        fault: Fault,
    },
    /// An asset changed: `version` is the one stored or pinned, `pinned` the one runs now use.
    Asset {
        name: String,
        version: u32,
        pinned: Option<u32>,
        /// The put made a new asset.
        #[serde(default)]
        created: bool,
    },
}

impl Outcome {
    /// The run the command changed, if it changed one.
    pub fn run(&self) -> Option<RunId> {
        match self {
            Outcome::RunStarted { run }
            | Outcome::RunCancelled { run }
            | Outcome::RunRetried { run }
            | Outcome::RunResumed { run }
            | Outcome::Requeued { run, .. }
            | Outcome::Discarded { run, .. } => Some(*run),
            Outcome::Canary { .. } | Outcome::Fault { .. } | Outcome::Asset { .. } => None,
        }
    }

    /// One sentence for a footer or a terminal.
    pub fn message(&self) -> String {
        match self {
            Outcome::RunStarted { run } => format!("run {run} started"),
            Outcome::RunCancelled { run } => format!("run {run} is being cancelled"),
            Outcome::RunRetried { run } => format!("run {run} is retrying its failed stages"),
            Outcome::RunResumed { run } => format!("run {run} resumed"),
            Outcome::Requeued { entry, run } => {
                format!("dead-letter entry {entry} requeued into run {run}")
            }
            Outcome::Discarded { entry, run } => {
                format!("dead-letter entry {entry} discarded; run {run} stays failed")
            }
            Outcome::Canary { canary, record: r } => format!(
                "canary {canary}: {} -> {}, weight {}% -> {}%",
                r.state_before, r.state_after, r.weight_before, r.weight_after
            ),
            Outcome::Fault { canary, fault } if fault.is_none() => {
                format!("canary {canary}: fault cleared")
            }
            Outcome::Fault { canary, fault } => format!("canary {canary}: {}", fault.describe()),
            Outcome::Asset {
                name,
                created: true,
                ..
            } => format!("asset {name} created: version 1 stored and pinned"),
            Outcome::Asset {
                name,
                version,
                pinned: Some(p),
                ..
            } if p == version => format!("asset {name}: version {version} is pinned"),
            Outcome::Asset {
                name,
                version,
                pinned,
                ..
            } => format!(
                "asset {name}: version {version} stored; runs use {}",
                pinned.map_or_else(|| "no version".to_string(), |p| format!("version {p}"))
            ),
        }
    }
}

/// One line of the append-only audit log: every command, done or refused, and every request
/// the server turned away before it reached the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at: Timestamp,
    pub actor: String,
    /// Absent for requests nobody could be identified for (a missing or unknown token).
    pub role: Option<Role>,
    /// Absent on records written before opsdeck recorded it.
    #[serde(default)]
    pub via: Option<Via>,
    /// `run.retry`, `canary.rollback`, `authenticate`, ...
    pub action: String,
    pub target: String,
    pub reason: String,
    /// `ok`, `failed: CODE` (the host refused or could not do it) or `denied: CODE` (the
    /// actor may not ask: role, rate limit, read-only server, no token).
    pub outcome: String,
    pub details: Value,
}

/// Which audit records to read, newest first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Only records at or after this instant.
    pub since: Option<Timestamp>,
    /// Only this actor's records.
    pub actor: Option<String>,
    /// Only this action (`run.retry`), or every action of a group (`canary`).
    pub action: Option<String>,
    pub limit: usize,
}

/// The most audit records one read returns.
pub const MAX_AUDIT_LIMIT: usize = 10_000;

/// The longest reason kept, in bytes: reasons are sentences for people, not payloads.
pub const MAX_REASON_BYTES: usize = 1024;

/// The longest target kept in an audit record, in bytes (a path from outside can be long).
pub const MAX_TARGET_BYTES: usize = 256;

/// `text` with every control character written as an escape (`\t`, `\x1b`): text from
/// outside (a reason, a path) kept in the audit log cannot drive the terminal it is later
/// shown on.
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| match c {
            '\t' => "\\t".to_string(),
            '\n' => "\\n".to_string(),
            '\r' => "\\r".to_string(),
            // Every control character is below U+00A0: two hex digits.
            c if c.is_control() => format!("\\x{:02x}", u32::from(c)),
            c => c.to_string(),
        })
        .collect()
}

/// A control character named for a person: `a tab`, `a line break`, `U+001B`.
pub fn control_name(c: char) -> String {
    match c {
        '\t' => "a tab".to_string(),
        '\n' | '\r' => "a line break".to_string(),
        c => format!("U+{:04X}", u32::from(c)),
    }
}

/// [`printable`] for text of several lines: line breaks and tabs are kept.
pub fn printable_text(text: &str) -> String {
    text.split('\n')
        .map(|line| {
            line.split('\t')
                .map(|part| printable(part.strip_suffix('\r').unwrap_or(part)))
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` cut to at most `max` bytes at a character boundary, with `…` when cut.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The audited action groups, and the actions in each, as `--action` and `?action=` take them.
pub fn audit_actions() -> Vec<(&'static str, Vec<String>)> {
    let canary: Vec<String> = [
        "promote",
        "promote_full",
        "pause",
        "resume",
        "set_weight",
        "rollback",
        "abort",
        "restart",
        "fault",
        "observe",
    ]
    .iter()
    .map(|a| format!("canary.{a}"))
    .collect();
    vec![
        (
            "run",
            ["start", "cancel", "retry", "resume"]
                .iter()
                .map(|a| format!("run.{a}"))
                .collect(),
        ),
        (
            "dlq",
            ["requeue", "discard"]
                .iter()
                .map(|a| format!("dlq.{a}"))
                .collect(),
        ),
        ("canary", canary),
        (
            "asset",
            ["put", "pin", "rollback"]
                .iter()
                .map(|a| format!("asset.{a}"))
                .collect(),
        ),
        ("store", vec!["store.restore".to_string()]),
        ("authenticate", Vec::new()),
    ]
}

/// An `--action` filter as the audit log spells it (`canary.set-weight` is
/// `canary.set_weight`), or a sentence with the valid choices.
pub fn audit_action(given: &str) -> Result<String, String> {
    let want = given.trim().replace('-', "_");
    let all = audit_actions();
    let known = all
        .iter()
        .any(|(group, actions)| *group == want || actions.contains(&want));
    if known {
        return Ok(want);
    }
    let groups: Vec<&str> = all.iter().map(|(g, _)| *g).collect();
    let actions: Vec<&str> = all
        .iter()
        .flat_map(|(_, a)| a.iter().map(String::as_str))
        .collect();
    Err(format!(
        "`{given}` is not an audited action; give a group ({}) or an action ({})",
        groups.join(", "),
        actions.join(", ")
    ))
}
