//! `opsdeck` with no command: hosts the workspace (schedules run, interrupted runs resume) and
//! opens the dashboard on it. When standard output is not a terminal it prints the event log as
//! lines instead, so `opsdeck > log` still does something useful.

use std::io::IsTerminal;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use super::output::event_line;
use super::serve::{Serving, Stop, check_problems, local_endpoint, stop_signal};
use super::{Cli, CliError, CliResult, EXIT_OK, open_workspace_from, report_interrupted};
use crate::client::Embedded;
use crate::config::{Settings, user_dir};
use crate::host::{Host, HostOptions};
use crate::tui::app::Config;
use crate::tui::keymap::Keymap;
use crate::tui::theme::{ColorDepth, Theme};

fn problems(what: &str, diags: &[crate::diag::Diagnostic]) -> CliError {
    CliError::bad_input(format!(
        "the {what} cannot be used:\n{}",
        crate::diag::render_all(diags)
    ))
}

/// Where a theme or keymap name came from: its flag, else the `[ui]` setting (and where that
/// may be set), so the refusal says what to change.
fn named_by(flag: bool, key: &str) -> String {
    if flag {
        format!("--{key}")
    } else {
        format!(
            "ui.{key} (set in opsdeck.toml, OPSDECK_UI__{} or the user's config.toml)",
            key.to_ascii_uppercase()
        )
    }
}

/// [`problems`] for a theme or keymap named `name` by `from`: a name that does not exist in
/// one sentence, a file with problems with each of them.
fn unusable(what: &str, name: &str, from: &str, diags: &[crate::diag::Diagnostic]) -> CliError {
    match diags {
        [only] if only.file == what => CliError::bad_input(format!(
            "the {what} `{name}` named by {from} cannot be used: {}",
            only.message
        )),
        _ => CliError::bad_input(format!(
            "the {what} `{name}` named by {from} cannot be used:\n{}",
            crate::diag::render_all(diags)
        )),
    }
}

/// Where a user's own themes and keymaps live (`themes/`, `keymaps/` in the user's config
/// directory), if there is one.
pub fn user_ui_dirs() -> (Option<PathBuf>, Option<PathBuf>) {
    let dir = user_dir();
    (
        dir.as_ref().map(|d| d.join("themes")),
        dir.as_ref().map(|d| d.join("keymaps")),
    )
}

/// The dashboard's configuration for a snapshot: `--theme` (light by default, for white
/// pages) in true colour, the keymap from `--keymap` (its keys show in the footer).
pub fn snapshot_config(cli: &Cli) -> Result<Config, CliError> {
    let (theme_dir, keymap_dir) = user_ui_dirs();
    let name = cli.theme.clone().unwrap_or_else(|| "light".into());
    let theme = Theme::load(&name, theme_dir.as_deref(), ColorDepth::TrueColor)
        .map_err(|d| unusable("theme", &name, "--theme", &d))?;
    let keymap_name = cli.keymap.as_deref().unwrap_or("default");
    let keymap = Keymap::load(keymap_name, keymap_dir.as_deref())
        .map_err(|d| unusable("keymap", keymap_name, "--keymap", &d))?;
    Ok(Config {
        theme,
        keymap,
        mouse: false,
        theme_dir,
        depth: ColorDepth::TrueColor,
        no_color: false,
        label: None,
        read_only: false,
        reports_dir: None,
    })
}

/// Theme, keymap and mouse from the flags, then settings; `NO_COLOR` forces the mono theme.
pub fn dashboard_config(cli: &Cli, settings: &Settings) -> Result<Config, CliError> {
    let (theme_dir, keymap_dir) = user_ui_dirs();
    let depth = ColorDepth::detect();
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let theme_name = cli
        .theme
        .clone()
        .unwrap_or_else(|| settings.ui.theme.clone());
    let theme = if no_color {
        Theme::mono()
    } else {
        Theme::load(&theme_name, theme_dir.as_deref(), depth).map_err(|d| {
            unusable(
                "theme",
                &theme_name,
                &named_by(cli.theme.is_some(), "theme"),
                &d,
            )
        })?
    };
    let keymap_name = cli
        .keymap
        .clone()
        .unwrap_or_else(|| settings.ui.keymap.clone());
    let keymap = Keymap::load(&keymap_name, keymap_dir.as_deref()).map_err(|d| {
        unusable(
            "keymap",
            &keymap_name,
            &named_by(cli.keymap.is_some(), "keymap"),
            &d,
        )
    })?;
    Ok(Config {
        theme,
        keymap,
        mouse: cli.mouse || settings.ui.mouse,
        theme_dir,
        depth,
        no_color,
        label: None,
        read_only: false,
        reports_dir: crate::config::reports_dir(&settings.ui),
    })
}

/// The token for `--remote`: from `--token-file`, else `$OPSDECK_TOKEN`.
pub fn remote_token(cli: &Cli) -> Result<Option<String>, CliError> {
    if let Some(path) = &cli.token_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::bad_input(format!(
                "cannot read the token file {}: {e}",
                path.display()
            ))
        })?;
        warn_if_shared(path);
        let token = text.trim().to_string();
        if token.is_empty() {
            return Err(CliError::bad_input(format!(
                "the token file {} is empty",
                path.display()
            )));
        }
        return Ok(Some(token));
    }
    Ok(std::env::var("OPSDECK_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty()))
}

/// The dashboard on a runtime served elsewhere: nothing is hosted here.
async fn run_remote(cli: &Cli, url: &str) -> CliResult {
    let parsed = reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            CliError::bad_input(format!(
                "--remote `{url}` is not a URL; write it like http://127.0.0.1:7070"
            ))
        })?;
    let settings = crate::config::load(
        &crate::config::user_config_path()
            .into_iter()
            .collect::<Vec<_>>(),
        &[],
    )
    .map_err(|d| problems("user configuration", &d))?;
    let _log = crate::logging::init(None, &settings.log.level, cli.verbose, false);
    let remote = crate::client::Remote::new(parsed.as_str(), remote_token(cli)?);
    // Fail now, with the server's own words, rather than open a dashboard on nothing.
    crate::client::Backend::overview(&remote)
        .await
        .map_err(|e| {
            CliError::failed(format!(
                "cannot open the dashboard on {}: {e}",
                remote.base()
            ))
        })?;
    let mut config = dashboard_config(cli, &settings)?;
    // The server's address, so nobody mistakes which runtime this is.
    config.label = parsed.host_str().map(|h| {
        parsed
            .port()
            .map_or_else(|| h.to_string(), |p| format!("{h}:{p}"))
    });
    config.read_only = cli.read_only;
    if !std::io::stdout().is_terminal() {
        return Err(CliError::bad_input(
            "the remote dashboard needs a terminal; for the event log use `opsdeck events --follow` on the server",
        ));
    }
    crate::tui::run(Arc::new(remote), config)
        .await
        .map(exit_code)
        .map_err(|e| CliError::failed(format!("the terminal failed: {e}")))
}

pub async fn run(cli: &Cli) -> CliResult {
    if let Some(url) = &cli.remote {
        return run_remote(cli, url).await;
    }
    let (ws, _log, source) = open_workspace_from(cli, true, false)?;
    check_problems(&ws)?;
    // Checked even when it will not be used, so a broken theme or keymap is found early.
    let mut config = dashboard_config(cli, &ws.settings)?;
    if source == crate::host::workspace::Source::Demo {
        config.label = Some("demo".into());
    }
    config.read_only = cli.read_only;
    let tty = std::io::stdout().is_terminal();
    let config = tty.then_some(config);
    let serving = Serving {
        config: ws.server.clone(),
        read_only: cli.read_only,
        session_token: true,
    };
    let host = Host::start(ws, HostOptions::long_lived("opsdeck (dashboard)"))
        .await
        .map_err(|e| CliError::from(e).context("cannot host the workspace"))?;
    if source == crate::host::workspace::Source::Demo {
        crate::host::demo::prime(&host).await;
    }
    let endpoint = local_endpoint(&host, serving).await;
    let result = match config {
        Some(config) => crate::tui::run(Arc::new(Embedded::new(host.clone())), config)
            .await
            .map(exit_code)
            .map_err(|e| CliError::failed(format!("the terminal failed: {e}"))),
        None => print_events(&host).await,
    };
    if let Some(e) = endpoint {
        e.stop().await;
    }
    report_interrupted(&host.shutdown().await);
    result
}

/// 130 after Ctrl-C, as for any interrupted command; 0 otherwise.
fn exit_code(ended: crate::tui::Ended) -> u8 {
    match ended {
        crate::tui::Ended::Quit => EXIT_OK,
        crate::tui::Ended::Interrupted => super::EXIT_INTERRUPTED,
    }
}

/// The event log as lines, until Ctrl-C or SIGTERM.
async fn print_events(host: &Host) -> CliResult {
    let mut events = host.subscribe();
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            why = &mut stop => return Ok(match why {
                Stop::Interrupt => super::EXIT_INTERRUPTED,
                Stop::Terminate => EXIT_OK,
            }),
            ev = events.recv() => {
                if let Ok(ev) = ev {
                    say!("{}", event_line(&ev))?;
                }
            }
        }
    }
}

/// Warns (without refusing: the file is the user's to keep) when a token file can be read by
/// the file's group or by others, as ssh does for keys.
fn warn_if_shared(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            let _ = writeln!(
                std::io::stderr(),
                "warning: the token file {} can be read by others (mode {:o}); `chmod 600 {}` keeps the token yours",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
}
