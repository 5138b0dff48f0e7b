//! `opsdeck snapshot`: any pane of the dashboard, drawn from live data without a terminal, to
//! SVG, PNG, HTML, ANSI or text, for incident channels, tickets and postmortems.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;

use super::{Cli, CliError, CliResult, EXIT_OK, open_workspace, with_backend};
use crate::client::Backend;
use crate::model::Timestamp;
use crate::tui::headless::{self, Shot};
use crate::tui::snapshot::Format;

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The pane: runs, run, stage, diff, canary, compare, dlq, assets, pipelines, events
    #[arg(long)]
    pub pane: String,
    /// What the pane shows: a run id (run), RUN/STAGE (stage, diff), a canary, BASE,CANDIDATE
    /// (compare), an asset, a pipeline
    #[arg(long, value_name = "ID")]
    pub select: Option<String>,
    /// Columns and rows, like 120x40 (at least 60x15)
    #[arg(long, default_value = "120x40", value_name = "COLSxROWS")]
    pub size: String,
    /// svg, png, html, ansi or txt [default: the output file's extension]
    #[arg(long)]
    pub format: Option<String>,
    /// Where to write it; `-` is standard output
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Pixels per cell unit for PNG (2 for high-DPI screens), from 0.25 to 4
    #[arg(long, default_value_t = 1.0)]
    pub scale: f32,
    /// The time the snapshot says it was taken (its clock and title), RFC 3339 or a duration
    /// ago such as 10m, so the same data gives the same file; the data is the store's now
    /// [default: now]
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
}

/// `COLSxROWS`, within what the dashboard draws and what a report needs.
pub fn parse_size(s: &str) -> Result<(u16, u16), String> {
    use crate::tui::panes::{MIN_HEIGHT, MIN_WIDTH};
    let bad = || format!("`{s}` is not a size; write COLSxROWS, like 120x40");
    let (c, r) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    let (c, r): (u32, u32) = (
        c.trim().parse().map_err(|_| bad())?,
        r.trim().parse().map_err(|_| bad())?,
    );
    if c > 500 || r > 300 {
        return Err(format!(
            "{c}x{r} is larger than a snapshot may be (500x300)"
        ));
    }
    let (c, r) = (c as u16, r as u16);
    if c < MIN_WIDTH || r < MIN_HEIGHT {
        return Err(format!(
            "{c}x{r} is below the dashboard's minimum of {MIN_WIDTH}x{MIN_HEIGHT}"
        ));
    }
    if c > 500 || r > 300 {
        return Err(format!(
            "{c}x{r} is larger than a snapshot may be (500x300)"
        ));
    }
    Ok((c, r))
}

/// Writes `bytes` to `path` whole or not at all: a temporary file beside it, renamed into
/// place, so a failure never leaves half a file.
pub fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        return out
            .write_all(bytes)
            .and_then(|()| out.flush())
            .map_err(|_| CliError::closed_output());
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            CliError::bad_input(format!(
                "-o {} names a directory, not a file",
                path.display()
            ))
        })?;
    // A device, a pipe or a symlink is written through, never replaced: only a regular file
    // (or a new one) is written beside and renamed into place.
    let special = std::fs::symlink_metadata(path).is_ok_and(|m| !m.file_type().is_file());
    if special {
        return std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .and_then(|mut f| f.write_all(bytes).and_then(|()| f.flush()))
            .map_err(|e| CliError::bad_input(format!("cannot write {}: {e}", path.display())));
    }
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(CliError::bad_input(format!(
            "cannot write {}: {e}; nothing was written",
            path.display()
        )));
    }
    Ok(())
}

/// The format asked for, else the one the output file's extension names (`web.png`).
fn format_of(asked: Option<&str>, output: &std::path::Path) -> Result<Format, String> {
    if let Some(f) = asked {
        return Format::parse(f);
    }
    let ext = output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("htm") => Ok(Format::Html),
        Some(e) => Format::parse(e).map_err(|_| {
            format!(
                "`{}` does not say a format by its extension; give --format ({})",
                output.display(),
                Format::NAMES
            )
        }),
        None => Err(format!(
            "give --format ({}): `{}` has no extension to take it from",
            Format::NAMES,
            output.display()
        )),
    }
}

pub async fn run(cli: &Cli, args: &SnapshotArgs) -> CliResult {
    let pane =
        headless::Target::parse(&args.pane, args.select.as_deref()).map_err(CliError::bad_input)?;
    let format = format_of(args.format.as_deref(), &args.output).map_err(CliError::bad_input)?;
    let (cols, rows) = parse_size(&args.size).map_err(CliError::bad_input)?;
    if !(0.25..=4.0).contains(&args.scale) {
        return Err(CliError::bad_input(format!(
            "--scale {} is out of range; give a number from 0.25 to 4",
            args.scale
        )));
    }
    let now = match &args.at {
        Some(t) => Timestamp::parse_since(t, chrono::Utc::now())
            .map_err(|e| CliError::bad_input(format!("--at: {e}")))?
            .datetime(),
        None => chrono::Utc::now(),
    };
    let ws = if cli.remote.is_some() {
        None
    } else {
        Some(open_workspace(cli, true, false)?.0)
    };
    if matches!(pane, headless::Target::Canary(_)) {
        super::warn_if_charts_unhosted(cli, ws.as_ref());
    }
    // `--theme` as for the dashboard, but light by default: reports go on white pages.
    let config = super::dashboard::snapshot_config(cli)?;
    let (output, scale) = (args.output.clone(), args.scale);
    with_backend(
        cli,
        ws,
        "opsdeck snapshot".into(),
        "cannot take the snapshot",
        async move |b: &dyn Backend| {
            let shot = Shot {
                target: pane,
                size: (cols, rows),
                config,
                now,
            };
            let bytes = headless::snapshot(b, shot, format, scale)
                .await
                .map_err(CliError::bad_input)?;
            write_whole(&output, &bytes)?;
            if output != Path::new("-") {
                eprintln!("opsdeck: wrote {}", output.display());
            }
            Ok(EXIT_OK)
        },
    )
    .await
}

#[cfg(test)]
mod format_tests {
    use super::{Format, format_of};
    use std::path::Path;

    #[test]
    fn the_format_comes_from_the_flag_else_the_file_extension() {
        assert_eq!(format_of(None, Path::new("web.PNG")), Ok(Format::Png));
        assert_eq!(format_of(None, Path::new("r/web.htm")), Ok(Format::Html));
        assert_eq!(
            format_of(Some("svg"), Path::new("web.png")),
            Ok(Format::Svg)
        );
        let no_ext = format_of(None, Path::new("-")).unwrap_err();
        assert!(
            no_ext.contains("give --format (svg, png, html, ansi, txt)"),
            "{no_ext}"
        );
        let odd = format_of(None, Path::new("web.jpeg")).unwrap_err();
        assert!(odd.contains("`web.jpeg` does not say a format"), "{odd}");
    }
}
