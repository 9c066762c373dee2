//! The host a request names, read from `:authority` or `Host`, checked and
//! put in the one form the proxy routes on and forwards: lower-case, no
//! port, no trailing dot. Pure, so it can be fuzzed.
//!
//! Checking matters because the value travels on: into the upstream's
//! `Host` and `X-Forwarded-Host`, and into the redirect port's `Location`.
//! A value like `x@evil.net` or an empty host must stop here.

use std::borrow::Cow;

/// Why a request's host was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Neither `:authority` nor `Host` was sent.
    #[error("the request has no Host header")]
    Missing,
    /// The value is not `host[:port]` (RFC 9110 section 7.2, RFC 3986
    /// section 3.2.2): userinfo, an empty host, a bad character or port.
    #[error("the Host header is not a host name with an optional port (RFC 9110 section 7.2)")]
    Invalid,
}

/// The normal form of `authority` (`host[:port]`, or `[v6]:port`): the
/// host without port, lower-cased, one trailing dot dropped. Borrows when
/// the host needs no change, as it does for almost every request.
pub fn normalize(authority: &str) -> Result<Cow<'_, str>, HostError> {
    let host = strip_port(authority)?;
    if let Some(literal) = host.strip_prefix('[') {
        // An IPv6 literal: brackets kept, as `Host` wants. Hex digits,
        // colons and dots alone are not enough (`[::::::::a]`): it must be
        // an address, or it could not travel on in a URL.
        let inner = literal.strip_suffix(']').ok_or(HostError::Invalid)?;
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(HostError::Invalid);
        }
        return Ok(lower(host));
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    // Letters, digits, `-`, `_` and `.`, in labels of 1-63 bytes: what DNS
    // names and IPv4 addresses use. Anything else (`@`, `%`, `/`, spaces,
    // control bytes) never names a host this proxy serves.
    if host.is_empty()
        || host.len() > 253
        || host
            .split('.')
            .any(|l| l.is_empty() || l.len() > 63 || !l.bytes().all(is_label_byte))
    {
        return Err(HostError::Invalid);
    }
    Ok(lower(host))
}

/// The host of a request: the h2 `:authority` when present, else `Host`.
pub fn request_host<'a>(
    authority: Option<&'a str>,
    host_header: Option<&'a [u8]>,
) -> Result<Cow<'a, str>, HostError> {
    if let Some(a) = authority {
        return normalize(a);
    }
    let raw = host_header.ok_or(HostError::Missing)?;
    normalize(std::str::from_utf8(raw).map_err(|_| HostError::Invalid)?)
}

/// `authority` without its `:port`; the port, when present, is digits.
fn strip_port(authority: &str) -> Result<&str, HostError> {
    let (host, port) = match authority.rfind([':', ']']) {
        Some(i) if authority.as_bytes()[i] == b':' => (&authority[..i], &authority[i + 1..]),
        _ => (authority, ""),
    };
    if port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::Invalid);
    }
    // A bare IPv6 address without brackets has colons of its own.
    if !host.starts_with('[') && host.contains(':') {
        return Err(HostError::Invalid);
    }
    Ok(host)
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn lower(host: &str) -> Cow<'_, str> {
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        host.to_ascii_lowercase().into()
    } else {
        host.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_put_in_one_form() {
        for (raw, want) in [
            ("app.example.com", "app.example.com"),
            ("App.Example.COM", "app.example.com"),
            ("app.example.com.", "app.example.com"),
            ("app.example.com.:8443", "app.example.com"),
            ("app.example.com:443", "app.example.com"),
            ("app.example.com:", "app.example.com"),
            ("127.0.0.1:8443", "127.0.0.1"),
            ("[::1]:8443", "[::1]"),
            ("[FE80::1]", "[fe80::1]"),
            ("under_score.example", "under_score.example"),
        ] {
            assert_eq!(normalize(raw).as_deref(), Ok(want), "{raw:?}");
        }
    }

    #[test]
    fn values_that_are_not_hosts_are_refused() {
        for raw in [
            "",
            ":443",
            ".",
            "x@evil.net",
            "evil.net/path",
            "a..b",
            "a b",
            "a\r\nb",
            "app.example.com:44x",
            "app.example.com:123456",
            "::1",
            "[::1",
            "[]:443",
            "[::1%eth0]",
            // Found by the request_host fuzz target: the characters of an
            // IPv6 literal, but no address, and no URL takes it.
            "[::::::::::::A]",
            "[1:2:3:4:5:6:7:8:9]",
            "[::1.2.3]",
            "caf\u{e9}.example",
            "%61.example",
            "app.example.com..",
        ] {
            assert_eq!(normalize(raw), Err(HostError::Invalid), "{raw:?}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert_eq!(normalize(&long_label), Err(HostError::Invalid));
    }

    #[test]
    fn authority_wins_over_host_and_absence_is_its_own_error() {
        assert_eq!(
            request_host(Some("a.example:443"), Some(b"b.example")).as_deref(),
            Ok("a.example")
        );
        assert_eq!(
            request_host(None, Some(b"B.example.")).as_deref(),
            Ok("b.example")
        );
        assert_eq!(request_host(None, None), Err(HostError::Missing));
        assert_eq!(
            request_host(None, Some(b"\xff.example")),
            Err(HostError::Invalid)
        );
    }

    #[test]
    fn already_normal_hosts_are_borrowed() {
        assert!(matches!(
            normalize("app.example.com:443"),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(
            normalize("app.example.com."),
            Ok(Cow::Borrowed(_))
        ));
    }
}
