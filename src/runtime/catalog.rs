//! The pipelines of a workspace: every `pipelines/*.toml` that validated, and for the others
//! the problems that keep them out, so a lookup can say why a name is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::spec::{self, Pipeline};
use crate::diag::{Diagnostic, suggest};

/// Loaded pipelines. Files that failed validation are left out with their problems, so
/// read-only commands still work while a file is being fixed.
#[derive(Debug, Clone, Default)]
pub struct Pipelines {
    dir: PathBuf,
    valid: BTreeMap<String, Arc<Pipeline>>,
    /// Files that failed validation, with their problems.
    broken: Vec<(PathBuf, Vec<Diagnostic>)>,
    /// Names defined by more than one file: refused, since either choice could be wrong.
    conflicts: BTreeMap<String, Vec<PathBuf>>,
    /// Every problem in every file.
    problems: Vec<Diagnostic>,
    /// The files as they were when read (name, size, modification time); `None` for pipelines
    /// given in memory, which are never read again.
    stamp: Option<Vec<FileStamp>>,
}

type FileStamp = (PathBuf, u64, Option<std::time::SystemTime>);

/// The `*.toml` files of `dir` with their sizes and modification times, sorted by name.
fn stamp(dir: &Path) -> Vec<FileStamp> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<FileStamp> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .map(|e| {
            let meta = e.metadata().ok();
            (
                e.path(),
                meta.as_ref().map_or(0, std::fs::Metadata::len),
                meta.and_then(|m| m.modified().ok()),
            )
        })
        .collect();
    out.sort();
    out
}

impl Pipelines {
    /// Reads `ws_dir/pipelines/*.toml`; file names in problems are relative to `ws_dir`.
    pub fn load(ws_dir: &Path) -> Pipelines {
        let dir = ws_dir.join("pipelines");
        // Taken before the files are read: a file changed while they are read is read again
        // at the next look.
        let mut out = Pipelines {
            stamp: Some(stamp(&dir)),
            dir,
            ..Pipelines::default()
        };
        let Ok(entries) = std::fs::read_dir(&out.dir) else {
            return out;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in paths {
            let shown = path.strip_prefix(ws_dir).unwrap_or(&path).to_path_buf();
            match spec::load_file(&path) {
                Ok(p) => out.add(p, shown, &mut files),
                Err(problems) => {
                    let problems: Vec<Diagnostic> = problems
                        .into_iter()
                        .map(|mut d| {
                            d.file = shown.display().to_string();
                            d
                        })
                        .collect();
                    out.problems.extend(problems.iter().cloned());
                    out.broken.push((shown, problems));
                }
            }
        }
        for name in out.conflicts.keys() {
            out.valid.remove(name);
        }
        out
    }

    fn add(&mut self, p: Pipeline, shown: PathBuf, files: &mut BTreeMap<String, PathBuf>) {
        if let Some(first) = files.get(&p.name) {
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
            files.insert(p.name.clone(), shown);
            self.valid.insert(p.name.clone(), Arc::new(p));
        }
    }

    /// Pipelines already in memory (benchmarks and tests).
    pub fn in_memory(ws_dir: &Path, pipelines: Vec<Pipeline>) -> Pipelines {
        Pipelines {
            dir: ws_dir.join("pipelines"),
            valid: pipelines
                .into_iter()
                .map(|p| (p.name.clone(), Arc::new(p)))
                .collect(),
            ..Pipelines::default()
        }
    }

    /// The pipelines read again from their files when a file was added, edited or removed
    /// since they were read; `None` when none was (or they were given in memory). A
    /// long-lived host asks before each new run, so an edited file needs no restart.
    pub fn reloaded(&self) -> Option<Pipelines> {
        let before = self.stamp.as_ref()?;
        if *before == stamp(&self.dir) {
            return None;
        }
        self.dir.parent().map(Pipelines::load)
    }

    /// Stages of these pipelines that name asset `name`.
    pub fn asset_uses(&self, name: &str) -> Vec<crate::model::asset::AssetUse> {
        self.iter()
            .flat_map(|p| {
                p.stages.iter().filter_map(move |s| {
                    s.assets.iter().find(|a| a.name == name).map(|a| {
                        crate::model::asset::AssetUse {
                            pipeline: p.name.clone(),
                            stage: s.id.clone(),
                            version: a.version,
                        }
                    })
                })
            })
            .collect()
    }

    /// Every asset from the store's rows, with where each is used here.
    pub fn asset_summaries(
        &self,
        rows: Vec<crate::store::AssetRow>,
    ) -> Vec<crate::model::asset::AssetSummary> {
        rows.into_iter()
            .map(|r| crate::model::asset::AssetSummary {
                used_by: self.asset_uses(&r.name),
                name: r.name,
                pinned: r.pinned,
                latest: r.latest,
                versions: r.versions,
                updated_at: r.updated_at,
            })
            .collect()
    }

    /// Every problem in every pipeline file.
    pub fn problems(&self) -> &[Diagnostic] {
        &self.problems
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Pipeline>> {
        self.valid.values()
    }

    /// A pipeline by name, or a sentence saying why not: defined twice, in a file that failed
    /// validation, or simply unknown (with the valid choices).
    pub fn get(&self, name: &str) -> Result<Arc<Pipeline>, String> {
        if let Some(p) = self.valid.get(name) {
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
        Err(self.unknown(name))
    }

    fn unknown(&self, name: &str) -> String {
        let names: Vec<&str> = self.valid.keys().map(String::as_str).collect();
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
            format!(
                "there is no pipeline `{name}`: {} holds no valid pipeline{broken}",
                self.dir.display()
            )
        } else {
            format!(
                "there is no pipeline `{name}`{hint}; pipelines: {}{broken}",
                names.join(", ")
            )
        }
    }
}
