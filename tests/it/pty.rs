//! End to end: the real binary in a pseudo-terminal, its screen parsed with vt100. Start on a
//! temporary workspace, watch a run appear, open it, open a stage, diff it against a baseline,
//! requeue a dead-letter entry through its confirmation, resize, quit.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};

use crate::support::TestWorkspace;

struct Term {
    master: Box<dyn MasterPty + Send>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    screen: Arc<Mutex<vt100::Parser>>,
}

fn nz(n: u16) -> std::num::NonZeroU16 {
    std::num::NonZeroU16::new(n).unwrap()
}

fn size(cols: u16, rows: u16) -> PtySize {
    PtySize {
        rows,
        cols,
        pixel_width: 0,
        pixel_height: 0,
    }
}

impl Term {
    fn start(ws: &TestWorkspace, cols: u16, rows: u16) -> Term {
        Term::start_with(ws, cols, rows, &[])
    }

    fn start_with(ws: &TestWorkspace, cols: u16, rows: u16, env: &[(&str, &str)]) -> Term {
        let dir = ws.dir();
        Term::spawn(
            ws,
            (cols, rows),
            env,
            &["--workspace", dir.to_str().unwrap()],
        )
    }

    fn spawn(
        ws: &TestWorkspace,
        (cols, rows): (u16, u16),
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Term {
        let pair = native_pty_system().openpty(size(cols, rows)).unwrap();
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_opsdeck"));
        let home = ws.root.path().join("home");
        cmd.env_clear();
        cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
        cmd.env("HOME", &home);
        cmd.env("XDG_CONFIG_HOME", home.join("config"));
        cmd.env("XDG_DATA_HOME", home.join("data"));
        cmd.env("TERM", "xterm-256color");
        cmd.env("USER", "oncall");
        for (k, v) in env {
            cmd.env(k, v);
        }
        for a in args {
            cmd.arg(a);
        }
        let child = pair.slave.spawn_command(cmd).unwrap();
        drop(pair.slave);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(nz(rows), nz(cols), 0)));
        let mut reader = pair.master.try_clone_reader().unwrap();
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().process(&buf[..n]);
            }
        });
        let writer = pair.master.take_writer().unwrap();
        Term {
            master: pair.master,
            writer,
            child,
            screen,
        }
    }

    fn text(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits until the screen shows `what` (a bound on failure, not a timing assertion).
    #[track_caller]
    fn wait_for(&self, what: &str) -> String {
        let start = Instant::now();
        loop {
            let text = self.text();
            if text.contains(what) {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "never saw {what:?}; the screen shows:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until line `row` of the screen shows `what`.
    #[track_caller]
    fn wait_for_line(&self, row: usize, what: &str) -> String {
        let start = Instant::now();
        loop {
            let text = self.text();
            if text.lines().nth(row).is_some_and(|l| l.contains(what)) {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "line {row} never showed {what:?}; the screen shows:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit, killing it after 30 s (a bound on failure, so a test
    /// that forgot a key fails instead of hanging).
    #[track_caller]
    fn wait_exit(&mut self) -> portable_pty::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("never exited; the screen shows:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
        // Let each batch be read before the next, as a person types.
        std::thread::sleep(Duration::from_millis(150));
    }

    fn resize(&mut self, cols: u16, rows: u16) {
        self.screen
            .lock()
            .unwrap()
            .screen_mut()
            .set_size(nz(rows), nz(cols));
        self.master.resize(size(cols, rows)).unwrap();
    }
}

#[test]
fn a_session_from_start_to_quit() {
    let ws = TestWorkspace::new();
    ws.pipeline(
        "tick",
        r#"[pipeline]
name = "tick"
description = "runs every second; its output changes each run"
schedule = "every 1s"
[[stage]]
id = "count"
kind = "command"
command = ["sh", "-c", "echo \"{\\\"run\\\": $OPSDECK_RUN_ID, \\\"region\\\": \\\"eu\\\"}\""]
"#,
    );
    ws.pipeline(
        "fragile",
        r#"[pipeline]
name = "fragile"
description = "fails until the file `ok` exists"
[[stage]]
id = "call-partner"
kind = "command"
command = ["sh", "-c", "[ -f ok ] || { echo 'partner said no' >&2; exit 3; }"]
"#,
    );
    let mut t = Term::start(&ws, 100, 30);

    // Runs appear as the schedule fires; wait for a few so there is a baseline to diff against.
    t.wait_for("1 Runs");
    t.wait_for("Runs · 3");
    t.keys("jgg");
    t.keys("\r");
    let detail = t.wait_for("STAGE");
    assert!(
        detail.contains("· tick ") && detail.contains("count"),
        "{detail}"
    );

    // Open the stage and diff its output against the previous successful run.
    t.keys("\r");
    t.wait_for("attempt 1/1");
    t.wait_for("\"run\":");
    t.keys("d");
    let diff = t.wait_for("the previous success");
    assert!(
        diff.contains("~ $.run:"),
        "the changed path is listed:\n{diff}"
    );
    t.keys("u");
    t.wait_for("side by side");

    // Start the fragile pipeline from the picker; it fails into the dead-letter queue.
    // Esc closes the diff; the Runs pane still shows the run; Esc again leaves it. (Each key
    // is sent on its own: two escapes in one write read as Alt-Esc, as in any terminal.)
    t.keys("\x1b");
    t.keys("1");
    t.wait_for("Timeline");
    t.keys("\x1b");
    t.wait_for("newest first");
    t.keys("n");
    t.wait_for("Start a run (Enter starts");
    t.keys("\r");
    t.wait_for("· fragile ");
    t.wait_for("failed");
    t.keys("5");
    let dlq = t.wait_for("call-partner");
    assert!(dlq.contains("exit_status"), "{dlq}");

    // Requeue it, through the confirmation, with a reason; now it succeeds.
    std::fs::write(ws.path("ok"), "").unwrap();
    t.keys("R");
    t.wait_for("Requeue dead-letter entry");
    t.keys("partner fixed their side");
    t.keys("\r");
    t.wait_for("requeued into run");
    t.wait_for("The dead-letter queue is empty.");

    // Small, too small, and back: never a broken frame.
    t.resize(60, 15);
    t.wait_for("Dead-letter queue");
    t.resize(30, 8);
    t.wait_for("opsdeck needs 60x15");
    t.resize(100, 30);
    t.wait_for("The dead-letter queue is empty.");

    // `q` asks first while a run is in flight (the schedule fires every second): confirm.
    t.keys("q");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = t.child.try_wait().unwrap() {
            break status;
        }
        if t.text().contains("Quit opsdeck?") {
            t.keys("y");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never quit:\n{}",
            t.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    let reason = std::fs::read_to_string(
        ws.path(".opsdeck/logs")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    assert!(reason.contains("run requeued"), "{reason}");
}

#[test]
fn a_canary_rolled_back_by_keyboard() {
    let ws = TestWorkspace::new();
    ws.write(
        "opsdeck.toml",
        r#"[canary.checkout-api]
source = "simulate"
steps = [ {weight = 20, pause = "30m"}, {weight = 100} ]
analysis = { interval = "2s" }
simulate = { rps = 40 }
"#,
    );
    let mut t = Term::start_with(&ws, 100, 30, &[("USER", "oncall")]);
    t.wait_for("1 Runs");
    t.keys("3");
    t.wait_for("▶ progressing  step");
    t.wait_for("20%");
    t.keys("x");
    t.wait_for("Roll back to 0%: checkout-api?");
    t.keys("canary pages on-call");
    t.keys("\r");
    let after = t.wait_for("↩ rolled_back  step");
    assert!(after.contains("weight 20% -> 0%"), "{after}");
    assert!(
        !after.contains("⚠ ROLLBACK"),
        "no banner for the rollback just made here: {after}"
    );
    t.keys("q");
    assert!(t.wait_exit().success());
    let status = ws.run(&["canary", "status", "checkout-api", "--json"]);
    let s = status.json();
    assert_eq!(s["state"], "rolled_back");
    assert_eq!(s["last_action"]["reason"], "canary pages on-call");
    assert_eq!(
        s["last_action"]["actor"], "oncall",
        "the person at the terminal"
    );
    let audit = ws
        .run(&["audit", "--action", "canary.rollback", "--json"])
        .json();
    assert_eq!(audit[0]["via"], "dashboard", "{audit}");
    assert_eq!(audit[0]["actor"], "oncall", "{audit}");
}

/// A CLI command on a workspace the dashboard hosts goes through the dashboard's loopback
/// endpoint; a confirmation opened before it moved the canary is refused, never applied
/// relative to the new step; a rolled-back canary restarts from the pane.
#[test]
fn the_cli_acts_through_the_dashboard_and_a_stale_confirmation_is_refused() {
    let ws = TestWorkspace::new();
    ws.write(
        "opsdeck.toml",
        r#"[canary.checkout-api]
source = "simulate"
steps = [ {weight = 20, pause = "30m"}, {weight = 50, pause = "30m"}, {weight = 100} ]
analysis = { interval = "2s" }
simulate = { rps = 40 }
"#,
    );
    let mut t = Term::start(&ws, 100, 30);
    t.wait_for("1 Runs");
    t.keys("3");
    t.wait_for("▶ progressing  step");
    t.keys("p");
    t.wait_for("Promote to step 2 (50%): checkout-api?");

    // Behind the open dialog, the CLI promotes it: through the dashboard, not refused.
    let cli = ws.run(&[
        "canary",
        "promote",
        "checkout-api",
        "--reason",
        "from the cli",
    ]);
    cli.expect_code(0);
    let json = ws
        .run(&["canary", "status", "checkout-api", "--json"])
        .json();
    assert_eq!(json["weight"], 50.0, "{json}");

    t.keys("stale look");
    t.keys("\r");
    t.wait_for("moved since the dialog");
    let json = ws
        .run(&["canary", "status", "checkout-api", "--json"])
        .json();
    assert_eq!(
        (json["step"].as_u64(), json["weight"].as_f64()),
        (Some(1), Some(50.0)),
        "the stale promote did nothing: {json}"
    );

    // Rolled back, the footer offers restart and `r` restarts it from the first step.
    t.keys("x");
    t.wait_for("Roll back to 0%: checkout-api?");
    t.keys("bad latency");
    t.keys("\r");
    t.wait_for("↩ rolled_back  step");
    // The footer, once the message of the rollback has gone.
    let ended = t.wait_for("r restart");
    assert!(
        !ended.contains("promote "),
        "no controls on an ended rollout: {ended}"
    );
    t.keys("r");
    t.wait_for("Restart from step 1 (20%): checkout-api?");
    t.keys("fixed the pool size");
    t.keys("\r");
    t.wait_for("▶ progressing  step");

    // The canary action's event opens whole: its reason, actor and data.
    t.keys("7");
    t.keys("/");
    t.keys("kind:canary_action restart");
    t.keys("\r");
    t.wait_for("filter: kind:canary_action restart");
    t.keys("G");
    t.keys("\r");
    let record = t.wait_for("· canary_action");
    assert!(record.contains("fixed the pool size"), "{record}");
    assert!(record.contains("\"actor\": \"oncall\""), "{record}");
    t.keys("\x1b");
    t.keys("\x1b");
    t.keys("q");
    assert!(t.wait_exit().success());

    let rows = crate::support::audit_rows(&ws, "canary", ["action", "via", "outcome"]);
    for want in [
        ("canary.promote", "cli"),
        ("canary.rollback", "dashboard"),
        ("canary.restart", "dashboard"),
    ] {
        assert!(
            rows.iter()
                .any(|(a, v, _)| (a.as_str(), v.as_str()) == want),
            "{want:?} missing from {rows:?}"
        );
    }
}

/// At 80x24 a 300-character stderr line is cut with an ellipsis; scrolling sideways and
/// wrapping each reveal its end.
#[test]
fn a_long_stderr_line_is_read_to_its_end_at_80x24() {
    let ws = TestWorkspace::new();
    ws.pipeline(
        "noisy",
        r#"[pipeline]
name = "noisy"
[[stage]]
id = "call"
kind = "command"
command = ["sh", "-c", "printf 'upstream said: %0280d TAIL-OF-STDERR\\n' 0 >&2; exit 3"]
"#,
    );
    let mut t = Term::start(&ws, 80, 24);
    t.wait_for("1 Runs");
    t.keys("n");
    t.wait_for("Start a run");
    t.keys("\r");
    t.wait_for("· noisy ");
    t.wait_for("failed");
    t.keys("\r");
    let cut = t.wait_for("upstream said:");
    assert!(!cut.contains("TAIL-OF-STDERR"), "{cut}");
    assert!(cut.contains("0…"), "the cut shows an ellipsis: {cut}");
    for _ in 0..8 {
        t.keys("l");
    }
    t.wait_for("TAIL-OF-STDERR");
    t.keys("w");
    t.wait_for("wrapped");
    let wrapped = t.wait_for("TAIL-OF-STDERR");
    assert!(wrapped.contains("upstream said:"), "{wrapped}");
    // `q` goes back out of the stage and the run, then quits.
    for _ in 0..3 {
        t.keys("q");
    }
    assert!(t.wait_exit().success());
}

/// Ctrl-C with a run in flight asks first; confirmed, the dashboard says which run it left
/// interrupted and how to resume it, and exits 130 like any interrupted command.
#[test]
fn ctrl_c_asks_then_names_the_interrupted_run_and_exits_130() {
    let ws = TestWorkspace::new();
    ws.pipeline(
        "slow",
        r#"[pipeline]
name = "slow"
[[stage]]
id = "wait"
kind = "command"
command = ["sleep", "60"]
"#,
    );
    let mut t = Term::start(&ws, 100, 30);
    t.wait_for("1 Runs");
    t.keys("n");
    t.wait_for("Start a run");
    t.keys("\r");
    t.wait_for("· slow ");
    t.wait_for("running");
    t.keys("\x03");
    t.wait_for("Quit opsdeck?");
    t.keys("y");
    let status = t.wait_exit();
    assert_eq!(status.exit_code(), 130, "{status:?}");
    let after = t.wait_for("opsdeck runs resume 1");
    assert!(
        after.contains("1 run is interrupted: run 1 (slow)"),
        "{after}"
    );
    let show = ws.run(&["runs", "show", "1"]);
    assert!(
        show.stdout()
            .contains("continue it with `opsdeck runs resume 1`"),
        "{}",
        show.stdout()
    );
}

#[test]
fn the_dashboard_on_a_remote_server_survives_a_restart_and_stays_read_only() {
    let ws = TestWorkspace::new();
    ws.pipeline("etl", crate::support::ETL);
    ws.write(
        "opsdeck.toml",
        r#"[canary.web]
source = "simulate"
steps = [ {weight = 20, pause = "30m"}, {weight = 100} ]
simulate = { rps = 20 }
"#,
    );
    ws.run(&["run", "etl"]).expect_code(0);
    let port = crate::support::free_port();
    let server = crate::support::serve(&ws, port);
    let url = format!("http://127.0.0.1:{port}");
    let mut t = Term::spawn(&ws, (100, 30), &[], &["--remote", &url, "--read-only"]);
    let runs = t.wait_for("Runs · 1");
    let header = runs.lines().next().unwrap().to_string();
    assert!(
        header.contains(&format!("127.0.0.1:{port}")) && header.contains('●'),
        "live, and says where: {header}"
    );

    // Read-only: the rollback key is refused, and no dialog opens.
    t.keys("3");
    t.wait_for("▶ progressing  step");
    t.keys("x");
    let refused = t.wait_for("read-only");
    assert!(!refused.contains("Roll back canary"), "{refused}");

    // The server restarts: the data stays on screen marked stale, then live again.
    crate::support::stop(server);
    let stale = t.wait_for("stale");
    assert!(
        stale.contains("web"),
        "the last data stays visible: {stale}"
    );
    let server = crate::support::serve(&ws, port);
    t.wait_for_line(0, "●");
    t.keys("1");
    t.wait_for("etl");
    t.keys("q");
    assert!(t.wait_exit().success());
    crate::support::stop(server);
}

/// Arrow keys, as a terminal sends them.
const DOWN: &str = "\x1b[B";
const UP: &str = "\x1b[A";
const F1: &str = "\x1bOP";

#[test]
fn the_arrows_keymap_drives_every_dialog_without_letters() {
    let ws = TestWorkspace::new();
    ws.pipeline(
        "alpha",
        "[pipeline]\nname = \"alpha\"\ndescription = \"succeeds\"\n[[stage]]\nid = \"a\"\nkind = \"command\"\ncommand = [\"true\"]\n",
    );
    ws.pipeline(
        "beta",
        "[pipeline]\nname = \"beta\"\ndescription = \"fails until the file `ok` exists\"\n[[stage]]\nid = \"call\"\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"[ -f ok ] || exit 3\"]\n",
    );
    ws.pipeline(
        "slow",
        "[pipeline]\nname = \"slow\"\ndescription = \"takes a minute\"\n[[stage]]\nid = \"wait\"\nkind = \"command\"\ncommand = [\"sleep\", \"60\"]\n",
    );
    let dir = ws.dir();
    let mut t = Term::spawn(
        &ws,
        (100, 30),
        &[],
        &["--workspace", dir.to_str().unwrap(), "--keymap", "arrows"],
    );
    t.wait_for("1 Runs");

    // The picker: letters do nothing, arrows move, Enter starts.
    t.keys("n");
    let picker = t.wait_for("Start a run (Enter starts, Esc cancels)");
    assert!(
        picker.contains("alpha") && picker.contains("beta"),
        "{picker}"
    );
    t.keys("jj");
    t.keys(DOWN);
    t.keys("\r");
    t.wait_for("· beta ");
    t.wait_for("failed");

    // A confirmation: typed letters are the reason, Enter confirms.
    std::fs::write(ws.path("ok"), "").unwrap();
    t.keys("5");
    t.wait_for("exit_status");
    t.keys("R");
    t.wait_for("Requeue dead-letter entry");
    t.keys("jk fixed it");
    t.keys("\r");
    t.wait_for("requeued into run");
    let audit = ws
        .run(&["audit", "--action", "dlq.requeue", "--json"])
        .json();
    assert_eq!(audit[0]["reason"], "jk fixed it", "{audit}");

    // The help names the keymap's keys and scrolls with the arrows.
    t.keys(F1);
    let help = t.wait_for("Keys (");
    assert!(help.contains("↓/↑ scroll"), "{help}");
    t.keys(DOWN);
    t.keys(UP);
    t.keys("\x1b");
    t.wait_for("Dead-letter queue");

    // The palette completes with tab and picks with the arrows.
    t.keys(":");
    t.wait_for("Command");
    t.keys("ru");
    t.keys(DOWN);
    t.keys("\t");
    t.keys("slow");
    t.keys("\r");
    t.wait_for("· slow ");

    // Quitting with a run in flight asks; Enter quits.
    t.keys("\x1b");
    t.keys("q");
    t.wait_for("Quit opsdeck?");
    t.keys("\r");
    let start = Instant::now();
    while t.child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never quit:\n{}",
            t.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One session in a real terminal: edit an asset, test a stage with the new version, pin it,
/// run the pipeline, compare with the run before, and roll the asset back.
#[test]
fn an_asset_is_edited_tested_pinned_compared_and_rolled_back_in_one_session() {
    let ws = TestWorkspace::new();
    ws.pipeline(
        "greet",
        r#"[pipeline]
name = "greet"
[[stage]]
id = "render"
kind = "command"
asset = "greeting"
command = ["sh", "-c", "cat"]
"#,
    );
    ws.write("assets/greeting.txt", "hello\n");
    ws.run(&["run", "greet"]).expect_code(0);
    let mut t = Term::start(&ws, 120, 30);
    t.wait_for("Runs");
    t.keys("6");
    t.wait_for("greeting · v1 pinned");
    // A new version in the editor, saved with a reason.
    t.keys("e");
    t.wait_for("New version of greeting");
    t.keys("hej ");
    t.keys("\t");
    t.keys("try Danish");
    t.keys("\r");
    t.wait_for("version 2 stored; runs use version 1");
    // The new version alone on its stage, beside the last production output.
    t.keys("\t");
    t.keys("k");
    t.wait_for("── v2");
    t.keys("t");
    t.wait_for("Test a stage with greeting v2");
    t.keys("\r");
    t.wait_for("hej hello");
    // Pin it, run the pipeline, and compare with the run before.
    t.keys("6");
    t.keys("p");
    t.wait_for("Pin version 2 of greeting?");
    t.keys("ship it");
    t.keys("\r");
    t.wait_for("version 2 is pinned");
    t.keys("1");
    t.keys("n");
    t.wait_for("Start a run");
    t.keys("\r");
    t.wait_for("succeeded");
    t.keys("\x1b");
    t.keys("1");
    t.keys(" ");
    t.keys("j");
    t.keys(" ");
    t.wait_for("◆ greeting 1→2: render");
    // Roll the asset back, with a reason.
    t.keys("6");
    t.keys("u");
    t.wait_for("Roll back greeting?");
    t.keys("too casual");
    t.keys("\r");
    t.wait_for("version 1 is pinned");
    t.keys("q");
    assert!(t.wait_exit().success());

    let rows = crate::support::audit_rows(&ws, "asset", ["action", "via", "reason"]);
    let done: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, v, r)| (a.as_str(), v.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        done,
        [
            ("asset.rollback", "dashboard", "too casual"),
            ("asset.pin", "dashboard", "ship it"),
            ("asset.put", "dashboard", "try Danish"),
            ("asset.put", "automatic", "seeded from assets/greeting.txt"),
        ]
    );
    let tests = ws.run(&["runs", "--tests", "--json"]).json();
    assert_eq!(tests.as_array().unwrap().len(), 1, "{tests}");
}
