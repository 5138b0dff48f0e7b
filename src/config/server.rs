//! The `[server]` table of `opsdeck.toml`, checked in the same pass as the file's other tables:
//! where to listen, limits, and the API tokens (stored as SHA-256 hashes; the plain token is
//! never written anywhere).

use std::net::SocketAddr;

use toml::de::{DeTable, DeValue};

use crate::diag::Checker;
use crate::model::Role;

/// One configured token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    pub role: Role,
    /// 32 bytes: the SHA-256 of the token.
    pub sha256: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Control requests allowed per token per minute.
    pub rate_limit: u32,
    /// How many events back an event stream may resume; a client further behind gets a
    /// `reset` event and reloads its views instead of the backlog.
    pub resume_horizon: u64,
    /// Open connections at once; more are answered 429 and closed.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers.
    pub header_timeout: std::time::Duration,
    /// Open event streams per token, and in all.
    pub sse_per_token: usize,
    pub sse_total: usize,
    /// Read requests allowed per token per minute.
    pub read_rate_limit: u32,
    /// Requests without a valid token allowed per client address per minute.
    pub anon_rate_limit: u32,
    /// Whether `/metrics` needs a token (any role); off, it is open as Prometheus expects.
    pub metrics_need_token: bool,
    pub tokens: Vec<Token>,
}

pub const DEFAULT_BIND: &str = "127.0.0.1:7070";

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 7070)),
            body_limit: 1024 * 1024,
            rate_limit: 120,
            resume_horizon: crate::model::DEFAULT_RESUME_HORIZON,
            max_connections: 512,
            header_timeout: std::time::Duration::from_secs(10),
            sse_per_token: 16,
            sse_total: 256,
            read_rate_limit: 6_000,
            anon_rate_limit: 60,
            metrics_need_token: false,
            tokens: Vec::new(),
        }
    }
}

/// Names the audit log uses for actors that are not tokens: a token may not take them.
pub const RESERVED_NAMES: &[&str] = &["anonymous", "unknown token", "opsdeck", "local"];

/// Why `name` cannot name a token, if it cannot: the same rule for `opsdeck token new` and
/// `[[server.tokens]]`.
pub fn token_name_problem(name: &str) -> Option<String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return Some(format!(
            "the token name `{}` may hold only letters, digits and - _ . @ (and not be empty)",
            crate::model::printable(name)
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Some(format!(
            "the token name `{name}` is what the audit log calls {}; choose another",
            if name == "opsdeck" {
                "opsdeck's own automatic actions"
            } else {
                "requests without a valid token"
            }
        ));
    }
    None
}

/// Lowercase hex of 32 bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// The numeric limits of `[server]`, each range-checked.
fn limits(c: &mut Checker<'_>, t: &DeTable<'_>, ctx: &str, cfg: &mut ServerConfig) {
    let mut int = |key: &str, min: i64, max: i64| c.int(t, key, ctx, min, max).map(|(n, _)| n);
    if let Some(n) = int("body_limit", 1024, 1 << 30) {
        cfg.body_limit = usize::try_from(n).unwrap_or(cfg.body_limit);
    }
    let per_minute =
        |n: Option<i64>, old: u32| n.and_then(|n| u32::try_from(n).ok()).unwrap_or(old);
    cfg.rate_limit = per_minute(int("rate_limit", 1, 1_000_000), cfg.rate_limit);
    cfg.read_rate_limit = per_minute(int("read_rate_limit", 1, 10_000_000), cfg.read_rate_limit);
    cfg.anon_rate_limit = per_minute(int("anon_rate_limit", 1, 1_000_000), cfg.anon_rate_limit);
    let count = |n: Option<i64>, old: usize| n.and_then(|n| usize::try_from(n).ok()).unwrap_or(old);
    cfg.max_connections = count(int("max_connections", 1, 100_000), cfg.max_connections);
    cfg.sse_per_token = count(int("sse_per_token", 1, 100_000), cfg.sse_per_token);
    cfg.sse_total = count(int("sse_total", 1, 100_000), cfg.sse_total);
    if let Some(n) = int("resume_horizon", 1, 100_000_000) {
        cfg.resume_horizon = n.unsigned_abs();
    }
    if let Some((d, span)) = c.duration(
        t,
        "header_timeout",
        ctx,
        std::time::Duration::from_millis(100),
    ) {
        if d > std::time::Duration::from_secs(600) {
            c.error(
                &span,
                format!("`header_timeout` in {ctx} must be at most 10m; a client gets that long to send a request's head"),
            );
        } else {
            cfg.header_timeout = d;
        }
    }
    if let Some((b, _)) = c.bool(t, "metrics_need_token", ctx) {
        cfg.metrics_need_token = b;
    }
}

/// One `[[server.tokens]]` table, checked against the tokens before it.
fn token(
    c: &mut Checker<'_>,
    item: &toml::Spanned<DeValue<'_>>,
    i: usize,
    known: &[Token],
) -> Option<Token> {
    let tctx = format!("token {} of [server]", i + 1);
    let DeValue::Table(tt) = item.get_ref() else {
        c.error(
            &item.span(),
            format!("{tctx} must be a table with name, role and sha256"),
        );
        return None;
    };
    c.known_keys(tt, &["name", "role", "sha256"], &tctx);
    let name = match c.str(tt, "name", &tctx) {
        Some((s, span)) => match token_name_problem(s) {
            Some(why) => {
                c.error(&span, format!("{why} ({tctx})"));
                None
            }
            None => Some(s.to_string()),
        },
        None => None,
    };
    let role = match c.str(tt, "role", &tctx) {
        Some((s, span)) => match s.parse::<Role>() {
            Ok(r) => Some(r),
            Err(_) => {
                c.error(
                    &span,
                    format!("`role` in {tctx} is `{s}`; valid roles: viewer, operator, admin"),
                );
                None
            }
        },
        None => None,
    };
    let sha = match c.str(tt, "sha256", &tctx) {
        Some((s, span)) => {
            let h = unhex(s);
            if h.is_none() {
                c.error(&span, format!("`sha256` in {tctx} must be 64 lowercase hex digits (`opsdeck token new` prints it)"));
            }
            h
        }
        None => None,
    };
    for (key, missing) in [
        ("name", name.is_none()),
        ("role", role.is_none()),
        ("sha256", sha.is_none()),
    ] {
        if missing && crate::diag::get(tt, key).is_none() {
            c.missing(&item.span(), key, &tctx);
        }
    }
    if let (Some(name), Some(role), Some(sha256)) = (name, role, sha) {
        if known.iter().any(|t| t.name == name) {
            c.error(
                &item.span(),
                format!(
                    "{tctx}: a token named `{name}` is already configured; names must be unique"
                ),
            );
        }
        if let Some(other) = known.iter().find(|t| t.sha256 == sha256) {
            c.error(&item.span(), format!("{tctx}: its `sha256` is the same as token `{}`'s, so one token would have two names and roles; make a new token with `opsdeck token new`", other.name));
        }
        return Some(Token { name, role, sha256 });
    }
    None
}

/// Checks the `[server]` table of a whole `opsdeck.toml` (defaults when it is absent).
pub fn parse(c: &mut Checker<'_>, root: &DeTable<'_>) -> ServerConfig {
    let mut cfg = ServerConfig::default();
    let Some((t, _)) = c.table(root, "server", "the file") else {
        return cfg;
    };
    let ctx = "[server]";
    c.known_keys(
        t,
        &[
            "bind",
            "body_limit",
            "rate_limit",
            "read_rate_limit",
            "anon_rate_limit",
            "resume_horizon",
            "max_connections",
            "header_timeout",
            "sse_per_token",
            "sse_total",
            "metrics_need_token",
            "tokens",
        ],
        ctx,
    );
    if let Some((s, span)) = c.str(t, "bind", ctx) {
        match s.parse::<SocketAddr>() {
            Ok(a) => cfg.bind = a,
            Err(_) => c.error(
                &span,
                format!("`bind` in {ctx} is `{s}`; write an address like {DEFAULT_BIND}"),
            ),
        }
    }
    limits(c, t, ctx, &mut cfg);
    if let Some(v) = crate::diag::get(t, "tokens") {
        let DeValue::Array(items) = v.get_ref() else {
            c.error(
                &v.span(),
                "`tokens` in [server] must be [[server.tokens]] tables with name, role and sha256",
            );
            return cfg;
        };
        for (i, item) in items.iter().enumerate() {
            if let Some(t) = token(c, item, i, &cfg.tokens) {
                cfg.tokens.push(t);
            }
        }
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<ServerConfig, Vec<String>> {
        crate::diag::check_text("opsdeck.toml", text, parse)
            .map_err(|d| d.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn token_names_are_plain_unique_unreserved_and_hashes_unique() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let token = |name: &str, sha: &str| {
            format!("[[server.tokens]]\nname = \"{name}\"\nrole = \"viewer\"\nsha256 = \"{sha}\"\n")
        };
        for (text, want) in [
            (token("", &a), "may hold only letters"),
            (token("bad\\u001bname", &a), "may hold only letters"),
            (token("anonymous", &a), "requests without a valid token"),
            (token("opsdeck", &a), "automatic actions"),
            (token("x", &a) + &token("y", &a), "the same as token `x`'s"),
            (
                "[server]\nheader_timeout = \"2h\"\n".to_string(),
                "at most 10m",
            ),
        ] {
            let errs = check(&text).unwrap_err().join("\n");
            assert!(errs.contains(want), "{text}: {errs}");
            assert!(errs.starts_with("opsdeck.toml:"), "{errs}");
        }
        assert!(check(&(token("x", &a) + &token("y", &b))).is_ok());
    }

    #[test]
    fn tokens_parse_and_mistakes_name_the_place() {
        let sha = "a".repeat(64);
        let cfg = check(&format!(
            "[server]\nbind = \"0.0.0.0:8080\"\n[[server.tokens]]\nname = \"ci\"\nrole = \"operator\"\nsha256 = \"{sha}\"\n"
        ))
        .unwrap();
        assert_eq!(cfg.tokens[0].role, Role::Operator);
        assert_eq!(cfg.bind.port(), 8080);
        let errs = check("[[server.tokens]]\nname = \"x\"\nrole = \"root\"\nsha256 = \"abc\"\n")
            .unwrap_err();
        assert!(errs[0].contains("opsdeck.toml:3:8: `role` in token 1 of [server] is `root`; valid roles: viewer, operator, admin"), "{errs:?}");
        assert!(errs[1].contains("64 lowercase hex digits"), "{errs:?}");
        assert!(Role::Admin.allows(Role::Operator) && !Role::Viewer.allows(Role::Operator));
    }
}
