//! The `proxy` source: the host listens on the configured address and reverse-proxies every
//! request to the legacy or the canary upstream, chosen by the router from the request's route
//! key. Bodies stream both ways; each response says which version served it in
//! `x-opsdeck-version`; 5xx answers, connection failures and timeouts count as errors, and so
//! does a request its client abandons before the answer (with the time it waited), so a hung
//! canary is never invisible.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use toml::de::DeTable;

use super::{Env, Kind, Source};
use crate::canary::config::RouteKey;
use crate::canary::service::Shared;
use crate::clock::Clock;
use crate::diag::Checker;
use crate::model::Version;

/// The response header that names the version that answered.
pub const VERSION_HEADER: &str = "x-opsdeck-version";

/// Headers that belong to one connection, never forwarded (with any the `Connection` header
/// names), and the forwarding headers the proxy sets itself rather than pass on a client's.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// `headers` without hop-by-hop ones, those its `Connection` header names included.
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (k, v) in headers {
        if !HOP_BY_HOP.contains(&k.as_str()) && !named.iter().any(|n| n == k.as_str()) {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

/// A response body on its way to the client: the request is recorded when the body ends
/// (latency to the last byte), fails, or is dropped unfinished (the client went away).
struct Timed {
    inner:
        std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    pending: Pending,
    /// The status was a 5xx: an error however the body ends.
    failed: bool,
    /// The body's length when the upstream said it (the server stops reading at that length,
    /// so the end is seen by counting), and the bytes passed on so far.
    length: Option<u64>,
    sent: u64,
}

impl futures::Stream for Timed {
    type Item = std::io::Result<axum::body::Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(None) => {
                let failed = self.failed;
                self.pending.record(failed);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                self.pending.record(true);
                Poll::Ready(Some(Err(std::io::Error::other(e))))
            }
            Poll::Ready(Some(Ok(b))) => {
                self.sent = self.sent.saturating_add(b.len() as u64);
                if self.length.is_some_and(|n| self.sent >= n) {
                    let failed = self.failed;
                    self.pending.record(failed);
                }
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Proxy {
    pub listen: SocketAddr,
    pub legacy: String,
    pub canary: String,
    /// Connecting to an upstream takes at most this long (`connect_timeout`, default 2s).
    pub connect_timeout: Duration,
    /// An upstream answers (its response head) within this (`timeout`, default 30s).
    pub timeout: Duration,
}

/// One request on its way: recorded exactly once, when it is answered, fails, times out, or
/// is dropped because the client went away.
struct Pending {
    canary: Shared,
    clock: Arc<dyn Clock>,
    version: Version,
    started: Instant,
    recorded: bool,
}

impl Pending {
    fn record(&mut self, error: bool) {
        if !self.recorded {
            self.recorded = true;
            let ms = self.started.elapsed().as_secs_f64() * 1_000.0;
            let now = self.clock.now().timestamp();
            self.canary.observe(now, self.version, ms, error);
        }
    }
}

impl Drop for Pending {
    /// The client disconnected before the upstream answered: an error for that version.
    fn drop(&mut self) {
        self.record(true);
    }
}

#[derive(Clone)]
struct ProxyState {
    canary: Shared,
    upstreams: Arc<Proxy>,
    route: Arc<RouteKey>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    /// The second each version's upstream failure was last logged (legacy, canary): one line a
    /// minute at most, so a dead upstream under load does not flood the log.
    logged: Arc<[std::sync::atomic::AtomicI64; 2]>,
}

impl ProxyState {
    /// Logs an upstream that did not answer, at most once a minute per version. Every such
    /// request counts as an error of its version whether logged or not.
    fn upstream_failed(&self, version: Version, upstream: &str, what: &str) {
        use std::sync::atomic::Ordering;
        let slot = &self.logged[usize::from(version == Version::Canary)];
        let now = self.clock.now().timestamp();
        let last = slot.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 60
            && slot
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                canary = self.canary.name(),
                %version,
                upstream,
                "proxy: the {version} upstream {what} (logged at most once a minute; each such request is an error of that version)"
            );
        }
    }
}

/// The route key of a request, if it has one.
fn route_key(route: &RouteKey, headers: &HeaderMap, peer: SocketAddr) -> Option<String> {
    match route {
        RouteKey::Header(h) => headers
            .get(h.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        RouteKey::Cookie(name) => headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string()),
        RouteKey::ClientIp => Some(peer.ip().to_string()),
    }
}

async fn forward(
    State(s): State<ProxyState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let key = route_key(&s.route, req.headers(), peer);
    let version = s.canary.route(key.as_deref());
    let base = match version {
        Version::Legacy => &s.upstreams.legacy,
        Version::Canary => &s.upstreams.canary,
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{base}{path}");
    let (parts, body) = req.into_parts();
    let head_only = parts.method == axum::http::Method::HEAD;
    let mut headers = end_to_end(&parts.headers);
    // The proxy says who asked, for what host, over what; a client's own claims are dropped.
    if let Ok(v) = HeaderValue::from_str(&peer.ip().to_string()) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    if let Some(host) = parts.headers.get("host") {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    let mut pending = Pending {
        canary: s.canary.clone(),
        clock: s.clock.clone(),
        version,
        started: Instant::now(),
        recorded: false,
    };
    let request = s
        .http
        .request(parts.method, &url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send();
    let limit = s.upstreams.timeout;
    let version_value = HeaderValue::from_static(version.as_str());
    let Ok(sent) = tokio::time::timeout(limit, request).await else {
        pending.record(true);
        s.upstream_failed(
            version,
            base,
            &format!(
                "did not answer within {}",
                crate::model::duration::to_spec(limit)
            ),
        );
        return refused(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "opsdeck proxy: the {version} upstream did not answer within {}\n",
                crate::model::duration::to_spec(limit)
            ),
            version_value,
        );
    };
    match sent {
        Ok(resp) => {
            let status = resp.status();
            let mut out = Response::builder().status(status.as_u16());
            if let Some(h) = out.headers_mut() {
                *h = end_to_end(resp.headers());
                h.insert(HeaderName::from_static(VERSION_HEADER), version_value);
            }
            // Answers without a body end with their head.
            let bodiless = head_only
                || status == reqwest::StatusCode::NO_CONTENT
                || status == reqwest::StatusCode::NOT_MODIFIED;
            let length = if bodiless {
                Some(0)
            } else {
                resp.content_length()
            };
            if length == Some(0) {
                pending.record(status.is_server_error());
            }
            let body = Timed {
                inner: Box::pin(resp.bytes_stream()),
                pending,
                failed: status.is_server_error(),
                length,
                sent: 0,
            };
            out.body(Body::from_stream(body))
                .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Err(e) => {
            pending.record(true);
            s.upstream_failed(version, base, &format!("could not be reached: {e}"));
            refused(
                StatusCode::BAD_GATEWAY,
                format!("opsdeck proxy: the {version} upstream did not answer\n"),
                version_value,
            )
        }
    }
}

/// The proxy's own answer when the upstream gave none, labelled with the version it chose.
fn refused(status: StatusCode, text: String, version: HeaderValue) -> Response {
    let mut r = (status, text).into_response();
    r.headers_mut()
        .insert(HeaderName::from_static(VERSION_HEADER), version);
    r
}

/// The proxy's router, for tests that drive it without a socket.
fn app(state: ProxyState) -> Router {
    Router::new().fallback(forward).with_state(state)
}

impl Source for Proxy {
    fn name(&self) -> &'static str {
        "proxy"
    }

    fn listens(&self) -> Option<SocketAddr> {
        Some(self.listen)
    }

    /// Listens on the configured address; a port in use is an error that names the address.
    fn start(&self, canary: &Shared, env: &Env) -> Result<(), String> {
        let name = canary.name();
        let listener = std::net::TcpListener::bind(self.listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|e| {
                format!(
                    "canary {name}: cannot listen on {} for its proxy: {e}",
                    self.listen
                )
            })?;
        let state = ProxyState {
            canary: canary.clone(),
            upstreams: Arc::new(self.clone()),
            route: Arc::new(canary.route_key()),
            http: crate::net::bare_builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(self.connect_timeout)
                .build()
                .unwrap_or_default(),
            clock: env.clock.clone(),
            logged: Arc::new([
                std::sync::atomic::AtomicI64::new(i64::MIN),
                std::sync::atomic::AtomicI64::new(i64::MIN),
            ]),
        };
        let shutdown = env.shutdown.clone();
        tracing::info!(canary = %name, listen = %self.listen, "canary proxy listening");
        env.tasks.spawn(async move {
            let served = axum::serve(
                listener,
                app(state).into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
            if let Err(e) = served {
                tracing::error!(canary = %name, error = %e, "canary proxy stopped");
            }
        });
        Ok(())
    }
}

fn parse(
    c: &mut Checker<'_>,
    table: Option<&DeTable<'_>>,
    span: &Range<usize>,
    ctx: &str,
) -> Option<Arc<dyn Source>> {
    let Some(t) = table else {
        c.missing(span, "proxy", &format!("{ctx} with source = \"proxy\""));
        return None;
    };
    let p = proxy(c, t, span, &format!("`proxy` of {ctx}"))?;
    Some(Arc::new(p))
}

pub const KIND: Kind = Kind {
    name: "proxy",
    table: Some("proxy"),
    parse,
};

fn proxy(c: &mut Checker<'_>, t: &DeTable<'_>, span: &Range<usize>, ctx: &str) -> Option<Proxy> {
    c.known_keys(
        t,
        &["listen", "legacy", "canary", "connect_timeout", "timeout"],
        ctx,
    );
    let connect_timeout = c
        .duration(t, "connect_timeout", ctx, Duration::from_millis(1))
        .map_or(Duration::from_secs(2), |(d, _)| d);
    let timeout = c
        .duration(t, "timeout", ctx, Duration::from_millis(1))
        .map_or(Duration::from_secs(30), |(d, _)| d);
    let listen = match c.str(t, "listen", ctx) {
        Some((s, sspan)) => match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                c.error(
                    &sspan,
                    format!("`listen` in {ctx} is `{s}`; write an address like 127.0.0.1:8080"),
                );
                None
            }
        },
        None => {
            c.missing(span, "listen", ctx);
            None
        }
    };
    let url = |key: &str, c: &mut Checker<'_>| match c.str(t, key, ctx) {
        Some((s, sspan)) => match upstream_problem(s, listen) {
            None => Some(s.trim_end_matches('/').to_string()),
            Some(why) => {
                c.error(&sspan, format!("`{key}` in {ctx} is `{s}`; {why}"));
                None
            }
        },
        None => {
            c.missing(span, key, ctx);
            None
        }
    };
    let legacy = url("legacy", c);
    let canary = url("canary", c);
    Some(Proxy {
        listen: listen?,
        legacy: legacy?,
        canary: canary?,
        connect_timeout,
        timeout,
    })
}

/// What is wrong with `s` as an upstream's base URL for a proxy listening on `listen`.
fn upstream_problem(s: &str, listen: Option<SocketAddr>) -> Option<String> {
    let Some(u) = reqwest::Url::parse(s)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
    else {
        return Some("write an http:// or https:// URL".into());
    };
    if u.query().is_some() || u.fragment().is_some() {
        // Each request's path and query are appended to the base: a query in the base would
        // land in the middle of every forwarded path.
        return Some(
            "an upstream is a base URL that each request's path is added to; drop the `?` or `#` part"
                .into(),
        );
    }
    let loops = listen.is_some_and(|l| {
        let host = u.host_str().unwrap_or_default();
        let ips: Vec<std::net::IpAddr> = if host.eq_ignore_ascii_case("localhost") {
            vec![
                std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::Ipv6Addr::LOCALHOST.into(),
            ]
        } else {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .into_iter()
                .collect()
        };
        u.port_or_known_default() == Some(l.port())
            && ips
                .iter()
                .any(|ip| *ip == l.ip() || (l.ip().is_unspecified() && ip.is_loopback()))
    });
    loops.then(|| {
        "that is this proxy's own `listen` address, so every request would come back to it; point it at the service".into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_is_a_base_url_that_is_not_the_proxy_itself() {
        let listen: Option<SocketAddr> = "127.0.0.1:8080".parse().ok();
        assert_eq!(upstream_problem("http://127.0.0.1:9001/base", listen), None);
        assert_eq!(upstream_problem("https://svc.internal", listen), None);
        for bad in ["http://127.0.0.1:9001/?x=1", "http://127.0.0.1:9001/a#b"] {
            assert!(
                upstream_problem(bad, listen).is_some_and(|w| w.contains("drop the `?`")),
                "{bad}"
            );
        }
        for own in ["http://127.0.0.1:8080", "http://localhost:8080/x"] {
            assert!(
                upstream_problem(own, listen).is_some_and(|w| w.contains("own `listen`")),
                "{own}"
            );
        }
        let any: Option<SocketAddr> = "0.0.0.0:80".parse().ok();
        assert!(upstream_problem("http://127.0.0.1", any).is_some());
        assert_eq!(upstream_problem("http://127.0.0.1:81", any), None);
        assert!(upstream_problem("ftp://x", listen).is_some_and(|w| w.contains("http://")));
    }

    #[test]
    fn route_keys_come_from_headers_cookies_or_the_peer() {
        let peer: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-user-id", HeaderValue::from_static("u-42"));
        h.insert("cookie", HeaderValue::from_static("theme=dark; uid=abc"));
        assert_eq!(
            route_key(&RouteKey::Header("x-user-id".into()), &h, peer).as_deref(),
            Some("u-42")
        );
        assert_eq!(
            route_key(&RouteKey::Cookie("uid".into()), &h, peer).as_deref(),
            Some("abc")
        );
        assert_eq!(route_key(&RouteKey::Cookie("nope".into()), &h, peer), None);
        assert_eq!(
            route_key(&RouteKey::ClientIp, &h, peer).as_deref(),
            Some("10.1.2.3")
        );
    }
}
