//! Layered settings: built-in defaults < `~/.config/opsdeck/config.toml` < the workspace's
//! `opsdeck.toml` < `OPSDECK_<TABLE>__<KEY>` environment variables < flags. One schema checks
//! the files (with locations) and the environment alike, so a typo is an error everywhere.

pub mod pgtls;
pub mod secret;
pub mod server;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::diag::{Checker, Diagnostic, SourceFile, suggest};
pub use server::{ServerConfig, Token};

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub store: StoreSettings,
    pub log: LogSettings,
    pub ui: UiSettings,
    pub worker: WorkerSettings,
}

/// How a host takes part when several share a PostgreSQL store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct WorkerSettings {
    /// Runs this worker drives at once, at most; more wait for another worker or a free slot.
    pub max_in_flight: u32,
    /// Seconds without a heartbeat after which a worker's runs move to the others.
    pub lease_timeout: u32,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            max_in_flight: 32,
            lease_timeout: 15,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct StoreSettings {
    /// Outputs, inputs and stderr larger than this are stored truncated with a marker.
    pub max_output_bytes: u64,
    /// Where the state lives: empty for the workspace's SQLite file, or a PostgreSQL URL.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    pub level: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct UiSettings {
    pub theme: String,
    pub keymap: String,
    pub mouse: bool,
    /// Where `S` saves screens; empty: the data directory's `reports/`.
    pub reports_dir: String,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            max_output_bytes: 1024 * 1024,
            url: String::new(),
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

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings {
            theme: "dark".into(),
            keymap: "default".into(),
            mouse: false,
            reports_dir: String::new(),
        }
    }
}

pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

/// The type and range of one setting.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Int {
        min: i64,
        max: i64,
    },
    Choice(&'static [&'static str]),
    Text,
    Bool,
    /// Text that is empty or starts with one of these schemes.
    Url(&'static [&'static str]),
}

/// The schemes `[store] url` takes.
pub const STORE_SCHEMES: &[&str] = &["postgres://", "postgresql://"];

/// One documented setting.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub table: &'static str,
    pub key: &'static str,
    pub kind: Kind,
    pub doc: &'static str,
}

impl Key {
    /// The environment variable that sets it.
    pub fn env_name(&self) -> String {
        format!(
            "OPSDECK_{}__{}",
            self.table.to_ascii_uppercase(),
            self.key.to_ascii_uppercase()
        )
    }
}

/// Every setting, in the order the README documents them.
pub const KEYS: &[Key] = &[
    Key {
        table: "store",
        key: "max_output_bytes",
        kind: Kind::Int {
            min: 1024,
            max: 1 << 30,
        },
        doc: "inputs, outputs and stderr above this many bytes are stored truncated with a marker (default 1048576)",
    },
    Key {
        table: "store",
        key: "url",
        kind: Kind::Url(STORE_SCHEMES),
        doc: "where the state lives: empty for the workspace's SQLite file (.opsdeck/state.db), or a PostgreSQL URL such as postgres://opsdeck@db.internal:5432/opsdeck (default empty)",
    },
    Key {
        table: "worker",
        key: "max_in_flight",
        kind: Kind::Int {
            min: 1,
            max: 10_000,
        },
        doc: "runs one worker drives at once on a PostgreSQL store; more wait for a free slot or another worker (default 32)",
    },
    Key {
        table: "worker",
        key: "lease_timeout",
        kind: Kind::Int { min: 3, max: 3_600 },
        doc: "seconds without a heartbeat after which a worker's runs are interrupted and resumed by another worker (default 15)",
    },
    Key {
        table: "log",
        key: "level",
        kind: Kind::Choice(LOG_LEVELS),
        doc: "log file level (default info)",
    },
    Key {
        table: "ui",
        key: "theme",
        kind: Kind::Text,
        doc: "dashboard theme (default dark)",
    },
    Key {
        table: "ui",
        key: "keymap",
        kind: Kind::Text,
        doc: "dashboard keymap (default default)",
    },
    Key {
        table: "ui",
        key: "mouse",
        kind: Kind::Bool,
        doc: "mouse support in the dashboard (default false)",
    },
    Key {
        table: "ui",
        key: "reports_dir",
        kind: Kind::Text,
        doc: "where `S` saves the screen as SVG and text (default: the data directory's reports/, like ~/.local/share/opsdeck/reports)",
    },
];

/// Where `S` saves screens: `ui.reports_dir`, else `reports/` in the user's data directory.
pub fn reports_dir(ui: &UiSettings) -> Option<PathBuf> {
    if !ui.reports_dir.trim().is_empty() {
        return Some(PathBuf::from(ui.reports_dir.trim()));
    }
    directories::ProjectDirs::from("", "", "opsdeck").map(|d| d.data_dir().join("reports"))
}

fn tables() -> Vec<&'static str> {
    let mut t: Vec<&str> = KEYS.iter().map(|k| k.table).collect();
    t.dedup();
    t
}

/// The user's config file, if the platform has a config directory.
pub fn user_config_path() -> Option<PathBuf> {
    user_dir().map(|d| d.join("config.toml"))
}

/// `~/.config/opsdeck` (XDG), where the config file, themes and keymaps of the user live.
pub fn user_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "opsdeck").map(|d| d.config_dir().to_path_buf())
}

fn range(min: i64, max: i64) -> String {
    format!("an integer from {min} to {max}")
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
    let known: Vec<&str> = tables()
        .into_iter()
        .chain(other_sections.iter().copied())
        .collect();
    c.known_keys(root, &known, "the file");
    for table in tables() {
        let ctx = format!("[{table}]");
        let Some((t, _)) = c.table(root, table, "the file") else {
            continue;
        };
        let keys: Vec<&str> = KEYS
            .iter()
            .filter(|k| k.table == table)
            .map(|k| k.key)
            .collect();
        c.known_keys(t, &keys, &ctx);
        for k in KEYS.iter().filter(|k| k.table == table) {
            match k.kind {
                Kind::Int { min, max } => {
                    c.int(t, k.key, &ctx, min, max);
                }
                Kind::Bool => {
                    c.bool(t, k.key, &ctx);
                }
                Kind::Text => {
                    c.str(t, k.key, &ctx);
                }
                Kind::Url(schemes) => {
                    if let Some((v, span)) = c.str(t, k.key, &ctx)
                        && let Some(why) = url_problem(v, schemes)
                    {
                        c.error_unquoted(
                            &span,
                            format!("`{}` in {ctx} is `{}`; {why}", k.key, secret::redact(v)),
                        );
                    }
                }
                Kind::Choice(choices) => {
                    if let Some((v, span)) = c.str(t, k.key, &ctx)
                        && !choices.contains(&v)
                    {
                        c.error(
                            &span,
                            format!(
                                "`{}` in {ctx} is `{v}`; valid values: {}",
                                k.key,
                                choices.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }
    c.into_problems()
}

/// What is wrong with a PostgreSQL store URL given anywhere else than `[store] url` (such as
/// `store migrate --to`), checked as that setting is.
pub fn store_url_problem(v: &str) -> Option<String> {
    url_problem(v, STORE_SCHEMES)
}

/// What is wrong with a store URL, if anything: its scheme, or (PostgreSQL) its form.
fn url_problem(v: &str, schemes: &[&str]) -> Option<String> {
    if v.is_empty() {
        return None;
    }
    if !schemes
        .iter()
        .any(|s| v.starts_with(s) && v.len() > s.len())
    {
        return Some(format!(
            "give a URL starting with {}, or leave it empty for the workspace's SQLite file",
            schemes.join(" or ")
        ));
    }
    let tls = match pgtls::read(v) {
        Ok(tls) => tls,
        Err(e) => return Some(e),
    };
    if let Some(pgtls::Roots::File(path)) = &tls.roots
        && tls.mode != pgtls::TlsMode::Disable
    {
        if !path.is_file() {
            return Some(format!(
                "sslrootcert {} is not a file: give a PEM file of CA certificates, or `system`",
                path.display()
            ));
        }
        if let Err(e) = pgtls::root_file(path) {
            return Some(e);
        }
    }
    match tls.url.parse::<tokio_postgres::Config>() {
        Ok(_) => None,
        Err(e) => Some(format!(
            "it is not a PostgreSQL URL opsdeck can read ({e}); the form is postgres://USER@HOST:PORT/DATABASE"
        )),
    }
}

/// Reads `OPSDECK_<TABLE>__<KEY>` variables, checking each against the schema. Other
/// `OPSDECK_*` variables (`OPSDECK_WORKSPACE`, `OPSDECK_LOG`, ...) are not settings and are left alone.
fn env_settings(
    vars: impl Iterator<Item = (String, String)>,
) -> Result<config::Map<String, String>, Vec<Diagnostic>> {
    let mut out = config::Map::new();
    let mut problems = Vec::new();
    let names: Vec<String> = KEYS.iter().map(Key::env_name).collect();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("OPSDECK_") else {
            continue;
        };
        let Some((table, key)) = rest.split_once("__") else {
            continue;
        };
        let Some(k) = KEYS
            .iter()
            .find(|k| k.table.eq_ignore_ascii_case(table) && k.key.eq_ignore_ascii_case(key))
        else {
            let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
            // `[server]` and `[canary.*]` are read from opsdeck.toml alone (they hold tokens and
            // whole rollouts): say so rather than suggest a name of another table.
            let hint = if table.eq_ignore_ascii_case("server") {
                " ([server] is read from opsdeck.toml only; `opsdeck serve --bind ADDR` sets the address for one run)".to_string()
            } else if table.eq_ignore_ascii_case("canary") {
                " ([canary.NAME] tables are read from opsdeck.toml only)".to_string()
            } else {
                suggest(&name, &name_refs)
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default()
            };
            problems.push(Diagnostic::whole_file(
                "environment",
                format!(
                    "{name} is not a setting{hint}; settings: {}",
                    names.join(", ")
                ),
            ));
            continue;
        };
        let ok = match k.kind {
            Kind::Int { min, max } => value.parse::<i64>().is_ok_and(|n| (min..=max).contains(&n)),
            Kind::Bool => matches!(value.as_str(), "true" | "false"),
            Kind::Text => !value.is_empty(),
            Kind::Choice(choices) => choices.contains(&value.as_str()),
            Kind::Url(schemes) => url_problem(&value, schemes).is_none(),
        };
        if !ok {
            let want = match k.kind {
                Kind::Int { min, max } => range(min, max),
                Kind::Bool => "true or false".to_string(),
                Kind::Text => "not empty".to_string(),
                Kind::Choice(choices) => format!("one of {}", choices.join(", ")),
                Kind::Url(schemes) => match url_problem(&value, schemes) {
                    Some(why) if !why.starts_with("give") => {
                        format!("a URL opsdeck can read: {why}")
                    }
                    _ => format!("empty, or a URL starting with {}", schemes.join(" or ")),
                },
            };
            // A URL may carry a password: it is never repeated.
            let shown = match k.kind {
                Kind::Url(_) => secret::redact(&value),
                _ => value.clone(),
            };
            problems.push(Diagnostic::whole_file(
                "environment",
                format!("{name}={shown}: must be {want}"),
            ));
            continue;
        }
        out.insert(format!("{}.{}", k.table, k.key), value);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Loads settings from the given files (missing files are skipped) and the environment.
pub fn load(files: &[PathBuf], other_sections: &[&str]) -> Result<Settings, Vec<Diagnostic>> {
    load_with_env(files, other_sections, std::env::vars())
}

fn load_with_env(
    files: &[PathBuf],
    other_sections: &[&str],
    vars: impl Iterator<Item = (String, String)>,
) -> Result<Settings, Vec<Diagnostic>> {
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
    let env = match env_settings(vars) {
        Ok(env) => Some(env),
        Err(p) => {
            problems.extend(p);
            None
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    builder = builder.add_source(
        config::Environment::default()
            .separator(".")
            .try_parsing(true)
            .source(env),
    );
    builder
        .build()
        .and_then(config::Config::try_deserialize)
        .map_err(|e| vec![Diagnostic::whole_file("settings", e.to_string())])
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
            problems[1].starts_with("opsdeck.toml:4:9: `level` in [log] is `loud`; valid values")
        );
        assert!(problems[2].starts_with("opsdeck.toml:7:2: unknown key `colour` in the file"));
    }

    #[test]
    fn layers_files_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.toml");
        let b = dir.path().join("b.toml");
        std::fs::write(
            &a,
            "[store]\nmax_output_bytes = 2048\n[log]\nlevel = \"debug\"\n",
        )
        .unwrap();
        std::fs::write(&b, "[store]\nmax_output_bytes = 4096\n[ui]\nmouse = true\n").unwrap();
        let env = vec![
            ("OPSDECK_LOG__LEVEL".to_string(), "warn".to_string()),
            ("OPSDECK_LOG".to_string(), "opsdeck=trace".to_string()),
            ("OPSDECK_WORKSPACE".to_string(), "/x".to_string()),
        ];
        let s = load_with_env(
            &[a, b, dir.path().join("missing.toml")],
            &[],
            env.into_iter(),
        )
        .unwrap();
        assert_eq!(s.store.max_output_bytes, 4096);
        assert_eq!(s.log.level, "warn");
        assert!(s.ui.mouse);
        assert_eq!(s.ui.theme, "dark");
    }

    #[test]
    fn environment_settings_are_checked_like_files() {
        let env = vec![
            (
                "OPSDECK_STORE__MAX_OUTPUT_BYTES".to_string(),
                "100".to_string(),
            ),
            (
                "OPSDECK_STORE__MAX_OUTPUTBYTES".to_string(),
                "5".to_string(),
            ),
        ];
        let errs: Vec<String> = load_with_env(&[], &[], env.into_iter())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            [
                "environment: OPSDECK_STORE__MAX_OUTPUT_BYTES=100: must be an integer from 1024 to 1073741824",
                "environment: OPSDECK_STORE__MAX_OUTPUTBYTES is not a setting (did you mean OPSDECK_STORE__MAX_OUTPUT_BYTES?); settings: OPSDECK_STORE__MAX_OUTPUT_BYTES, OPSDECK_STORE__URL, OPSDECK_WORKER__MAX_IN_FLIGHT, OPSDECK_WORKER__LEASE_TIMEOUT, OPSDECK_LOG__LEVEL, OPSDECK_UI__THEME, OPSDECK_UI__KEYMAP, OPSDECK_UI__MOUSE, OPSDECK_UI__REPORTS_DIR",
            ]
        );
        let env = vec![("OPSDECK_SERVER__BIND".to_string(), "0.0.0.0:1".to_string())];
        let errs = load_with_env(&[], &[], env.into_iter()).unwrap_err();
        assert!(
            errs[0]
                .to_string()
                .contains("[server] is read from opsdeck.toml only; `opsdeck serve --bind ADDR`"),
            "{errs:?}"
        );
    }
}
