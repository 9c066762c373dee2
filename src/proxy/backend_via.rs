//! An Ingress's ingress-nginx backend annotations, resolved into how the
//! proxy reaches its backends ([`Via`]): the TLS client configuration from
//! the `proxy-ssl-secret` Secret, the name checked, limits and timeouts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use k8s_openapi::ByteString;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};

use super::problem::Issue;
use super::routes::{UpstreamTls, Via};
use crate::ingress_nginx::backend::{self, BackendSettings, Protocol};
use crate::tls::{self, UpstreamRoots};

/// One Ingress's backend settings, resolved once for all its backends.
pub struct IngressUpstream {
    settings: BackendSettings,
    /// The TLS client configuration, or why there is none.
    tls: Option<Result<Arc<rustls::ClientConfig>, String>>,
    ingress: String,
    /// The settings of an Ingress without any backend annotation: every
    /// backend shares it.
    plain: Arc<Via>,
}

impl IngressUpstream {
    /// Reads the annotations of Ingress `ingress` (`ns/name`) in `namespace`;
    /// `secret` finds a Secret's data in that namespace. What cannot be used
    /// is returned as issues to report.
    pub fn new<'a>(
        annotations: &BTreeMap<String, String>,
        namespace: &str,
        ingress: &str,
        secret: impl Fn(&str) -> Option<&'a BTreeMap<String, ByteString>>,
    ) -> (Self, Vec<Issue>) {
        let (settings, errors) = backend::parse(annotations, namespace);
        let mut issues: Vec<Issue> = errors.into_iter().map(Issue::Backend).collect();
        let tls = settings.protocol.tls().then(|| {
            client_config(&settings, namespace, secret).inspect_err(|why| {
                issues.push(Issue::BackendTls { why: why.clone() });
            })
        });
        (
            Self {
                settings,
                tls,
                ingress: ingress.to_string(),
                plain: Arc::new(Via {
                    ingress: ingress.to_string(),
                    ..Via::default()
                }),
            },
            issues,
        )
    }

    /// How to reach Service `service` in `namespace`.
    pub fn via(&self, namespace: &str, service: &str) -> Arc<Via> {
        let s = &self.settings;
        if s.is_default() {
            return self.plain.clone();
        }
        let (tls, tls_error) = match &self.tls {
            None => (None, None),
            Some(Err(why)) => (None, Some(why.clone())),
            Some(Ok(config)) => {
                // Without proxy-ssl-name, the Service's cluster DNS name.
                let name = s
                    .ssl_name
                    .clone()
                    .unwrap_or_else(|| format!("{service}.{namespace}.svc"));
                match ServerName::try_from(name.clone()) {
                    Ok(name) => (
                        Some(Arc::new(UpstreamTls {
                            config: config.clone(),
                            name,
                        })),
                        None,
                    ),
                    Err(e) => (
                        None,
                        Some(format!("{name:?} is not a TLS server name: {e}")),
                    ),
                }
            }
        };
        Arc::new(Via {
            protocol: s.protocol,
            tls,
            tls_error,
            body_size: s.body_size,
            connect_timeout: s.connect_timeout,
            read_timeout: s.read_timeout,
            send_timeout: s.send_timeout,
            ingress: self.ingress.clone(),
        })
    }
}

/// Client configurations by a digest of what they were built from: a
/// rebuilt snapshot whose backend TLS settings did not change gets the same
/// configuration, so the workers' pools keep their connections.
static CONFIGS: Mutex<BTreeMap<[u8; 32], Weak<rustls::ClientConfig>>> = Mutex::new(BTreeMap::new());

/// The TLS client configuration the settings ask for, shared with earlier
/// snapshots when nothing it is built from changed.
fn client_config<'a>(
    s: &BackendSettings,
    namespace: &str,
    secret: impl Fn(&str) -> Option<&'a BTreeMap<String, ByteString>>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(format!(
        "{:?}|{:?}|{:?}|{}",
        s.protocol, s.ssl_verify, s.ssl_server_name, namespace
    ));
    if let Some(r) = &s.ssl_secret {
        h.update(r.name.as_bytes());
        for (k, v) in secret(&r.name).into_iter().flatten() {
            if matches!(k.as_str(), "ca.crt" | "tls.crt" | "tls.key") {
                h.update([0]);
                h.update(k.as_bytes());
                h.update((v.0.len() as u64).to_be_bytes());
                h.update(&v.0);
            }
        }
    }
    let digest: [u8; 32] = h.finalize().into();
    let mut cache = CONFIGS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(cfg) = cache.get(&digest).and_then(Weak::upgrade) {
        return Ok(cfg);
    }
    let cfg = build_client_config(s, namespace, secret)?;
    cache.retain(|_, w| w.strong_count() > 0);
    cache.insert(digest, Arc::downgrade(&cfg));
    Ok(cfg)
}

/// Builds the TLS client configuration the settings ask for.
fn build_client_config<'a>(
    s: &BackendSettings,
    namespace: &str,
    secret: impl Fn(&str) -> Option<&'a BTreeMap<String, ByteString>>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let key = backend::PROXY_SSL_SECRET;
    let mut client = None;
    let mut anchors = None;
    if let Some(r) = &s.ssl_secret {
        let id = format!("{namespace}/{}", r.name);
        let data = secret(&r.name).ok_or_else(|| format!("{key}: Secret {id} not found"))?;
        let get = |k: &str| data.get(k).map(|b| b.0.as_slice());
        if let Some(ca) = get("ca.crt") {
            let certs = tls::pem_certificates(ca).map_err(|(block, why)| {
                format!("{key}: Secret {id} ca.crt PEM block {block}: {why}")
            })?;
            anchors = Some(certs);
        }
        match (get("tls.crt"), get("tls.key")) {
            (Some(crt), Some(k)) => {
                let chain = tls::pem_certificates(crt).map_err(|(block, why)| {
                    format!("{key}: Secret {id} tls.crt PEM block {block}: {why}")
                })?;
                if chain.is_empty() {
                    return Err(format!("{key}: Secret {id} tls.crt holds no certificate"));
                }
                let pk = PrivateKeyDer::from_pem_slice(k)
                    .map_err(|why| format!("{key}: Secret {id} tls.key: {why}"))?;
                client = Some((chain, pk));
            }
            (None, None) => {}
            _ => {
                return Err(format!(
                    "{key}: Secret {id} has only one of tls.crt and tls.key; a client certificate needs both"
                ));
            }
        }
        if anchors.is_none() && s.ssl_verify {
            return Err(format!(
                "{key}: Secret {id} has no ca.crt to verify the backend with; add it, or set {} to \"off\"",
                backend::PROXY_SSL_VERIFY
            ));
        }
    }
    let roots = match (s.ssl_verify, anchors) {
        (false, _) => UpstreamRoots::Unverified,
        (true, Some(a)) => UpstreamRoots::Anchors(a),
        (true, None) => UpstreamRoots::System,
    };
    let alpn: &[&[u8]] = match s.protocol {
        Protocol::Grpcs => &[b"h2"],
        _ => &[b"http/1.1"],
    };
    tls::upstream_client_config(roots, client, s.ssl_server_name, alpn)
        .map_err(|e| format!("{key}: {e}"))
}
