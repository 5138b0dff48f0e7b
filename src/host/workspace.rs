//! A workspace: `opsdeck.toml`, `pipelines/*.toml` and the `.opsdeck/` state directory, and how
//! the CLI finds one (flag, `$OPSDECK_WORKSPACE`, the current directory, or the bundled demo).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::canary::CanaryConfig;
use crate::config::{self, ServerConfig, Settings};
use crate::diag::Diagnostic;
use crate::runtime::catalog::Pipelines;
use crate::runtime::spec::Pipeline;

/// A loaded workspace: its settings, pipelines, canaries and server settings. Pipelines that
/// failed validation are left out and their problems kept, so read-only commands still work
/// while a file is being fixed.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub dir: PathBuf,
    pub settings: Settings,
    pipelines: Arc<Pipelines>,
    /// Every problem in every file, for hosts (which refuse to start with any).
    pub problems: Vec<Diagnostic>,
    /// Canary rollouts from `[canary.NAME]` tables of `opsdeck.toml`.
    pub canaries: Vec<Arc<CanaryConfig>>,
    /// The `[server]` table of `opsdeck.toml`, for `opsdeck serve`.
    pub server: ServerConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("{0}")]
    Missing(String),
    #[error("{}", crate::diag::render_all(.0))]
    Invalid(Vec<Diagnostic>),
}

/// Top-level tables of `opsdeck.toml` that are not layered settings; the settings check
/// accepts them and the workspace checks them itself.
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
        let pipelines = Pipelines::load(&dir);
        let mut ws = Workspace {
            problems: pipelines.problems().to_vec(),
            pipelines: Arc::new(pipelines),
            dir,
            settings,
            canaries: Vec::new(),
            server: ServerConfig::default(),
        };
        ws.load_tables();
        Ok(ws)
    }

    /// Checks the `[canary.*]` and `[server]` tables of `opsdeck.toml`, parsed once.
    fn load_tables(&mut self) {
        let checked = crate::diag::check_file(
            &self.dir.join("opsdeck.toml"),
            "opsdeck.toml",
            (Vec::new(), ServerConfig::default()),
            crate::canary::config::parse_with_server,
        );
        match checked {
            Ok((canaries, server)) => {
                self.canaries = canaries.into_iter().map(Arc::new).collect();
                self.server = server;
            }
            Err(problems) => self.problems.extend(problems),
        }
    }

    /// A workspace from pipelines already in memory (benchmarks and tests).
    pub fn in_memory(dir: &Path, pipelines: Vec<Pipeline>) -> Workspace {
        Workspace {
            dir: dir.to_path_buf(),
            settings: Settings::default(),
            pipelines: Arc::new(Pipelines::in_memory(dir, pipelines)),
            problems: Vec::new(),
            canaries: Vec::new(),
            server: ServerConfig::default(),
        }
    }

    /// A canary by name, or a sentence with the valid choices.
    pub fn canary(&self, name: &str) -> Result<Arc<CanaryConfig>, String> {
        crate::canary::config::find(&self.canaries, name)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(".opsdeck")
    }

    pub fn db_path(&self) -> PathBuf {
        self.state_dir().join("state.db")
    }

    /// Where this workspace's state lives (`[store] url`, else its SQLite file).
    pub fn store(&self) -> crate::store::Target {
        if self.settings.store.url.is_empty() {
            crate::store::Target::Sqlite(self.db_path())
        } else {
            crate::store::Target::Postgres(self.settings.store.url.clone())
        }
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir().join("logs")
    }

    /// The catalog the runtime runs pipelines from.
    pub fn catalog(&self) -> &Arc<Pipelines> {
        &self.pipelines
    }

    pub fn pipelines(&self) -> impl Iterator<Item = &Arc<Pipeline>> {
        self.pipelines.iter()
    }

    /// Stages of this workspace's pipelines that name asset `name`.
    pub fn asset_uses(&self, name: &str) -> Vec<crate::model::asset::AssetUse> {
        self.pipelines.asset_uses(name)
    }

    /// Every asset from the store's rows, with where each is used here.
    pub fn asset_summaries(
        &self,
        rows: Vec<crate::store::AssetRow>,
    ) -> Vec<crate::model::asset::AssetSummary> {
        self.pipelines.asset_summaries(rows)
    }

    /// A pipeline by name, or a sentence saying why not (see [`Pipelines::get`]).
    pub fn pipeline(&self, name: &str) -> Result<Arc<Pipeline>, String> {
        self.pipelines.get(name)
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
    (
        "assets/fraud-rules.json",
        include_str!("../../assets/demo/assets/fraud-rules.json"),
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
/// directory when it holds `opsdeck.toml` or `pipelines/`, else the bundled demo. Only a
/// command that hosts (`unpack`) writes the demo's files; a read-only look at a demo that was
/// never set up is refused rather than creating it as a side effect.
pub fn resolve(flag: Option<&Path>, unpack: bool) -> Result<(PathBuf, Source), WorkspaceError> {
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
    if !unpack {
        if !demo.join("opsdeck.toml").exists() {
            return Err(WorkspaceError::Missing(
                "no workspace here, and the bundled demo has not been set up yet (`opsdeck` sets it up and opens it); pass --workspace DIR or set OPSDECK_WORKSPACE".into(),
            ));
        }
        return Ok((demo, Source::Demo));
    }
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
