//! Every ingress-nginx annotation key tlsward knows of, and whether it
//! carries over: supported, mapped onto a tlsward feature, or not supported
//! (with what to do instead).
//!
//! The webhook's warnings, `tlsward check`'s migration report, the proxy's
//! per-Ingress report and the table in `docs/migrate-from-ingress-nginx.md`
//! are all read from [`CATALOGUE`], so they cannot disagree.

use std::collections::BTreeMap;

use serde::Serialize;

use super::PREFIX;

/// What tlsward does with one ingress-nginx annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The proxy implements it, with ingress-nginx's meaning.
    Supported,
    /// tlsward has the feature under its own name; `to` says which.
    Mapped {
        /// What to use instead, as a sentence fragment.
        to: &'static str,
    },
    /// Neither the annotation nor an equivalent exists in tlsward.
    NotSupported {
        /// Why, as a sentence fragment.
        reason: &'static str,
        /// What to do instead, as a sentence fragment.
        instead: &'static str,
    },
}

/// One annotation key (without the prefix) and its verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key after `nginx.ingress.kubernetes.io/`, such as `auth-tls-secret`.
    pub name: &'static str,
    /// What tlsward does with it.
    pub verdict: Verdict,
}

const fn ok(name: &'static str) -> Entry {
    Entry {
        name,
        verdict: Verdict::Supported,
    }
}

const fn mapped(name: &'static str, to: &'static str) -> Entry {
    Entry {
        name,
        verdict: Verdict::Mapped { to },
    }
}

const fn no(name: &'static str, reason: &'static str, instead: &'static str) -> Entry {
    Entry {
        name,
        verdict: Verdict::NotSupported { reason, instead },
    }
}

// Reasons and advice shared by families of keys.
const SNIPPET: &str = "raw nginx configuration is refused: snippets let an Ingress author run arbitrary directives in the proxy (CVE-2021-25742, CVE-2025-1974) and tlsward is not nginx";
const SNIPPET_INSTEAD: &str =
    "move the behaviour into the application, or ask for it as a tlsward feature";
const BASIC_AUTH: &str = "tlsward does not do HTTP basic or digest authentication";
const BASIC_AUTH_INSTEAD: &str = "use client certificates (the auth-tls annotations or a ClientAuthPolicy) or OIDC login/bearer tokens in a ClientAuthPolicy (docs/oidc.md)";
const EXT_AUTH_TUNING: &str = "tlsward has no external-authentication subrequest to tune";
const EXT_AUTH_INSTEAD: &str =
    "authenticate in the proxy with a ClientAuthPolicy's login or tokens (docs/oidc.md)";
const CANARY: &str = "tlsward routes each path to exactly one Service";
const CANARY_INSTEAD: &str = "split traffic behind one Service (e.g. with Argo Rollouts or Flagger on the Service's endpoints), and delete the canary Ingress";
const AFFINITY: &str = "tlsward balances round-robin over ready endpoints, with no sticky sessions";
const AFFINITY_INSTEAD: &str = "keep session state out of the pod (a shared store), so that any endpoint can serve any request";
const BALANCING: &str = "tlsward balances round-robin over ready endpoints only";
const BALANCING_INSTEAD: &str = "remove it; if the backend needs hashing, put that in front of it";
const REWRITE: &str = "tlsward forwards the path as received: no rewrites, no regex paths";
const REWRITE_INSTEAD: &str = "serve the application under the Ingress path itself, or use Prefix/Exact paths the application understands";
const REDIRECT: &str = "tlsward answers redirects only for plain HTTP to HTTPS";
const REDIRECT_INSTEAD: &str =
    "let the application (or a tiny redirect Service) answer the redirect";
const CORS: &str = "tlsward does not answer CORS preflights or add CORS headers";
const CORS_INSTEAD: &str = "answer CORS in the application: tlsward passes OPTIONS requests and the headers through unchanged";
const RATE: &str = "tlsward has no per-client rate or connection limits per Ingress";
const RATE_INSTEAD: &str = "use the proxy's global --max-connections and header/time limits, and rate-limit in the application or a service mesh";
const SOURCE_RANGE: &str = "tlsward does not filter clients by source address";
const SOURCE_RANGE_INSTEAD: &str = "require client certificates (auth-tls annotations or a ClientAuthPolicy), or filter sources with the Service's loadBalancerSourceRanges";
const BUFFERING: &str =
    "tlsward streams request and response bodies and has no nginx buffers to size";
const BUFFERING_INSTEAD: &str =
    "remove it: bodies are streamed; proxy-body-size still limits request bodies";
const TRACING: &str = "tlsward does not emit traces";
const TRACING_INSTEAD: &str = "use the proxy's Prometheus metrics and JSON access log (docs/proxy.md); trace in the application";
const MODSECURITY: &str = "tlsward has no web application firewall";
const MODSECURITY_INSTEAD: &str = "put a WAF in front of tlsward or behind it";
const MIRROR: &str = "tlsward does not mirror requests";
const MIRROR_INSTEAD: &str = "mirror in a service mesh or the application";
const ERRORS: &str =
    "tlsward passes upstream responses through and answers its own errors with short text lines";
const ERRORS_INSTEAD: &str = "serve error pages from the application";
const CIPHERS: &str = "tlsward's TLS settings are fixed: TLS 1.2 and 1.3 with rustls' safe cipher suites on aws-lc-rs";
const CIPHERS_INSTEAD: &str =
    "remove it: the defaults are the secure ones and are not tunable per Ingress";
const COOKIE_REWRITE: &str = "tlsward does not rewrite upstream response headers";
const COOKIE_REWRITE_INSTEAD: &str =
    "have the application set the cookie domain and path (or Location) the clients see";
const REMOVED: &str = "ingress-nginx itself dropped it in an earlier release";
const LOGGING: &str = "tlsward logs every request in one access-log line, for every host";
const LOGGING_INSTEAD: &str = "remove it; filter the access log by host if needed";
const INFLUX: &str = "tlsward exports Prometheus metrics only";
const INFLUX_INSTEAD: &str = "scrape /metrics on the proxy's admin port";

/// Every annotation ingress-nginx documents (and a few it documented
/// before removing them), sorted by name.
pub const CATALOGUE: &[Entry] = &[
    no(
        "add-base-url",
        REMOVED,
        "remove it; serve the application under the Ingress path",
    ),
    no("affinity", AFFINITY, AFFINITY_INSTEAD),
    no("affinity-canary-behavior", AFFINITY, AFFINITY_INSTEAD),
    no("affinity-mode", AFFINITY, AFFINITY_INSTEAD),
    no("allowlist-source-range", SOURCE_RANGE, SOURCE_RANGE_INSTEAD),
    no("app-root", REDIRECT, REDIRECT_INSTEAD),
    no("auth-always-set-cookie", EXT_AUTH_TUNING, EXT_AUTH_INSTEAD),
    no(
        "auth-cache-duration",
        EXT_AUTH_TUNING,
        "remove it: a ClientAuthPolicy's tokens are cached until they expire",
    ),
    no(
        "auth-cache-key",
        EXT_AUTH_TUNING,
        "remove it: a ClientAuthPolicy's tokens are cached until they expire",
    ),
    no("auth-keepalive", EXT_AUTH_TUNING, EXT_AUTH_INSTEAD),
    no("auth-keepalive-requests", EXT_AUTH_TUNING, EXT_AUTH_INSTEAD),
    no(
        "auth-keepalive-share-vars",
        EXT_AUTH_TUNING,
        EXT_AUTH_INSTEAD,
    ),
    no("auth-keepalive-timeout", EXT_AUTH_TUNING, EXT_AUTH_INSTEAD),
    no("auth-method", EXT_AUTH_TUNING, EXT_AUTH_INSTEAD),
    no("auth-proxy-set-headers", EXT_AUTH_TUNING, EXT_AUTH_INSTEAD),
    no("auth-realm", BASIC_AUTH, BASIC_AUTH_INSTEAD),
    mapped(
        "auth-request-redirect",
        "a ClientAuthPolicy's login, which keeps the original URL as the return path itself (docs/oidc.md)",
    ),
    mapped(
        "auth-response-headers",
        "a ClientAuthPolicy's tokens.claimHeaders, which copy verified token claims to upstream headers (docs/oidc.md)",
    ),
    no("auth-secret", BASIC_AUTH, BASIC_AUTH_INSTEAD),
    no("auth-secret-type", BASIC_AUTH, BASIC_AUTH_INSTEAD),
    mapped(
        "auth-signin",
        "a ClientAuthPolicy's login (OIDC authorization code with PKCE): the proxy sends browsers to the provider itself (docs/oidc.md)",
    ),
    mapped(
        "auth-signin-redirect-param",
        "a ClientAuthPolicy's login, which keeps the original URL as the return path itself (docs/oidc.md)",
    ),
    no("auth-snippet", SNIPPET, SNIPPET_INSTEAD),
    ok("auth-tls-error-page"),
    ok("auth-tls-match-cn"),
    ok("auth-tls-pass-certificate-to-upstream"),
    ok("auth-tls-secret"),
    ok("auth-tls-verify-client"),
    ok("auth-tls-verify-depth"),
    no("auth-type", BASIC_AUTH, BASIC_AUTH_INSTEAD),
    mapped(
        "auth-url",
        "a ClientAuthPolicy with OIDC: login for browsers, tokens for API clients, checked in the proxy without an auth service (docs/oidc.md)",
    ),
    ok("backend-protocol"),
    no("base-url-scheme", REMOVED, "remove it"),
    no("canary", CANARY, CANARY_INSTEAD),
    no("canary-by-cookie", CANARY, CANARY_INSTEAD),
    no("canary-by-header", CANARY, CANARY_INSTEAD),
    no("canary-by-header-pattern", CANARY, CANARY_INSTEAD),
    no("canary-by-header-value", CANARY, CANARY_INSTEAD),
    no("canary-weight", CANARY, CANARY_INSTEAD),
    no("canary-weight-total", CANARY, CANARY_INSTEAD),
    no("client-body-buffer-size", BUFFERING, BUFFERING_INSTEAD),
    no("configuration-snippet", SNIPPET, SNIPPET_INSTEAD),
    no(
        "connection-proxy-header",
        "tlsward manages upstream connections itself (a keep-alive pool)",
        "remove it",
    ),
    no("cors-allow-credentials", CORS, CORS_INSTEAD),
    no("cors-allow-headers", CORS, CORS_INSTEAD),
    no("cors-allow-methods", CORS, CORS_INSTEAD),
    no("cors-allow-origin", CORS, CORS_INSTEAD),
    no("cors-expose-headers", CORS, CORS_INSTEAD),
    no("cors-max-age", CORS, CORS_INSTEAD),
    no(
        "custom-headers",
        "tlsward does not add configured response headers (besides tlsward.io/hsts)",
        "set the headers in the application; for HSTS use the tlsward.io/hsts annotation",
    ),
    no("custom-http-errors", ERRORS, ERRORS_INSTEAD),
    no(
        "default-backend",
        "tlsward has no fallback Service per Ingress; a backend without ready endpoints answers 503",
        "use spec.defaultBackend for unmatched paths",
    ),
    no("denylist-source-range", SOURCE_RANGE, SOURCE_RANGE_INSTEAD),
    no(
        "disable-proxy-intercept-errors",
        ERRORS,
        "remove it: tlsward never intercepts upstream errors",
    ),
    no("enable-access-log", LOGGING, LOGGING_INSTEAD),
    no("enable-cors", CORS, CORS_INSTEAD),
    no(
        "enable-global-auth",
        "tlsward has no global external authentication",
        "bind the Ingress to a ClientAuthPolicy (or not) to choose its authentication",
    ),
    no("enable-influxdb", INFLUX, INFLUX_INSTEAD),
    no("enable-modsecurity", MODSECURITY, MODSECURITY_INSTEAD),
    no("enable-opentelemetry", TRACING, TRACING_INSTEAD),
    no("enable-opentracing", TRACING, TRACING_INSTEAD),
    no("enable-owasp-core-rules", MODSECURITY, MODSECURITY_INSTEAD),
    no("enable-rewrite-log", REWRITE, "remove it"),
    ok("force-ssl-redirect"),
    no(
        "from-to-www-redirect",
        REDIRECT,
        "list both names as rule hosts (and in spec.tls), or redirect in the application",
    ),
    no("global-rate-limit", RATE, RATE_INSTEAD),
    no("global-rate-limit-ignored-cidrs", RATE, RATE_INSTEAD),
    no("global-rate-limit-key", RATE, RATE_INSTEAD),
    no("global-rate-limit-window", RATE, RATE_INSTEAD),
    no("grpc-backend", REMOVED, "use backend-protocol: GRPC"),
    no(
        "http2-push-preload",
        "HTTP/2 server push is not implemented (browsers dropped it)",
        "remove it; use 103 Early Hints or preload links from the application",
    ),
    no("influxdb-host", INFLUX, INFLUX_INSTEAD),
    no("influxdb-measurement", INFLUX, INFLUX_INSTEAD),
    no("influxdb-port", INFLUX, INFLUX_INSTEAD),
    no("influxdb-server-name", INFLUX, INFLUX_INSTEAD),
    no("limit-allowlist", RATE, RATE_INSTEAD),
    no("limit-burst-multiplier", RATE, RATE_INSTEAD),
    no("limit-connections", RATE, RATE_INSTEAD),
    no("limit-rate", RATE, RATE_INSTEAD),
    no("limit-rate-after", RATE, RATE_INSTEAD),
    no("limit-rpm", RATE, RATE_INSTEAD),
    no("limit-rps", RATE, RATE_INSTEAD),
    no("limit-whitelist", RATE, RATE_INSTEAD),
    no("load-balance", BALANCING, BALANCING_INSTEAD),
    no("mirror-host", MIRROR, MIRROR_INSTEAD),
    no("mirror-request-body", MIRROR, MIRROR_INSTEAD),
    no("mirror-target", MIRROR, MIRROR_INSTEAD),
    no("mirror-uri", MIRROR, MIRROR_INSTEAD),
    no("modsecurity-snippet", SNIPPET, MODSECURITY_INSTEAD),
    no(
        "modsecurity-transaction-id",
        MODSECURITY,
        MODSECURITY_INSTEAD,
    ),
    no("opentelemetry-operation-name", TRACING, TRACING_INSTEAD),
    no(
        "opentelemetry-trust-incoming-span",
        TRACING,
        TRACING_INSTEAD,
    ),
    no("opentracing-trust-incoming-span", TRACING, TRACING_INSTEAD),
    no("permanent-redirect", REDIRECT, REDIRECT_INSTEAD),
    no("permanent-redirect-code", REDIRECT, REDIRECT_INSTEAD),
    no(
        "preserve-trailing-slash",
        "tlsward's HTTPS redirect always keeps the path and query exactly as received",
        "remove it: the trailing slash is already kept",
    ),
    ok("proxy-body-size"),
    no("proxy-buffer-size", BUFFERING, BUFFERING_INSTEAD),
    no("proxy-buffering", BUFFERING, BUFFERING_INSTEAD),
    no("proxy-buffers-number", BUFFERING, BUFFERING_INSTEAD),
    no("proxy-busy-buffers-size", BUFFERING, BUFFERING_INSTEAD),
    ok("proxy-connect-timeout"),
    no(
        "proxy-cookie-domain",
        COOKIE_REWRITE,
        COOKIE_REWRITE_INSTEAD,
    ),
    no("proxy-cookie-path", COOKIE_REWRITE, COOKIE_REWRITE_INSTEAD),
    no(
        "proxy-http-version",
        "tlsward picks the upstream protocol from backend-protocol",
        "remove it, or set backend-protocol",
    ),
    no("proxy-max-temp-file-size", BUFFERING, BUFFERING_INSTEAD),
    no(
        "proxy-next-upstream",
        "tlsward never retries a request on another endpoint (a sent request is never sent twice)",
        "remove it; make clients retry idempotent requests",
    ),
    no(
        "proxy-next-upstream-timeout",
        "tlsward never retries a request on another endpoint",
        "remove it; proxy-connect-timeout and proxy-read-timeout still apply",
    ),
    no(
        "proxy-next-upstream-tries",
        "tlsward never retries a request on another endpoint",
        "remove it; make clients retry idempotent requests",
    ),
    ok("proxy-read-timeout"),
    no(
        "proxy-redirect-from",
        COOKIE_REWRITE,
        COOKIE_REWRITE_INSTEAD,
    ),
    no("proxy-redirect-to", COOKIE_REWRITE, COOKIE_REWRITE_INSTEAD),
    no("proxy-request-buffering", BUFFERING, BUFFERING_INSTEAD),
    ok("proxy-send-timeout"),
    no("proxy-ssl-ciphers", CIPHERS, CIPHERS_INSTEAD),
    ok("proxy-ssl-name"),
    no("proxy-ssl-protocols", CIPHERS, CIPHERS_INSTEAD),
    ok("proxy-ssl-secret"),
    ok("proxy-ssl-server-name"),
    ok("proxy-ssl-verify"),
    no(
        "proxy-ssl-verify-depth",
        "rustls verifies the backend's whole chain up to the CA in proxy-ssl-secret, with no depth limit",
        "remove it; trust only the issuing CA in ca.crt",
    ),
    no(
        "relative-redirects",
        REDIRECT,
        "remove it: tlsward does not rewrite upstream Location headers",
    ),
    no("rewrite-target", REWRITE, REWRITE_INSTEAD),
    no(
        "satisfy",
        "tlsward has one authentication chain per host: client certificate, then token or login",
        "remove it; choose the checks in the bound ClientAuthPolicy",
    ),
    no("secure-backends", REMOVED, "use backend-protocol: HTTPS"),
    no(
        "server-alias",
        "tlsward serves exactly the hosts of the Ingress's rules",
        "add the alias as another rule host and to spec.tls",
    ),
    no("server-snippet", SNIPPET, SNIPPET_INSTEAD),
    no(
        "service-upstream",
        "tlsward connects to the Service's ready endpoints from its EndpointSlices",
        "remove it",
    ),
    no(
        "session-cookie-change-on-failure",
        AFFINITY,
        AFFINITY_INSTEAD,
    ),
    no(
        "session-cookie-conditional-samesite-none",
        AFFINITY,
        AFFINITY_INSTEAD,
    ),
    no("session-cookie-domain", AFFINITY, AFFINITY_INSTEAD),
    no("session-cookie-expires", AFFINITY, AFFINITY_INSTEAD),
    no("session-cookie-max-age", AFFINITY, AFFINITY_INSTEAD),
    no("session-cookie-name", AFFINITY, AFFINITY_INSTEAD),
    no("session-cookie-path", AFFINITY, AFFINITY_INSTEAD),
    no("session-cookie-samesite", AFFINITY, AFFINITY_INSTEAD),
    no("session-cookie-secure", AFFINITY, AFFINITY_INSTEAD),
    no("ssl-ciphers", CIPHERS, CIPHERS_INSTEAD),
    no(
        "ssl-passthrough",
        "tlsward terminates TLS to apply each host's certificate and client-certificate policy; it never forwards raw TLS",
        "keep the host on a layer-4 load balancer (a LoadBalancer Service) or another controller, or let tlsward terminate and re-encrypt with backend-protocol: HTTPS",
    ),
    no("ssl-prefer-server-ciphers", CIPHERS, CIPHERS_INSTEAD),
    ok("ssl-redirect"),
    no(
        "stream-snippet",
        SNIPPET,
        "expose TCP/UDP services with a LoadBalancer Service",
    ),
    no("temporal-redirect", REDIRECT, REDIRECT_INSTEAD),
    no("temporal-redirect-code", REDIRECT, REDIRECT_INSTEAD),
    no("upstream-hash-by", BALANCING, BALANCING_INSTEAD),
    no("upstream-hash-by-subset", BALANCING, BALANCING_INSTEAD),
    no("upstream-hash-by-subset-size", BALANCING, BALANCING_INSTEAD),
    no(
        "upstream-vhost",
        "tlsward sends the client's Host to the upstream",
        "make the application accept the public host name",
    ),
    no("use-regex", REWRITE, REWRITE_INSTEAD),
    no("whitelist-source-range", SOURCE_RANGE, SOURCE_RANGE_INSTEAD),
    no(
        "x-forwarded-prefix",
        REWRITE,
        "configure the application's base path itself",
    ),
];

/// The catalogue entry for `name` (the key without the prefix).
pub fn lookup(name: &str) -> Option<&'static Entry> {
    CATALOGUE
        .binary_search_by(|e| e.name.cmp(name))
        .ok()
        .and_then(|i| CATALOGUE.get(i))
}

/// How one annotation on an Ingress fares in tlsward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It carries over with ingress-nginx's meaning.
    #[serde(rename = "carries_over")]
    Supported,
    /// tlsward ignores it, but has the feature under its own name.
    Mapped,
    /// tlsward ignores it and has no equivalent.
    NotSupported,
    /// Not a key tlsward knows: a typo, or newer than the catalogue.
    Unknown,
}

impl Status {
    /// The words people read, in reports and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Supported => "carries over",
            Status::Mapped => "mapped",
            Status::NotSupported => "not supported",
            Status::Unknown => "unknown",
        }
    }
}

/// One `nginx.ingress.kubernetes.io/*` annotation of an Ingress, assessed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The full annotation key.
    pub annotation: String,
    /// Whether it carries over.
    pub status: Status,
    /// Why it does not carry over (not supported, unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What to use (mapped) or do (not supported, unknown) instead; absent
    /// when it carries over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instead: Option<String>,
}

impl Finding {
    /// Whether tlsward's proxy honours this annotation as ingress-nginx did.
    pub fn carries_over(&self) -> bool {
        self.status == Status::Supported
    }

    /// The sentence a user sees (admission warning, `check`): the key and
    /// what to do instead, short enough that the API server passes it on
    /// whole (it may cut warnings past 256 characters); `None` when the
    /// annotation carries over. The reason is in `check -o json` and the
    /// migration guide.
    pub fn warning(&self) -> Option<String> {
        let key = &self.annotation;
        let instead = self.instead.as_deref().unwrap_or_default();
        match self.status {
            Status::Supported => None,
            Status::Mapped => Some(format!("{key} is ignored by tlsward: use {instead}")),
            Status::NotSupported => Some(format!(
                "{key} is not supported by tlsward (ignored): {instead}"
            )),
            Status::Unknown => Some(format!("{key} is unknown to tlsward (ignored): {instead}")),
        }
    }
}

fn finding(key: &str, value: &str) -> Finding {
    let name = key.strip_prefix(PREFIX).unwrap_or(key);
    let protocol = value.trim().to_ascii_uppercase();
    let (status, reason, instead) = match lookup(name).map(|e| e.verdict) {
        // AJP and FastCGI are backend protocols tlsward does not speak,
        // whatever the key's verdict says.
        Some(Verdict::Supported)
            if name == "backend-protocol" && ["AJP", "FCGI"].contains(&protocol.as_str()) =>
        {
            (
                Status::NotSupported,
                Some(format!(
                    "{protocol} backends are not supported: tlsward speaks HTTP, HTTPS, GRPC and GRPCS to upstreams"
                )),
                Some("put an HTTP front end before the backend".to_string()),
            )
        }
        Some(Verdict::Supported) => (Status::Supported, None, None),
        Some(Verdict::Mapped { to }) => (Status::Mapped, None, Some(to.to_string())),
        Some(Verdict::NotSupported { reason, instead }) => (
            Status::NotSupported,
            Some(reason.to_string()),
            Some(instead.to_string()),
        ),
        None => (
            Status::Unknown,
            Some(
                "not an ingress-nginx annotation tlsward knows: a typo, or newer than tlsward"
                    .into(),
            ),
            Some("check the spelling against docs/migrate-from-ingress-nginx.md".into()),
        ),
    };
    Finding {
        annotation: key.to_string(),
        status,
        reason,
        instead,
    }
}

/// Every `nginx.ingress.kubernetes.io/*` annotation among `annotations`,
/// assessed, sorted by key. Other annotations are not looked at; for a key
/// given twice, the last value counts, as when Kubernetes decodes it.
pub fn assess<'a>(annotations: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Finding> {
    let ours: BTreeMap<&str, &str> = annotations
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .collect();
    ours.into_iter().map(|(k, v)| finding(k, v)).collect()
}

/// The keys among `findings` that do not carry over, comma-separated (the
/// proxy's log line).
pub fn not_carried_over(findings: &[Finding]) -> Vec<&str> {
    findings
        .iter()
        .filter(|f| !f.carries_over())
        .map(|f| f.annotation.as_str())
        .collect()
}

/// The catalogue as the Markdown table of the migration guide: annotation,
/// verdict, and what tlsward does or what to do instead.
pub fn markdown_table() -> String {
    let mut out = String::from("| annotation | in tlsward | notes |\n| --- | --- | --- |\n");
    for e in CATALOGUE {
        let (status, notes) = match e.verdict {
            Verdict::Supported => (
                Status::Supported,
                "same meaning as in ingress-nginx".to_string(),
            ),
            Verdict::Mapped { to } => (Status::Mapped, format!("use {to}")),
            Verdict::NotSupported { reason, instead } => {
                (Status::NotSupported, format!("{reason}; {instead}"))
            }
        };
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            e.name,
            status.as_str(),
            notes.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMPLEMENTED: &[&str] = &[
        "auth-tls-secret",
        "auth-tls-verify-client",
        "auth-tls-verify-depth",
        "auth-tls-match-cn",
        "auth-tls-pass-certificate-to-upstream",
        "auth-tls-error-page",
        "ssl-redirect",
        "force-ssl-redirect",
        "backend-protocol",
        "proxy-ssl-secret",
        "proxy-ssl-verify",
        "proxy-ssl-name",
        "proxy-ssl-server-name",
        "proxy-body-size",
        "proxy-connect-timeout",
        "proxy-read-timeout",
        "proxy-send-timeout",
    ];

    #[test]
    fn catalogue_is_sorted_and_unique_so_lookup_finds_every_key() {
        for w in CATALOGUE.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for e in CATALOGUE {
            assert_eq!(lookup(e.name), Some(e), "{}", e.name);
        }
        assert!(CATALOGUE.len() >= 120, "{}", CATALOGUE.len());
    }

    #[test]
    fn exactly_the_implemented_keys_are_supported() {
        let supported: Vec<&str> = CATALOGUE
            .iter()
            .filter(|e| e.verdict == Verdict::Supported)
            .map(|e| e.name)
            .collect();
        let mut want = IMPLEMENTED.to_vec();
        want.sort_unstable();
        assert_eq!(supported, want);
    }

    #[test]
    fn snippets_and_passthrough_are_not_supported_with_a_reason() {
        for k in [
            "configuration-snippet",
            "server-snippet",
            "auth-snippet",
            "stream-snippet",
            "modsecurity-snippet",
            "ssl-passthrough",
        ] {
            let Some(Entry {
                verdict: Verdict::NotSupported { reason, instead },
                ..
            }) = lookup(k)
            else {
                panic!("{k} must be NotSupported");
            };
            assert!(!reason.is_empty() && !instead.is_empty(), "{k}");
        }
        assert!(matches!(
            lookup("auth-url").map(|e| e.verdict),
            Some(Verdict::Mapped { to }) if to.contains("ClientAuthPolicy")
        ));
    }

    #[test]
    fn assess_reads_only_the_prefix_sorts_and_says_what_to_do() {
        let found = assess([
            ("nginx.ingress.kubernetes.io/rewrite-target", "/$2"),
            ("cert-manager.io/cluster-issuer", "le"),
            ("nginx.ingress.kubernetes.io/auth-tls-secret", "ns/ca"),
            ("nginx.ingress.kubernetes.io/auth-url", "https://auth/"),
            ("nginx.ingress.kubernetes.io/ssl-redirct", "true"),
        ]);
        let keys: Vec<(&str, Status)> = found
            .iter()
            .map(|f| (&f.annotation[PREFIX.len()..], f.status))
            .collect();
        assert_eq!(
            keys,
            [
                ("auth-tls-secret", Status::Supported),
                ("auth-url", Status::Mapped),
                ("rewrite-target", Status::NotSupported),
                ("ssl-redirct", Status::Unknown),
            ]
        );
        assert_eq!(found[0].warning(), None);
        let w = found[2].warning().unwrap_or_default();
        assert!(
            w.starts_with("nginx.ingress.kubernetes.io/rewrite-target is not supported")
                && w.contains("serve the application under the Ingress path"),
            "{w}"
        );
        assert!(
            found[3]
                .warning()
                .is_some_and(|w| w.contains("unknown") && w.contains("spelling")),
            "{:?}",
            found[3]
        );
        assert!(
            found[1]
                .warning()
                .is_some_and(|w| w.contains("use a ClientAuthPolicy with OIDC")),
            "{:?}",
            found[1]
        );
        assert_eq!(
            not_carried_over(&found).len(),
            3,
            "{:?}",
            not_carried_over(&found)
        );
    }

    #[test]
    fn ajp_and_fcgi_backends_do_not_carry_over() {
        let f = assess([("nginx.ingress.kubernetes.io/backend-protocol", "AJP")]);
        assert_eq!(f[0].status, Status::NotSupported);
        let f = assess([("nginx.ingress.kubernetes.io/backend-protocol", "GRPCS")]);
        assert_eq!(f[0].status, Status::Supported);
    }

    #[test]
    fn every_warning_fits_what_the_api_server_passes_on_whole() {
        // The API server may cut a warning past 256 characters.
        let longest_name = "x".repeat(63);
        let mut keys: Vec<String> = CATALOGUE.iter().map(|e| e.name.to_string()).collect();
        keys.push(longest_name);
        let mut too_long = Vec::new();
        for name in keys {
            let key = format!("{PREFIX}{name}");
            for value in ["", "AJP"] {
                let f = finding(&key, value);
                if let Some(w) = f.warning()
                    && w.chars().count() > 256
                {
                    too_long.push(format!("{} chars: {w}", w.chars().count()));
                }
                if !f.carries_over() {
                    assert!(f.instead.is_some(), "{key}");
                }
            }
        }
        assert!(too_long.is_empty(), "{}", too_long.join("\n"));
    }

    #[test]
    fn bare_prefix_is_unknown_not_a_panic() {
        let f = assess([("nginx.ingress.kubernetes.io/", "x")]);
        assert_eq!(f[0].status, Status::Unknown);
    }
}
