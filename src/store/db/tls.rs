//! TLS for PostgreSQL connections (rustls, as every other TLS connection of opsdeck), as the
//! URL's `sslmode` and `sslrootcert` ask ([`crate::config::pgtls`]): unchecked encryption for
//! `prefer` and `require` (libpq's meaning), the CA checked for `verify-ca` (and for `require`
//! given a root certificate), the CA and the host name for `verify-full`.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::super::{Result, StoreError};
use crate::config::pgtls::{PgTls, Roots, TlsMode};

/// The connector for `tls`; `None` for `sslmode=disable`.
pub fn connector(tls: &PgTls) -> Result<Option<MakeRustlsConnect>> {
    if tls.mode == TlsMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError(format!("cannot set up TLS for PostgreSQL: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match tls.checked() {
        None => Arc::new(Looser { provider, ca: None }),
        Some(roots) => {
            let store = Arc::new(root_store(&roots)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(store, provider.clone())
                .build()
                .map_err(|e| StoreError(format!("cannot use the CA certificates: {e}")))?;
            if tls.mode == TlsMode::VerifyFull {
                webpki
            } else {
                Arc::new(Looser {
                    provider,
                    ca: Some(webpki),
                })
            }
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// The CA certificates `roots` names.
fn root_store(roots: &Roots) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let certs = crate::config::pgtls::root_file(path).map_err(StoreError)?;
            // Every certificate of a file named on purpose must be usable: one that is not
            // is a mistake to show, not to pass over.
            let (_, unusable) = store.add_parsable_certificates(certs);
            if unusable > 0 {
                return Err(StoreError(format!(
                    "sslrootcert {}: {unusable} of its certificates cannot be read as a CA certificate",
                    path.display()
                )));
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(StoreError(
                    "no CA certificates found on this machine for sslrootcert=system; give sslrootcert=FILE"
                        .into(),
                ));
            }
        }
    }
    Ok(store)
}

/// A looser check than [`WebPkiServerVerifier`]'s: with `ca`, the chain to a trusted CA but
/// not the host name (`verify-ca`); without, no certificate check at all (`prefer`,
/// `require`). The handshake's signatures are verified either way, so the session is with
/// whoever holds the certificate's key.
#[derive(Debug)]
struct Looser {
    provider: Arc<CryptoProvider>,
    ca: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Looser {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = &self.ca else {
            return Ok(ServerCertVerified::assertion());
        };
        match ca.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A sentence for a certificate refused for its names, if `e` (or what it wraps) is one:
/// rustls's own text shows the names as `DnsName("…")` and `IpAddress(…)`.
pub(super) fn name_mismatch(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut at: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = at {
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &(dyn std::error::Error + 'static));
        for candidate in [Some(err), inner].into_iter().flatten() {
            if let Some(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForNameContext {
                    expected,
                    presented,
                },
            )) = candidate.downcast_ref::<rustls::Error>()
            {
                let names: Vec<String> = presented.iter().map(|n| bare_name(n)).collect();
                let holds = if names.is_empty() {
                    "names no host".to_string()
                } else {
                    format!("is for {}", names.join(", "))
                };
                return Some(format!(
                    "the server's certificate is not for the host {} (it {holds}): connect by a name the certificate holds, or check only its CA with sslmode=verify-ca",
                    expected.to_str()
                ));
            }
        }
        at = err.source();
    }
    None
}

/// A subject name as rustls writes it (`DnsName("db")`, `IpAddress(10.0.0.1)`), bare.
fn bare_name(n: &str) -> String {
    let inside = n
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(n);
    inside.trim_matches('"').to_string()
}
