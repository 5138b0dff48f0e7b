//! Assets on the host: reading them, the three commands that change them (put, pin,
//! rollback) as the control path performs them, and seeding from the workspace's `assets/`
//! files at start. Changes are serialised by one lock, so version numbers are handed out
//! once and a rollback always undoes the pin it saw.

use std::path::Path;

use serde_json::{Value, json};

use super::{Host, Result};
use crate::model::asset::{AssetDetail, AssetSummary, MAX_ASSET_BYTES, name_rule, valid_name};
use crate::model::{Actor, ApiError, Command, ErrorCode, EventKind, Outcome};
use crate::runtime::RuntimeError;
use crate::store::{NewEvent, Op, no_asset};

/// Whether `content` can be stored as an asset version, or why not.
pub fn check_content(name: &str, content: &str) -> Result<(), ApiError> {
    if content.len() > MAX_ASSET_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "asset `{name}` would be {} bytes; an asset version may be at most {MAX_ASSET_BYTES} bytes",
                content.len()
            ),
        ));
    }
    if content.contains('\0') {
        return Err(ApiError::new(
            ErrorCode::Validation,
            format!("asset `{name}` holds a NUL byte; assets are text"),
        ));
    }
    Ok(())
}

impl Host {
    /// Two runs stage by stage, compared as the candidate's pipeline says (defaults for a
    /// pipeline this workspace no longer has).
    pub async fn compare(
        &self,
        base: crate::model::RunId,
        candidate: crate::model::RunId,
    ) -> Result<crate::model::compare::Comparison> {
        let (b, c) = (self.run(base).await?, self.run(candidate).await?);
        if let Some(why) = crate::model::compare::incomparable(&b, &c) {
            return Err(crate::runtime::RuntimeError::BadInput(why).into());
        }
        let settings = self
            .pipeline(&c.pipeline)
            .map(|p| p.compare.clone())
            .unwrap_or_default();
        Ok(crate::model::compare::compare(&b, &c, &settings))
    }

    /// Every asset with its pinned and newest versions and where it is used.
    pub async fn assets(&self) -> Result<Vec<AssetSummary>> {
        let rows = self.inner.reads.with(crate::store::Reader::assets).await?;
        Ok(self.inner.runtime.pipelines().asset_summaries(rows))
    }

    /// One asset: versions, pins, and one version's content (the pinned one by default).
    pub async fn asset(&self, name: &str, version: Option<u32>) -> Result<AssetDetail> {
        let key = name.to_string();
        let mut detail = self
            .inner
            .reads
            .with(move |r| r.asset_detail(&key, version))
            .await??;
        detail.used_by = self.inner.runtime.pipelines().asset_uses(name);
        Ok(detail)
    }

    /// Performs an asset command for the control path; `audit` makes the audit writes from
    /// the details.
    pub(super) async fn asset_command(
        &self,
        cmd: &Command,
        actor: &Actor,
        reason: &str,
        audit: impl Fn(Value) -> Vec<Op>,
    ) -> Result<Outcome> {
        let _serial = self.inner.asset_lock.lock().await;
        let name = match cmd {
            Command::PutAsset { name, .. }
            | Command::PinAsset { name, .. }
            | Command::RollbackAsset { name } => name.clone(),
            _ => return Err(ApiError::new(ErrorCode::Internal, "not an asset command")),
        };
        if !valid_name(&name) {
            return Err(ApiError::new(
                ErrorCode::Validation,
                name_rule("asset name", &name),
            ));
        }
        let key = name.clone();
        let (latest, (pinned, previous), names) = self
            .inner
            .reads
            .with(move |r| {
                Ok((
                    r.asset_latest(&key)?,
                    r.pin_and_previous(&key)?,
                    r.asset_names()?,
                ))
            })
            .await?;
        let now = Now {
            name: &name,
            at: self.inner.clock.timestamp(),
            actor: &actor.name,
            reason,
            latest,
            pinned,
        };
        let plan = match cmd {
            Command::PutAsset { content, pin, .. } => {
                check_content(&name, content)?;
                if latest > 0 && self.content_of(&name, latest).await? == *content {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        format!(
                            "version {latest} of asset `{name}` already holds exactly this text"
                        ),
                    ));
                }
                now.put(content, *pin)
            }
            Command::PinAsset { version, .. } if latest > 0 => now.pin(*version)?,
            Command::RollbackAsset { .. } if latest > 0 => now.rollback(previous)?,
            _ => return Err(no_asset(&name, &names)),
        };
        let mut ops = plan.ops;
        ops.push(Op::Event(NewEvent {
            at: now.at,
            kind: EventKind::AssetChanged,
            run_id: None,
            stage: None,
            data: json!({"name": name, "action": plan.action, "version": plan.version,
                         "pinned": plan.pinned, "before": pinned,
                         "actor": actor.name, "reason": reason}),
        }));
        ops.extend(audit(plan.details));
        self.inner.writer.commit(ops).await?;
        Ok(Outcome::Asset {
            name,
            version: plan.version,
            pinned: plan.pinned,
            created: latest == 0,
        })
    }

    async fn content_of(&self, name: &str, version: u32) -> Result<String> {
        let key = name.to_string();
        Ok(self
            .inner
            .reads
            .with(move |r| r.asset_version(&key, version))
            .await?
            .and_then(|v| v.content)
            .unwrap_or_default())
    }

    /// Stores each `assets/NAME.*` file of the workspace whose text no version holds yet, as
    /// a new pinned version through the control path (opsdeck as the actor), so editing a
    /// file and restarting is a recorded change, never a silent overwrite.
    pub(super) async fn seed_assets(&self) -> crate::runtime::Result<()> {
        // A file that cannot be an asset is left out, said in the log and by `assets list`:
        // one stray file must not stop every run of the workspace.
        let (files, problems) = asset_files(&self.inner.ws.dir.join("assets"));
        for p in problems {
            tracing::warn!("{p}; left out of the assets until it is fixed");
        }
        let actor = Actor::automatic();
        for (name, file, content) in files {
            let (key, text) = (name.clone(), content.clone());
            let (existing, latest) = self
                .inner
                .reads
                .with(move |r| Ok((r.asset_with_content(&key, &text)?, r.asset_latest(&key)?)))
                .await
                .map_err(RuntimeError::from)?;
            if existing.is_some() {
                continue;
            }
            let reason = if latest == 0 {
                format!("seeded from assets/{file}")
            } else {
                format!("assets/{file} changed since version {latest}")
            };
            let cmd = Command::PutAsset {
                name: name.clone(),
                content,
                pin: true,
            };
            self.control(cmd, &actor, &reason)
                .await
                .map_err(|e| RuntimeError::BadInput(format!("assets/{file}: {}", e.message)))?;
            tracing::info!(asset = %name, "{reason}");
        }
        Ok(())
    }
}

/// The sentences for the files of `ws_dir/assets` that cannot be assets (left out of them).
pub fn asset_file_problems(ws_dir: &Path) -> Vec<String> {
    asset_files(&ws_dir.join("assets")).1
}

/// `(NAME, file name, text)` of every file in `dir` that can be an asset (none when it does
/// not exist), and a sentence naming each file that cannot (the first of two files of one
/// name is kept).
fn asset_files(dir: &Path) -> (Vec<(String, String, String)>, Vec<String>) {
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (Vec::new(), problems);
    };
    let mut out: Vec<(String, String, String)> = Vec::new();
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !path.is_file() || file.starts_with('.') {
            continue;
        }
        let name = path
            .file_stem()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        match asset_file(&path, &name, &out) {
            Ok(text) => out.push((name, file, text)),
            Err(why) => problems.push(format!("assets/{file}: {why}")),
        }
    }
    (out, problems)
}

/// The text of the asset file at `path` named `name`, or why it cannot be one.
fn asset_file(
    path: &Path,
    name: &str,
    before: &[(String, String, String)],
) -> std::result::Result<String, String> {
    if !valid_name(name) {
        return Err(name_rule("the asset name", name));
    }
    if let Some((_, other, _)) = before.iter().find(|(n, _, _)| *n == name) {
        return Err(format!(
            "assets/{other} already defines asset `{name}`; keep one file per asset"
        ));
    }
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    if size > MAX_ASSET_BYTES as u64 {
        return Err(format!(
            "{size} bytes; an asset may be at most {MAX_ASSET_BYTES} bytes"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| "not UTF-8 text; assets are text".to_string())?;
    check_content(name, &text).map_err(|e| e.message)?;
    Ok(text)
}

/// An asset as a command finds it, and who changes it when.
struct Now<'a> {
    name: &'a str,
    at: crate::model::Timestamp,
    actor: &'a str,
    reason: &'a str,
    latest: u32,
    pinned: Option<u32>,
}

/// What a command writes, and what it reports.
struct Plan {
    action: &'static str,
    ops: Vec<Op>,
    version: u32,
    pinned: Option<u32>,
    details: Value,
}

impl Now<'_> {
    fn pin_op(&self, version: u32) -> Op {
        Op::PinAsset {
            name: self.name.to_string(),
            version,
            at: self.at,
            actor: self.actor.to_string(),
            reason: self.reason.to_string(),
        }
    }

    /// A new version; pinned when asked, and always when it is the first (an asset nobody
    /// can use helps no one).
    fn put(&self, content: &str, pin: bool) -> Plan {
        let version = self.latest + 1;
        let mut ops = vec![Op::InsertAsset {
            name: self.name.to_string(),
            version,
            content: content.to_string(),
            at: self.at,
            actor: self.actor.to_string(),
            reason: self.reason.to_string(),
        }];
        let pinned = if pin || self.pinned.is_none() {
            ops.push(self.pin_op(version));
            Some(version)
        } else {
            self.pinned
        };
        Plan {
            action: "put",
            ops,
            version,
            pinned,
            details: json!({"version": version, "bytes": content.len(), "pinned": pinned}),
        }
    }

    fn pin(&self, version: u32) -> Result<Plan> {
        let (name, latest) = (self.name, self.latest);
        if version == 0 || version > latest {
            return Err(ApiError::new(
                ErrorCode::Validation,
                format!("asset `{name}` has versions 1 to {latest}; there is no version {version}"),
            ));
        }
        if self.pinned == Some(version) {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("version {version} of asset `{name}` is already pinned"),
            ));
        }
        Ok(Plan {
            action: "pin",
            ops: vec![self.pin_op(version)],
            version,
            pinned: Some(version),
            details: json!({"version": version, "before": self.pinned}),
        })
    }

    /// Undoes the current pin, so the live pin before it is current again.
    fn rollback(&self, previous: Option<u32>) -> Result<Plan> {
        let (Some(current), Some(before)) = (self.pinned, previous) else {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "asset `{}` has no earlier pin to roll back to (pinned: {}); pin a version instead",
                    self.name,
                    self.pinned
                        .map_or_else(|| "none".to_string(), |p| format!("version {p}"))
                ),
            ));
        };
        Ok(Plan {
            action: "rollback",
            ops: vec![Op::UndoPin {
                name: self.name.to_string(),
            }],
            version: before,
            pinned: Some(before),
            details: json!({"from": current, "to": before}),
        })
    }
}
