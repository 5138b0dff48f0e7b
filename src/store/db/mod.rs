//! One connection to either store: SQLite (the embedded default) or PostgreSQL. Every query of
//! the store is written once, against this type, in the SQL both databases speak (`?N`
//! placeholders, `ON CONFLICT`, `RETURNING`); the few places where they differ ask
//! [`Db::dialect`]. Values cross in four shapes (and arrays, PostgreSQL only) ([`Val`]) so rows read the same from both.
//!
//! PostgreSQL is reached through tokio-postgres driven on the calling thread ([`pg`]): the
//! store's connections already live on their own threads (the writer thread, the blocking read
//! pool), so both databases are used the same way.

mod pg;
mod tls;

use super::{Result, StoreError};
pub use pg::{Messages, Pg, message as pg_message, open as open_postgres};

/// Which database a connection speaks to, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    /// A PostgreSQL array (one parameter standing for a column of many rows); SQLite has no
    /// arrays and refuses it.
    List(Vec<Val>),
}

impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}

impl From<u32> for Val {
    fn from(v: u32) -> Val {
        Val::Int(i64::from(v))
    }
}

impl From<usize> for Val {
    fn from(v: usize) -> Val {
        Val::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<u64> for Val {
    fn from(v: u64) -> Val {
        Val::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<bool> for Val {
    fn from(v: bool) -> Val {
        Val::Int(i64::from(v))
    }
}

impl From<f64> for Val {
    fn from(v: f64) -> Val {
        Val::Real(v)
    }
}

impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}

impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Text(v.clone())
    }
}

impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_string())
    }
}

impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map_or(Val::Null, Into::into)
    }
}

/// Statement arguments: `args![a, b]` converts each with `Val::from`.
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        &[$($crate::store::db::Val::from($v)),*][..]
    };
}
pub(crate) use args;

/// One row, its columns taken out by index.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Val>);

impl Row {
    fn take(&mut self, i: usize) -> Result<Val> {
        self.0
            .get_mut(i)
            .map(|v| std::mem::replace(v, Val::Null))
            .ok_or_else(|| StoreError(format!("the store's query has no column {i}")))
    }

    fn wrong(i: usize, want: &str, got: &Val) -> StoreError {
        StoreError(format!(
            "the state database holds {got:?} in column {i} where {want} belongs"
        ))
    }

    pub fn opt_i64(&mut self, i: usize) -> Result<Option<i64>> {
        match self.take(i)? {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(v)),
            other => Err(Row::wrong(i, "an integer", &other)),
        }
    }

    pub fn i64(&mut self, i: usize) -> Result<i64> {
        self.opt_i64(i)?
            .ok_or_else(|| Row::wrong(i, "an integer", &Val::Null))
    }

    pub fn u32(&mut self, i: usize) -> Result<u32> {
        let v = self.i64(i)?;
        u32::try_from(v).map_err(|_| Row::wrong(i, "a small count", &Val::Int(v)))
    }

    pub fn bool(&mut self, i: usize) -> Result<bool> {
        Ok(self.i64(i)? != 0)
    }

    pub fn opt_text(&mut self, i: usize) -> Result<Option<String>> {
        match self.take(i)? {
            Val::Null => Ok(None),
            Val::Text(v) => Ok(Some(v)),
            Val::Int(v) => Ok(Some(v.to_string())),
            other @ (Val::Real(_) | Val::List(_)) => Err(Row::wrong(i, "text", &other)),
        }
    }

    pub fn text(&mut self, i: usize) -> Result<String> {
        self.opt_text(i)?
            .ok_or_else(|| Row::wrong(i, "text", &Val::Null))
    }
}

/// A store connection.
#[derive(Debug)]
pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(Box<Pg>),
}

impl Db {
    /// Connects to the PostgreSQL database at `url` (`postgres://user@host:port/db`; a unix
    /// socket as a percent-encoded host, `postgres://user@%2Frun%2Fpostgresql/db`).
    pub fn postgres(url: &str) -> Result<Db> {
        Ok(Db::Postgres(Box::new(Pg::connect(url)?)))
    }

    /// Whether the connection is gone (PostgreSQL: the server closed it, or the network did);
    /// a new one must be opened. A SQLite connection never breaks this way.
    pub fn is_broken(&self) -> bool {
        match self {
            Db::Sqlite(_) => false,
            Db::Postgres(pg) => pg.is_broken(),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs a statement; returns the rows it changed (inside a PostgreSQL transaction the
    /// write is sent when the transaction ends, and this returns 0).
    pub fn execute(&mut self, sql: &str, args: &[Val]) -> Result<u64> {
        match self {
            Db::Sqlite(c) => {
                let n = c
                    .prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(args.iter()))?;
                Ok(n as u64)
            }
            Db::Postgres(pg) => pg.execute(sql, args),
        }
    }

    /// [`Db::execute`] with values it may keep: a PostgreSQL transaction holds its writes until
    /// it ends, and a batch's arrays (every row's text) are then held as they are, not copied.
    pub fn execute_owned(&mut self, sql: &str, args: Vec<Val>) -> Result<u64> {
        match self {
            Db::Sqlite(_) => self.execute(sql, &args),
            Db::Postgres(pg) => pg.execute_owned(sql, args),
        }
    }

    /// Runs a write whose rows are wanted (`RETURNING`): on PostgreSQL, inside a transaction,
    /// sent with the other writes and read with [`Db::take_kept`] after the commit.
    pub fn keep(&mut self, sql: &str, args: &[Val]) -> Result<()> {
        self.keep_owned(sql, args.to_vec())
    }

    /// [`Db::keep`] with values it may keep as they are (see [`Db::execute_owned`]).
    pub fn keep_owned(&mut self, sql: &str, args: Vec<Val>) -> Result<()> {
        match self {
            Db::Sqlite(_) => Err(StoreError(
                "kept rows are for PostgreSQL transactions".into(),
            )),
            Db::Postgres(pg) => pg.keep(sql, args),
        }
    }

    /// The rows of the transaction's first [`Db::keep`] not taken yet, once.
    pub fn take_kept(&mut self) -> Option<Vec<Row>> {
        match self {
            Db::Sqlite(_) => None,
            Db::Postgres(pg) => pg.take_kept(),
        }
    }

    /// Every row a query returns.
    pub fn rows(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Row>> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let width = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut vals = Vec::with_capacity(width);
                    for i in 0..width {
                        vals.push(sqlite_val(r.get_ref(i)?));
                    }
                    out.push(Row(vals));
                }
                Ok(out)
            }
            Db::Postgres(pg) => pg.rows(sql, args),
        }
    }

    /// The first row of a query, if any.
    pub fn row(&mut self, sql: &str, args: &[Val]) -> Result<Option<Row>> {
        Ok(self.rows(sql, args)?.into_iter().next())
    }

    /// The row a query always returns (an aggregate).
    pub fn one(&mut self, sql: &str, args: &[Val]) -> Result<Row> {
        self.row(sql, args)?
            .ok_or_else(|| StoreError(format!("the store's query returned no row: {sql}")))
    }

    /// Runs several statements without arguments (migrations).
    pub fn batch(&mut self, sql: &str) -> Result<()> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Postgres(pg) => pg.batch(sql),
        }
    }

    /// Builds a transaction with `f` and sends it whole without waiting for it (PostgreSQL
    /// only). Its answer is taken with [`Db::wait`], oldest first; meanwhile the connection
    /// takes other requests, behind it.
    pub fn send_transaction(&mut self, f: impl FnOnce(&mut Db) -> Result<()>) -> Result<()> {
        let Db::Postgres(pg) = self else {
            return Err(not_ahead());
        };
        pg.begin();
        let built = f(self);
        let Db::Postgres(pg) = self else {
            return Err(not_ahead());
        };
        match built {
            Ok(()) => pg.send(),
            Err(e) => pg.finish(Err(e)),
        }
    }

    /// How many transactions [`Db::send_transaction`] sent on this connection have not been
    /// waited for: none on a connection opened since they were sent.
    pub fn in_flight(&self) -> usize {
        match self {
            Db::Sqlite(_) => 0,
            Db::Postgres(pg) => pg.in_flight(),
        }
    }

    /// The answer of the oldest transaction [`Db::send_transaction`] sent. `Err`: it did not
    /// commit. `Ok(Err)`: it committed, but the rows it kept could not be read. Otherwise its
    /// kept rows, in the order they were kept.
    pub fn wait(&mut self) -> Result<Result<std::collections::VecDeque<Vec<Row>>>> {
        match self {
            Db::Sqlite(_) => Err(not_ahead()),
            Db::Postgres(pg) => pg.wait(),
        }
    }

    /// Runs `f` in one transaction: committed if it returns `Ok`, rolled back otherwise.
    pub fn transaction<T>(&mut self, f: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
        if let Db::Postgres(pg) = self {
            pg.begin();
            let out = f(self);
            return match self {
                Db::Postgres(pg) => pg.finish(out),
                Db::Sqlite(_) => out,
            };
        }
        self.batch("BEGIN")?;
        match f(self) {
            Ok(v) => {
                if let Err(e) = self.batch("COMMIT") {
                    let _ = self.batch("ROLLBACK");
                    return Err(e);
                }
                Ok(v)
            }
            Err(e) => {
                if let Err(r) = self.batch("ROLLBACK") {
                    tracing::warn!(error = %r, "could not roll back a failed store transaction");
                }
                Err(e)
            }
        }
    }
}

fn sqlite_val(v: rusqlite::types::ValueRef<'_>) -> Val {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Val::Null,
        ValueRef::Integer(i) => Val::Int(i),
        ValueRef::Real(f) => Val::Real(f),
        ValueRef::Text(t) | ValueRef::Blob(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Val::Real(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Val::List(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "SQLite takes no arrays".into(),
                ));
            }
        })
    }
}

/// What asking a SQLite store to send a transaction ahead answers (only PostgreSQL pipelines).
fn not_ahead() -> StoreError {
    StoreError("only a PostgreSQL store sends transactions ahead".into())
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl tokio_postgres::types::ToSql for Val {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<tokio_postgres::types::IsNull, BoxError> {
        use tokio_postgres::types::{IsNull, Type};
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                #[allow(clippy::cast_precision_loss)]
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                    i.to_string().to_sql(ty, out)
                }
                _ => i.to_sql(ty, out),
            },
            Val::Real(f) => f.to_sql(ty, out),
            // PostgreSQL's text cannot hold NUL, which a stage's output or a request's text
            // can carry: the server would refuse the whole transaction, losing the writes
            // beside it. It is stored as U+FFFD, as invalid UTF-8 already is.
            Val::Text(s) if s.contains('\0') => {
                s.replace('\0', "\u{FFFD}").as_str().to_sql(ty, out)
            }
            Val::Text(s) => s.as_str().to_sql(ty, out),
            Val::List(items) => items.to_sql(ty, out),
        }
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

impl<'a> tokio_postgres::types::FromSql<'a> for Val {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> std::result::Result<Val, BoxError> {
        use tokio_postgres::types::Type;
        Ok(match *ty {
            Type::INT8 => Val::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Val::Int(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT2 => Val::Int(i64::from(i16::from_sql(ty, raw)?)),
            Type::BOOL => Val::Int(i64::from(bool::from_sql(ty, raw)?)),
            Type::FLOAT8 => Val::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Val::Real(f64::from(f32::from_sql(ty, raw)?)),
            _ => Val::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(_: &tokio_postgres::types::Type) -> std::result::Result<Val, BoxError> {
        Ok(Val::Null)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        use tokio_postgres::types::Type;
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::BOOL
                | Type::FLOAT8
                | Type::FLOAT4
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
        )
    }
}

/// `?N` and `?` placeholders as PostgreSQL's `$N` (outside quoted text).
pub(crate) fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let (mut quoted, mut next) = (false, 1);
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                out.push('$');
                if chars.peek().is_some_and(char::is_ascii_digit) {
                    while let Some(d) = chars.next_if(char::is_ascii_digit) {
                        out.push(d);
                    }
                } else {
                    out.push_str(&next.to_string());
                    next += 1;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

pub use crate::config::secret::{has_password, redact};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_outside_quotes() {
        assert_eq!(
            placeholders("SELECT '?' , ?1, ?2 WHERE a = ?2"),
            "SELECT '?' , $1, $2 WHERE a = $2"
        );
        assert_eq!(placeholders("a = ? AND b = ?"), "a = $1 AND b = $2");
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("postgres://ops:secret@db:5432/opsdeck"),
            "postgres://ops:***@db:5432/opsdeck"
        );
        assert_eq!(
            redact("host=/tmp user=ops password=secret"),
            "host=/tmp user=ops password=***"
        );
        assert_eq!(redact("postgres://db/x"), "postgres://db/x");
        assert_eq!(
            redact("postgres://ops@db/x?password=TOPSECRET&host=h"),
            "postgres://ops@db/x?password=***&host=h"
        );
        assert_eq!(
            redact("postgres://ops@db/x?sslmode=disable&password=a&b=c"),
            "postgres://ops@db/x?sslmode=disable&password=***&b=c"
        );
        assert!(has_password("postgres://a:b@h/x") && !has_password("postgres://a@h/x"));
    }

    #[test]
    fn rows_read_the_same_from_sqlite() {
        let mut db = Db::Sqlite(rusqlite::Connection::open_in_memory().unwrap());
        db.batch("CREATE TABLE t (a INTEGER, b TEXT)").unwrap();
        db.execute("INSERT INTO t VALUES (?1, ?2)", args![7_i64, "x"])
            .unwrap();
        db.execute(
            "INSERT INTO t VALUES (?1, ?2)",
            args![None::<i64>, None::<String>],
        )
        .unwrap();
        let mut rows = db.rows("SELECT a, b FROM t ORDER BY a", &[]).unwrap();
        assert_eq!(rows[0].opt_i64(0).unwrap(), None);
        assert_eq!(rows[1].i64(0).unwrap(), 7);
        assert_eq!(rows[1].text(1).unwrap(), "x");
        assert!(rows[0].text(1).unwrap_err().0.contains("column 1"));
    }
}
