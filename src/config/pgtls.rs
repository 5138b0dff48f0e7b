//! How a PostgreSQL store connection is secured, read from its URL the way libpq reads it:
//! `sslmode` (`disable`, `prefer` (the default), `require`, `verify-ca`, `verify-full`) and
//! `sslrootcert` (a PEM file of CA certificates, or `system` for the machine's). The client
//! library knows neither `verify-*` nor `sslrootcert`, so they are taken out of the URL here and
//! the rest is handed on; settings checks and the store read URLs through the same function.

use std::path::PathBuf;

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
    /// The machine's (`sslrootcert=system`, and the default for the `verify-*` modes).
    System,
    /// The PEM file `sslrootcert` names.
    File(PathBuf),
}

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
    let mut mode = TlsMode::Prefer;
    let mut roots = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                mode = TlsMode::parse(value).ok_or_else(|| {
                    format!("sslmode `{value}` is not one of {}", TlsMode::CHOICES)
                })?;
            }
            "sslrootcert" => {
                let path = percent_decoded(value)
                    .ok_or_else(|| format!("sslrootcert `{value}` is not a valid path"))?;
                roots = Some(if path == "system" {
                    Roots::System
                } else if path.is_empty() {
                    return Err(
                        "sslrootcert is empty: give a PEM file of CA certificates, or `system`"
                            .into(),
                    );
                } else {
                    Roots::File(PathBuf::from(path))
                });
            }
            "sslcert" | "sslkey" | "sslpassword" => {
                return Err(format!(
                    "{key}: client certificates are not supported; authenticate with a password, over TLS with sslmode=verify-full"
                ));
            }
            _ => kept.push(pair.to_string()),
        }
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
        let t = read("postgres://u@h/db?sslmode=verify-ca").unwrap();
        assert_eq!(t.checked(), Some(Roots::System));
        // As libpq: `require` with a root certificate checks it.
        let t = read("postgres://u@h/db?sslmode=require&sslrootcert=system").unwrap();
        assert_eq!(t.checked(), Some(Roots::System));
        assert_eq!(
            read("postgres://u@h/db?sslmode=require").unwrap().checked(),
            None
        );
    }

    #[test]
    fn bad_parameters_are_named_with_the_choices() {
        let e = read("postgres://u@h/db?sslmode=strict").unwrap_err();
        assert!(
            e.contains("sslmode `strict`") && e.contains("verify-full"),
            "{e}"
        );
        let e = read("postgres://u@h/db?sslcert=/c.pem").unwrap_err();
        assert!(e.contains("sslcert") && e.contains("not supported"), "{e}");
        let e = read("postgres://u@h/db?sslrootcert=%zz").unwrap_err();
        assert!(e.contains("sslrootcert"), "{e}");
    }
}
