//! A workspace: `opsdeck.toml`, `pipelines/*.toml` and the `.opsdeck/` state directory, and how
//! the CLI finds one (flag, `$OPSDECK_WORKSPACE`, the current directory, or the bundled demo).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::spec::{self, Pipeline};
use crate::canary::CanaryConfig;
use crate::config::{self, Settings};
use crate::diag::{Diagnostic, suggest};

/// A loaded workspace. Pipelines that failed validation are left out and their problems kept,
/// so read-only commands still work while a file is being fixed.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub dir: PathBuf,
    pub settings: Settings,
    pipelines: BTreeMap<String, (Arc<Pipeline>, PathBuf)>,
    /// Every problem in every file, for hosts (which refuse to start with any).
    pub problems: Vec<Diagnostic>,
    /// Files that failed validation, with their problems.
    broken: Vec<(PathBuf, Vec<Diagnostic>)>,
    /// Names defined by more than one file: refused, since either choice could be wrong.
    conflicts: BTreeMap<String, Vec<PathBuf>>,
    /// Canary rollouts from `[canary.NAME]` tables of `opsdeck.toml`.
    pub canaries: Vec<Arc<CanaryConfig>>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("{0}")]
    Missing(String),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

/// Top-level tables of `opsdeck.toml` owned by later features; accepted by the settings check.
pub const OTHER_SECTIONS: &[&str] = &["canary", "server"];

impl Workspace {
    pub fn open(dir: &Path) -> Result<Workspace, WorkspaceError> {
        if !dir.is_dir() {
            return Err(WorkspaceError::Missing(format!(
                "the workspace {} does not exist or is not a directory",
                dir.display()
            )));
        }
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let mut files: Vec<PathBuf> = config::user_config_path().into_iter().collect();
        files.push(dir.join("opsdeck.toml"));
        let settings = config::load(&files, OTHER_SECTIONS).map_err(WorkspaceError::Invalid)?;
        let mut ws = Workspace {
            dir,
            settings,
            pipelines: BTreeMap::new(),
            problems: Vec::new(),
            broken: Vec::new(),
            conflicts: BTreeMap::new(),
            canaries: Vec::new(),
        };
        match crate::canary::config::load_file(&ws.dir.join("opsdeck.toml"), "opsdeck.toml") {
            Ok(c) => ws.canaries = c.into_iter().map(Arc::new).collect(),
            Err(problems) => ws.problems.extend(problems),
        }
        if let Err(problems) =
            crate::server::config::load_file(&ws.dir.join("opsdeck.toml"), "opsdeck.toml")
        {
            ws.problems.extend(problems);
        }
        ws.load_pipelines();
        Ok(ws)
    }

    /// A workspace from pipelines already in memory (benchmarks and tests).
    pub fn in_memory(dir: &Path, pipelines: Vec<Pipeline>) -> Workspace {
        let pipelines = pipelines
            .into_iter()
            .map(|p| (p.name.clone(), (Arc::new(p), dir.join("pipelines"))))
            .collect();
        Workspace {
            dir: dir.to_path_buf(),
            settings: Settings::default(),
            pipelines,
            problems: Vec::new(),
            broken: Vec::new(),
            conflicts: BTreeMap::new(),
            canaries: Vec::new(),
        }
    }

    fn load_pipelines(&mut self) {
        let pdir = self.dir.join("pipelines");
        let Ok(entries) = std::fs::read_dir(&pdir) else {
            return;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let shown = path.strip_prefix(&self.dir).unwrap_or(&path).to_path_buf();
            match spec::load_file(&path) {
                Ok(p) => {
                    if let Some((_, first)) = self.pipelines.get(&p.name) {
                        self.problems.push(Diagnostic::whole_file(
                            shown.display().to_string(),
                            format!(
                                "pipeline `{}` is already defined in {}; names must be unique",
                                p.name,
                                first.display()
                            ),
                        ));
                        self.conflicts
                            .entry(p.name.clone())
                            .or_insert_with(|| vec![first.clone()])
                            .push(shown);
                    } else {
                        self.pipelines.insert(p.name.clone(), (Arc::new(p), shown));
                    }
                }
                Err(problems) => {
                    let problems: Vec<Diagnostic> = problems
                        .into_iter()
                        .map(|mut d| {
                            d.file = shown.display().to_string();
                            d
                        })
                        .collect();
                    self.problems.extend(problems.iter().cloned());
                    self.broken.push((shown, problems));
                }
            }
        }
        for name in self.conflicts.keys() {
            self.pipelines.remove(name);
        }
    }

    /// A canary by name, or a sentence with the valid choices.
    pub fn canary(&self, name: &str) -> Result<Arc<CanaryConfig>, String> {
        if let Some(c) = self.canaries.iter().find(|c| c.name == name) {
            return Ok(c.clone());
        }
        let names: Vec<&str> = self.canaries.iter().map(|c| c.name.as_str()).collect();
        if names.is_empty() {
            return Err(format!(
                "there is no canary `{name}`: this workspace defines none (add a [canary.NAME] table to opsdeck.toml)"
            ));
        }
        let hint = suggest(name, &names)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        Err(format!(
            "there is no canary `{name}`{hint}; canaries: {}",
            names.join(", ")
        ))
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(".opsdeck")
    }

    pub fn db_path(&self) -> PathBuf {
        self.state_dir().join("state.db")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir().join("logs")
    }

    pub fn pipelines(&self) -> impl Iterator<Item = &Arc<Pipeline>> {
        self.pipelines.values().map(|(p, _)| p)
    }

    pub fn pipeline_file(&self, name: &str) -> Option<&Path> {
        self.pipelines.get(name).map(|(_, f)| f.as_path())
    }

    /// A pipeline by name, or a sentence saying why not: defined twice, in a file that failed
    /// validation, or simply unknown (with the valid choices).
    pub fn pipeline(&self, name: &str) -> Result<Arc<Pipeline>, String> {
        if let Some((p, _)) = self.pipelines.get(name) {
            return Ok(p.clone());
        }
        if let Some(files) = self.conflicts.get(name) {
            let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            return Err(format!(
                "pipeline `{name}` is defined in {}; names must be unique",
                files.join(" and ")
            ));
        }
        if let Some((file, problems)) = self
            .broken
            .iter()
            .find(|(f, _)| f.file_stem().is_some_and(|s| s.to_string_lossy() == name))
        {
            let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
            return Err(format!(
                "pipeline `{name}` cannot be used: {} has {} problem(s):\n{}",
                file.display(),
                problems.len(),
                lines.join("\n")
            ));
        }
        let names: Vec<&str> = self.pipelines.keys().map(String::as_str).collect();
        let hint = suggest(name, &names)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        let broken = if self.broken.is_empty() {
            String::new()
        } else {
            let files: Vec<String> = self
                .broken
                .iter()
                .map(|(f, _)| f.display().to_string())
                .collect();
            format!(
                "; these files failed validation: {} (see `opsdeck validate`)",
                files.join(", ")
            )
        };
        if names.is_empty() {
            Err(format!(
                "there is no pipeline `{name}`: {} holds no valid pipeline{broken}",
                self.dir.join("pipelines").display()
            ))
        } else {
            Err(format!(
                "there is no pipeline `{name}`{hint}; pipelines: {}{broken}",
                names.join(", ")
            ))
        }
    }
}

/// The files of the bundled demo workspace, embedded in the binary.
pub const DEMO_FILES: &[(&str, &str)] = &[
    (
        "opsdeck.toml",
        include_str!("../../assets/demo/opsdeck.toml"),
    ),
    ("README.md", include_str!("../../assets/demo/README.md")),
    (
        "pipelines/checkout-etl.toml",
        include_str!("../../assets/demo/pipelines/checkout-etl.toml"),
    ),
    (
        "pipelines/daily-report.toml",
        include_str!("../../assets/demo/pipelines/daily-report.toml"),
    ),
    (
        "pipelines/partner-sync.toml",
        include_str!("../../assets/demo/pipelines/partner-sync.toml"),
    ),
    (
        "pipelines/fraud-model.toml",
        include_str!("../../assets/demo/pipelines/fraud-model.toml"),
    ),
];

/// Where the demo is unpacked: the user's data directory (XDG), `.../opsdeck/demo`.
pub fn demo_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "opsdeck").map(|d| d.data_dir().join("demo"))
}

/// Writes any demo file that is missing; files the user edited are left alone.
pub fn unpack_demo(dir: &Path) -> std::io::Result<()> {
    for (name, text) in DEMO_FILES {
        let path = dir.join(name);
        if !path.exists() {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, text)?;
        }
    }
    Ok(())
}

/// Where the workspace came from; the demo is worth mentioning to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Environment,
    CurrentDirectory,
    Demo,
}

/// Finds the workspace: the flag, else `$OPSDECK_WORKSPACE` (when not empty), else the current
/// directory when it holds `opsdeck.toml` or `pipelines/`, else the bundled demo.
pub fn resolve(flag: Option<&Path>) -> Result<(PathBuf, Source), WorkspaceError> {
    if let Some(dir) = flag {
        return Ok((dir.to_path_buf(), Source::Flag));
    }
    if let Some(dir) = std::env::var_os("OPSDECK_WORKSPACE").filter(|v| !v.is_empty()) {
        return Ok((PathBuf::from(dir), Source::Environment));
    }
    if let Ok(cwd) = std::env::current_dir()
        && config::looks_like_workspace(&cwd)
    {
        return Ok((cwd, Source::CurrentDirectory));
    }
    let demo = demo_dir().ok_or_else(|| {
        WorkspaceError::Missing(
            "no workspace given and no user data directory for the demo; pass --workspace DIR"
                .into(),
        )
    })?;
    unpack_demo(&demo).map_err(|e| {
        WorkspaceError::Missing(format!(
            "cannot unpack the demo workspace into {}: {e}",
            demo.display()
        ))
    })?;
    Ok((demo, Source::Demo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_file_is_embedded_and_valid() {
        let on_disk: Vec<String> = walk(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("assets/demo")
                .as_path(),
        );
        let embedded: Vec<&str> = DEMO_FILES.iter().map(|(n, _)| *n).collect();
        for f in &on_disk {
            assert!(
                embedded.contains(&f.as_str()),
                "assets/demo/{f} is not listed in DEMO_FILES"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        unpack_demo(dir.path()).unwrap();
        let ws = Workspace::open(dir.path()).unwrap();
        assert!(ws.problems.is_empty(), "{:#?}", ws.problems);
        assert!(ws.pipelines().count() >= 3);
        assert!(ws.pipeline("checkout-etl").is_ok());
        let err = ws.pipeline("checkout-elt").unwrap_err();
        assert!(err.contains("did you mean `checkout-etl`"), "{err}");
    }

    fn walk(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        out
    }
}
