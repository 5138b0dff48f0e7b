//! `opsdeck validate FILE...`: one line per valid file, one line per problem otherwise.

use std::path::PathBuf;

use super::{CliResult, EXIT_BAD_INPUT, EXIT_OK};
use crate::runtime::spec;

pub fn run(files: &[PathBuf]) -> CliResult {
    let mut bad = false;
    let mut seen: Vec<(String, &PathBuf)> = Vec::new();
    for f in files {
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
                    say!("{d}")?;
                }
            }
        }
    }
    Ok(if bad { EXIT_BAD_INPUT } else { EXIT_OK })
}
