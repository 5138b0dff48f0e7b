//! HTTP clients. reqwest is built without a default TLS provider (faster builds), so every
//! client must be made here, where the ring provider is installed first; stages, the canary
//! proxy and the remote client then agree on TLS and on the user agent.

use std::sync::Once;

static PROVIDER: Once = Once::new();

/// A client builder with the TLS provider installed and opsdeck's user agent.
pub fn client_builder() -> reqwest::ClientBuilder {
    bare_builder().user_agent(concat!("opsdeck/", env!("CARGO_PKG_VERSION")))
}

/// A client builder with the TLS provider installed and no user agent of its own, for the
/// canary proxy, which forwards each caller's headers as they came.
pub fn bare_builder() -> reqwest::ClientBuilder {
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}

/// A URL as it may be shown to anyone who can read runs: without user, password, query or
/// fragment (where secrets and tokens travel), so a stage's error does not leak them to every
/// viewer. A URL that does not parse is not shown at all.
pub fn redacted_url(url: &str) -> String {
    let Ok(mut u) = reqwest::Url::parse(url) else {
        return "the configured URL".into();
    };
    let _ = u.set_username("");
    let _ = u.set_password(None);
    let had_query = u.query().is_some_and(|q| !q.is_empty());
    u.set_query(None);
    u.set_fragment(None);
    let mut out = u.to_string();
    if had_query {
        out.push_str("?…");
    }
    out
}

/// A response's body, refused once it passes `limit` bytes (said up front by its length, or
/// found while reading): whatever answers, opsdeck never holds more than it expects of it.
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let too_big = || format!("the answer is larger than the {limit} bytes opsdeck reads");
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_urls_are_not_shown() {
        assert_eq!(
            redacted_url("https://bob:hunter2@api.example/v1/pay?token=abc#x"),
            "https://api.example/v1/pay?…"
        );
        assert_eq!(redacted_url("http://payments/api"), "http://payments/api");
        assert_eq!(redacted_url("not a url"), "the configured URL");
    }
}
