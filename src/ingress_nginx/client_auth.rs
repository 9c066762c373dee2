//! The `auth-tls-*` annotations, `ssl-redirect` and `force-ssl-redirect`:
//! the implicit per-host client-auth policy an Ingress asks for.
//!
//! Read with ingress-nginx's meaning, but strictly: where ingress-nginx
//! falls back to a default on a value it cannot read (and so may serve a
//! host without the client check its owner asked for), this returns an
//! error naming the annotation and the fix, and the proxy fails closed.

use std::collections::BTreeMap;

use super::PREFIX;

/// `auth-tls-secret`: `namespace/name` of a Secret with `ca.crt` (and
/// optionally `ca.crl`).
pub const SECRET: &str = "auth-tls-secret";
/// `auth-tls-verify-client`: `on`, `off`, `optional`, `optional_no_ca`.
pub const VERIFY_CLIENT: &str = "auth-tls-verify-client";
/// `auth-tls-verify-depth`: OpenSSL's verify depth (default 1).
pub const VERIFY_DEPTH: &str = "auth-tls-verify-depth";
/// `auth-tls-match-cn`: a regular expression over the subject DN.
pub const MATCH_CN: &str = "auth-tls-match-cn";
/// `auth-tls-pass-certificate-to-upstream`: `true` sends `ssl-client-cert`.
pub const PASS_CERTIFICATE: &str = "auth-tls-pass-certificate-to-upstream";
/// `auth-tls-error-page`: where a client whose certificate failed goes.
pub const ERROR_PAGE: &str = "auth-tls-error-page";
/// `ssl-redirect`: redirect plain HTTP to HTTPS (default `true`).
pub const SSL_REDIRECT: &str = "ssl-redirect";
/// `force-ssl-redirect`: redirect even without TLS on the Ingress.
pub const FORCE_SSL_REDIRECT: &str = "force-ssl-redirect";

/// The `auth-tls-*` keys other than the Secret: any of them without
/// `auth-tls-secret` is an error, not silently nothing.
const DEPENDENT: [&str; 5] = [
    VERIFY_CLIENT,
    VERIFY_DEPTH,
    MATCH_CN,
    PASS_CERTIFICATE,
    ERROR_PAGE,
];

/// `auth-tls-verify-client`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyClient {
    /// `on` (the default): a verified certificate is required.
    On,
    /// `off`: no certificate is asked for.
    Off,
    /// `optional`: a certificate is asked for; one that is sent must verify.
    Optional,
    /// `optional_no_ca`: a certificate is asked for and passed on, but not
    /// verified against the CA (its handshake signature still is).
    OptionalNoCa,
}

impl VerifyClient {
    /// The annotation value.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyClient::On => "on",
            VerifyClient::Off => "off",
            VerifyClient::Optional => "optional",
            VerifyClient::OptionalNoCa => "optional_no_ca",
        }
    }
}

/// `auth-tls-error-page`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorPage {
    /// An absolute `http://` or `https://` URL: redirected to.
    Url(String),
    /// A path on the same host (`/...`): redirected to, and requests for
    /// that path are served despite the failed certificate (as nginx's
    /// internal redirect serves it).
    Path(String),
}

impl ErrorPage {
    /// The `Location` a failed client is sent to.
    pub fn location(&self) -> &str {
        match self {
            ErrorPage::Url(u) | ErrorPage::Path(u) => u,
        }
    }
}

/// The implicit client-auth policy of an Ingress's `auth-tls-*` annotations.
#[derive(Clone, Debug)]
pub struct ClientAuth {
    /// The Secret's namespace (always the Ingress's).
    pub namespace: String,
    /// The Secret's name.
    pub secret: String,
    /// `auth-tls-verify-client`.
    pub verify: VerifyClient,
    /// `auth-tls-verify-depth` as written (OpenSSL's meaning: the number of
    /// intermediate CAs allowed between the client certificate and the
    /// trust anchor).
    pub nginx_depth: u8,
    /// `auth-tls-match-cn`, compiled.
    pub match_cn: Option<regex::Regex>,
    /// `auth-tls-pass-certificate-to-upstream`.
    pub pass_certificate: bool,
    /// `auth-tls-error-page`.
    pub error_page: Option<ErrorPage>,
}

impl ClientAuth {
    /// The same limit in tlsward's count (`verifyDepth`, which counts the
    /// client certificate): OpenSSL 1.1.0+ lets depth N allow N
    /// intermediates, tlsward's depth N allows N - 1.
    pub fn verify_depth(&self) -> u8 {
        self.nginx_depth.saturating_add(1)
    }

    /// Whether the subject DN (RFC 2253/4514 form, as nginx's
    /// `$ssl_client_s_dn`; empty without a certificate) passes `match-cn`.
    pub fn cn_matches(&self, subject_dn: &str) -> bool {
        self.match_cn
            .as_ref()
            .is_none_or(|re| re.is_match(subject_dn))
    }

    /// Whether the handshake must accept any certificate (its signature
    /// still checked) so that the verdict is decided per request: for
    /// `optional_no_ca`, and whenever an error page is set.
    pub fn lenient_handshake(&self) -> bool {
        self.verify == VerifyClient::OptionalNoCa
            || (self.error_page.is_some() && self.verify != VerifyClient::Off)
    }

    /// Whether a request on a connection whose certificate verdict is
    /// `verified` (`None` when no certificate was sent, else whether it
    /// verified) goes to the error page rather than on.
    pub fn fails(&self, verified: Option<bool>) -> bool {
        match (self.verify, verified) {
            (VerifyClient::Off | VerifyClient::OptionalNoCa, _) => false,
            (_, Some(ok)) => !ok,
            (VerifyClient::On, None) => true,
            (VerifyClient::Optional, None) => false,
        }
    }
}

/// `ssl-redirect` and `force-ssl-redirect`, as written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Redirects {
    /// `ssl-redirect`.
    pub ssl_redirect: Option<bool>,
    /// `force-ssl-redirect`.
    pub force_ssl_redirect: Option<bool>,
}

/// An ingress-nginx annotation value tlsward cannot use as written. Each
/// names the full annotation key and the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientAuthError {
    /// `auth-tls-secret` is not `namespace/name` or `/name` (ingress-nginx
    /// refuses a bare name too): write it with the Ingress's namespace.
    #[error(
        "{PREFIX}{SECRET}: {value:?} is not namespace/name; write it as \"{namespace}/NAME\" with a Secret holding ca.crt"
    )]
    SecretFormat {
        /// The value.
        value: String,
        /// The Ingress's namespace.
        namespace: String,
    },
    /// `auth-tls-secret` names another namespace: copy the CA Secret into
    /// the Ingress's namespace (or bind a ClientAuthPolicy).
    #[error(
        "{PREFIX}{SECRET}: {value:?} is in another namespace than the Ingress ({namespace}); tlsward reads CA Secrets from the Ingress's own namespace only: copy the Secret to {namespace} or bind a ClientAuthPolicy"
    )]
    CrossNamespace {
        /// The value.
        value: String,
        /// The Ingress's namespace.
        namespace: String,
    },
    /// An `auth-tls-*` annotation without `auth-tls-secret`: set the
    /// Secret or remove the annotation.
    #[error(
        "{PREFIX}{key} is set but {PREFIX}{SECRET} is not; set {SECRET} to namespace/name of a Secret with ca.crt, or remove {key}"
    )]
    MissingSecret {
        /// The annotation key (without the prefix).
        key: &'static str,
    },
    /// `auth-tls-verify-client` is none of the four values.
    #[error("{PREFIX}{VERIFY_CLIENT}: {value:?} is not one of on, off, optional, optional_no_ca")]
    VerifyClient {
        /// The value.
        value: String,
    },
    /// `auth-tls-verify-depth` is not a whole number from 0 to 254.
    #[error(
        "{PREFIX}{VERIFY_DEPTH}: {value:?} is not a whole number from 0 to 254 (the intermediate CAs allowed; 1 is the default)"
    )]
    VerifyDepth {
        /// The value.
        value: String,
    },
    /// `auth-tls-match-cn` does not name a CN, as ingress-nginx requires.
    #[error(
        "{PREFIX}{MATCH_CN}: {value:?} does not contain \"CN=\"; write a regular expression over the subject DN such as \"CN=client-.*\""
    )]
    MatchCnWithoutCn {
        /// The value.
        value: String,
    },
    /// `auth-tls-match-cn` is not a regular expression tlsward can run.
    #[error(
        "{PREFIX}{MATCH_CN}: {value:?} is not a regular expression tlsward can use ({why}); look-around and back-references are not supported"
    )]
    MatchCnRegex {
        /// The value.
        value: String,
        /// What the regex compiler said.
        why: String,
    },
    /// A boolean annotation that is neither `true` nor `false`.
    #[error("{PREFIX}{key}: {value:?} is neither \"true\" nor \"false\"")]
    NotABool {
        /// The annotation key (without the prefix).
        key: &'static str,
        /// The value.
        value: String,
    },
    /// `auth-tls-error-page` is neither an http(s) URL nor a path.
    #[error(
        "{PREFIX}{ERROR_PAGE}: {value:?} is neither an absolute http(s) URL nor a path starting with /"
    )]
    ErrorPage {
        /// The value.
        value: String,
    },
    /// `ssl-redirect: "false"` asks for plain HTTP, which tlsward never
    /// serves: remove the annotation.
    #[error(
        "{PREFIX}{SSL_REDIRECT}: \"false\" asks for the host to be served over plain HTTP too; tlsward serves HTTPS only and still redirects plain HTTP (308): remove the annotation"
    )]
    CleartextRefused,
}

fn get<'a>(annotations: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    annotations
        .iter()
        .find(|(k, _)| k.strip_prefix(PREFIX) == Some(key))
        .map(|(_, v)| v.trim())
}

fn boolean(key: &'static str, value: &str) -> Result<bool, ClientAuthError> {
    // ingress-nginx reads booleans with Go's strconv.ParseBool.
    match value {
        "true" | "True" | "TRUE" | "1" | "t" | "T" => Ok(true),
        "false" | "False" | "FALSE" | "0" | "f" | "F" => Ok(false),
        _ => Err(ClientAuthError::NotABool {
            key,
            value: value.to_string(),
        }),
    }
}

/// The implicit client-auth policy an Ingress in `namespace` asks for:
/// `None` without any `auth-tls-*` annotation.
pub fn parse(
    namespace: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<Option<ClientAuth>, ClientAuthError> {
    let Some(secret) = get(annotations, SECRET) else {
        return match DEPENDENT.iter().find(|k| get(annotations, k).is_some()) {
            Some(key) => Err(ClientAuthError::MissingSecret { key }),
            None => Ok(None),
        };
    };
    let (ns, name) = match secret.split('/').collect::<Vec<_>>().as_slice() {
        // ingress-nginx reads `/name` as the Ingress's namespace.
        ["", name] if !name.is_empty() => (namespace, *name),
        [ns, name] if !ns.is_empty() && !name.is_empty() => (*ns, *name),
        _ => {
            return Err(ClientAuthError::SecretFormat {
                value: secret.to_string(),
                namespace: namespace.to_string(),
            });
        }
    };
    if ns != namespace {
        return Err(ClientAuthError::CrossNamespace {
            value: secret.to_string(),
            namespace: namespace.to_string(),
        });
    }
    let verify = match get(annotations, VERIFY_CLIENT) {
        None => VerifyClient::On,
        Some("on") => VerifyClient::On,
        Some("off") => VerifyClient::Off,
        Some("optional") => VerifyClient::Optional,
        Some("optional_no_ca") => VerifyClient::OptionalNoCa,
        Some(other) => {
            return Err(ClientAuthError::VerifyClient {
                value: other.to_string(),
            });
        }
    };
    let nginx_depth = match get(annotations, VERIFY_DEPTH) {
        None => 1,
        Some(v) => match v.parse::<u8>() {
            // ingress-nginx reads 0 as "not set".
            Ok(0) => 1,
            Ok(n) if n <= 254 => n,
            _ => {
                return Err(ClientAuthError::VerifyDepth {
                    value: v.to_string(),
                });
            }
        },
    };
    let match_cn = match get(annotations, MATCH_CN).filter(|v| !v.is_empty()) {
        None => None,
        Some(v) if !v.contains("CN=") => {
            return Err(ClientAuthError::MatchCnWithoutCn {
                value: v.to_string(),
            });
        }
        Some(v) => Some(
            regex::RegexBuilder::new(v)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| ClientAuthError::MatchCnRegex {
                    value: v.to_string(),
                    why: e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                })?,
        ),
    };
    let pass_certificate = get(annotations, PASS_CERTIFICATE)
        .map(|v| boolean(PASS_CERTIFICATE, v))
        .transpose()?
        .unwrap_or(false);
    let error_page = match get(annotations, ERROR_PAGE).filter(|v| !v.is_empty()) {
        None => None,
        Some(v) if v.starts_with('/') && !v.starts_with("//") && is_header_safe(v) => {
            Some(ErrorPage::Path(v.to_string()))
        }
        Some(v)
            if (v.starts_with("https://") || v.starts_with("http://"))
                && v.len() > "https://".len()
                && is_header_safe(v) =>
        {
            Some(ErrorPage::Url(v.to_string()))
        }
        Some(v) => {
            return Err(ClientAuthError::ErrorPage {
                value: v.to_string(),
            });
        }
    };
    Ok(Some(ClientAuth {
        namespace: ns.to_string(),
        secret: name.to_string(),
        verify,
        nginx_depth,
        match_cn,
        pass_certificate,
        error_page,
    }))
}

/// Visible ASCII without spaces: usable as a `Location` value as is.
fn is_header_safe(v: &str) -> bool {
    v.bytes().all(|b| b.is_ascii_graphic())
}

/// `ssl-redirect` and `force-ssl-redirect`, with what cannot carry over:
/// a value that is not a boolean, and `ssl-redirect: "false"`.
pub fn parse_redirects(
    annotations: &BTreeMap<String, String>,
) -> (Redirects, Vec<ClientAuthError>) {
    let mut problems = Vec::new();
    let mut read = |key: &'static str| {
        get(annotations, key).and_then(|v| match boolean(key, v) {
            Ok(b) => Some(b),
            Err(e) => {
                problems.push(e);
                None
            }
        })
    };
    let redirects = Redirects {
        ssl_redirect: read(SSL_REDIRECT),
        force_ssl_redirect: read(FORCE_SSL_REDIRECT),
    };
    if redirects.ssl_redirect == Some(false) && redirects.force_ssl_redirect != Some(true) {
        problems.push(ClientAuthError::CleartextRefused);
    }
    (redirects, problems)
}

/// nginx's `$ssl_client_escaped_cert`: the PEM certificate, URL-escaped as
/// nginx's `ngx_escape_uri(NGX_ESCAPE_URI_COMPONENT)` does.
pub fn escaped_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let mut out = String::with_capacity(pem.len() * 3 / 2);
    for b in pem.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_ingress_nginx_defaults() {
        let a = parse("apps", &ann(&[(SECRET, "apps/ca")]))
            .unwrap()
            .unwrap();
        assert_eq!((a.namespace.as_str(), a.secret.as_str()), ("apps", "ca"));
        assert_eq!(a.verify, VerifyClient::On);
        assert_eq!((a.nginx_depth, a.verify_depth()), (1, 2));
        assert!(!a.pass_certificate && a.error_page.is_none() && a.match_cn.is_none());
        assert!(parse("apps", &BTreeMap::new()).unwrap().is_none());
        let a = parse("apps", &ann(&[(SECRET, "/ca")])).unwrap().unwrap();
        assert_eq!((a.namespace.as_str(), a.secret.as_str()), ("apps", "ca"));
    }

    #[test]
    fn every_verify_client_value_and_depth() {
        for (v, want) in [
            ("on", VerifyClient::On),
            ("off", VerifyClient::Off),
            ("optional", VerifyClient::Optional),
            ("optional_no_ca", VerifyClient::OptionalNoCa),
        ] {
            let a = parse("ns", &ann(&[(SECRET, "ns/ca"), (VERIFY_CLIENT, v)]))
                .unwrap()
                .unwrap();
            assert_eq!(a.verify, want);
            assert_eq!(a.verify.as_str(), v);
        }
        let depth = |d: &str| parse("ns", &ann(&[(SECRET, "ns/ca"), (VERIFY_DEPTH, d)]));
        assert_eq!(depth("0").unwrap().unwrap().verify_depth(), 2);
        assert_eq!(depth("3").unwrap().unwrap().verify_depth(), 4);
        assert_eq!(depth("254").unwrap().unwrap().verify_depth(), 255);
        for bad in ["-1", "255", "two", ""] {
            assert!(
                matches!(depth(bad), Err(ClientAuthError::VerifyDepth { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_values_are_errors_naming_the_key_and_the_fix() {
        let err = |pairs: &[(&str, &str)]| parse("apps", &ann(pairs)).unwrap_err().to_string();
        let e = err(&[(SECRET, "ca")]);
        assert!(
            e.contains("auth-tls-secret") && e.contains("\"apps/NAME\""),
            "{e}"
        );
        let e = err(&[(SECRET, "other/ca")]);
        assert!(
            e.contains("another namespace") && e.contains("copy the Secret"),
            "{e}"
        );
        let e = err(&[(SECRET, "apps/ca"), (VERIFY_CLIENT, "yes")]);
        assert!(
            e.contains("auth-tls-verify-client") && e.contains("optional_no_ca"),
            "{e}"
        );
        let e = err(&[(VERIFY_CLIENT, "on")]);
        assert!(e.contains("auth-tls-secret is not"), "{e}");
        let e = err(&[(SECRET, "apps/ca"), (MATCH_CN, "client-.*")]);
        assert!(e.contains("\"CN=\""), "{e}");
        let e = err(&[(SECRET, "apps/ca"), (MATCH_CN, "CN=(?!admin)")]);
        assert!(e.contains("look-around"), "{e}");
        let e = err(&[(SECRET, "apps/ca"), (PASS_CERTIFICATE, "yes")]);
        assert!(e.contains("auth-tls-pass-certificate-to-upstream"), "{e}");
        let e = err(&[(SECRET, "apps/ca"), (ERROR_PAGE, "javascript:x")]);
        assert!(e.contains("auth-tls-error-page"), "{e}");
    }

    #[test]
    fn match_cn_searches_the_subject_dn_as_nginx_does() {
        let a = parse(
            "ns",
            &ann(&[(SECRET, "ns/ca"), (MATCH_CN, "CN=client-[0-9]+")]),
        )
        .unwrap()
        .unwrap();
        assert!(a.cn_matches("CN=client-7,O=Example"));
        assert!(a.cn_matches("O=Example,CN=client-12"), "unanchored, as ~");
        assert!(!a.cn_matches("CN=Client-7"), "case-sensitive, as ~");
        assert!(!a.cn_matches(""), "no certificate: an empty DN");
    }

    #[test]
    fn the_error_page_decides_per_mode() {
        let mode = |v: &str| {
            parse(
                "ns",
                &ann(&[
                    (SECRET, "ns/ca"),
                    (VERIFY_CLIENT, v),
                    (ERROR_PAGE, "https://errors.example/cert"),
                ]),
            )
            .unwrap()
            .unwrap()
        };
        let on = mode("on");
        assert!(on.lenient_handshake());
        assert!(on.fails(None) && on.fails(Some(false)) && !on.fails(Some(true)));
        let opt = mode("optional");
        assert!(!opt.fails(None) && opt.fails(Some(false)));
        let no_ca = mode("optional_no_ca");
        assert!(!no_ca.fails(Some(false)) && !no_ca.fails(None));
        assert!(!mode("off").lenient_handshake());
    }

    #[test]
    fn redirects_and_what_does_not_carry_over() {
        let (r, p) = parse_redirects(&ann(&[(FORCE_SSL_REDIRECT, "true")]));
        assert_eq!(r.force_ssl_redirect, Some(true));
        assert!(p.is_empty());
        let (r, p) = parse_redirects(&ann(&[(SSL_REDIRECT, "false")]));
        assert_eq!(r.ssl_redirect, Some(false));
        assert_eq!(p, [ClientAuthError::CleartextRefused]);
        let (_, p) = parse_redirects(&ann(&[(SSL_REDIRECT, "maybe")]));
        assert!(
            p[0].to_string()
                .contains("nginx.ingress.kubernetes.io/ssl-redirect")
        );
    }

    #[test]
    fn the_escaped_certificate_is_url_encoded_pem() {
        let e = escaped_pem(&[0xfb, 0xff, 0x01]);
        assert_eq!(
            e,
            "-----BEGIN%20CERTIFICATE-----%0A%2B%2F8B%0A-----END%20CERTIFICATE-----%0A"
        );
    }
}
