//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use opsdeck::host::Workspace;
use opsdeck::host::{Host, HostOptions};
use opsdeck::model::{
    Actor, ApiError, Command as Cmd, Event, Outcome, Role, Run, RunId, RunStatus, Via,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A workspace in a temporary directory, with its own XDG dirs so nothing leaks in or out.
pub struct TestWorkspace {
    pub root: tempfile::TempDir,
}

impl TestWorkspace {
    pub fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("ws/pipelines")).unwrap();
        std::fs::create_dir_all(root.path().join("home")).unwrap();
        TestWorkspace { root }
    }

    pub fn dir(&self) -> PathBuf {
        self.root.path().join("ws")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    pub fn pipeline(&self, name: &str, text: &str) -> &Self {
        self.write(&format!("pipelines/{name}.toml"), text)
    }

    /// The real binary with an isolated home, run from the (non-workspace) temp root.
    pub fn bare_cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_opsdeck"));
        let home = self.root.path().join("home");
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("USER", "alice")
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .current_dir(self.root.path());
        c
    }

    /// The real binary pointed at this workspace.
    pub fn cmd(&self) -> Command {
        let mut c = self.bare_cmd();
        c.arg("--workspace").arg(self.dir());
        c
    }

    pub fn run(&self, args: &[&str]) -> Out {
        Out(self.cmd().args(args).output().unwrap())
    }

    pub fn open(&self) -> Workspace {
        Workspace::open(&self.dir()).unwrap()
    }

    pub async fn host(&self) -> Host {
        let mut opts = HostOptions::new("integration test");
        opts.seed = Some(7);
        Host::start(self.open(), opts).await.unwrap()
    }
}

/// A finished process's output.
pub struct Out(pub Output);

impl Out {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.0.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            )
        })
    }

    #[track_caller]
    /// Asserts the exit code and that stderr says `needle`.
    pub fn expect_error(&self, code: i32, needle: &str) -> &Self {
        self.expect_code(code);
        assert!(
            self.stderr().contains(needle),
            "stderr lacks {needle:?}: {}",
            self.stderr()
        );
        self
    }

    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// Runs a pipeline on a host to its end and returns the run.
/// Sends a command down the host's one control path as a test user at the dashboard.
pub async fn act(host: &Host, cmd: Cmd, reason: &str) -> Result<Outcome, ApiError> {
    let actor = Actor::new("tester", Role::Admin, Via::Dashboard);
    host.control(cmd, &actor, reason).await
}

pub async fn run_to_end(host: &Host, pipeline: &str) -> Run {
    let id = host
        .start_run(
            pipeline,
            &serde_json::Map::new(),
            opsdeck::model::Trigger::Manual,
        )
        .await
        .unwrap();
    let status = host.wait(id).await.unwrap();
    let run = host.run(id).await.unwrap();
    assert_eq!(run.status, status);
    run
}

/// Every stored event of a run.
pub async fn events_of(host: &Host, id: RunId) -> Vec<Event> {
    host.events(0, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.run_id == Some(id))
        .collect()
}

/// Polls `check` until it holds; panics with `what` after a generous bound (a failure bound,
/// not a timing assertion). For synchronous tests; async tests use [`until`].
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The async form of [`eventually`]: yields to the runtime between checks.
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn assert_status(run: &Run, status: RunStatus) {
    assert_eq!(
        run.status,
        status,
        "run: {}",
        serde_json::to_string_pretty(run).unwrap()
    );
}

/// Whether a process is gone (or a zombie waiting to be reaped).
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// A real HTTP/1.1 server on loopback that answers with scripted responses in order (the last
/// one repeats) and counts requests.
pub struct ScriptedServer {
    pub url: String,
    pub hits: Arc<AtomicUsize>,
}

pub async fn scripted_server(responses: Vec<(u16, &'static str)>) -> ScriptedServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let (status, body) = responses[n.min(responses.len() - 1)];
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then any declared body, so the client sees a clean exchange.
                loop {
                    let Ok(k) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                    if let Some(end) = find(&buf, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    ScriptedServer {
        url: format!("http://{addr}"),
        hits,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The workspace's log so far.
pub fn log_text(ws: &TestWorkspace) -> String {
    std::fs::read_dir(ws.path(".opsdeck/logs"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

/// `opsdeck serve` on `port` as a child process, once it has published its address.
pub fn serve(ws: &TestWorkspace, port: u16) -> Served {
    let child = ws
        .cmd()
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Guarded before waiting: a server that never publishes is not left behind either.
    let served = Served(Some(child));
    let host_json = ws.path(".opsdeck/host.json");
    // This process's own record: a host killed before it (a crash test) left its own behind,
    // with the same address, published before this one listens.
    eventually("serve to publish its address", || {
        std::fs::read_to_string(&host_json)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| {
                v["pid"] == pid
                    && v["address"]
                        .as_str()
                        .is_some_and(|a| a.contains(&format!("127.0.0.1:{port}")))
            })
    });
    served
}

/// A served process, stopped (SIGTERM, then waited for) when dropped; killed instead when the
/// test is failing, so a failed test leaves no process behind and cannot hang on one.
pub struct Served(Option<std::process::Child>);

impl Served {
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = self.0.as_ref().unwrap().id();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
    }

    /// SIGKILL, and waits for the process to go.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Waits for the process to end by itself (after a signal).
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.0.take().unwrap().wait().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            if std::thread::panicking() {
                let _ = c.kill();
            } else {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(c.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let _ = c.wait();
        }
    }
}

/// Stops a served process (SIGTERM) and waits for it.
pub fn stop(served: Served) {
    drop(served);
}

/// A one-stage pipeline `etl` whose stage prints `{"rows": 3}`.
pub const ETL: &str = r#"[pipeline]
name = "etl"
[[stage]]
id = "extract"
kind = "command"
command = ["sh", "-c", "echo '{\"rows\": 3}'"]
"#;

/// Serves `app` on a free loopback port in the background; its address.
pub async fn serve_router(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// The API of `host` with `config`, served as `opsdeck serve` serves it, on a free loopback
/// port; its address and the server's state (for what a test drives directly).
pub async fn serve_api(
    host: &Host,
    config: opsdeck::server::ServerConfig,
) -> (std::net::SocketAddr, opsdeck::server::AppState) {
    let state = opsdeck::server::AppState::new(host.clone(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(opsdeck::server::serve(listener, state.clone()));
    (addr, state)
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP client for tests (with the TLS provider installed, as the binary does).
pub fn http() -> reqwest::Client {
    opsdeck::runtime::stage::http_client()
}

/// `opsdeck audit --action GROUP --json` as rows of three fields of each record (`""` where
/// a field is absent), newest first.
pub fn audit_rows(
    ws: &TestWorkspace,
    group: &str,
    fields: [&str; 3],
) -> Vec<(String, String, String)> {
    let audit = ws.run(&["audit", "--action", group, "--json"]).json();
    let field = |r: &Value, f: &str| r[f].as_str().unwrap_or_default().to_string();
    audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                field(r, fields[0]),
                field(r, fields[1]),
                field(r, fields[2]),
            )
        })
        .collect()
}

/// A fresh, empty PostgreSQL database for one test, on the server `.ci/run` starts
/// (`OPSDECK_TEST_POSTGRES`): its URL. Fails, never skips, when there is no server.
pub fn postgres_db() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let admin = std::env::var("OPSDECK_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "OPSDECK_TEST_POSTGRES is not set: the PostgreSQL tests need a server; ./.ci/run starts one (or set it to a superuser URL such as postgres://opsdeck@127.0.0.1:5432/postgres)"
        )
    });
    let name = format!(
        "opsdeck_t{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    // Off any async runtime: the synchronous client drives one of its own.
    let admin2 = admin.clone();
    let name2 = name.clone();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&admin2, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {admin2}: {e}"));
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name2}"))
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name2}"))
            .unwrap();
    })
    .join()
    .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// A pipeline whose one stage always fails against `partner-api`, whose breaker opens after
/// two failures and stays open for ten minutes.
pub const FLAKY: &str = r#"[pipeline]
name = "flaky"
[pipeline.retry]
max_attempts = 1
[[stage]]
id = "call"
kind = "simulate"
target = "partner-api"
fail_rate = 1.0
breaker = { failure_threshold = 2, cooldown_ms = 600000 }
"#;
