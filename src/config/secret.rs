//! Secrets in settings: a store URL may carry a password, which is never shown.

/// A URL with its password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((cred, host)) = rest.rsplit_once('@')
        && let Some((user, _)) = cred.split_once(':')
    {
        out = format!("{scheme}://{user}:***@{host}");
    }
    // `password=` as a query parameter (`?password=x&...`) or a `key=value` word.
    let mut shown = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("password=") {
        let starts_word = at == 0 || matches!(rest.as_bytes()[at - 1], b'?' | b'&' | b' ');
        let (before, after) = rest.split_at(at + "password=".len());
        shown.push_str(before);
        if starts_word {
            let end = after.find(['&', ' ']).unwrap_or(after.len());
            shown.push_str("***");
            rest = &after[end..];
        } else {
            rest = after;
        }
    }
    shown.push_str(rest);
    shown
}

/// Whether a connection string carries a password (which [`redact`] hides).
pub fn has_password(url: &str) -> bool {
    redact(url) != url
}
