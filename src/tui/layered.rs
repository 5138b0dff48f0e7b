//! One loader for the dashboard's layered files, themes and keymaps alike: a file in the user's
//! folder wins over the built-in of the same name; `inherits = "NAME"` starts from another
//! (or, from a user file, from the built-in of its own name); loops are refused with the chain;
//! every problem names the file, line and column.

use std::path::Path;

use toml::de::DeTable;

use crate::diag::{Checker, Diagnostic, SourceFile};

/// A kind of layered file.
pub struct Kind {
    /// `theme` or `keymap`, for messages.
    pub what: &'static str,
    /// The folder of the built-ins in the repository, for messages (`themes`).
    pub folder: &'static str,
    /// The files shipped in the binary: (name, text).
    pub builtin: &'static [(&'static str, &'static str)],
}

impl Kind {
    /// Every name that loads: the built-ins and the user's `*.toml` files.
    pub fn names(&self, user_dir: Option<&Path>) -> Vec<String> {
        let mut names: Vec<String> = self.builtin.iter().map(|(n, _)| (*n).to_string()).collect();
        if let Some(dir) = user_dir
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            names.extend(
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                    .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned())),
            );
        }
        names.sort();
        names.dedup();
        names
    }

    fn builtin_text(&self, name: &str) -> Option<&'static str> {
        self.builtin
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
    }

    /// The file for `name` and whether it is the user's.
    fn source(
        &self,
        name: &str,
        user_dir: Option<&Path>,
        builtin_only: bool,
    ) -> Result<(SourceFile, bool), Vec<Diagnostic>> {
        let user_file = user_dir
            .filter(|_| !builtin_only)
            .map(|d| d.join(format!("{name}.toml")))
            .filter(|p| p.is_file());
        if let Some(p) = user_file {
            let shown = p.display().to_string();
            return match std::fs::read_to_string(&p) {
                Ok(text) => Ok((SourceFile::new(shown, text), true)),
                Err(e) => Err(vec![Diagnostic::whole_file(
                    shown,
                    format!("cannot read the file: {e}"),
                )]),
            };
        }
        match self.builtin_text(name) {
            Some(text) => Ok((
                SourceFile::new(format!("{}/{name}.toml (built in)", self.folder), text),
                false,
            )),
            None => Err(vec![Diagnostic::whole_file(
                self.what,
                format!(
                    "there is no {} `{name}`; valid {}s: {}",
                    self.what,
                    self.what,
                    self.names(user_dir).join(", ")
                ),
            )]),
        }
    }

    /// Loads `name` with everything it inherits. `apply` checks one file's own tables and
    /// folds them into what the files it inherits from built.
    pub fn load<T: Default>(
        &self,
        name: &str,
        user_dir: Option<&Path>,
        apply: &dyn Fn(&mut Checker<'_>, &DeTable<'_>, &mut T),
    ) -> Result<T, Vec<Diagnostic>> {
        self.load_chain(name, user_dir, false, &mut Vec::new(), apply)
    }

    fn load_chain<T: Default>(
        &self,
        name: &str,
        user_dir: Option<&Path>,
        builtin_only: bool,
        chain: &mut Vec<String>,
        apply: &dyn Fn(&mut Checker<'_>, &DeTable<'_>, &mut T),
    ) -> Result<T, Vec<Diagnostic>> {
        let (src, is_user) = self.source(name, user_dir, builtin_only)?;
        chain.push(name.to_string());
        let doc = Checker::parse(&src)?;
        let mut c = Checker::new(&src);
        let root = doc.get_ref();
        let mut out = T::default();
        let what = self.what;
        if let Some((parent, span)) = c.str(root, "inherits", &format!("the {what}")) {
            // A user file named like a built-in may inherit that built-in.
            let from_builtin = parent == name && is_user;
            if from_builtin && self.builtin_text(parent).is_none() {
                c.error(
                    &span,
                    format!(
                        "`inherits = \"{parent}\"` names this {what} itself; a {what} can inherit another {what}, or the built-in {what} of the same name (there is no built-in `{parent}`)"
                    ),
                );
            } else if chain.iter().any(|n| n == parent) && !from_builtin {
                c.error(
                    &span,
                    format!(
                        "`inherits = \"{parent}\"` makes a loop: {} -> {parent}",
                        chain.join(" -> ")
                    ),
                );
            } else {
                match self.load_chain(parent, user_dir, from_builtin, chain, apply) {
                    Ok(inherited) => out = inherited,
                    Err(problems) => {
                        for p in problems {
                            c.error(&span, format!("in inherited {what} `{parent}`: {p}"));
                        }
                    }
                }
            }
        }
        apply(&mut c, root, &mut out);
        chain.pop();
        if c.has_problems() {
            Err(c.into_problems())
        } else {
            Ok(out)
        }
    }
}
