//! `tlsward.io/upgrades`: HTTP/1.1 upgrade protocols an Ingress opts into,
//! beyond `websocket`. After the upstream's 101 the client's bytes reach it
//! raw, past every header the proxy sets or strips, so a protocol is
//! tunnelled only where the Ingress's owner asked for it, and `h2c` never:
//! it would let a client speak h2 straight to the upstream.

/// The Ingress annotation: a comma-separated list of protocol names.
pub const UPGRADES_ANNOTATION: &str = "tlsward.io/upgrades";

/// Why an annotation value is not a list of upgrade protocols.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpgradesError {
    /// The list names no protocol.
    #[error(
        "{UPGRADES_ANNOTATION} names no protocol; list them, e.g. \"tcp-tunnel, spdy/3.1\", or remove it"
    )]
    Empty,
    /// A name that is not an HTTP token (RFC 9110 section 5.6.2), with an
    /// optional `/version`.
    #[error(
        "{UPGRADES_ANNOTATION}: {0:?} is not a protocol name (letters, digits and !#$%&'*+-.^_`|~, optionally /version)"
    )]
    NotAToken(String),
    /// `h2c` would hand the client an h2 connection to the upstream, past
    /// the proxy's checks; clients get h2 from the proxy through ALPN.
    #[error(
        "{UPGRADES_ANNOTATION}: h2c is never tunnelled (it would bypass the proxy's checks); remove it, the proxy speaks h2 to clients through ALPN"
    )]
    H2c,
}

/// Protocols (lowercase) an Ingress opts into; `websocket` is always on.
pub fn parse(value: &str) -> Result<Vec<String>, UpgradesError> {
    let mut out = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let lower = name.to_ascii_lowercase();
        let token_ok = lower
            .split_once('/')
            .map_or(is_token(&lower), |(p, v)| is_token(p) && is_token(v));
        if !token_ok {
            return Err(UpgradesError::NotAToken(name.to_string()));
        }
        if lower == "h2c" || lower.starts_with("h2c/") {
            return Err(UpgradesError::H2c);
        }
        if lower != "websocket" && !out.contains(&lower) {
            out.push(lower);
        }
    }
    if out.is_empty() && !value.to_ascii_lowercase().contains("websocket") {
        return Err(UpgradesError::Empty);
    }
    Ok(out)
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercased_deduplicated_and_websocket_is_implied() {
        assert_eq!(
            parse(" TCP-Tunnel, spdy/3.1,tcp-tunnel ,websocket").unwrap(),
            vec!["tcp-tunnel".to_string(), "spdy/3.1".to_string()]
        );
        assert_eq!(parse("websocket").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn h2c_bad_names_and_empty_lists_are_refused() {
        assert_eq!(parse("foo, H2C"), Err(UpgradesError::H2c));
        assert_eq!(parse("h2c/1"), Err(UpgradesError::H2c));
        assert_eq!(
            parse("foo bar"),
            Err(UpgradesError::NotAToken("foo bar".into()))
        );
        assert_eq!(parse("foo/"), Err(UpgradesError::NotAToken("foo/".into())));
        assert_eq!(parse(" , "), Err(UpgradesError::Empty));
        assert!(UpgradesError::H2c.to_string().contains(UPGRADES_ANNOTATION));
    }
}
