//! A workspace on a PostgreSQL store (a real server, started by `.ci/run`): runs, reads, the
//! migration from SQLite, one host at a time, and the errors a wrong URL gets.

use crate::support::{ETL, TestWorkspace, free_port, postgres_db, serve, stop};

#[test]
fn a_sqlite_store_migrates_to_postgres_and_the_workspace_runs_on_it() {
    let ws = TestWorkspace::new();
    ws.pipeline("etl", ETL);
    ws.run(&["run", "etl"]).expect_code(0);
    ws.run(&["run", "etl"]).expect_code(0);
    let url = postgres_db();

    let out = ws.run(&["store", "migrate", "--to", &url]);
    out.expect_code(0);
    assert!(out.stdout().contains("2 runs"), "{}", out.stdout());
    assert!(out.stdout().contains("url ="), "{}", out.stdout());
    // Only into an empty database: a second copy would duplicate everything.
    ws.run(&["store", "migrate", "--to", &url])
        .expect_error(2, "already holds");

    ws.write("opsdeck.toml", &format!("[store]\nurl = \"{url}\"\n"));
    // Now on PostgreSQL, its old SQLite file is not copied again by mistake.
    ws.run(&["store", "migrate", "--to", &postgres_db()])
        .expect_error(2, "already keeps its state in PostgreSQL");
    let runs = ws.run(&["runs", "--json"]).json();
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    // A new run on PostgreSQL continues the ids and the event log.
    let out = ws.run(&["run", "etl", "--json"]);
    out.expect_code(0);
    assert_eq!(out.json()["id"], 3, "{}", out.stdout());
    assert_eq!(out.json()["status"], "succeeded");
    let show = ws.run(&["runs", "show", "3", "--json"]).json();
    assert_eq!(
        show["stages"][0]["attempts"][0]["output"]["rows"], 3,
        "{show}"
    );
    // The migration is in the PostgreSQL store's audit log.
    let audit = ws.run(&["audit", "--action", "store", "--json"]).json();
    assert_eq!(audit[0]["action"], "store.migrate", "{audit}");
    assert_eq!(audit[0]["actor"], "alice");
    // SQLite file copies do not apply to it.
    ws.run(&["store", "backup", ws.path("b.db").to_str().unwrap()])
        .expect_error(2, "pg_dump");
}

#[test]
fn workspaces_on_one_postgres_store_share_its_runs_as_workers() {
    let url = postgres_db();
    let (a, b) = (TestWorkspace::new(), TestWorkspace::new());
    for ws in [&a, &b] {
        ws.pipeline("etl", ETL);
        ws.write("opsdeck.toml", &format!("[store]\nurl = \"{url}\"\n"));
    }
    let port = free_port();
    let child = serve(&a, port);
    // Another workspace on the same database is a second worker: it runs beside `serve`.
    b.run(&["run", "etl"]).expect_code(0);
    let workers = b.run(&["workers", "--json"]).json();
    let list = workers.as_array().unwrap();
    assert_eq!(list.len(), 1, "only serve is live now: {workers}");
    assert_eq!(
        list[0]["address"],
        format!("http://127.0.0.1:{port}"),
        "{workers}"
    );
    assert!(list[0]["lease_left_ms"].as_i64().unwrap() > 0, "{workers}");
    // The same through serve's API.
    let api = a
        .cmd()
        .args(["workers", "--remote", &format!("http://127.0.0.1:{port}")])
        .output()
        .map(crate::support::Out)
        .unwrap();
    api.expect_code(0);
    assert!(api.stdout().contains("left"), "{}", api.stdout());
    stop(child);
    assert_eq!(
        a.run(&["runs", "--json"]).json().as_array().unwrap().len(),
        1
    );
    // Stopped on purpose: its row is gone at once.
    assert_eq!(b.run(&["workers", "--json"]).json(), serde_json::json!([]));
    let sqlite = TestWorkspace::new();
    let out = sqlite.run(&["workers"]);
    out.expect_code(0);
    assert!(out.stdout().contains("SQLite"), "{}", out.stdout());
}

#[test]
fn a_wrong_store_url_is_explained() {
    let ws = TestWorkspace::new();
    ws.pipeline("etl", ETL);
    ws.write("opsdeck.toml", "[store]\nurl = \"mysql://db/x\"\n");
    ws.run(&["runs"])
        .expect_error(2, "give a URL starting with postgres:// or postgresql://");
    std::fs::remove_file(ws.path("opsdeck.toml")).unwrap();
    runs_on(&ws, "sqlite:x")
        .expect_error(2, "OPSDECK_STORE__URL=sqlite:x: must be empty, or a URL");
    // A URL of the right scheme that cannot be read is bad input too.
    runs_on(&ws, "postgres://op sdeck@[bad")
        .expect_error(2, "the form is postgres://USER@HOST:PORT/DATABASE");
    // TLS parameters are checked the same way, naming the choices.
    runs_on(&ws, "postgres://ops@db/x?sslmode=strict").expect_error(
        2,
        "sslmode `strict` is not one of disable, prefer, require, verify-ca or verify-full",
    );
    runs_on(
        &ws,
        "postgres://ops@db/x?sslmode=verify-full&sslrootcert=/nowhere/ca.pem",
    )
    .expect_error(2, "sslrootcert /nowhere/ca.pem is not a file");
    // A wrong URL with a password in it is refused without repeating the password.
    let out = runs_on(&ws, "mysql://ops:hunter2@db/x");
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr().contains("mysql://ops:***@db/x"),
        "{}",
        out.stderr()
    );
    assert!(!out.stderr().contains("hunter2"), "{}", out.stderr());
    ws.write(
        "opsdeck.toml",
        "[store]\nurl = \"mysql://ops:hunter2@db/x\"\n",
    );
    let out = ws.run(&["runs"]);
    assert_eq!(out.code(), 2);
    assert!(!out.stderr().contains("hunter2"), "{}", out.stderr());
    std::fs::remove_file(ws.path("opsdeck.toml")).unwrap();
    // A server that is not there: one sentence naming it, without the password.
    let out = ws
        .cmd()
        .env(
            "OPSDECK_STORE__URL",
            format!("postgres://ops:hunter2@127.0.0.1:{}/x", free_port()),
        )
        .args(["run", "etl"])
        .output()
        .map(crate::support::Out)
        .unwrap();
    assert_ne!(out.code(), 0);
    let err = out.stderr();
    assert!(
        err.contains("cannot connect to the PostgreSQL store at postgres://ops:***@127.0.0.1"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    ws.run(&["store", "migrate", "--to", "mysql://x"])
        .expect_error(2, "give a PostgreSQL URL");
    // Its TLS parameters are read before anything is touched, as `[store] url`'s are.
    ws.run(&[
        "store",
        "migrate",
        "--to",
        "postgres://ops@db/x?sslmode=strict",
    ])
    .expect_error(2, "sslmode `strict` is not one of disable, prefer");
    // A database nothing has used yet: reading it says what to do first.
    runs_on(&ws, &postgres_db()).expect_error(2, "has no opsdeck tables yet");
}

/// `opsdeck runs` in `ws` with `OPSDECK_STORE__URL=url`.
fn runs_on(ws: &TestWorkspace, url: &str) -> crate::support::Out {
    ws.cmd()
        .env("OPSDECK_STORE__URL", url)
        .args(["runs"])
        .output()
        .map(crate::support::Out)
        .unwrap()
}

/// Ends every connection the server has to `url`'s database, as a server restart would.
fn cut_connections(url: &str) -> u64 {
    let admin = std::env::var("OPSDECK_TEST_POSTGRES").unwrap();
    let db = url.rsplit('/').next().unwrap().to_string();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        c.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&db],
        )
        .unwrap()
        .len() as u64
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_connections_are_cut_reconnects_and_goes_on() {
    let url = postgres_db();
    let ws = TestWorkspace::new();
    ws.pipeline("etl", ETL);
    ws.write("opsdeck.toml", &format!("[store]\nurl = \"{url}\"\n"));
    let host = ws.host().await;
    let first = crate::support::run_to_end(&host, "etl").await;
    assert_eq!(first.status, opsdeck::model::RunStatus::Succeeded);
    let cut = tokio::task::spawn_blocking({
        let url = url.clone();
        move || cut_connections(&url)
    })
    .await
    .unwrap();
    assert!(cut >= 2, "the writer and a reader were connected ({cut})");
    // Writes and reads go on over new connections.
    let second = crate::support::run_to_end(&host, "etl").await;
    assert_eq!(second.status, opsdeck::model::RunStatus::Succeeded);
    assert_eq!(
        host.runs(opsdeck::model::RunQuery::default())
            .await
            .unwrap()
            .total,
        2
    );
    let seqs: Vec<u64> = host
        .events(0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    host.shutdown().await;
}

/// The test server's CA certificate (`OPSDECK_TEST_POSTGRES_CA`, or the other CA's).
fn test_ca(other: bool) -> String {
    let name = if other {
        "OPSDECK_TEST_POSTGRES_OTHER_CA"
    } else {
        "OPSDECK_TEST_POSTGRES_CA"
    };
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: ./.ci/run starts PostgreSQL with TLS from a throwaway CA and sets it")
    })
}

/// Whether the connection `url` opens is encrypted, as the server sees it; or the error.
fn encrypted(url: &str) -> Result<bool, String> {
    let mut db = opsdeck::store::Target::Postgres(url.to_string())
        .writer()
        .map_err(|e| e.to_string())?;
    let row = db
        .one(
            "SELECT ssl::int FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .map_err(|e| e.to_string());
    Ok(row?.i64(0).unwrap() == 1)
}

#[test]
fn a_store_on_a_unix_socket_connects_without_tls_whatever_sslmode_says() {
    let url = postgres_db();
    let dir = std::env::var("OPSDECK_TEST_POSTGRES_SOCKET").unwrap_or_else(|_| {
        panic!("OPSDECK_TEST_POSTGRES_SOCKET is not set: ./.ci/run starts PostgreSQL with a Unix socket there and sets it")
    });
    // postgres://opsdeck@127.0.0.1:PORT/DB -> the same database by the socket's directory.
    let (_, rest) = url.split_once('@').unwrap();
    let (_, port_db) = rest.split_once(':').unwrap();
    let encoded: String = dir
        .bytes()
        .map(|b| match b {
            b'/' => "%2F".to_string(),
            _ => char::from(b).to_string(),
        })
        .collect();
    let local = format!("postgres://opsdeck@{encoded}:{port_db}");
    // As libpq: a socket on the machine needs no TLS, so `sslmode` is not asked of it (a TLS
    // handshake would need a host name, which a socket's path is not).
    assert_eq!(encrypted(&local), Ok(false));
    assert_eq!(encrypted(&format!("{local}?sslmode=require")), Ok(false));
    // A workspace on it runs as on any other PostgreSQL store.
    let ws = TestWorkspace::new();
    ws.pipeline("etl", ETL);
    ws.write("opsdeck.toml", &format!("[store]\nurl = \"{local}\"\n"));
    ws.run(&["run", "etl"]).expect_code(0);
    let runs = ws.run(&["runs", "--json"]).json();
    assert_eq!(runs[0]["status"], "succeeded", "{runs}");
}

#[test]
fn a_store_over_tls_checks_the_servers_certificate_as_sslmode_asks() {
    let url = postgres_db();
    let ca = test_ca(false);
    let other = test_ca(true);
    // As libpq: TLS when the server offers it, by default; none when disabled.
    assert_eq!(encrypted(&url), Ok(true));
    assert_eq!(encrypted(&format!("{url}?sslmode=disable")), Ok(false));
    // Checked against the CA that signed the server's certificate, for 127.0.0.1.
    assert_eq!(
        encrypted(&format!("{url}?sslmode=verify-full&sslrootcert={ca}")),
        Ok(true)
    );
    // A certificate from a CA the client does not trust is refused, for every checked mode.
    for mode in ["verify-full", "verify-ca", "require"] {
        let err = encrypted(&format!("{url}?sslmode={mode}&sslrootcert={other}")).unwrap_err();
        assert!(err.contains("certificate"), "{mode}: {err}");
        assert!(
            err.contains("cannot connect to the PostgreSQL store"),
            "{mode}: {err}"
        );
    }
    // The certificate names 127.0.0.1, not localhost: verify-full refuses the name,
    // verify-ca checks only the CA.
    let by_name = url.replace("127.0.0.1", "localhost");
    let err = encrypted(&format!("{by_name}?sslmode=verify-full&sslrootcert={ca}")).unwrap_err();
    assert!(
        err.contains(
            "the server's certificate is not for the host localhost (it is for 127.0.0.1)"
        ) && err.contains("sslmode=verify-ca"),
        "{err}"
    );
    assert!(!err.contains("IpAddress"), "{err}");
    assert_eq!(
        encrypted(&format!("{by_name}?sslmode=verify-ca&sslrootcert={ca}")),
        Ok(true)
    );
    // A file that is not a CA certificate is named.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let err = encrypted(&format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        junk.display()
    ))
    .unwrap_err();
    assert!(
        err.contains("junk.pem") && err.contains("holds no certificate"),
        "{err}"
    );
    // A bundle with one block that is no certificate among good ones is refused, not thinned.
    let mixed = dir.path().join("mixed.pem");
    let good = std::fs::read_to_string(&ca).unwrap();
    std::fs::write(
        &mixed,
        format!("{good}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
    )
    .unwrap();
    let err = encrypted(&format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        mixed.display()
    ))
    .unwrap_err();
    assert!(
        err.contains("1 of its certificates cannot be read"),
        "{err}"
    );
    // Through the settings, the same file is bad input, refused before anything connects.
    let ws = TestWorkspace::new();
    ws.pipeline("etl", ETL);
    ws.write(
        "opsdeck.toml",
        &format!(
            "[store]\nurl = \"{url}?sslmode=verify-full&sslrootcert={}\"\n",
            junk.display()
        ),
    );
    ws.run(&["runs"]).expect_error(2, "holds no certificate");
}

#[test]
fn workers_run_over_verified_tls() {
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        postgres_db(),
        test_ca(false)
    );
    let ws = TestWorkspace::new();
    ws.pipeline("etl", ETL);
    ws.write("opsdeck.toml", &format!("[store]\nurl = \"{url}\"\n"));
    let port = free_port();
    let server = serve(&ws, port);
    // A run through the CLI (its own connection) and through the worker (its writer, its
    // readers and its notifications), all verified.
    ws.run(&["run", "etl"]).expect_code(0);
    let out = ws.run(&["workers"]);
    out.expect_code(0);
    assert!(out.stdout().contains("127.0.0.1"), "{}", out.stdout());
    stop(server);
}

/// A TCP proxy to the test server that, once armed, cuts the connection that next commits a
/// batch of events (the store writer's) just as the server answers that batch's `COMMIT`: the
/// transaction committed and its answer never arrives, as when a network drops at that moment.
/// It reads the protocol as it passes (without TLS, which a proxy could not read through).
struct CommitCutter {
    url: String,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// One connection's transactions, as the proxy follows them: the `COMMIT`s the client sent
/// and the server answered, and which answer to cut.
#[derive(Default)]
struct Commits {
    sent: usize,
    answered: usize,
    cut_at: Option<usize>,
}

impl CommitCutter {
    /// A proxy in front of the server of `url` (a database of the test server); its URL (the
    /// same database, without TLS).
    fn start(url: &str) -> CommitCutter {
        let (user, rest) = url.split_once('@').unwrap();
        let (upstream, db) = rest.split_once('/').unwrap();
        let upstream = upstream.to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cuts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (a, c) = (armed.clone(), cuts.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let commits = std::sync::Arc::new(std::sync::Mutex::new(Commits::default()));
                let (from_client, to_server) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (seen, armed) = (commits.clone(), a.clone());
                std::thread::spawn(move || client_side(from_client, to_server, &seen, &armed));
                let cuts = c.clone();
                std::thread::spawn(move || server_side(server, client, &commits, &cuts));
            }
        });
        CommitCutter {
            url: format!("{user}@127.0.0.1:{port}/{db}?sslmode=disable"),
            armed,
            cuts,
        }
    }

    fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn cuts(&self) -> usize {
        self.cuts.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The complete messages at the front of `buf` (a type byte, then a length counting itself),
/// taken out of it: each with its type and body.
fn messages(buf: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() >= at + 5 {
        let len = u32::from_be_bytes(buf[at + 1..at + 5].try_into().unwrap()) as usize;
        if buf.len() < at + 1 + len {
            break;
        }
        out.push((buf[at], buf[at + 5..at + 1 + len].to_vec()));
        at += 1 + len;
    }
    buf.drain(..at);
    out
}

/// The text up to the first NUL of `bytes`, and what follows that NUL.
fn cstr(bytes: &[u8]) -> (&[u8], &[u8]) {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    (&bytes[..end], bytes.get(end + 1..).unwrap_or_default())
}

/// Passes the client's bytes on as they come, following its prepared statements: once armed,
/// the first transaction that inserts events is the one whose `COMMIT` answer is cut. (The
/// bytes are read before they are passed on, so the cut is marked before the server can
/// answer.)
fn client_side(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    commits: &std::sync::Mutex<Commits>,
    armed: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read, Write};
    let mut statements = std::collections::HashMap::<Vec<u8>, Vec<u8>>::new();
    let (mut buf, mut pending, mut started) = (vec![0_u8; 64 * 1024], Vec::new(), false);
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        if !started && pending.len() >= 4 {
            // The startup message has no type byte.
            let len = u32::from_be_bytes(pending[..4].try_into().unwrap()) as usize;
            if pending.len() >= len {
                pending.drain(..len);
                started = true;
            }
        }
        let read = if started {
            messages(&mut pending)
        } else {
            Vec::new()
        };
        for (kind, body) in read {
            match kind {
                b'P' => {
                    let (name, rest) = cstr(&body);
                    statements.insert(name.to_vec(), cstr(rest).0.to_vec());
                }
                b'B' => {
                    let stmt = cstr(cstr(&body).1).0;
                    let sql = statements.get(stmt).map(Vec::as_slice).unwrap_or_default();
                    let mut c = commits.lock().unwrap();
                    if sql == b"COMMIT" {
                        c.sent += 1;
                    } else if sql.windows(18).any(|w| w == b"INSERT INTO events")
                        && c.cut_at.is_none()
                        && armed.swap(false, std::sync::atomic::Ordering::SeqCst)
                    {
                        c.cut_at = Some(c.sent + 1);
                    }
                }
                _ => {}
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// Passes the server's messages on whole, and cuts both ways instead of passing on the
/// `COMMIT` answer marked to cut.
fn server_side(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    commits: &std::sync::Mutex<Commits>,
    cuts: &std::sync::atomic::AtomicUsize,
) {
    use std::io::{Read, Write};
    let (mut buf, mut pending) = (vec![0_u8; 64 * 1024], Vec::new());
    'read: while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        let mut out = Vec::new();
        for (kind, body) in messages(&mut pending) {
            if kind == b'C' && cstr(&body).0 == b"COMMIT" {
                let mut c = commits.lock().unwrap();
                c.answered += 1;
                if c.cut_at == Some(c.answered) {
                    c.cut_at = None;
                    cuts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = to.write_all(&out);
                    break 'read;
                }
            }
            out.push(kind);
            out.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
            out.extend_from_slice(&body);
        }
        if to.write_all(&out).is_err() {
            break;
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_commit_answer_is_lost_is_stored_once_and_answered_as_committed() {
    use opsdeck::model::{EventKind, RunStatus};
    let cutter = CommitCutter::start(&postgres_db());
    let ws = TestWorkspace::new();
    ws.pipeline("etl", ETL);
    ws.write(
        "opsdeck.toml",
        &format!("[store]\nurl = \"{}\"\n", cutter.url),
    );
    let host = ws.host().await;
    let mut live = host.subscribe();
    let first = crate::support::run_to_end(&host, "etl").await;
    assert_eq!(first.status, RunStatus::Succeeded);
    for round in 1..=3 {
        cutter.arm();
        // The run's writes commit, one of them with its answer lost: the run goes on, and
        // starting it is not refused (its insert is not made twice).
        let run = crate::support::run_to_end(&host, "etl").await;
        assert_eq!(run.status, RunStatus::Succeeded, "round {round}");
        assert_eq!(cutter.cuts(), round, "a commit's answer was cut");
    }
    let runs = host
        .runs(opsdeck::model::RunQuery::default())
        .await
        .unwrap();
    assert_eq!(runs.total, 4);
    let events = host.events(0, 10_000).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    // Each run's life is told once: no batch was stored twice.
    let mut told = std::collections::HashMap::new();
    for e in &events {
        if let Some(run) = e.run_id {
            *told.entry((run, e.kind, e.stage.clone())).or_insert(0) += 1;
        }
    }
    let twice: Vec<_> = told.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events stored twice: {twice:?}");
    // And published once each, in order, on the live stream.
    let mut heard = Vec::new();
    while heard.last() != seqs.last() {
        let e = tokio::time::timeout(std::time::Duration::from_secs(30), live.recv())
            .await
            .expect("the live stream reaches the last stored event")
            .unwrap();
        heard.push(e.seq);
    }
    let from = seqs.iter().position(|s| Some(s) == heard.first()).unwrap();
    assert_eq!(heard, seqs[from..], "published once each, in order");
    assert!(
        events
            .iter()
            .all(|e| e.run_id.is_none() || heard.contains(&e.seq)),
        "every run's events were heard"
    );
    for kind in [
        EventKind::RunStarted,
        EventKind::RunFinished,
        EventKind::StageFinished,
    ] {
        assert_eq!(
            told.keys().filter(|(_, k, _)| *k == kind).count(),
            4,
            "{kind:?} once per run"
        );
    }
    host.shutdown().await;
}
