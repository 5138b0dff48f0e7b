//! `opsdeck validate FILE...`: one line per valid file, one line per problem otherwise.

use std::path::PathBuf;

use super::{CliResult, EXIT_BAD_INPUT, EXIT_OK};
use crate::host::workspace::OTHER_SECTIONS;
use crate::runtime::spec;

/// The files of the workspace (`--workspace`, `OPSDECK_WORKSPACE`, else the current
/// directory when it is one): its `opsdeck.toml`, then `pipelines/*.toml` by name.
pub fn workspace_files(flag: Option<&std::path::Path>) -> Result<Vec<PathBuf>, super::CliError> {
    let (dir, source) = crate::host::workspace::resolve(flag, false)?;
    if source == crate::host::workspace::Source::Demo {
        return Err(super::CliError::bad_input(
            "no workspace here to check: give the files (opsdeck validate FILE...), pass --workspace DIR or run it in a workspace",
        ));
    }
    let mut files = Vec::new();
    let settings = dir.join("opsdeck.toml");
    if settings.is_file() {
        files.push(settings);
    }
    let mut pipelines: Vec<PathBuf> = std::fs::read_dir(dir.join("pipelines"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
                .collect()
        })
        .unwrap_or_default();
    pipelines.sort();
    files.extend(pipelines);
    if files.is_empty() {
        return Err(super::CliError::bad_input(format!(
            "{} holds no opsdeck.toml and no pipelines/*.toml to check; give the files",
            dir.display()
        )));
    }
    Ok(files)
}

pub fn run(files: &[PathBuf]) -> CliResult {
    let mut bad = false;
    let mut seen: Vec<(String, &PathBuf)> = Vec::new();
    for f in files {
        if is_settings(f) {
            bad |= !settings_file(f)?;
            continue;
        }
        match spec::load_file(f) {
            Ok(p) if seen.iter().any(|(n, _)| *n == p.name) => {
                bad = true;
                let first = seen
                    .iter()
                    .find(|(n, _)| *n == p.name)
                    .map(|(_, f)| f.display().to_string());
                say!(
                    "{}: pipeline `{}` is already defined in {}; names in a workspace must be unique",
                    f.display(),
                    p.name,
                    first.unwrap_or_default()
                )?;
            }
            Ok(p) => {
                seen.push((p.name.clone(), f));
                let schedule = p
                    .schedule
                    .as_ref()
                    .map(|s| format!(", schedule `{}`", s.text()))
                    .unwrap_or_default();
                let n = p.stages.len();
                let plural = if n == 1 { "" } else { "s" };
                say!(
                    "{}: ok: pipeline `{}`, {n} stage{plural}{schedule}",
                    f.display(),
                    p.name
                )?;
            }
            Err(problems) => {
                bad = true;
                for d in problems {
                    say!("{}", d.render())?;
                }
            }
        }
    }
    Ok(if bad { EXIT_BAD_INPUT } else { EXIT_OK })
}

/// Whether `f` is settings (`opsdeck.toml`, a candidate for it under another name, the user's
/// `config.toml`) rather than a pipeline: told by its content, not only its name, so a
/// candidate config is not checked as a pipeline with no `[pipeline]` table.
fn is_settings(f: &std::path::Path) -> bool {
    if f.file_name().is_some_and(|n| n == "opsdeck.toml") {
        return true;
    }
    std::fs::read_to_string(f)
        .ok()
        .and_then(|text| toml::from_str::<toml::Table>(&text).ok())
        .is_some_and(|t| !t.is_empty() && !t.contains_key("pipeline") && !t.contains_key("stage"))
}

/// Loads the theme and keymap `[ui]` names, as the dashboard would: a name that is neither
/// built in nor a user file is an error at the setting; a user file with problems is an error
/// at the setting, and its own problems (in that file) go to `theirs`.
fn ui_names(
    c: &mut crate::diag::Checker<'_>,
    root: &toml::de::DeTable<'_>,
    theirs: &mut Vec<crate::diag::Diagnostic>,
) {
    let Some(toml::de::DeValue::Table(ui)) = root.get("ui").map(toml::Spanned::get_ref) else {
        return;
    };
    let (theme_dir, keymap_dir) = super::dashboard::user_ui_dirs();
    for key in ["theme", "keymap"] {
        let Some(value) = ui.get(key) else { continue };
        let toml::de::DeValue::String(name) = value.get_ref() else {
            continue;
        };
        let loaded = if key == "theme" {
            crate::tui::theme::Theme::load(
                name,
                theme_dir.as_deref(),
                crate::tui::theme::ColorDepth::TrueColor,
            )
            .map(drop)
        } else {
            crate::tui::keymap::Keymap::load(name, keymap_dir.as_deref()).map(drop)
        };
        let Err(found) = loaded else { continue };
        // "There is no theme `x`" concerns the name itself; anything else is in its file.
        if let [only] = &found[..]
            && only.file == key
        {
            c.error(&value.span(), format!("ui.{key}: {}", only.message));
        } else {
            c.error(
                &value.span(),
                format!("ui.{key}: the {key} `{name}` cannot be used; its problems follow"),
            );
            theirs.extend(found);
        }
    }
}

/// Checks a workspace's `opsdeck.toml`: its settings and its canaries.
fn settings_file(f: &std::path::Path) -> Result<bool, super::CliError> {
    let shown = f.display().to_string();
    let text = match std::fs::read_to_string(f) {
        Ok(t) => t,
        Err(e) => {
            say!("{shown}: cannot read the file: {e}")?;
            return Ok(false);
        }
    };
    let src = crate::diag::SourceFile::new(shown.clone(), text);
    let mut problems = crate::config::check(&src, OTHER_SECTIONS);
    let tables = crate::diag::check_text(&shown, src.text(), |c, root| {
        crate::canary::config::parse_with_server(c, root).0
    });
    let canaries = match tables {
        Ok(c) => c,
        Err(p) => {
            problems.extend(p);
            Vec::new()
        }
    };
    // The theme and keymap the settings name must exist and load, as the dashboard will ask.
    let mut theirs = Vec::new();
    if let Err(p) = crate::diag::check_text(&shown, src.text(), |c, root| {
        ui_names(c, root, &mut theirs);
    }) {
        problems.extend(p);
    }
    problems.extend(theirs);
    // This file's problems in order, then those of the theme or keymap it names.
    problems.sort_by_key(|d| (d.file != shown, d.line, d.col));
    problems.dedup();
    if problems.is_empty() {
        let names: Vec<&str> = canaries.iter().map(|c| c.name.as_str()).collect();
        let list = if names.is_empty() {
            "no canaries".to_string()
        } else {
            format!("canaries {}", names.join(", "))
        };
        say!("{shown}: ok: settings, {list}")?;
        return Ok(true);
    }
    for d in problems {
        say!("{}", d.render())?;
    }
    Ok(false)
}
