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
