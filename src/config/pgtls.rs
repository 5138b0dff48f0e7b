//! How a PostgreSQL store connection is secured, read from its URL the way libpq reads it:
//! `sslmode` (`disable`, `prefer` (the default), `require`, `verify-ca`, `verify-full`) and
//! `sslrootcert` (a PEM file of CA certificates, or `system` for the machine's). The client
//! library knows neither `verify-*` nor `sslrootcert`, so they are taken out of the URL here and
//! the rest is handed on; settings checks and the store read URLs through the same function.

use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// What `sslmode` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, the certificate not checked (libpq's default).
    Prefer,
    /// TLS or no connection; the certificate checked only when `sslrootcert` is given.
    Require,
    /// TLS, the certificate signed by a trusted CA (any host name).
    VerifyCa,
    /// TLS, the certificate signed by a trusted CA and naming the host connected to.
    VerifyFull,
}

impl TlsMode {
    const CHOICES: &'static str = "disable, prefer, require, verify-ca or verify-full";

    fn parse(v: &str) -> Option<TlsMode> {
        Some(match v {
            "disable" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            _ => return None,
        })
    }
}

/// Which CA certificates a checked connection trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The machine's (`sslrootcert=system`, and the default for `verify-full`). Only with
    /// `verify-full`, as libpq: any publicly trusted CA signs certificates for any name, so the
    /// name is what makes the check mean anything.
    System,
    /// The PEM file `sslrootcert` names (an absolute path).
    File(PathBuf),
}

/// Parameters libpq knows and opsdeck does not: refused by name rather than as an unreadable URL.
const UNSUPPORTED: &[&str] = &[
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "sslnegotiation",
    "sslcompression",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "requiressl",
];

/// A store URL's TLS wishes, and the URL as the client library reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    pub mode: TlsMode,
    /// `None`: `sslrootcert` not given.
    pub roots: Option<Roots>,
    /// The URL without `sslrootcert`, and with `sslmode=require` for the `verify-*` modes.
    pub url: String,
}

impl PgTls {
    /// Whether the server's certificate is checked, and against which CAs.
    pub fn checked(&self) -> Option<Roots> {
        match self.mode {
            TlsMode::Disable => None,
            TlsMode::Prefer | TlsMode::Require => self.roots.clone(),
            TlsMode::VerifyCa | TlsMode::VerifyFull => {
                Some(self.roots.clone().unwrap_or(Roots::System))
            }
        }
    }
}

/// Reads the TLS parameters of a `postgres://` URL. Errors are sentences naming the parameter
/// and the valid choices.
pub fn read(url: &str) -> Result<PgTls, String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = None;
    let mut roots = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        if UNSUPPORTED.contains(&key) {
            return Err(format!(
                "{key} is not supported: the TLS parameters opsdeck reads are sslmode and sslrootcert (client certificates are not supported: authenticate with a password, over TLS with sslmode=verify-full)"
            ));
        }
        if key != "sslmode" && key != "sslrootcert" {
            kept.push(pair.to_string());
            continue;
        }
        let value = percent_decoded(raw)
            .filter(|v| !v.chars().any(char::is_control))
            .ok_or_else(|| {
                format!("{key} holds an escape or a control character that is not allowed")
            })?;
        let twice = if key == "sslmode" {
            let parsed = TlsMode::parse(&value)
                .ok_or_else(|| format!("sslmode `{value}` is not one of {}", TlsMode::CHOICES))?;
            mode.replace(parsed).is_some()
        } else {
            roots.replace(root_value(&value)?).is_some()
        };
        if twice {
            return Err(format!("{key} is given twice: give it once"));
        }
    }
    let mode = mode.unwrap_or(TlsMode::Prefer);
    if roots == Some(Roots::System) && !matches!(mode, TlsMode::VerifyFull | TlsMode::Disable) {
        return Err(
            "sslrootcert=system needs sslmode=verify-full: a certificate any public CA signed, for any name, would pass otherwise"
                .into(),
        );
    }
    if mode == TlsMode::VerifyCa && roots.is_none() {
        return Err(
            "sslmode=verify-ca needs sslrootcert=FILE, the CA that signed the server's certificate (or use verify-full, which checks the name against the machine's CAs)"
                .into(),
        );
    }
    let passed = match mode {
        TlsMode::Disable => "disable",
        TlsMode::Prefer => "prefer",
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => "require",
    };
    kept.push(format!("sslmode={passed}"));
    Ok(PgTls {
        mode,
        roots,
        url: format!("{base}?{}", kept.join("&")),
    })
}

fn root_value(value: &str) -> Result<Roots, String> {
    if value == "system" {
        return Ok(Roots::System);
    }
    if Path::new(value).is_absolute() {
        return Ok(Roots::File(PathBuf::from(value)));
    }
    Err(format!(
        "sslrootcert `{value}` is not an absolute path: give the full path of a PEM file of CA certificates, or `system`"
    ))
}

/// The CA certificates in the PEM file `path`, checked to be some.
pub fn root_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect)
        .map_err(|e| format!("sslrootcert {} cannot be read: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "sslrootcert {} holds no certificate: give a PEM file of `CERTIFICATE` blocks",
            path.display()
        ));
    }
    Ok(certs)
}

/// `%XX` escapes decoded; `None` when one is malformed or the result is not UTF-8.
fn percent_decoded(v: &str) -> Option<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = v.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_prefer_and_the_url_keeps_its_other_parameters() {
        let t = read("postgres://u@h:5432/db?connect_timeout=5").unwrap();
        assert_eq!(t.mode, TlsMode::Prefer);
        assert_eq!(t.roots, None);
        assert_eq!(t.checked(), None);
        assert_eq!(
            t.url,
            "postgres://u@h:5432/db?connect_timeout=5&sslmode=prefer"
        );
    }

    #[test]
    fn verify_modes_become_require_for_the_client_and_check_against_roots() {
        let t = read("postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem").unwrap();
        assert_eq!(t.mode, TlsMode::VerifyFull);
        assert_eq!(t.checked(), Some(Roots::File("/etc/ca.pem".into())));
        assert_eq!(t.url, "postgres://u@h/db?sslmode=require");
        let t = read("postgres://u@h/db?sslmode=verify-full").unwrap();
        assert_eq!(t.checked(), Some(Roots::System));
        // As libpq: `require` with a root certificate checks it.
        let t = read("postgres://u@h/db?sslmode=require&sslrootcert=/ca.pem").unwrap();
        assert_eq!(t.checked(), Some(Roots::File("/ca.pem".into())));
        assert_eq!(
            read("postgres://u@h/db?sslmode=require").unwrap().checked(),
            None
        );
        // Escapes are read in every value.
        let t = read("postgres://u@h/db?sslmode=verify%2Dfull").unwrap();
        assert_eq!(t.mode, TlsMode::VerifyFull);
    }

    #[test]
    fn bad_parameters_are_named_with_the_choices() {
        let e = read("postgres://u@h/db?sslmode=strict").unwrap_err();
        assert!(
            e.contains("sslmode `strict`") && e.contains("verify-full"),
            "{e}"
        );
        for unsupported in ["sslcert=/c.pem", "sslcrl=/crl", "sslnegotiation=direct"] {
            let e = read(&format!("postgres://u@h/db?{unsupported}")).unwrap_err();
            assert!(e.contains("not supported"), "{e}");
        }
        let e = read("postgres://u@h/db?sslrootcert=%zz").unwrap_err();
        assert!(e.contains("sslrootcert"), "{e}");
        let e = read("postgres://u@h/db?sslrootcert=/a%1B[31m").unwrap_err();
        assert!(
            e.contains("control character") && !e.contains('\u{1b}'),
            "{e}"
        );
        let e = read("postgres://u@h/db?sslrootcert=ca.pem").unwrap_err();
        assert!(e.contains("absolute path"), "{e}");
        let e = read("postgres://u@h/db?sslmode=verify-full&sslmode=disable").unwrap_err();
        assert!(e.contains("sslmode is given twice"), "{e}");
        // The machine's CAs only where the name is checked; verify-ca needs its CA named.
        let e = read("postgres://u@h/db?sslmode=require&sslrootcert=system").unwrap_err();
        assert!(e.contains("needs sslmode=verify-full"), "{e}");
        let e = read("postgres://u@h/db?sslmode=verify-ca").unwrap_err();
        assert!(e.contains("needs sslrootcert=FILE"), "{e}");
    }
}
