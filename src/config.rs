//! Layered settings: built-in defaults < `~/.config/opsdeck/config.toml` < the workspace's
//! `opsdeck.toml` < `OPSDECK_*` environment (`OPSDECK_STORE__MAX_OUTPUT_BYTES=...`) < flags.
//! Each file is first checked with locations (unknown keys, wrong types), then layered.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::diag::{Checker, Diagnostic, SourceFile};

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub store: StoreSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct StoreSettings {
    /// Outputs, inputs and stderr larger than this are stored truncated with a marker.
    pub max_output_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    pub level: String,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            max_output_bytes: 1024 * 1024,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
        }
    }
}

pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

/// The user's config file, if the platform has a config directory.
pub fn user_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "opsdeck").map(|d| d.config_dir().join("config.toml"))
}

/// Checks the settings tables of one file. `other_sections` are top-level tables that other
/// modules own and check (canaries, server tokens), accepted here without looking inside.
pub fn check(src: &SourceFile, other_sections: &[&str]) -> Vec<Diagnostic> {
    let doc = match Checker::parse(src) {
        Ok(d) => d,
        Err(problems) => return problems,
    };
    let mut c = Checker::new(src);
    let root = doc.get_ref();
    let known: Vec<&str> = ["store", "log"]
        .iter()
        .chain(other_sections)
        .copied()
        .collect();
    c.known_keys(root, &known, "the file");
    if let Some((t, _)) = c.table(root, "store", "the file") {
        c.known_keys(t, &["max_output_bytes"], "[store]");
        c.int(t, "max_output_bytes", "[store]", 1024, 1 << 30);
    }
    if let Some((t, _)) = c.table(root, "log", "the file") {
        c.known_keys(t, &["level"], "[log]");
        if let Some((level, span)) = c.str(t, "level", "[log]")
            && !LOG_LEVELS.contains(&level)
        {
            c.error(
                &span,
                format!(
                    "`level` in [log] is `{level}`; valid levels: {}",
                    LOG_LEVELS.join(", ")
                ),
            );
        }
    }
    c.into_problems()
}

/// Loads settings from the given files (missing files are skipped) and the environment.
pub fn load(files: &[PathBuf], other_sections: &[&str]) -> Result<Settings, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let mut builder = config::Config::builder();
    for path in files.iter().filter(|p| p.is_file()) {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                problems.extend(check(
                    &SourceFile::new(path.display().to_string(), text),
                    other_sections,
                ));
                builder = builder.add_source(
                    config::File::from(path.as_path()).format(config::FileFormat::Toml),
                );
            }
            Err(e) => problems.push(Diagnostic::whole_file(
                path.display().to_string(),
                format!("cannot read the file: {e}"),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    builder = builder.add_source(
        config::Environment::with_prefix("OPSDECK")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true),
    );
    let settings: Settings = builder
        .build()
        .and_then(config::Config::try_deserialize)
        .map_err(|e| {
            vec![Diagnostic::whole_file(
                "settings (files and OPSDECK_* environment)",
                e.to_string(),
            )]
        })?;
    if !LOG_LEVELS.contains(&settings.log.level.as_str()) {
        return Err(vec![Diagnostic::whole_file(
            "settings (OPSDECK_LOG__LEVEL)",
            format!(
                "log level `{}` is not valid; valid levels: {}",
                settings.log.level,
                LOG_LEVELS.join(", ")
            ),
        )]);
    }
    Ok(settings)
}

/// Whether a path is a workspace: it has `opsdeck.toml` or a `pipelines/` directory.
pub fn looks_like_workspace(dir: &Path) -> bool {
    dir.join("opsdeck.toml").is_file() || dir.join("pipelines").is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_keys_types_and_choices_with_locations() {
        let src = SourceFile::new(
            "opsdeck.toml",
            "[store]\nmax_output_bytes = \"big\"\n[log]\nlevel = \"loud\"\n[canary.x]\nsource = \"simulate\"\n[colour]\n",
        );
        let problems: Vec<String> = check(&src, &["canary"])
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(
            problems[0]
                .starts_with("opsdeck.toml:2:20: `max_output_bytes` in [store] must be an integer")
        );
        assert!(
            problems[1].starts_with("opsdeck.toml:4:9: `level` in [log] is `loud`; valid levels")
        );
        assert!(problems[2].starts_with("opsdeck.toml:7:2: unknown key `colour` in the file"));
    }

    #[test]
    fn layers_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.toml");
        let b = dir.path().join("b.toml");
        std::fs::write(
            &a,
            "[store]\nmax_output_bytes = 2048\n[log]\nlevel = \"debug\"\n",
        )
        .unwrap();
        std::fs::write(&b, "[store]\nmax_output_bytes = 4096\n").unwrap();
        let s = load(&[a, b, dir.path().join("missing.toml")], &[]).unwrap();
        assert_eq!(s.store.max_output_bytes, 4096);
        assert_eq!(s.log.level, "debug");
    }
}
