//! The PostgreSQL side of [`Db`](super::Db): tokio-postgres driven by a small runtime of the
//! connection's own, on whichever thread uses it (the store's connections live on their own
//! threads). A transaction's writes are held until it ends and then sent pipelined with its
//! `BEGIN` and `COMMIT`, as prepared statements: one round trip per transaction, whatever the
//! number of writes, and no parsing on the server for statements it has seen.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use futures::StreamExt;
use futures::future::{MaybeDone, join_all};
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};

use super::{Row, Val, placeholders, redact};
use crate::store::{Result, StoreError};

/// How long a connection attempt may take before it counts as failed (unless the URL sets
/// `connect_timeout`).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the server keeps a session that sits idle inside a transaction; opsdeck's own
/// transactions never wait between statements for more than a round trip.
const IDLE_IN_TRANSACTION: std::time::Duration = std::time::Duration::from_secs(10);

/// Statements kept prepared per connection; past this the cache starts again.
const MAX_PREPARED: usize = 256;

/// A PostgreSQL connection and the statements it has prepared.
pub struct Pg {
    /// Drives the connection while a request waits; `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
    client: Arc<Client>,
    /// Transactions sent whole ([`Pg::send`]) whose answers have not been taken yet
    /// ([`Pg::wait`]), oldest first: driven whenever this connection waits for anything, since
    /// the connection reads no further than an answer nobody reads.
    flights: RefCell<VecDeque<Flight>>,
    prepared: HashMap<String, Statement>,
    /// Inside a transaction: the writes not yet sent.
    deferred: Option<Vec<(String, Vec<Val>)>>,
    /// Which of the held writes have their rows kept ([`Pg::keep`]), and the rows once they
    /// ran, in the order they were kept.
    keep_at: Vec<usize>,
    kept: std::collections::VecDeque<Vec<Row>>,
    /// Whether this transaction's `BEGIN` has reached the server.
    begun: bool,
    /// The server ended the session (a restart, an administrator), or the connection failed:
    /// known from the error before the client notices the socket close.
    lost: bool,
}

impl fmt::Debug for Pg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pg")
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        // A runtime must not be dropped on an async worker.
        if let Some(rt) = self.rt.take() {
            off_async(move || drop(rt));
        }
    }
}

/// Runs blocking database work where it may block: as is on a plain thread (the writer, the
/// blocking pool), through `block_in_place` on an async worker thread.
pub(super) fn off_async<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn args(vals: &[Val]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    vals.iter()
        .map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

impl Pg {
    /// Connects to the database at `url`.
    pub fn connect(url: &str) -> Result<Pg> {
        off_async(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError(format!("cannot start the PostgreSQL client: {e}")))?;
            let cannot = |e: &tokio_postgres::Error| {
                StoreError(format!(
                    "cannot connect to the PostgreSQL store at {}: {}",
                    redact(url),
                    message(e)
                ))
            };
            let (client, mut messages) = rt.block_on(open(url))?;
            // Polled whenever this thread waits on the runtime for a request.
            rt.spawn(async move {
                while let Some(m) = messages.next().await {
                    if let Err(e) = m {
                        tracing::warn!(error = %message(&e), "a PostgreSQL connection ended");
                        break;
                    }
                }
            });
            // A transaction left open by a worker cut off mid-way must not hold its locks
            // (its row, its runs) for long: the server ends such a session. Every statement
            // is prepared and finds its rows by key: planned once (and again whenever the
            // tables' statistics change), not for each call's values. Left to choose, the
            // server planned some again on every call (a run's stages: as long to plan as to
            // run).
            rt.block_on(client.batch_execute(&format!(
                "SET idle_in_transaction_session_timeout = {}; SET plan_cache_mode = force_generic_plan",
                IDLE_IN_TRANSACTION.as_millis()
            )))
            .map_err(|e| cannot(&e))?;
            Ok(Pg {
                rt: Some(rt),
                client: Arc::new(client),
                flights: RefCell::new(VecDeque::new()),
                prepared: HashMap::new(),
                deferred: None,
                keep_at: Vec::new(),
                kept: std::collections::VecDeque::new(),
                begun: false,
                lost: false,
            })
        })
    }

    pub fn is_broken(&self) -> bool {
        self.lost || self.client.is_closed()
    }

    /// The error as a store error, noting when it means the session is gone.
    fn fail(&mut self, e: &tokio_postgres::Error) -> StoreError {
        use tokio_postgres::error::SqlState;
        let gone = e.is_closed()
            || e.code().is_some_and(|c| {
                *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CRASH_SHUTDOWN
                    || *c == SqlState::CANNOT_CONNECT_NOW
                    || c.code().starts_with("08")
            });
        if gone {
            self.lost = true;
        }
        error(e)
    }

    /// Runs `f` to its end on this connection's runtime, driving the transactions in flight
    /// meanwhile (their answers come first).
    fn block_on<F: Future>(&self, f: F) -> Result<F::Output> {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| StoreError("the PostgreSQL connection is closed".into()))?;
        let flights = &self.flights;
        Ok(off_async(|| {
            rt.block_on(async {
                let mut f = std::pin::pin!(f);
                futures::future::poll_fn(|cx| {
                    for flight in flights.borrow_mut().iter_mut() {
                        flight.poll(cx);
                    }
                    f.as_mut().poll(cx)
                })
                .await
            })
        }))
    }

    /// Prepares the statements not prepared yet (pipelined), keyed by their text.
    fn prepare_all(&mut self, sqls: &[&str]) -> Result<()> {
        let mut missing: Vec<&str> = sqls
            .iter()
            .copied()
            .filter(|s| !self.prepared.contains_key(*s))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        if self.prepared.len() + missing.len() > MAX_PREPARED {
            self.prepared.clear();
        }
        let numbered: Vec<String> = missing.iter().map(|s| placeholders(s)).collect();
        let client = &self.client;
        let done = self.block_on(join_all(numbered.iter().map(|s| client.prepare(s))))?;
        for (sql, stmt) in missing.into_iter().zip(done) {
            let stmt = stmt.map_err(|e| self.fail(&e))?;
            self.prepared.insert(sql.to_string(), stmt);
        }
        Ok(())
    }

    fn statement(&mut self, sql: &str) -> Result<Statement> {
        self.prepare_all(&[sql])?;
        self.prepared
            .get(sql)
            .cloned()
            .ok_or_else(|| StoreError("a prepared statement went missing".into()))
    }

    pub fn execute(&mut self, sql: &str, vals: &[Val]) -> Result<u64> {
        if self.deferred.is_some() {
            return self.execute_owned(sql, vals.to_vec());
        }
        let stmt = self.statement(sql)?;
        let refs = args(vals);
        let out = self.block_on(self.client.execute(&stmt, &refs))?;
        out.map_err(|e| self.fail(&e))
    }

    /// [`Pg::execute`] with values it may keep as they are: a transaction's writes are held
    /// until it ends, and a batch's arrays (every row's text) are not copied to be held.
    pub fn execute_owned(&mut self, sql: &str, vals: Vec<Val>) -> Result<u64> {
        match self.deferred.as_mut() {
            Some(writes) => {
                writes.push((sql.to_string(), vals));
                Ok(0)
            }
            None => self.execute(sql, &vals),
        }
    }

    pub fn rows(&mut self, sql: &str, vals: &[Val]) -> Result<Vec<Row>> {
        self.flush(false)?;
        let stmt = self.statement(sql)?;
        let refs = args(vals);
        let rows = self.block_on(self.client.query(&stmt, &refs))?;
        let rows = rows.map_err(|e| self.fail(&e))?;
        convert(&rows)
    }

    /// Runs `sql` as a write of the transaction (sent with the others) and keeps its rows,
    /// taken with [`Pg::take_kept`] once the transaction is over: what a write returns,
    /// without a round trip of its own.
    pub fn keep(&mut self, sql: &str, vals: Vec<Val>) -> Result<()> {
        match self.deferred.as_mut() {
            Some(writes) => {
                self.keep_at.push(writes.len());
                writes.push((sql.to_string(), vals));
                Ok(())
            }
            None => {
                let rows = self.rows(sql, &vals)?;
                self.kept.push_back(rows);
                Ok(())
            }
        }
    }

    /// The rows of the first [`Pg::keep`] not taken yet, once.
    pub fn take_kept(&mut self) -> Option<Vec<Row>> {
        self.kept.pop_front()
    }

    pub fn batch(&mut self, sql: &str) -> Result<()> {
        self.flush(false)?;
        let out = self.block_on(self.client.batch_execute(sql))?;
        out.map_err(|e| self.fail(&e))
    }

    /// Starts a transaction: writes wait until it ends (or until a read inside it).
    pub fn begin(&mut self) {
        self.kept.clear();
        self.deferred = Some(Vec::new());
        self.begun = false;
    }

    /// Ends the transaction [`Pg::begin`] started: commits it if `out` is `Ok`.
    pub fn finish<T>(&mut self, out: Result<T>) -> Result<T> {
        let v = match out {
            Ok(v) => v,
            Err(e) => {
                self.abort();
                return Err(e);
            }
        };
        match self.flush(true) {
            Ok(()) => Ok(v),
            Err(e) => {
                self.abort();
                Err(e)
            }
        }
    }

    /// Sends the transaction [`Pg::begin`] started, whole, without waiting for its answer:
    /// its `COMMIT` follows its writes, and the next request on this connection queues behind
    /// it. Its answer is taken with [`Pg::wait`].
    pub fn send(&mut self) -> Result<()> {
        if self.deferred.is_none() {
            return Err(StoreError("no transaction to send".into()));
        }
        let flight = match self.flight(vec![("COMMIT", Vec::new())]) {
            Ok(flight) => flight,
            Err(e) => {
                self.abort();
                return Err(e);
            }
        };
        self.begun = false;
        self.flights.borrow_mut().push_back(flight);
        // Driving it once queues its requests, in order, before anything sent after it; the
        // yield lets the connection write them while the caller goes on.
        self.block_on(tokio::task::yield_now())
    }

    pub fn in_flight(&self) -> usize {
        self.flights.borrow().len()
    }

    /// Waits for the oldest transaction [`Pg::send`] sent. `Err`: it did not commit (its first
    /// failure). `Ok(Err)`: it committed, but the rows it kept could not be read. Otherwise the
    /// rows of its kept writes, in the order they were kept.
    pub fn wait(&mut self) -> Result<Result<VecDeque<Vec<Row>>>> {
        if self.flights.borrow().is_empty() {
            return Err(StoreError(
                "the connection was lost before a write batch's answer came".into(),
            ));
        }
        let flights = &self.flights;
        self.block_on(futures::future::poll_fn(|_| {
            if flights.borrow().front().is_none_or(Flight::done) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }))?;
        let Some(flight) = self.flights.borrow_mut().pop_front() else {
            return Err(StoreError("a write batch's answer went missing".into()));
        };
        self.landed(flight)
    }

    /// Builds the transaction [`Pg::begin`] started as one [`Flight`], sending nothing yet:
    /// `BEGIN` (unless a read inside it sent it already), its writes, `last`.
    fn flight(&mut self, last: Vec<(&str, Vec<Val>)>) -> Result<Flight> {
        let writes = self.deferred.take().unwrap_or_default();
        let mut texts: Vec<&str> = writes.iter().map(|(s, _)| s.as_str()).collect();
        texts.push("BEGIN");
        texts.extend(last.iter().map(|(s, _)| *s));
        self.prepare_all(&texts)?;
        let shift = usize::from(!self.begun);
        let mut stmts = Vec::with_capacity(shift + writes.len() + last.len());
        if !self.begun {
            stmts.push((self.statement("BEGIN")?, Vec::new()));
        }
        for (sql, vals) in writes {
            stmts.push((self.statement(&sql)?, vals));
        }
        for (sql, vals) in last {
            stmts.push((self.statement(sql)?, vals));
        }
        let keep_at = std::mem::take(&mut self.keep_at)
            .into_iter()
            .map(|i| i + shift)
            .collect();
        let answers = stmts
            .into_iter()
            .map(|(stmt, vals)| {
                let client = self.client.clone();
                let answer: Answer = Box::pin(async move {
                    let refs = args(&vals);
                    client.query(&stmt, &refs).await
                });
                MaybeDone::Future(answer)
            })
            .collect();
        let client = self.client.clone();
        let rollback: Answer =
            Box::pin(async move { client.batch_execute("ROLLBACK").await.map(|()| Vec::new()) });
        Ok(Flight {
            answers,
            keep_at,
            sent: 0,
            cut: false,
            rollback: MaybeDone::Future(rollback),
        })
    }

    /// The answer of a flight that is done (see [`Pg::wait`]).
    fn landed(&mut self, mut flight: Flight) -> Result<Result<VecDeque<Vec<Row>>>> {
        let mut rows = Vec::new();
        let mut failed = None;
        for (i, answer) in flight.answers.iter_mut().enumerate().take(flight.sent) {
            match Pin::new(answer).take_output() {
                Some(Ok(r)) if flight.keep_at.contains(&i) => rows.push(r),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    failed.get_or_insert(e);
                }
                None => return Err(StoreError("a write batch's answer went missing".into())),
            }
        }
        if flight.cut
            && let Some(Err(e)) = Pin::new(&mut flight.rollback).take_output()
        {
            let e = self.fail(&e);
            tracing::warn!(error = %e, "could not roll back a store transaction that failed before it was sent");
        }
        match failed {
            Some(e) => Err(self.fail(&e)),
            None => Ok(rows.iter().map(|r| convert(r)).collect()),
        }
    }

    /// Sends the held writes in one pipeline: `BEGIN` first (once), `COMMIT` last when
    /// `commit`. The first failure is the answer; the server's transaction is then aborted.
    fn flush(&mut self, commit: bool) -> Result<()> {
        if self.deferred.is_none() {
            return Ok(());
        }
        let last = if commit {
            vec![("COMMIT", Vec::new())]
        } else {
            Vec::new()
        };
        let mut flight = self.flight(last)?;
        self.begun = true;
        self.block_on(futures::future::poll_fn(|cx| {
            flight.poll(cx);
            if flight.done() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }))?;
        let kept = self.landed(flight)??;
        self.kept.extend(kept);
        if commit {
            self.begun = false;
        } else {
            self.deferred = Some(Vec::new());
        }
        Ok(())
    }

    /// Drops the held writes and rolls back what reached the server.
    fn abort(&mut self) {
        self.deferred = None;
        self.keep_at.clear();
        self.kept.clear();
        if std::mem::take(&mut self.begun)
            && let Ok(Err(e)) = self.block_on(self.client.batch_execute("ROLLBACK"))
        {
            tracing::warn!(error = %message(&e), "could not roll back a failed store transaction");
        }
    }
}

/// What one statement of a transaction in flight answers.
type Answer = Pin<
    Box<
        dyn Future<Output = std::result::Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>
            + Send,
    >,
>;

/// A transaction built whole ([`Pg::send`], [`Pg::flush`]): its statements' answers, and which
/// are kept.
struct Flight {
    answers: Vec<MaybeDone<Answer>>,
    keep_at: Vec<usize>,
    /// How many statements have been driven (their requests queued on the connection).
    sent: usize,
    /// A statement failed before it was sent (a value it could not encode): none after it is
    /// sent, so the `COMMIT` is not, and `rollback` ends what the server began.
    cut: bool,
    rollback: MaybeDone<Answer>,
}

impl Flight {
    /// Drives its answers; the first time, that queues its requests on the connection, in
    /// order, up to one that fails before it is sent.
    fn poll(&mut self, cx: &mut std::task::Context<'_>) {
        for i in 0..self.answers.len() {
            if self.cut && i >= self.sent {
                break;
            }
            let answer = &mut self.answers[i];
            let _ = Pin::new(&mut *answer).poll(cx);
            if i >= self.sent {
                self.sent = i + 1;
                if matches!(answer, MaybeDone::Done(Err(_))) {
                    self.cut = true;
                }
            }
        }
        if self.cut {
            let _ = Pin::new(&mut self.rollback).poll(cx);
        }
    }

    fn done(&self) -> bool {
        let pending = |a: &MaybeDone<Answer>| matches!(a, MaybeDone::Future(_));
        if self.cut {
            !pending(&self.rollback) && !self.answers[..self.sent].iter().any(pending)
        } else {
            self.sent == self.answers.len() && !self.answers.iter().any(pending)
        }
    }
}

fn convert(rows: &[tokio_postgres::Row]) -> Result<Vec<Row>> {
    rows.iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.try_get::<_, Val>(i).map_err(|e| error(&e)))
                .collect::<Result<Vec<_>>>()
                .map(Row)
        })
        .collect()
}

/// What a connection says besides answers (notifications), until it ends.
pub type Messages = std::pin::Pin<
    Box<
        dyn futures::Stream<Item = std::result::Result<AsyncMessage, tokio_postgres::Error>> + Send,
    >,
>;

/// Opens a connection to the store at `url` with the TLS its `sslmode` asks for, and the
/// timeouts a cut network needs: the client and the connection's messages, which must be
/// polled for the client to be answered.
pub async fn open(url: &str) -> Result<(Client, Messages)> {
    let cannot = |why: String| {
        StoreError(format!(
            "cannot connect to the PostgreSQL store at {}: {why}",
            redact(url)
        ))
    };
    let tls = crate::config::pgtls::read(url).map_err(cannot)?;
    let mut config: tokio_postgres::Config = tls.url.parse().map_err(|e| cannot(message(&e)))?;
    if config.get_connect_timeout().is_none() {
        // A server behind a cut network answers nothing: give up and try again.
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        // Unanswered data (a cut network) fails the connection in seconds rather than the
        // system's quarter of an hour; the writer then reconnects.
        config.tcp_user_timeout(CONNECT_TIMEOUT * 2);
    }
    let failed = |e: tokio_postgres::Error| cannot(message(&e));
    // A Unix socket is local to the machine: libpq ignores `sslmode` there, and so does
    // opsdeck (a TLS handshake would need a host name the socket's path is not).
    let connector = if over_socket(&config) {
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        None
    } else {
        super::tls::connector(&tls)?
    };
    Ok(match connector {
        None => {
            let (client, mut conn) = config.connect(NoTls).await.map_err(failed)?;
            let messages: Messages =
                Box::pin(futures::stream::poll_fn(move |cx| conn.poll_message(cx)));
            (client, messages)
        }
        Some(tls) => {
            let (client, mut conn) = config.connect(tls).await.map_err(failed)?;
            let messages: Messages =
                Box::pin(futures::stream::poll_fn(move |cx| conn.poll_message(cx)));
            (client, messages)
        }
    })
}

/// Whether `config` reaches the server only by Unix sockets. Only then: a URL with no host, or
/// with `hostaddr`, goes over TCP and keeps the TLS it asked for.
fn over_socket(config: &tokio_postgres::Config) -> bool {
    let hosts = config.get_hosts();
    !hosts.is_empty()
        && config.get_hostaddrs().is_empty()
        && hosts
            .iter()
            .all(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)))
}

/// A PostgreSQL error as one sentence: the server's message, not a Debug dump.
pub fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            if let Some(sentence) = super::tls::name_mismatch(e) {
                return sentence;
            }
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    }
}

fn error(e: &tokio_postgres::Error) -> StoreError {
    StoreError(format!("PostgreSQL store error: {}", message(e)))
}

#[cfg(test)]
mod tests {
    use super::over_socket;

    #[test]
    fn only_a_url_whose_every_host_is_a_socket_goes_without_tls() {
        let socket = |url: &str| over_socket(&url.parse().expect("a URL"));
        assert!(socket("postgres://u@%2Frun%2Fpostgresql/db"));
        assert!(socket("postgres://u@%2Fa,%2Fb/db"));
        assert!(!socket("postgres://u@db.internal/db"));
        assert!(!socket("postgres://u@%2Frun%2Fpostgresql,db.internal/db"));
        assert!(!socket("postgres://u@/db?hostaddr=10.0.0.1"));
        assert!(!socket(
            "postgres://u@%2Frun%2Fpostgresql/db?hostaddr=10.0.0.1"
        ));
    }
}
