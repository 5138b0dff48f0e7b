//! The layering of the crate, checked on its own source: every `crate::…` path in each module
//! of `src/` is read, and an import that crosses a forbidden arrow fails the test with the
//! file, the line and the sentence that says why the arrow is forbidden. The picture is in
//! docs/ARCHITECTURE.md:
//!
//! ```text
//! foundation (model, clock, rng, diag, config, net, proc, sync)
//!   <- store <- runtime, canary (siblings) <- host <- client <- server, tui, cli
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The foundation: plain data and small utilities every layer may use.
const FOUNDATION: &[&str] = &[
    "model", "clock", "rng", "diag", "config", "net", "proc", "sync",
];
const ABOVE_STORE: &[&str] = &[
    "store", "runtime", "canary", "host", "client", "server", "tui", "cli", "logging",
];

/// (from, to, why): `from` may not name anything of `to`.
fn forbidden() -> Vec<(&'static str, &'static str, &'static str)> {
    let mut rules = Vec::new();
    for &f in FOUNDATION {
        for &t in ABOVE_STORE {
            rules.push((
                f,
                t,
                "the foundation sits below everything: it must not reach up into the layers that use it",
            ));
        }
    }
    for &t in FOUNDATION.iter().filter(|m| **m != "model") {
        rules.push((
            "model",
            t,
            "model is plain data with no I/O: it imports nothing of opsdeck, so any layer can depend on it",
        ));
    }
    for t in [
        "runtime", "canary", "host", "client", "server", "tui", "cli",
    ] {
        rules.push((
            "store",
            t,
            "the store keeps data for the layers above it and never calls up into them",
        ));
    }
    rules.push((
        "runtime",
        "canary",
        "runtime and canary are siblings: pipelines know nothing of rollouts; the host composes both",
    ));
    rules.push((
        "canary",
        "runtime",
        "runtime and canary are siblings: rollouts know nothing of pipelines; the host composes both",
    ));
    for f in ["runtime", "canary"] {
        for t in ["host", "client", "server", "tui", "cli"] {
            rules.push((
                f,
                t,
                "the engines get their clock, writer and tasks from the host and know nothing of who hosts them or how they are reached",
            ));
        }
    }
    for t in ["client", "server", "tui", "cli"] {
        rules.push((
            "host",
            t,
            "the host owns the control path; clients reach it through the Backend seam, never the other way round",
        ));
    }
    for t in ["runtime", "canary", "store"] {
        rules.push((
            "client",
            t,
            "a client speaks only the host's API and the model: what crosses the seam lives in model",
        ));
    }
    for t in ["server", "tui", "cli"] {
        rules.push((
            "client",
            t,
            "the client seam sits below the server, the dashboard and the CLI that use it",
        ));
    }
    for t in ["host", "runtime", "canary", "store", "server", "cli"] {
        rules.push((
            "tui",
            t,
            "the dashboard talks only to a client::Backend, so it works the same embedded and remote",
        ));
    }
    for t in ["runtime", "canary", "store", "tui", "cli"] {
        rules.push((
            "server",
            t,
            "the server serves a host through the client seam and the host's own API; engine internals stay below the host",
        ));
    }
    rules
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `src/host/control.rs` -> `host`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The modules a line names with `crate::NAME`, outside comments.
fn named(line: &str) -> BTreeSet<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `$crate::` in a macro names the crate root like `crate::`.
        if !name.is_empty() {
            out.insert(name);
        }
        rest = after;
    }
    out
}

#[test]
fn no_module_imports_across_a_forbidden_arrow() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let rules = forbidden();
    let mut problems = Vec::new();
    let mut seen = 0;
    for file in &files {
        let from = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for to in named(line) {
                seen += 1;
                if let Some((_, _, why)) = rules.iter().find(|(f, t, _)| *f == from && *t == to) {
                    problems.push(format!(
                        "{}:{}: {from} imports {to}: {why}\n    {}",
                        file.strip_prefix(&src).unwrap().display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(seen > 100, "the scan found the crate's paths ({seen})");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn only_the_dashboard_draws_and_only_the_server_and_the_proxy_serve_http() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap().display().to_string();
        let text = std::fs::read_to_string(file).unwrap();
        let uses = |krate: &str| {
            text.lines().any(|l| {
                let code = l.split("//").next().unwrap_or("");
                code.contains(&format!("{krate}::"))
            })
        };
        if (uses("ratatui") || uses("crossterm")) && !rel.starts_with("tui/") {
            problems.push(format!("{rel}: only tui/ draws on a terminal (ratatui)"));
        }
        let serves = ["server/", "cli/serve.rs", "canary/source/proxy.rs"];
        if uses("axum") && !serves.iter().any(|p| rel.starts_with(p)) {
            problems.push(format!(
                "{rel}: only the server, `opsdeck serve` and the canary proxy serve HTTP (axum)"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scan_sees_crate_paths_and_ignores_comments() {
    assert_eq!(
        named("use crate::model::{Run, crate::x}; // crate::tui")
            .into_iter()
            .collect::<Vec<_>>(),
        ["model", "x"]
    );
    let rules = forbidden();
    assert!(
        rules
            .iter()
            .any(|(f, t, _)| *f == "runtime" && *t == "canary")
    );
    assert!(
        !rules
            .iter()
            .any(|(f, t, _)| *f == "host" && *t == "runtime")
    );
}
