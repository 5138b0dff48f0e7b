//! `opsdeck assets`: list, show and diff versioned assets; put a new version, pin one, roll
//! back to the one pinned before. Reads work while another process hosts the workspace;
//! changes go through the host's control path (the served one, or one started here).

use std::path::{Path, PathBuf};

use std::io::Write as _;

use clap::Subcommand;

use super::output::{Table, print_json, short, when};
use super::{Cli, CliError, CliResult, EXIT_OK, command, open_workspace, served, with_backend};
use crate::client::Backend;
use crate::host::Workspace;
use crate::model::Command;
use crate::model::asset::{AssetDetail, AssetSummary, AssetUse, MAX_ASSET_BYTES};
use crate::model::diff::{LineTag, diff};

#[derive(Debug, Subcommand)]
pub enum AssetsCommand {
    /// Every asset: pinned and newest version, and the stages that use it
    List {
        #[arg(long)]
        json: bool,
    },
    /// One asset's versions and pins, and the text of one version (the pinned one by default)
    Show {
        name: String,
        /// Show this version's text instead of the pinned one's
        #[arg(long, value_name = "N", value_parser = crate::model::asset::parse_version)]
        version: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// The lines that differ between two versions
    Diff {
        name: String,
        #[arg(value_parser = crate::model::asset::parse_version)]
        a: u32,
        #[arg(value_parser = crate::model::asset::parse_version)]
        b: u32,
        #[arg(long)]
        json: bool,
    },
    /// Store FILE as a new version (`-` reads standard input); runs keep the pinned version
    /// unless --pin
    Put {
        name: String,
        file: PathBuf,
        /// Pin the new version at once
        #[arg(long)]
        pin: bool,
        /// Why, for the audit log (needed with --pin)
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Make version N the one runs use
    Pin {
        name: String,
        #[arg(value_parser = crate::model::asset::parse_version)]
        version: u32,
        /// Why, for the audit log
        #[arg(long)]
        reason: String,
    },
    /// Undo the current pin: runs use the version pinned before it again
    Rollback {
        name: String,
        /// Why, for the audit log
        #[arg(long)]
        reason: String,
    },
}

pub async fn run(cli: &Cli, cmd: &AssetsCommand) -> CliResult {
    match cmd {
        AssetsCommand::List { json } => {
            let got = reads(cli, [Want::List]).await?;
            let [Got::List(list)] = got.as_slice() else {
                return Err(CliError::failed("the assets could not be read"));
            };
            let code = print_list(list, *json)?;
            // Files the host left out, so a stray file is seen, not just missing.
            if cli.remote.is_none()
                && let Ok((ws, _)) = open_workspace(cli, false, false)
            {
                for p in crate::host::asset_file_problems(&ws.dir) {
                    let _ = writeln!(
                        std::io::stderr(),
                        "warning: {p}; it is left out of the assets until it is fixed"
                    );
                }
            }
            Ok(code)
        }
        AssetsCommand::Show {
            name,
            version,
            json,
        } => {
            let got = reads(cli, [Want::One(name.clone(), *version)]).await?;
            let [Got::One(d)] = got.as_slice() else {
                return Err(CliError::failed("the asset could not be read"));
            };
            print_detail(d, *json)
        }
        AssetsCommand::Diff { name, a, b, json } => {
            let wants = [
                Want::One(name.clone(), Some(*a)),
                Want::One(name.clone(), Some(*b)),
            ];
            let got = reads(cli, wants).await?;
            let [Got::One(x), Got::One(y)] = got.as_slice() else {
                return Err(CliError::failed("the asset could not be read"));
            };
            print_diff(name, (x, y), *json)
        }
        AssetsCommand::Put {
            name,
            file,
            pin,
            reason,
        } => {
            let content = read_text(file)?;
            let cmd = Command::PutAsset {
                name: name.clone(),
                content,
                pin: *pin,
            };
            change(cli, cmd, reason, &format!("cannot store asset `{name}`")).await
        }
        AssetsCommand::Pin {
            name,
            version,
            reason,
        } => {
            let cmd = Command::PinAsset {
                name: name.clone(),
                version: *version,
            };
            change(cli, cmd, reason, &format!("cannot pin asset `{name}`")).await
        }
        AssetsCommand::Rollback { name, reason } => {
            let cmd = Command::RollbackAsset { name: name.clone() };
            change(
                cli,
                cmd,
                reason,
                &format!("cannot roll back asset `{name}`"),
            )
            .await
        }
    }
}

fn print_diff(name: &str, (x, y): (&AssetDetail, &AssetDetail), json: bool) -> CliResult {
    let text = |d: &AssetDetail| d.shown.content.clone().unwrap_or_default();
    let lines = diff(
        &serde_json::Value::String(text(x)),
        &serde_json::Value::String(text(y)),
    )
    .lines;
    if json {
        print_json(&lines)?;
        return Ok(EXIT_OK);
    }
    say!(
        "asset {name}: version {} -> version {}",
        x.shown.version,
        y.shown.version
    )?;
    if lines.iter().all(|l| l.tag == LineTag::Same) {
        say!("the two versions hold the same text")?;
    }
    for l in lines.iter().filter(|l| l.tag != LineTag::Same) {
        let sign = if l.tag == LineTag::Added { '+' } else { '-' };
        let at = l.new.or(l.old).unwrap_or(0);
        say!("{sign}{at:>5} {}", crate::model::printable(&l.text))?;
    }
    Ok(EXIT_OK)
}

/// A read of assets.
enum Want {
    List,
    One(String, Option<u32>),
}

enum Got {
    List(Vec<AssetSummary>),
    One(AssetDetail),
}

async fn fetch(b: &dyn Backend, want: &Want) -> Result<Got, CliError> {
    Ok(match want {
        Want::List => Got::List(b.assets().await?),
        Want::One(name, v) => Got::One(b.asset(name, *v).await?),
    })
}

fn fetch_stored(ws: &Workspace, want: &Want) -> Result<Got, CliError> {
    let r = super::reader(ws)?;
    Ok(match want {
        Want::List => Got::List(ws.asset_summaries(r.assets().map_err(|e| CliError::failed(e.0))?)),
        Want::One(name, v) => {
            let mut d = r
                .asset_detail(name, *v)
                .map_err(|e| CliError::failed(e.0))??;
            d.used_by = ws.asset_uses(name);
            Got::One(d)
        }
    })
}

/// Reads from the served runtime; else from the store while another process hosts the
/// workspace; else through a host started here (which first stores new `assets/` files).
async fn reads<const N: usize>(cli: &Cli, wants: [Want; N]) -> Result<Vec<Got>, CliError> {
    let ws = if cli.remote.is_some() {
        None
    } else {
        Some(open_workspace(cli, false, false)?)
    };
    if let Some(remote) = served(cli, ws.as_ref().map(|(w, _)| w))? {
        let mut out = Vec::new();
        for w in &wants {
            out.push(fetch(&remote, w).await?);
        }
        return Ok(out);
    }
    let Some((ws, _log)) = ws else {
        return Err(CliError::bad_input("no workspace and no --remote"));
    };
    if crate::host::lock::HostLock::holder(&ws.state_dir()).is_some() {
        return wants.iter().map(|w| fetch_stored(&ws, w)).collect();
    }
    let mut out = Vec::new();
    let slot = &mut out;
    super::run::with_host(
        ws,
        "opsdeck assets".into(),
        "cannot read assets",
        async move |h| {
            let b = crate::client::Embedded::new(h.clone());
            for w in &wants {
                slot.push(fetch(&b, w).await?);
            }
            Ok(EXIT_OK)
        },
    )
    .await?;
    Ok(out)
}

/// The text of `file` (or standard input for `-`), refused past the asset limit or when it
/// is not UTF-8.
fn read_text(file: &Path) -> Result<String, CliError> {
    use std::io::Read as _;
    let shown = file.display();
    let mut bytes = Vec::new();
    let limit = MAX_ASSET_BYTES as u64 + 1;
    let read = if file == Path::new("-") {
        std::io::stdin().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    read.map_err(|e| CliError::bad_input(format!("cannot read {shown}: {e}")))?;
    if bytes.len() > MAX_ASSET_BYTES {
        return Err(CliError::bad_input(format!(
            "{shown} is over {MAX_ASSET_BYTES} bytes; an asset version may be at most that"
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| CliError::bad_input(format!("{shown} is not UTF-8 text; assets are text")))
}

/// Sends an asset change down the control path and says what came of it.
async fn change(cli: &Cli, cmd: Command, reason: &str, what: &str) -> CliResult {
    let ws = if cli.remote.is_some() {
        None
    } else {
        Some(open_workspace(cli, false, false)?.0)
    };
    let target = cmd.target();
    with_backend(
        cli,
        ws,
        format!("opsdeck assets ({target})"),
        what,
        async move |b| {
            let outcome = command(b, cmd, reason).await?;
            say!("{}", outcome.message())?;
            Ok(EXIT_OK)
        },
    )
    .await
}

fn uses_text(uses: &[AssetUse]) -> String {
    uses.iter()
        .map(|u| match u.version {
            Some(v) => format!("{}/{}@{v}", u.pipeline, u.stage),
            None => format!("{}/{}", u.pipeline, u.stage),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_list(list: &[AssetSummary], json: bool) -> CliResult {
    if json {
        print_json(&list)?;
        return Ok(EXIT_OK);
    }
    if list.is_empty() {
        say!(
            "no assets yet; put files in the workspace's assets/ directory or `opsdeck assets put NAME FILE`"
        )?;
        return Ok(EXIT_OK);
    }
    let mut t = Table::new(vec!["ASSET", "PINNED", "LATEST", "UPDATED", "USED BY"]);
    for a in list {
        t.row(vec![
            a.name.clone(),
            a.pinned.map_or_else(|| "-".into(), |v| v.to_string()),
            a.latest.to_string(),
            when(Some(a.updated_at)),
            short(&uses_text(&a.used_by), 60),
        ]);
    }
    say_raw!("{}", t.render())?;
    Ok(EXIT_OK)
}

fn print_detail(d: &AssetDetail, json: bool) -> CliResult {
    if json {
        print_json(d)?;
        return Ok(EXIT_OK);
    }
    let pinned = d.pinned.map_or_else(
        || "no version pinned".to_string(),
        |v| format!("version {v} pinned"),
    );
    say!("asset {}: {pinned}", d.name)?;
    if !d.used_by.is_empty() {
        say!("used by {}", uses_text(&d.used_by))?;
    }
    say!()?;
    let mut t = Table::new(vec!["VERSION", "CREATED", "BY", "BYTES", "REASON"]);
    for v in &d.versions {
        let mark = if Some(v.version) == d.pinned {
            " *"
        } else {
            ""
        };
        t.row(vec![
            format!("{}{mark}", v.version),
            when(Some(v.created_at)),
            v.actor.clone(),
            v.bytes.to_string(),
            short(&crate::model::printable(&v.reason), 60),
        ]);
    }
    say_raw!("{}", t.render())?;
    if !d.pins.is_empty() {
        say!()?;
        let mut t = Table::new(vec!["PINNED", "AT", "BY", "REASON"]);
        for p in &d.pins {
            let undone = if p.undone { " (rolled back)" } else { "" };
            t.row(vec![
                format!("{}{undone}", p.version),
                when(Some(p.at)),
                p.actor.clone(),
                short(&crate::model::printable(&p.reason), 60),
            ]);
        }
        say_raw!("{}", t.render())?;
    }
    say!("\n--- version {} ---", d.shown.version)?;
    say_raw!(
        "{}",
        crate::model::printable_text(d.shown.content.as_deref().unwrap_or_default())
    )?;
    Ok(EXIT_OK)
}
