//! `opsdeck validate`: every problem, with its line and column, exit 2; a summary per valid file.

use crate::support::TestWorkspace;

/// Whether a line is part of the excerpt printed under a problem (`  |`, `8 | text`, carets).
fn excerpt_line(l: &str) -> bool {
    l.split_once('|')
        .is_some_and(|(gutter, _)| gutter.trim().chars().all(|c| c.is_ascii_digit()))
}

/// The exit code and the first line of each problem (or summary), as scripts read them.
fn validate(files: &[(&str, &str)]) -> (i32, Vec<String>) {
    let (code, lines) = validate_all(files);
    (
        code,
        lines.into_iter().filter(|l| !excerpt_line(l)).collect(),
    )
}

fn validate_all(files: &[(&str, &str)]) -> (i32, Vec<String>) {
    let ws = TestWorkspace::new();
    let mut args = vec!["validate".to_string()];
    for (name, text) in files {
        ws.write(name, text);
        args.push(ws.path(name).display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ws.run(&args);
    let prefix = format!("{}/", ws.dir().display());
    let lines = out
        .stdout()
        .lines()
        .map(|l| l.replace(&prefix, ""))
        .collect();
    (out.code(), lines)
}

#[test]
fn valid_files_get_a_one_line_summary() {
    let (code, lines) = validate(&[(
        "ok.toml",
        "[pipeline]\nname = \"nightly\"\nschedule = \"0 2 * * *\"\n[[stage]]\nid = \"a\"\nkind = \"simulate\"\n",
    )]);
    assert_eq!(code, 0);
    assert_eq!(
        lines,
        vec!["ok.toml: ok: pipeline `nightly`, 1 stage, schedule `0 2 * * *`"]
    );
}

#[test]
fn each_problem_shows_its_line_with_a_caret_under_it() {
    let (code, lines) = validate_all(&[(
        "p.toml",
        "[pipeline]\nname = \"x\"\n\n[[stage]]\nid = \"a\"\nkind = \"command\"\ncommand = [\"true\"]\nretries = 3\n",
    )]);
    assert_eq!(code, 2);
    assert!(
        lines[0].starts_with("p.toml:8:1: unknown key `retries`"),
        "{lines:?}"
    );
    assert_eq!(
        lines[1..],
        ["  |", "8 | retries = 3", "  | ^^^^^^^"],
        "the offending line, then a caret under the key"
    );
}

#[test]
fn toml_syntax_errors_have_line_and_column() {
    let (code, lines) = validate(&[("bad.toml", "[pipeline]\nname = \"x\"\nconcurrency = = 3\n")]);
    assert_eq!(code, 2);
    assert!(
        lines[0].starts_with("bad.toml:3:15: TOML syntax error:"),
        "{lines:?}"
    );
}

#[test]
fn unknown_keys_name_the_valid_keys_and_a_likely_typo() {
    let (code, lines) = validate(&[(
        "p.toml",
        "[pipeline]\nname = \"x\"\n\n[[stage]]\nid = \"a\"\nkind = \"command\"\ncommand = [\"true\"]\nretries = 3\n",
    )]);
    assert_eq!(code, 2);
    assert_eq!(
        lines,
        vec![
            "p.toml:8:1: unknown key `retries` in stage `a` (kind command) (did you mean `retry`?); valid keys: id, kind, description, needs, timeout_ms, retry, breaker, asset, assets, command, env, workdir"
        ]
    );
}

#[test]
fn unknown_stage_kinds_list_the_kinds() {
    let (code, lines) = validate(&[(
        "p.toml",
        "[pipeline]\nname = \"x\"\n[[stage]]\nid = \"a\"\nkind = \"shel\"\n",
    )]);
    assert_eq!(code, 2);
    assert_eq!(
        lines,
        vec![
            "p.toml:5:8: unknown stage kind `shel` in stage `a`; valid kinds: command, http, simulate"
        ]
    );
}

#[test]
fn duplicate_ids_point_at_the_second_and_name_the_first() {
    let (code, lines) = validate(&[(
        "p.toml",
        "[pipeline]\nname = \"x\"\n[[stage]]\nid = \"a\"\nkind = \"simulate\"\n[[stage]]\nid = \"a\"\nkind = \"simulate\"\n",
    )]);
    assert_eq!(code, 2);
    assert_eq!(
        lines,
        vec!["p.toml:7:6: duplicate stage id `a` (first defined on line 4)"]
    );
}

#[test]
fn needs_naming_a_missing_stage_names_it() {
    let (code, lines) = validate(&[(
        "p.toml",
        "[pipeline]\nname = \"x\"\n[[stage]]\nid = \"load\"\nkind = \"simulate\"\nneeds = [\"extract\"]\n",
    )]);
    assert_eq!(code, 2);
    assert_eq!(
        lines,
        vec![
            "p.toml:6:10: stage `load` needs `extract`, which is not a stage in this pipeline; stages: load"
        ]
    );
}

#[test]
fn cycles_are_printed_as_a_path() {
    let (code, lines) = validate(&[(
        "p.toml",
        r#"[pipeline]
name = "x"
[[stage]]
id = "a"
kind = "simulate"
needs = ["b"]
[[stage]]
id = "b"
kind = "simulate"
needs = ["c"]
[[stage]]
id = "c"
kind = "simulate"
needs = ["a"]
"#,
    )]);
    assert_eq!(code, 2);
    assert_eq!(
        lines,
        vec!["p.toml:6:10: `needs` forms a cycle: a -> b -> c -> a (each stage needs the next)"]
    );
}

#[test]
fn every_problem_in_a_file_is_reported_and_every_file_checked() {
    let (code, lines) = validate(&[
        (
            "many.toml",
            r#"[pipeline]
name = "x"
concurrency = 0
schedule = "every 5q"

[[stage]]
id = "a"
kind = "http"
url = "ftp://example.com"
method = "FETCH"

[[stage]]
id = "b"
kind = "simulate"
needs = ["a", "zz"]
fail_rate = 1.5
"#,
        ),
        (
            "good.toml",
            "[pipeline]\nname = \"y\"\n[[stage]]\nid = \"a\"\nkind = \"simulate\"\n",
        ),
    ]);
    assert_eq!(code, 2);
    let expected = [
        "many.toml:3:15: `concurrency` in [pipeline] must be an integer from 1 to 1024, found 0",
        "many.toml:4:13: `schedule`: `q` in `5q` is not a unit; valid units: ms, s, m, h, d",
        "many.toml:9:7: `url` in stage `a` must be http or https, not `ftp`",
        "many.toml:10:10: `method` in stage `a` is `FETCH`; valid methods: GET, POST, PUT, PATCH, DELETE, HEAD",
        "many.toml:15:15: stage `b` needs `zz`, which is not a stage in this pipeline; stages: a, b",
        "many.toml:16:13: `fail_rate` in stage `b` must be a number from 0 to 1, found 1.5",
        "good.toml: ok: pipeline `y`, 1 stage",
    ];
    assert_eq!(lines, expected);
}

#[test]
fn a_missing_file_is_reported_not_a_panic() {
    let ws = TestWorkspace::new();
    let out = ws.run(&["validate", "/nonexistent/p.toml"]);
    out.expect_code(2);
    assert!(
        out.stdout()
            .starts_with("/nonexistent/p.toml: cannot read the file:"),
        "{}",
        out.stdout()
    );
}

#[test]
fn the_same_pipeline_name_in_two_files_is_an_error() {
    let (code, lines) = validate(&[
        (
            "a.toml",
            "[pipeline]\nname = \"sim\"\n[[stage]]\nid = \"a\"\nkind = \"simulate\"\n",
        ),
        (
            "b.toml",
            "[pipeline]\nname = \"sim\"\n[[stage]]\nid = \"b\"\nkind = \"simulate\"\n",
        ),
    ]);
    assert_eq!(code, 2);
    assert_eq!(lines[1].split(": pipeline").next(), Some("b.toml"));
    assert!(
        lines[1].contains("pipeline `sim` is already defined in")
            && lines[1].ends_with("a.toml; names in a workspace must be unique"),
        "{lines:?}"
    );
}

#[test]
fn keys_of_another_kind_and_bad_bodies_are_explained() {
    let (code, lines) = validate(&[(
        "p.toml",
        r#"[pipeline]
name = "x"
[pipeline.retry]
backoff = { max_ms = 200 }
[[stage]]
id = "a"
kind = "simulate"
url = "http://example.com"
[[stage]]
id = "b"
kind = "http"
url = "http://example.com"
body = 5
retry = { backoff = { initial_ms = 5000 } }
"#,
    )]);
    assert_eq!(code, 2);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[0].starts_with("p.toml:8:1: `url` is a key of http stages, not of simulate stages like stage `a`; valid keys:"), "{}", lines[0]);
    assert!(lines[1].starts_with("p.toml:13:8: `body` in stage `b` must be a string (sent as it is) or a table or array (sent as JSON), found integer"), "{}", lines[1]);
    assert!(lines[2].starts_with("p.toml:14:36: `backoff` of `retry` of stage `b` has `max_ms` 200 below `initial_ms` 5000"), "{}", lines[2]);
}

/// A theme or keymap the settings name is loaded as the dashboard would: a name that does not
/// exist is refused at the setting with the valid names; a user file with problems is refused
/// at the setting, followed by the file's own problems.
#[test]
fn the_theme_and_keymap_the_settings_name_must_load() {
    let (code, lines) = validate(&[(
        "opsdeck.toml",
        "[ui]\ntheme = \"darkk\"\nkeymap = \"vim\"\n",
    )]);
    assert_eq!(code, 2, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "opsdeck.toml:2:9: ui.theme: there is no theme `darkk`; valid themes: dark, "
        ),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with(
            "opsdeck.toml:3:10: ui.keymap: there is no keymap `vim`; valid keymaps: arrows, default"
        ),
        "{lines:?}"
    );
    let ws = TestWorkspace::new();
    let themes = ws.root.path().join("home/config/opsdeck/themes");
    std::fs::create_dir_all(&themes).unwrap();
    std::fs::write(
        themes.join("mine.toml"),
        "inherits = \"dark\"\n[palette]\nred = \"#zz0000\"\n",
    )
    .unwrap();
    ws.write("opsdeck.toml", "[ui]\ntheme = \"mine\"\n");
    let out = ws.run(&["validate", ws.path("opsdeck.toml").to_str().unwrap()]);
    out.expect_code(2);
    let text = out.stdout();
    assert!(
        text.contains(
            "opsdeck.toml:2:9: ui.theme: the theme `mine` cannot be used; its problems follow"
        ) && text.contains("mine.toml:3:"),
        "{text}"
    );
}

/// With no files, the workspace's own: its settings, then its pipelines by name.
#[test]
fn with_no_files_the_workspace_is_checked() {
    let ws = TestWorkspace::new();
    ws.write("opsdeck.toml", "[ui]\ntheme = \"dark\"\n")
        .pipeline(
            "b",
            "[pipeline]\nname = \"b\"\n[[stage]]\nid = \"a\"\nkind = \"simulate\"\n",
        )
        .pipeline(
            "a",
            "[pipeline]\nname = \"a\"\n[[stage]]\nid = \"a\"\nkind = \"simulat\"\n",
        );
    let dir = ws.dir();
    // `run` passes the workspace with --workspace.
    let out = ws.run(&["validate"]);
    out.expect_code(2);
    let text = out.stdout().replace(&format!("{}/", dir.display()), "");
    let firsts: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("opsdeck.toml") || l.starts_with("pipelines/"))
        .collect();
    assert_eq!(
        firsts[0], "opsdeck.toml: ok: settings, no canaries",
        "{text}"
    );
    assert!(firsts[1].starts_with("pipelines/a.toml:5:8: "), "{text}");
    assert_eq!(
        firsts[2], "pipelines/b.toml: ok: pipeline `b`, 1 stage",
        "{text}"
    );
    // Outside any workspace it says what to give.
    let none = crate::support::Out(ws.bare_cmd().arg("validate").output().unwrap());
    none.expect_code(2);
    assert!(
        none.stderr().contains("no workspace here"),
        "{}",
        none.stderr()
    );
}
