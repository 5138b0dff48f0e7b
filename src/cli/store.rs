//! `opsdeck store backup FILE` and `opsdeck store restore FILE`: a consistent copy of the
//! workspace's SQLite store, taken while a host runs, and putting one back (refused while a
//! host holds the workspace; the copy is checked first). `opsdeck store migrate --to URL`
//! copies the SQLite store into an empty PostgreSQL database.

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
    /// Copy the workspace's SQLite store into an empty PostgreSQL database, and check the copy
    Migrate {
        /// The PostgreSQL database, like postgres://opsdeck@db.internal:5432/opsdeck
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

/// Backup and restore copy SQLite files; a PostgreSQL store has its own tools.
fn sqlite_only(ws: &crate::host::Workspace, what: &str) -> Result<(), CliError> {
    match ws.store() {
        crate::store::Target::Sqlite(_) => Ok(()),
        pg @ crate::store::Target::Postgres(_) => Err(CliError::bad_input(format!(
            "this workspace's store is the PostgreSQL database {} (`[store] url`); `store {what}` copies SQLite stores, so use PostgreSQL's own pg_dump and pg_restore for it",
            pg.describe()
        ))),
    }
}

/// Holds the workspace for an offline store command, or says who does.
fn hold(state: &std::path::Path, doing: &str) -> Result<HostLock, CliError> {
    std::fs::create_dir_all(state)
        .map_err(|e| CliError::failed(format!("cannot create {}: {e}", state.display())))?;
    HostLock::try_quiet(state)
        .map_err(|e| CliError::failed(e.to_string()))?
        .ok_or_else(|| {
            let by = HostLock::holder(state)
                .map_or_else(String::new, |h| format!(" ({}, pid {})", h.command, h.pid));
            CliError::bad_input(format!(
                "a host holds this workspace{by}; stop it before {doing}"
            ))
        })
}

/// The audit record of an offline store command, by the person at the terminal.
fn record(action: &str, target: &str, reason: &str) -> crate::model::AuditRecord {
    let actor = crate::client::local_actor(crate::model::Via::Cli);
    crate::model::AuditRecord {
        at: crate::model::Timestamp::from_datetime(chrono::Utc::now()),
        actor: actor.name,
        role: Some(actor.role),
        via: Some(actor.via),
        action: action.into(),
        target: crate::model::bounded(target, crate::model::MAX_TARGET_BYTES),
        reason: crate::model::bounded(reason, crate::model::MAX_REASON_BYTES),
        outcome: "ok".into(),
        details: serde_json::json!({}),
    }
}

pub fn run(cli: &Cli, cmd: &StoreCommand) -> CliResult {
    let (ws, _log) = open_workspace(cli, false, false)?;
    let db = ws.db_path();
    match cmd {
        StoreCommand::Backup { file } => {
            sqlite_only(&ws, "backup")?;
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
            sqlite_only(&ws, "restore")?;
            let lock = hold(&ws.state_dir(), "restoring the store")?;
            let shown = crate::model::printable(&file.display().to_string());
            let record = record(
                "store.restore",
                &format!("store/{shown}"),
                &format!("restored from {shown}"),
            );
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
        StoreCommand::Migrate { to } => migrate(&ws, to),
    }
}

fn migrate(ws: &crate::host::Workspace, to: &str) -> CliResult {
    if !crate::config::STORE_SCHEMES
        .iter()
        .any(|s| to.starts_with(s))
    {
        return Err(CliError::bad_input(format!(
            "--to is `{}`; give a PostgreSQL URL starting with {}",
            crate::store::db::redact(to),
            crate::config::STORE_SCHEMES.join(" or ")
        )));
    }
    // Read as `[store] url` is (its form, its TLS parameters), before anything is touched.
    if let Some(why) = crate::config::store_url_problem(to) {
        return Err(CliError::bad_input(format!(
            "--to is `{}`: {why}",
            crate::store::db::redact(to)
        )));
    }
    if let pg @ crate::store::Target::Postgres(_) = ws.store() {
        return Err(CliError::bad_input(format!(
            "this workspace already keeps its state in PostgreSQL ({}); `store migrate` copies a workspace's SQLite file, so leave `[store] url` (and OPSDECK_STORE__URL) unset to migrate it",
            pg.describe()
        )));
    }
    let db = ws.db_path();
    if !db.exists() {
        return Err(CliError::bad_input(format!(
            "the workspace {} has no SQLite store to migrate (nothing has run there)",
            ws.dir.display()
        )));
    }
    let lock = hold(&ws.state_dir(), "migrating the store")?;
    // Runs a crashed host left behind are marked interrupted first, as a new host would.
    let mut src = crate::store::open_sqlite(&db, true).map_err(|e| CliError::bad_input(e.0))?;
    crate::store::schema::migrate(&mut src).map_err(|e| CliError::bad_input(e.0))?;
    let (interrupted, _) = crate::store::mark_interrupted(
        &mut src,
        crate::model::Timestamp::from_datetime(chrono::Utc::now()),
    )
    .map_err(|e| CliError::failed(e.0))?;
    drop(src);
    if !interrupted.is_empty() {
        say!(
            "marked {} runs of a stopped host interrupted first",
            interrupted.len()
        )?;
    }
    let shown = crate::store::db::redact(to);
    let mut target = crate::store::Db::postgres(to).map_err(|e| CliError::bad_input(e.0))?;
    let audit = record(
        "store.migrate",
        &format!("store/{shown}"),
        &format!("copied from {}", db.display()),
    );
    let counts = crate::store::migrate::sqlite_to(&db, &mut target, audit)
        .map_err(|e| CliError::bad_input(e.0))?;
    drop(lock);
    let listed: Vec<String> = counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
    say!("copied the store into {shown}: {}", listed.join(", "))?;
    if crate::store::db::has_password(to) {
        say!(
            "every table holds the same number of rows in both; to use it, set `url` under [store] in opsdeck.toml (or OPSDECK_STORE__URL) to the URL given to --to (its password is not shown here)"
        )?;
    } else {
        say!(
            "every table holds the same number of rows in both; to use it, set `url = \"{to}\"` under [store] in opsdeck.toml (or OPSDECK_STORE__URL)"
        )?;
    }
    Ok(EXIT_OK)
}
