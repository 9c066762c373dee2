//! How to reach an Ingress's backends: `backend-protocol`, `proxy-ssl-*`,
//! `proxy-body-size` and the `proxy-*-timeout` annotations.
//!
//! [`parse`] reads them from an Ingress's annotations into
//! [`BackendSettings`]. A value that cannot be used is returned as a
//! [`BackendError`] (the proxy reports it like other per-host problems) and
//! that one annotation is ignored: the rest still apply.
//!
//! Where tlsward departs from ingress-nginx's defaults:
//! - `proxy-ssl-verify` is **on** unless the annotation says `off`
//!   (nginx: off). Re-encrypting to a backend nobody checked is the
//!   man-in-the-middle position mTLS at the edge exists to rule out.
//! - `proxy-ssl-secret` must name a Secret in the Ingress's own namespace:
//!   a tenant must not borrow another namespace's client key.
//! - Without the annotations, the proxy's own limits apply (no body limit,
//!   `--upstream-*-timeout-seconds`), not nginx's 1m and 5/60/60.

use std::collections::BTreeMap;
use std::time::Duration;

/// `backend-protocol`: how the proxy speaks to the backend.
pub const BACKEND_PROTOCOL: &str = "nginx.ingress.kubernetes.io/backend-protocol";
/// `proxy-ssl-secret`: `ns/name` of a Secret with `ca.crt` (and optionally
/// `tls.crt`/`tls.key`, the client certificate for the backend).
pub const PROXY_SSL_SECRET: &str = "nginx.ingress.kubernetes.io/proxy-ssl-secret";
/// `proxy-ssl-verify`: `on`/`off`, whether the backend's certificate is checked.
pub const PROXY_SSL_VERIFY: &str = "nginx.ingress.kubernetes.io/proxy-ssl-verify";
/// `proxy-ssl-name`: the name the backend's certificate must carry (and the
/// SNI when `proxy-ssl-server-name` is on).
pub const PROXY_SSL_NAME: &str = "nginx.ingress.kubernetes.io/proxy-ssl-name";
/// `proxy-ssl-server-name`: `on`/`off`, whether SNI is sent to the backend.
pub const PROXY_SSL_SERVER_NAME: &str = "nginx.ingress.kubernetes.io/proxy-ssl-server-name";
/// `proxy-body-size`: the largest request body, nginx size syntax.
pub const PROXY_BODY_SIZE: &str = "nginx.ingress.kubernetes.io/proxy-body-size";
/// `proxy-connect-timeout`: seconds to connect (TCP and TLS) to the backend.
pub const PROXY_CONNECT_TIMEOUT: &str = "nginx.ingress.kubernetes.io/proxy-connect-timeout";
/// `proxy-read-timeout`: seconds to wait for the backend's response head.
pub const PROXY_READ_TIMEOUT: &str = "nginx.ingress.kubernetes.io/proxy-read-timeout";
/// `proxy-send-timeout`: seconds allowed between two chunks of a request body.
pub const PROXY_SEND_TIMEOUT: &str = "nginx.ingress.kubernetes.io/proxy-send-timeout";

/// Every annotation key this module reads.
pub const KEYS: &[&str] = &[
    BACKEND_PROTOCOL,
    PROXY_SSL_SECRET,
    PROXY_SSL_VERIFY,
    PROXY_SSL_NAME,
    PROXY_SSL_SERVER_NAME,
    PROXY_BODY_SIZE,
    PROXY_CONNECT_TIMEOUT,
    PROXY_READ_TIMEOUT,
    PROXY_SEND_TIMEOUT,
];

/// The wire protocol to the backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1 in cleartext (the default).
    #[default]
    Http,
    /// HTTP/1.1 over TLS.
    Https,
    /// gRPC: h2 in cleartext, with prior knowledge (h2c).
    Grpc,
    /// gRPC: h2 over TLS, negotiated by ALPN.
    Grpcs,
}

impl Protocol {
    /// Whether the backend connection is TLS.
    pub fn tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Grpcs)
    }

    /// Whether the backend speaks h2.
    pub fn h2(self) -> bool {
        matches!(self, Protocol::Grpc | Protocol::Grpcs)
    }

    /// The lower-case name, as in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Grpc => "grpc",
            Protocol::Grpcs => "grpcs",
        }
    }
}

/// A Secret named by an annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    /// Its namespace (the Ingress's).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// What an Ingress's annotations ask of the connection to its backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSettings {
    /// The wire protocol.
    pub protocol: Protocol,
    /// Trust anchors (`ca.crt`) and optional client certificate for TLS backends.
    pub ssl_secret: Option<SecretRef>,
    /// Whether the backend's certificate is verified (tlsward: on by default).
    pub ssl_verify: bool,
    /// The name the backend's certificate is checked against, instead of
    /// the Service's `NAME.NAMESPACE.svc`.
    pub ssl_name: Option<String>,
    /// Whether SNI is sent (nginx's default, off, is kept).
    pub ssl_server_name: bool,
    /// The largest request body in bytes; `None`: no limit.
    pub body_size: Option<u64>,
    /// Time to connect, TCP and TLS; `None`: the proxy's default.
    pub connect_timeout: Option<Duration>,
    /// Time to the response head; `None`: the proxy's default.
    pub read_timeout: Option<Duration>,
    /// Longest pause between two request-body chunks; `None`: no limit.
    pub send_timeout: Option<Duration>,
}

impl Default for BackendSettings {
    fn default() -> Self {
        Self {
            protocol: Protocol::Http,
            ssl_secret: None,
            ssl_verify: true,
            ssl_name: None,
            ssl_server_name: false,
            body_size: None,
            connect_timeout: None,
            read_timeout: None,
            send_timeout: None,
        }
    }
}

impl BackendSettings {
    /// Whether these are the settings of an Ingress without any of the
    /// annotations (so the proxy's fast path applies).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// An annotation value tlsward cannot use; the annotation is ignored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// A `backend-protocol` ingress-nginx knows but tlsward does not speak.
    #[error(
        "{BACKEND_PROTOCOL}: {value:?} is not supported by tlsward (HTTP, HTTPS, GRPC, GRPCS are); the backend is reached over HTTP"
    )]
    UnsupportedProtocol {
        /// The value.
        value: String,
    },
    /// A `backend-protocol` that is not a protocol at all.
    #[error(
        "{BACKEND_PROTOCOL}: {value:?} is not a protocol; use HTTP, HTTPS, GRPC or GRPCS; the backend is reached over HTTP"
    )]
    UnknownProtocol {
        /// The value.
        value: String,
    },
    /// `proxy-ssl-secret` is not `namespace/name` (or `name`).
    #[error("{PROXY_SSL_SECRET}: {value:?} is not a Secret reference; write namespace/name")]
    SecretRef {
        /// The value.
        value: String,
    },
    /// `proxy-ssl-secret` names a Secret in another namespace.
    #[error(
        "{PROXY_SSL_SECRET}: {value:?} is in another namespace than the Ingress ({namespace}); copy the Secret into {namespace}"
    )]
    CrossNamespaceSecret {
        /// The value.
        value: String,
        /// The Ingress's namespace.
        namespace: String,
    },
    /// An on/off annotation with another value.
    #[error("{key}: {value:?} is neither \"on\" nor \"off\"; ignored")]
    NotOnOff {
        /// The annotation key.
        key: &'static str,
        /// The value.
        value: String,
    },
    /// `proxy-ssl-name` that is not a DNS name or IP address.
    #[error("{PROXY_SSL_NAME}: {value:?} is not a DNS name or IP address; ignored")]
    SslName {
        /// The value.
        value: String,
    },
    /// `proxy-body-size` not in nginx's size syntax.
    #[error(
        "{PROXY_BODY_SIZE}: {value:?} is not a size; write bytes with an optional k, m or g suffix (\"8m\"), or 0 for no limit; no limit applies"
    )]
    BodySize {
        /// The value.
        value: String,
    },
    /// A `proxy-*-timeout` that is not a whole number of seconds above 0.
    #[error(
        "{key}: {value:?} is not a timeout; write whole seconds, at least 1 (\"60\"); the proxy's default applies"
    )]
    Timeout {
        /// The annotation key.
        key: &'static str,
        /// The value.
        value: String,
    },
}

/// Reads the backend annotations of an Ingress in `namespace`. Keys that
/// are absent keep their default; a bad value is returned as an error and
/// keeps its default too.
pub fn parse(
    annotations: &BTreeMap<String, String>,
    namespace: &str,
) -> (BackendSettings, Vec<BackendError>) {
    let mut s = BackendSettings::default();
    let mut errors = Vec::new();
    let get = |key: &str| annotations.get(key).map(|v| v.trim());
    if let Some(v) = get(BACKEND_PROTOCOL) {
        match protocol(v) {
            Ok(p) => s.protocol = p,
            Err(e) => errors.push(e),
        }
    }
    if let Some(v) = get(PROXY_SSL_SECRET) {
        match secret_ref(v, namespace) {
            Ok(r) => s.ssl_secret = Some(r),
            Err(e) => errors.push(e),
        }
    }
    for (key, field) in [
        (PROXY_SSL_VERIFY, &mut s.ssl_verify),
        (PROXY_SSL_SERVER_NAME, &mut s.ssl_server_name),
    ] {
        if let Some(v) = get(key) {
            match on_off(key, v) {
                Ok(b) => *field = b,
                Err(e) => errors.push(e),
            }
        }
    }
    if let Some(v) = get(PROXY_SSL_NAME) {
        match ssl_name(v) {
            Ok(n) => s.ssl_name = Some(n),
            Err(e) => errors.push(e),
        }
    }
    if let Some(v) = get(PROXY_BODY_SIZE) {
        match body_size(v) {
            Ok(n) => s.body_size = n,
            Err(e) => errors.push(e),
        }
    }
    for (key, field) in [
        (PROXY_CONNECT_TIMEOUT, &mut s.connect_timeout),
        (PROXY_READ_TIMEOUT, &mut s.read_timeout),
        (PROXY_SEND_TIMEOUT, &mut s.send_timeout),
    ] {
        if let Some(v) = get(key) {
            match timeout(key, v) {
                Ok(d) => *field = Some(d),
                Err(e) => errors.push(e),
            }
        }
    }
    (s, errors)
}

fn protocol(v: &str) -> Result<Protocol, BackendError> {
    match v.to_ascii_uppercase().as_str() {
        "HTTP" => Ok(Protocol::Http),
        "HTTPS" => Ok(Protocol::Https),
        "GRPC" => Ok(Protocol::Grpc),
        "GRPCS" => Ok(Protocol::Grpcs),
        // ingress-nginx's other values.
        "AUTO_HTTP" | "FCGI" | "H2C" => Err(BackendError::UnsupportedProtocol {
            value: v.to_string(),
        }),
        _ => Err(BackendError::UnknownProtocol {
            value: v.to_string(),
        }),
    }
}

/// A DNS-1123 subdomain, as Kubernetes names Secrets and namespaces.
fn dns_1123(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn secret_ref(v: &str, namespace: &str) -> Result<SecretRef, BackendError> {
    let bad = || BackendError::SecretRef {
        value: v.to_string(),
    };
    let (ns, name) = match v.split_once('/') {
        Some((ns, name)) => (ns, name),
        // ingress-nginx reads a bare name in the Ingress's namespace.
        None => (namespace, v),
    };
    if !dns_1123(ns) || !dns_1123(name) {
        return Err(bad());
    }
    if ns != namespace {
        return Err(BackendError::CrossNamespaceSecret {
            value: v.to_string(),
            namespace: namespace.to_string(),
        });
    }
    Ok(SecretRef {
        namespace: ns.to_string(),
        name: name.to_string(),
    })
}

fn on_off(key: &'static str, v: &str) -> Result<bool, BackendError> {
    match v.to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(BackendError::NotOnOff {
            key,
            value: v.to_string(),
        }),
    }
}

fn ssl_name(v: &str) -> Result<String, BackendError> {
    let lower = v.to_ascii_lowercase();
    let dns = lower.len() <= 253
        && lower.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if dns || lower.parse::<std::net::IpAddr>().is_ok() {
        Ok(lower)
    } else {
        Err(BackendError::SslName {
            value: v.to_string(),
        })
    }
}

/// nginx's size syntax: bytes, or `k`, `m`, `g` (either case) multiples;
/// `0` is no limit.
fn body_size(v: &str) -> Result<Option<u64>, BackendError> {
    let bad = || BackendError::BodySize {
        value: v.to_string(),
    };
    let (digits, unit) = match v.as_bytes().last() {
        Some(b'k' | b'K') => (&v[..v.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&v[..v.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    match n.checked_mul(unit) {
        Some(0) => Ok(None),
        Some(bytes) => Ok(Some(bytes)),
        None => Err(bad()),
    }
}

/// Whole seconds, as ingress-nginx writes them; an `s` suffix is accepted.
fn timeout(key: &'static str, v: &str) -> Result<Duration, BackendError> {
    let digits = v.strip_suffix('s').unwrap_or(v);
    match digits.parse::<u32>() {
        Ok(n) if n > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Duration::from_secs(n.into()))
        }
        _ => Err(BackendError::Timeout {
            key,
            value: v.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_annotations_keep_tlsward_defaults_with_verification_on() {
        let (s, errors) = parse(&BTreeMap::new(), "apps");
        assert!(errors.is_empty());
        assert!(s.is_default());
        assert_eq!(s.protocol, Protocol::Http);
        assert!(
            s.ssl_verify,
            "the backend certificate is checked unless told not to"
        );
        assert!(!s.ssl_server_name);
        assert_eq!(s.body_size, None);
    }

    #[test]
    fn every_annotation_is_read() {
        let (s, errors) = parse(
            &ann(&[
                (BACKEND_PROTOCOL, "grpcs"),
                (PROXY_SSL_SECRET, "apps/backend-ca"),
                (PROXY_SSL_VERIFY, "off"),
                (PROXY_SSL_NAME, "Orders.Internal"),
                (PROXY_SSL_SERVER_NAME, "on"),
                (PROXY_BODY_SIZE, "8m"),
                (PROXY_CONNECT_TIMEOUT, "5"),
                (PROXY_READ_TIMEOUT, "120s"),
                (PROXY_SEND_TIMEOUT, "30"),
            ]),
            "apps",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.protocol, Protocol::Grpcs);
        assert_eq!(
            s.ssl_secret,
            Some(SecretRef {
                namespace: "apps".into(),
                name: "backend-ca".into()
            })
        );
        assert!(!s.ssl_verify);
        assert_eq!(s.ssl_name.as_deref(), Some("orders.internal"));
        assert!(s.ssl_server_name);
        assert_eq!(s.body_size, Some(8 << 20));
        assert_eq!(s.connect_timeout, Some(Duration::from_secs(5)));
        assert_eq!(s.read_timeout, Some(Duration::from_secs(120)));
        assert_eq!(s.send_timeout, Some(Duration::from_secs(30)));
    }

    #[test]
    fn sizes_follow_nginx_syntax() {
        for (v, want) in [
            ("0", None),
            ("1", Some(1)),
            ("1k", Some(1024)),
            ("1K", Some(1024)),
            ("8m", Some(8 << 20)),
            ("2g", Some(2 << 30)),
        ] {
            assert_eq!(body_size(v), Ok(want), "{v}");
        }
        for v in ["", "m", "-1", "1.5m", "8mb", "1t", "99999999999999999999g"] {
            let e = body_size(v).unwrap_err();
            assert!(e.to_string().contains(PROXY_BODY_SIZE), "{e}");
        }
    }

    #[test]
    fn bad_values_are_errors_naming_the_key_and_keep_the_default() {
        let cases: &[(&str, &str, &str)] = &[
            (BACKEND_PROTOCOL, "FCGI", "not supported"),
            (BACKEND_PROTOCOL, "AUTO_HTTP", "not supported"),
            (BACKEND_PROTOCOL, "smtp", "not a protocol"),
            (PROXY_SSL_SECRET, "a/b/c", "namespace/name"),
            (PROXY_SSL_SECRET, "other/ca", "copy the Secret"),
            (PROXY_SSL_VERIFY, "maybe", "neither"),
            (PROXY_SSL_SERVER_NAME, "yes please", "neither"),
            (PROXY_SSL_NAME, "not a name", "DNS name"),
            (PROXY_BODY_SIZE, "lots", "not a size"),
            (PROXY_CONNECT_TIMEOUT, "0", "at least 1"),
            (PROXY_READ_TIMEOUT, "1m", "whole seconds"),
            (PROXY_SEND_TIMEOUT, "-5", "whole seconds"),
        ];
        for (key, value, says) in cases {
            let (s, errors) = parse(&ann(&[(key, value)]), "apps");
            assert!(s.is_default(), "{key}={value} changed the settings: {s:?}");
            let [e] = errors.as_slice() else {
                panic!("{key}={value}: {errors:?}");
            };
            let text = e.to_string();
            assert!(text.contains(key), "{text}");
            assert!(text.contains(says), "{text}");
        }
    }

    #[test]
    fn a_bare_secret_name_is_in_the_ingress_namespace() {
        let (s, errors) = parse(&ann(&[(PROXY_SSL_SECRET, "ca")]), "apps");
        assert!(errors.is_empty());
        assert_eq!(s.ssl_secret.map(|r| r.namespace), Some("apps".into()));
    }
}
