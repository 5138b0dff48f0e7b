//! Bearer tokens with roles, compared in constant time, a per-token rate limit on control
//! routes, and an audit record for every denial.

use std::num::NonZeroU32;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use governor::Quota;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DashMapStateStore;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::Failure;
use crate::config::Token;
use crate::model::{Actor, AuditRecord, ErrorCode, Role, Timestamp, Via};

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// The tool the client says it is (`cli`, `dashboard`); plain `api` otherwise.
    pub via: Via,
}

impl AppState {
    /// Refuses a request that has no valid token: over the per-address limit it is a 429,
    /// otherwise `f`; either way it is counted in the folded audit of that address.
    pub async fn deny_anonymous(
        &self,
        peer: &str,
        who: &str,
        target: &str,
        mut f: Failure,
    ) -> Failure {
        if let Err(wait) = self.anon_rate.check(peer) {
            f = Failure::new(
                ErrorCode::RateLimited,
                format!(
                    "too many requests without a valid token from {peer} ({} a minute are answered); retry in {wait}s",
                    self.config.anon_rate_limit
                ),
            );
            f.retry_after_s = Some(wait);
        }
        self.fold_denial(peer, (who, None), ("authenticate", target), f)
            .await
    }

    /// Audits a refusal folded per client (`key`: an address or a token) and action: the
    /// first in a minute at once, the rest as one line with a count when the minute ends, so
    /// no client can fill the log by being refused. Returns the refusal.
    pub async fn fold_denial(
        &self,
        key: &str,
        (who, role): (&str, Option<Role>),
        (action, target): (&str, &str),
        f: Failure,
    ) -> Failure {
        let rec = AuditRecord {
            at: now_ts(),
            actor: who.to_string(),
            role,
            via: Some(Via::Api),
            action: action.to_string(),
            target: target.to_string(),
            reason: String::new(),
            outcome: format!("denied: {}", f.error.code),
            details: json!({ "message": f.error.message }),
        };
        if let Some(rec) = self.denials.note(key, rec) {
            self.host.record_denial(rec).await;
        }
        f
    }
}

impl Principal {
    /// The token as an actor on the host's control path.
    pub fn actor(&self) -> Actor {
        Actor::new(self.name.clone(), self.role, self.via)
    }
}

/// The tool a client says it is: `cli` or `dashboard`; anything else is plain `api`. Only
/// informational: the token decides who may do what.
fn claimed_via(parts: &Parts) -> Via {
    parts
        .headers
        .get(crate::client::CLAIM_VIA)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<Via>().ok())
        .filter(|v| matches!(v, Via::Cli | Via::Dashboard))
        .unwrap_or(Via::Api)
}

/// The user a client names. Trusted only without tokens, where the server binds loopback and
/// whoever reaches it is a local user anyway; checked like a token name.
fn claimed_user(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(crate::client::CLAIM_ACTOR)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.len() <= 64)
        .filter(|n| {
            n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@ ".contains(c))
        })
        .map(str::to_string)
}

/// Equal without an early exit, so timing says nothing about where two hashes differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new random token, `opsdeck_` and 64 hex digits (32 bytes from the kernel).
pub fn generate_token() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes))?;
    Ok(format!("opsdeck_{}", crate::config::server::hex(&bytes)))
}

pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token configured for `presented`, checking every token (no early exit either).
pub fn find<'t>(tokens: &'t [Token], presented: &str) -> Option<&'t Token> {
    let h = sha256(presented);
    let mut found = None;
    for t in tokens {
        if same(&t.sha256, &h) {
            found = Some(t);
        }
    }
    found
}

/// Control requests per token per minute, as a generic cell rate (the `governor` crate): up
/// to the limit at once, then one more each `60 s / limit`, so a token cannot burst at the end
/// of one minute and again at the start of the next.
pub struct RateLimiter<C: Clock = DefaultClock> {
    cells: governor::RateLimiter<
        String,
        DashMapStateStore<String>,
        C,
        governor::middleware::NoOpMiddleware<C::Instant>,
    >,
    clock: C,
}

impl RateLimiter {
    /// `per_minute` control requests per token per minute (at least one).
    pub fn per_minute(per_minute: u32) -> RateLimiter {
        RateLimiter::with_clock(per_minute, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    pub fn with_clock(per_minute: u32, clock: C) -> RateLimiter<C> {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        RateLimiter {
            cells: governor::RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
        }
    }

    /// Forgets keys whose limit is back to full, so the table does not grow with every
    /// client ever seen.
    pub fn forget_idle(&self) {
        self.cells.retain_recent();
        self.cells.shrink_to_fit();
    }

    /// `Ok` if `who` may make another control request now, else the whole seconds to wait.
    pub fn check(&self, who: &str) -> Result<(), u64> {
        self.cells
            .check_key(&who.to_string())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()).as_secs().max(1))
    }
}

pub fn now_ts() -> Timestamp {
    Timestamp::from_datetime(chrono::Utc::now())
}

impl Principal {
    /// Allows an observation batch when the server takes changes, the role suffices and the
    /// token is within its rate; otherwise records the denial and refuses. (Commands are
    /// checked by the host's control path instead.)
    pub async fn require(
        &self,
        state: &AppState,
        needed: Role,
        action: &str,
        target: &str,
    ) -> Result<(), Failure> {
        if state.read_only {
            let f = Failure::new(
                ErrorCode::Forbidden,
                "this server is read-only; control actions are refused",
            );
            return Err(state
                .fold_denial(
                    &format!("token {}", self.name),
                    (&self.name, Some(self.role)),
                    (action, target),
                    f,
                )
                .await);
        }
        if !self.role.allows(needed) {
            let f = Failure::new(
                ErrorCode::Forbidden,
                format!(
                    "the token `{}` has role {}; {action} needs {needed} or above",
                    self.name, self.role
                ),
            );
            return Err(state
                .fold_denial(
                    &format!("token {}", self.name),
                    (&self.name, Some(self.role)),
                    (action, target),
                    f,
                )
                .await);
        }
        if let Err(wait) = state.rate.check(&self.name) {
            let mut f = Failure::new(
                ErrorCode::RateLimited,
                format!(
                    "the token `{}` made more than {} control requests this minute; retry in {wait}s",
                    self.name, state.config.rate_limit
                ),
            );
            f.retry_after_s = Some(wait);
            return Err(state
                .fold_denial(
                    &format!("token {}", self.name),
                    (&self.name, Some(self.role)),
                    (action, target),
                    f,
                )
                .await);
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Failure;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let via = claimed_via(parts);
        if state.config.tokens.is_empty() {
            // No tokens: the server only binds loopback, and whoever reaches it is local.
            return Ok(Principal {
                name: claimed_user(parts).unwrap_or_else(|| "local".into()),
                role: Role::Admin,
                via,
            });
        }
        let target = parts.uri.path().to_string();
        let peer = super::listen::peer(&parts.extensions)
            .map_or_else(|| "unknown".to_string(), |a| a.ip().to_string());
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(presented) = presented else {
            let f = Failure::new(
                ErrorCode::Unauthenticated,
                "this server needs a token: send `Authorization: Bearer TOKEN`",
            );
            return Err(state.deny_anonymous(&peer, "anonymous", &target, f).await);
        };
        match find(&state.config.tokens, presented) {
            Some(t) => {
                // Reads are limited per token too (control requests have their own limit).
                if parts.method == axum::http::Method::GET
                    && let Err(wait) = state.reads.check(&t.name)
                {
                    let mut f = Failure::new(
                        ErrorCode::RateLimited,
                        format!(
                            "the token `{}` made more than {} reads this minute; retry in {wait}s",
                            t.name, state.config.read_rate_limit
                        ),
                    );
                    f.retry_after_s = Some(wait);
                    return Err(state
                        .fold_denial(
                            &format!("token {}", t.name),
                            (&t.name, Some(t.role)),
                            ("read", &target),
                            f,
                        )
                        .await);
                }
                Ok(Principal {
                    name: t.name.clone(),
                    role: t.role,
                    via,
                })
            }
            None => {
                let f = Failure::new(
                    ErrorCode::Unauthenticated,
                    "the token is not valid on this server",
                );
                Err(state
                    .deny_anonymous(&peer, "unknown token", &target, f)
                    .await)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_by_hash_and_rates_refill_over_each_minute() {
        let tokens = vec![Token {
            name: "ci".into(),
            role: Role::Viewer,
            sha256: sha256("s3cret"),
        }];
        assert_eq!(find(&tokens, "s3cret").map(|t| t.name.as_str()), Some("ci"));
        assert!(find(&tokens, "s3cres").is_none());
        let clock = governor::clock::FakeRelativeClock::default();
        let r = RateLimiter::with_clock(2, clock.clone());
        assert!(r.check("a").is_ok() && r.check("a").is_ok());
        assert_eq!(r.check("a"), Err(30), "one more each 30 s at 2 a minute");
        assert!(r.check("b").is_ok(), "limits are per token");
        clock.advance(std::time::Duration::from_secs(30));
        assert!(r.check("a").is_ok(), "half a minute later, one more");
        assert!(r.check("a").is_err());
        clock.advance(std::time::Duration::from_secs(60));
        assert!(
            r.check("a").is_ok() && r.check("a").is_ok(),
            "a quiet minute refills"
        );
    }
}

/// Whether a `Host` or `Origin` authority (`localhost:7070`, `127.0.0.1`, `[::1]:80`) names
/// this machine.
pub fn is_loopback_authority(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        }
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a request's `Host` and `Origin` (when present) both name this machine.
fn addressed_locally(headers: &axum::http::HeaderMap) -> bool {
    let header = |name| {
        headers
            .get(name)
            .map(|v: &axum::http::HeaderValue| v.to_str().unwrap_or("\u{fffd}").to_string())
    };
    let host_ok = header(axum::http::header::HOST).is_none_or(|h| is_loopback_authority(&h));
    let origin_ok = header(axum::http::header::ORIGIN).is_none_or(|o| {
        reqwest::Url::parse(&o)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .is_some_and(|h| is_loopback_authority(&h))
    });
    host_ok && origin_ok
}

/// With no tokens whoever reaches the port is admin, so only this machine may: the `Host`
/// must name a loopback address (a page using DNS rebinding sends its own name) and a
/// browser's `Origin`, when there is one, must be loopback too. Servers with tokens let the
/// tokens decide.
pub async fn local_only(
    axum::extract::State(s): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !s.config.tokens.is_empty() {
        return next.run(req).await;
    }
    let local = addressed_locally(req.headers());
    if local {
        return next.run(req).await;
    }
    let f = Failure::new(
        ErrorCode::Forbidden,
        "this server has no tokens, so it answers only requests addressed to this machine (Host localhost or a loopback address) and never a web page from elsewhere (Origin); add [[server.tokens]] to serve others",
    );
    let target = req.uri().path().to_string();
    let peer = super::listen::peer(req.extensions())
        .map_or_else(|| "unknown".to_string(), |a| a.ip().to_string());
    s.deny_anonymous(&peer, "anonymous", &target, f)
        .await
        .into_response()
}

#[cfg(test)]
mod local_tests {
    use super::is_loopback_authority;

    #[test]
    fn only_this_machine_is_local() {
        for ok in [
            "localhost",
            "LOCALHOST:7070",
            "127.0.0.1:80",
            "127.9.9.9",
            "[::1]:7070",
            "[::1]",
        ] {
            assert!(is_loopback_authority(ok), "{ok}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:7070",
            "10.0.0.1:7070",
            "localhost.attacker.example",
            "[fe80::1]:80",
            "",
        ] {
            assert!(!is_loopback_authority(bad), "{bad}");
        }
    }
}

/// A route anyone may call (`/healthz`, and `/metrics` unless `metrics_need_token`). Each
/// still reads the store, so on a server with tokens (one reachable from elsewhere) callers
/// without a token are limited per address like any other anonymous request.
pub struct Public;

impl FromRequestParts<AppState> for Public {
    type Rejection = Failure;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.config.tokens.is_empty() {
            return Ok(Public);
        }
        let has_token = parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION);
        if has_token || (state.config.metrics_need_token && parts.uri.path() == "/metrics") {
            Principal::from_request_parts(parts, state).await?;
            return Ok(Public);
        }
        let peer = super::listen::peer(&parts.extensions)
            .map_or_else(|| "unknown".to_string(), |a| a.ip().to_string());
        if let Err(wait) = state.anon_rate.check(&peer) {
            let mut f = Failure::new(
                ErrorCode::RateLimited,
                format!(
                    "too many requests without a token from {peer} ({} a minute are answered); retry in {wait}s, or send a token",
                    state.config.anon_rate_limit
                ),
            );
            f.retry_after_s = Some(wait);
            let target = parts.uri.path().to_string();
            return Err(state
                .fold_denial(&peer, ("anonymous", None), ("read", &target), f)
                .await);
        }
        Ok(Public)
    }
}
