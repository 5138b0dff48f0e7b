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
    pub tokens: Vec<Token>,
}

pub const DEFAULT_BIND: &str = "127.0.0.1:7070";

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 7070)),
            body_limit: 1024 * 1024,
            rate_limit: 120,
            tokens: Vec::new(),
        }
    }
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

/// Checks the `[server]` table of a whole `opsdeck.toml` (defaults when it is absent).
pub fn parse(c: &mut Checker<'_>, root: &DeTable<'_>) -> ServerConfig {
    let mut cfg = ServerConfig::default();
    let Some((t, _)) = c.table(root, "server", "the file") else {
        return cfg;
    };
    let ctx = "[server]";
    c.known_keys(t, &["bind", "body_limit", "rate_limit", "tokens"], ctx);
    if let Some((s, span)) = c.str(t, "bind", ctx) {
        match s.parse::<SocketAddr>() {
            Ok(a) => cfg.bind = a,
            Err(_) => c.error(
                &span,
                format!("`bind` in {ctx} is `{s}`; write an address like {DEFAULT_BIND}"),
            ),
        }
    }
    if let Some((n, _)) = c.int(t, "body_limit", ctx, 1024, 1 << 30) {
        cfg.body_limit = n as usize;
    }
    if let Some((n, _)) = c.int(t, "rate_limit", ctx, 1, 1_000_000) {
        cfg.rate_limit = n as u32;
    }
    if let Some(v) = crate::diag::get(t, "tokens") {
        let DeValue::Array(items) = v.get_ref() else {
            c.error(
                &v.span(),
                "`tokens` in [server] must be [[server.tokens]] tables with name, role and sha256",
            );
            return cfg;
        };
        for (i, item) in items.iter().enumerate() {
            let tctx = format!("token {} of [server]", i + 1);
            let DeValue::Table(tt) = item.get_ref() else {
                c.error(
                    &item.span(),
                    format!("{tctx} must be a table with name, role and sha256"),
                );
                continue;
            };
            c.known_keys(tt, &["name", "role", "sha256"], &tctx);
            let name = c.str(tt, "name", &tctx).map(|(s, _)| s.to_string());
            let role = match c.str(tt, "role", &tctx) {
                Some((s, span)) => {
                    match s.parse::<Role>() {
                        Ok(r) => Some(r),
                        Err(_) => {
                            c.error(&span, format!("`role` in {tctx} is `{s}`; valid roles: viewer, operator, admin"));
                            None
                        }
                    }
                }
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
                if cfg.tokens.iter().any(|t| t.name == name) {
                    c.error(&item.span(), format!("{tctx}: a token named `{name}` is already configured; names must be unique"));
                }
                cfg.tokens.push(Token { name, role, sha256 });
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
