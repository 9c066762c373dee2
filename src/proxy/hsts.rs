//! `tlsward.io/hsts`: the `Strict-Transport-Security` header an Ingress
//! asks the proxy to add to its hosts' responses (RFC 6797). Off unless
//! asked for: a `max-age` outlives the Ingress, and `includeSubDomains` or
//! `preload` reach hosts the Ingress does not own, so it is the app team's
//! choice, not a default.

use http::HeaderValue;

/// The Ingress annotation.
pub const HSTS_ANNOTATION: &str = "tlsward.io/hsts";

/// What `"true"` stands for: one year, this host only.
const DEFAULT: &str = "max-age=31536000";

/// Why an annotation value is not a `Strict-Transport-Security` value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HstsError {
    /// No `max-age=SECONDS` directive (RFC 6797 section 6.1.1 requires it).
    #[error("{HSTS_ANNOTATION} needs max-age=SECONDS (or \"true\" for max-age=31536000)")]
    NoMaxAge,
    /// A directive other than `max-age`, `includeSubDomains` and `preload`.
    #[error(
        "{HSTS_ANNOTATION}: unknown directive {0:?}; use max-age=SECONDS, includeSubDomains, preload"
    )]
    Unknown(String),
}

/// The header value for an annotation value: `None` for `"false"`.
pub fn parse(value: &str) -> Result<Option<HeaderValue>, HstsError> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("false") {
        return Ok(None);
    }
    if value.eq_ignore_ascii_case("true") {
        return Ok(Some(HeaderValue::from_static(DEFAULT)));
    }
    let mut max_age = false;
    for directive in value.split(';').map(str::trim).filter(|d| !d.is_empty()) {
        match directive.split_once('=') {
            Some((k, v))
                if k.trim().eq_ignore_ascii_case("max-age")
                    && !v.trim().is_empty()
                    && v.trim().bytes().all(|b| b.is_ascii_digit()) =>
            {
                max_age = true;
            }
            None if directive.eq_ignore_ascii_case("includeSubDomains")
                || directive.eq_ignore_ascii_case("preload") => {}
            _ => return Err(HstsError::Unknown(directive.to_string())),
        }
    }
    if !max_age {
        return Err(HstsError::NoMaxAge);
    }
    // Only digits, letters, `-`, `=`, `;` and spaces are left: a valid
    // header value.
    HeaderValue::from_str(value)
        .map(Some)
        .map_err(|_| HstsError::Unknown(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let ok = |v: &str| parse(v).unwrap().map(|h| h.to_str().unwrap().to_string());
        assert_eq!(ok("true").as_deref(), Some("max-age=31536000"));
        assert_eq!(ok("false"), None);
        assert_eq!(
            ok("max-age=63072000; includeSubDomains; preload").as_deref(),
            Some("max-age=63072000; includeSubDomains; preload")
        );
        assert_eq!(ok("max-age=0").as_deref(), Some("max-age=0"));
        assert_eq!(parse("includeSubDomains"), Err(HstsError::NoMaxAge));
        assert_eq!(parse(""), Err(HstsError::NoMaxAge));
        assert_eq!(
            parse("max-age=1y"),
            Err(HstsError::Unknown("max-age=1y".into()))
        );
        assert_eq!(
            parse("max-age=1; report-uri=x"),
            Err(HstsError::Unknown("report-uri=x".into()))
        );
        assert!(matches!(
            parse("max-age=1\r\nx: y"),
            Err(HstsError::Unknown(_))
        ));
    }
}
