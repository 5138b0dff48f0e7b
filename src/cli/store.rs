//! `opsdeck store backup FILE` and `opsdeck store restore FILE`: a consistent copy of the
//! workspace's SQLite store, taken while a host runs, and putting one back (refused while a
//! host holds the workspace; the copy is checked first).

use std::path::PathBuf;

use clap::Subcommand;

use super::{Cli, CliError, CliResult, EXIT_OK, open_workspace};
use crate::host::lock::HostLock;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Write a consistent copy of the store to FILE, even while a host writes to it
    Backup { file: PathBuf },
    /// Replace the store with the copy in FILE (checked first; refused while a host runs)
    Restore { file: PathBuf },
}

pub fn run(cli: &Cli, cmd: &StoreCommand) -> CliResult {
    let (ws, _log) = open_workspace(cli, false, false)?;
    let db = ws.db_path();
    match cmd {
        StoreCommand::Backup { file } => {
            if !db.exists() {
                return Err(CliError::bad_input(format!(
                    "the workspace {} has no store yet (nothing has run there)",
                    ws.dir.display()
                )));
            }
            if file.canonicalize().ok() == db.canonicalize().ok() && file.exists() {
                return Err(CliError::bad_input(
                    "the backup would overwrite the store itself; give another file",
                ));
            }
            let runs =
                crate::store::backup::backup(&db, file).map_err(|e| CliError::bad_input(e.0))?;
            say!(
                "wrote a copy of the store with {runs} runs to {}",
                file.display()
            )?;
            Ok(EXIT_OK)
        }
        StoreCommand::Restore { file } => {
            if !file.is_file() {
                return Err(CliError::bad_input(format!(
                    "{} is not a file",
                    file.display()
                )));
            }
            let state = ws.state_dir();
            std::fs::create_dir_all(&state)
                .map_err(|e| CliError::failed(format!("cannot create {}: {e}", state.display())))?;
            let lock = HostLock::try_quiet(&state)
                .map_err(|e| CliError::failed(e.to_string()))?
                .ok_or_else(|| {
                    let by = HostLock::holder(&state)
                        .map_or_else(String::new, |h| format!(" ({}, pid {})", h.command, h.pid));
                    CliError::bad_input(format!(
                        "a host holds this workspace{by}; stop it before restoring the store"
                    ))
                })?;
            let actor = crate::client::local_actor(crate::model::Via::Cli);
            let shown = crate::model::printable(&file.display().to_string());
            let record = crate::model::AuditRecord {
                at: crate::model::Timestamp::from_datetime(chrono::Utc::now()),
                actor: actor.name,
                role: Some(actor.role),
                via: Some(actor.via),
                action: "store.restore".into(),
                target: crate::model::bounded(
                    &format!("store/{shown}"),
                    crate::model::MAX_TARGET_BYTES,
                ),
                reason: crate::model::bounded(
                    &format!("restored from {shown}"),
                    crate::model::MAX_REASON_BYTES,
                ),
                outcome: "ok".into(),
                details: serde_json::json!({}),
            };
            let checked = crate::store::backup::restore(file, &db, record)
                .map_err(|e| CliError::bad_input(e.0))?;
            drop(lock);
            tracing::warn!(from = %file.display(), runs = checked.runs, "the store was restored from a copy");
            say!(
                "restored the store from {} (schema version {}, {} runs)",
                file.display(),
                checked.version,
                checked.runs
            )?;
            Ok(EXIT_OK)
        }
    }
}
