//! The webhook's own serving certificate, with nothing preinstalled: a CA
//! and a serving certificate kept in a Secret (created by whichever replica
//! gets there first), the CA bundle patched into the webhook
//! configurations, and both rotated before they expire.
//!
//! Rotation never breaks a request: a new CA is added to the caBundle next
//! to the old one before any certificate it signed is served.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use tracing::{info, warn};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::tls::SwappableCert;

/// How long the CA lives (5 years) and when it is replaced (at 2/3).
pub const CA_LIFETIME_SECS: i64 = 5 * 365 * 86_400;
/// How long a serving certificate lives (90 days); renewed at 2/3.
pub const LEAF_LIFETIME_SECS: i64 = 90 * 86_400;

/// The Secret's keys.
const CA_CRT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const BUNDLE: &str = "ca-bundle.crt";
const TLS_CRT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";

/// The material kept in the Secret, as PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pki {
    /// The current CA.
    pub ca_crt: String,
    /// Its key.
    pub ca_key: String,
    /// What the API server must trust: the current CA, plus the previous
    /// one while certificates it signed may still be served.
    pub ca_bundle: String,
    /// The serving certificate.
    pub tls_crt: String,
    /// Its key.
    pub tls_key: String,
}

/// What to do with the stored material.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Keep it.
    Keep,
    /// New serving certificate from the same CA.
    RenewLeaf,
    /// New CA (the old one stays in the bundle while it is valid) and a new
    /// serving certificate.
    RenewCa,
}

fn validity(pem: &str) -> Option<(i64, i64, Vec<String>)> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, c) = X509Certificate::from_der(der.as_ref()).ok()?;
    let names = c
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some((
        c.validity().not_before.timestamp(),
        c.validity().not_after.timestamp(),
        names,
    ))
}

fn past_two_thirds(not_before: i64, not_after: i64, now: i64) -> bool {
    now >= not_before + (not_after - not_before) * 2 / 3
}

/// Decides whether stored material is still good for `dns_names` at `now`.
pub fn plan(pki: &Pki, dns_names: &[String], now: i64) -> Plan {
    let Some((ca_from, ca_to, _)) = validity(&pki.ca_crt) else {
        return Plan::RenewCa;
    };
    if past_two_thirds(ca_from, ca_to, now) || KeyPair::from_pem(&pki.ca_key).is_err() {
        return Plan::RenewCa;
    }
    let Some((from, to, names)) = validity(&pki.tls_crt) else {
        return Plan::RenewLeaf;
    };
    let mut want = dns_names.to_vec();
    want.sort();
    let mut have = names;
    have.sort();
    if past_two_thirds(from, to, now) || want != have {
        Plan::RenewLeaf
    } else {
        Plan::Keep
    }
}

/// Why the webhook's certificate could not be made, stored or served. The
/// served certificate stays as it was; the next pass tries again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SelfSignedError {
    /// A validity bound is outside the range a certificate can hold (a
    /// clock far off).
    #[error("certificate validity at Unix time {unix}: {source}")]
    Validity {
        /// The bound, in seconds since the epoch.
        unix: i64,
        /// Why `time` refused it.
        source: time::error::ComponentRange,
    },
    /// rcgen could not make a key, read the stored CA, or sign.
    #[error("generating the webhook certificate: {0}")]
    Generate(#[source] rcgen::Error),
    /// The webhook configurations could not be read.
    #[error("reading webhook configurations {configs:?}: {source}")]
    ReadConfigs {
        /// The configurations' names.
        configs: Vec<String>,
        /// The API error.
        source: kube::Error,
    },
    /// No webhook in the configurations calls a Service, so there is no
    /// name to certify.
    #[error(
        "no webhook in the configurations {configs:?} names a Service: set clientConfig.service"
    )]
    NoService {
        /// The configurations' names.
        configs: Vec<String>,
    },
    /// Reading or writing the Secret failed.
    #[error("Secret {namespace}/{name}: {source}")]
    Secret {
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// The stored Secret lacks some of its keys.
    #[error(
        "Secret {namespace}/{name} lacks keys {CA_CRT}, {CA_KEY}, {TLS_CRT} or {TLS_KEY}: delete it and the webhook recreates it"
    )]
    Incomplete {
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
    },
    /// Another replica won a create or update race with a Secret that lacks
    /// some of its keys.
    #[error(
        "Secret {namespace}/{name}, written by another replica, lacks keys {CA_CRT}, {CA_KEY}, {TLS_CRT} or {TLS_KEY}: delete it and the webhook recreates it"
    )]
    TheirsIncomplete {
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
    },
    /// The caBundle could not be patched into the webhook configurations.
    #[error("patching the caBundle of webhook configurations {configs:?}: {source}")]
    Inject {
        /// The configurations' names.
        configs: Vec<String>,
        /// The API error.
        source: kube::Error,
    },
    /// The stored certificate and key do not make a pair rustls can serve.
    #[error("Secret {namespace}/{name}: {source}")]
    Serve {
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// Why the pair was refused (boxed: it is much larger than the
        /// other variants).
        source: Box<crate::tls::CertError>,
    },
}

fn time(unix: i64) -> Result<time::OffsetDateTime, SelfSignedError> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|source| SelfSignedError::Validity { unix, source })
}

fn ca_params(now: i64) -> Result<CertificateParams, SelfSignedError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(SelfSignedError::Generate)?;
    p.distinguished_name
        .push(DnType::CommonName, format!("tlsward webhook CA {now}"));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // Tolerate clock skew between nodes.
    p.not_before = time(now - 3600)?;
    p.not_after = time(now + CA_LIFETIME_SECS)?;
    Ok(p)
}

fn leaf(
    ca_crt: &str,
    ca_key: &str,
    dns_names: &[String],
    now: i64,
) -> Result<(String, String), SelfSignedError> {
    let key = KeyPair::from_pem(ca_key).map_err(SelfSignedError::Generate)?;
    let issuer = Issuer::from_ca_cert_pem(ca_crt, key).map_err(SelfSignedError::Generate)?;
    let mut p = CertificateParams::new(dns_names.to_vec()).map_err(SelfSignedError::Generate)?;
    p.distinguished_name.push(
        DnType::CommonName,
        dns_names.first().cloned().unwrap_or_default(),
    );
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.not_before = time(now - 3600)?;
    p.not_after = time(now + LEAF_LIFETIME_SECS)?;
    let leaf_key = KeyPair::generate().map_err(SelfSignedError::Generate)?;
    let cert = p
        .signed_by(&leaf_key, &issuer)
        .map_err(SelfSignedError::Generate)?;
    Ok((cert.pem(), leaf_key.serialize_pem()))
}

/// Produces the material `plan` asks for.
pub fn renew(
    previous: Option<&Pki>,
    plan: &Plan,
    dns_names: &[String],
    now: i64,
) -> Result<Pki, SelfSignedError> {
    match (previous, plan) {
        (Some(p), Plan::Keep) => Ok(p.clone()),
        (Some(p), Plan::RenewLeaf) => {
            let (tls_crt, tls_key) = leaf(&p.ca_crt, &p.ca_key, dns_names, now)?;
            Ok(Pki {
                tls_crt,
                tls_key,
                ..p.clone()
            })
        }
        _ => {
            let key = KeyPair::generate().map_err(SelfSignedError::Generate)?;
            let ca_crt = ca_params(now)?
                .self_signed(&key)
                .map_err(SelfSignedError::Generate)?
                .pem();
            let ca_key = key.serialize_pem();
            let (tls_crt, tls_key) = leaf(&ca_crt, &ca_key, dns_names, now)?;
            // The old CA stays trusted while it is valid, so the replicas
            // still serving its certificates keep working.
            let old = previous
                .filter(|p| validity(&p.ca_crt).is_some_and(|(_, to, _)| to > now))
                .map(|p| p.ca_crt.clone())
                .unwrap_or_default();
            Ok(Pki {
                ca_bundle: format!("{ca_crt}{old}"),
                ca_crt,
                ca_key,
                tls_crt,
                tls_key,
            })
        }
    }
}

impl Pki {
    fn from_secret(s: &Secret) -> Option<Self> {
        let data = s.data.as_ref()?;
        let get = |k: &str| {
            data.get(k)
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        };
        Some(Self {
            ca_crt: get(CA_CRT)?,
            ca_key: get(CA_KEY)?,
            ca_bundle: get(BUNDLE).or_else(|| get(CA_CRT))?,
            tls_crt: get(TLS_CRT)?,
            tls_key: get(TLS_KEY)?,
        })
    }

    fn data(&self) -> BTreeMap<String, ByteString> {
        [
            (CA_CRT, &self.ca_crt),
            (CA_KEY, &self.ca_key),
            (BUNDLE, &self.ca_bundle),
            (TLS_CRT, &self.tls_crt),
            (TLS_KEY, &self.tls_key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
    }
}

/// Where the certificate lives and what it must cover.
#[derive(Clone, Debug)]
pub struct SelfSigned {
    /// The Secret's namespace.
    pub namespace: String,
    /// The Secret's name.
    pub secret: String,
    /// Names of the Validating and Mutating webhook configurations to patch.
    pub configs: Vec<String>,
}

/// Both webhook configuration kinds, seen as their webhooks' clientConfigs.
trait WebhookConfiguration:
    kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned
{
    fn client_configs(&self) -> Vec<&WebhookClientConfig>;
}

impl WebhookConfiguration for ValidatingWebhookConfiguration {
    fn client_configs(&self) -> Vec<&WebhookClientConfig> {
        self.webhooks
            .iter()
            .flatten()
            .map(|w| &w.client_config)
            .collect()
    }
}

impl WebhookConfiguration for MutatingWebhookConfiguration {
    fn client_configs(&self) -> Vec<&WebhookClientConfig> {
        self.webhooks
            .iter()
            .flatten()
            .map(|w| &w.client_config)
            .collect()
    }
}

/// The named configurations of one kind that exist.
async fn existing<K: WebhookConfiguration>(
    client: &Client,
    names: &[String],
) -> Result<Vec<K>, kube::Error> {
    let api: Api<K> = Api::all(client.clone());
    let mut out = Vec::new();
    for name in names {
        out.extend(api.get_opt(name).await?);
    }
    Ok(out)
}

/// The DNS names of the Service the configurations call.
async fn service_names(client: &Client, configs: &[String]) -> Result<Vec<String>, kube::Error> {
    let validating: Vec<ValidatingWebhookConfiguration> = existing(client, configs).await?;
    let mutating: Vec<MutatingWebhookConfiguration> = existing(client, configs).await?;
    let services = validating
        .iter()
        .flat_map(WebhookConfiguration::client_configs)
        .chain(
            mutating
                .iter()
                .flat_map(WebhookConfiguration::client_configs),
        )
        .filter_map(|c| c.service.as_ref());
    let mut names: Vec<String> = services
        .flat_map(|s| {
            let (n, ns) = (&s.name, &s.namespace);
            [
                n.clone(),
                format!("{n}.{ns}"),
                format!("{n}.{ns}.svc"),
                format!("{n}.{ns}.svc.cluster.local"),
            ]
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Gets or creates the Secret; on a create race, the winner's Secret is used.
async fn current(
    client: &Client,
    cfg: &SelfSigned,
    dns: &[String],
    now: i64,
) -> Result<Pki, SelfSignedError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &cfg.namespace);
    let api_error = |source| SelfSignedError::Secret {
        namespace: cfg.namespace.clone(),
        name: cfg.secret.clone(),
        source,
    };
    let theirs_incomplete = || SelfSignedError::TheirsIncomplete {
        namespace: cfg.namespace.clone(),
        name: cfg.secret.clone(),
    };
    let existing = secrets.get_opt(&cfg.secret).await.map_err(api_error)?;
    match existing {
        None => {
            let pki = renew(None, &Plan::RenewCa, dns, now)?;
            let s = Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some(cfg.secret.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/managed-by".to_string(),
                        "tlsward".to_string(),
                    )])),
                    ..Default::default()
                },
                type_: Some("Opaque".into()),
                data: Some(pki.data()),
                ..Default::default()
            };
            match secrets.create(&PostParams::default(), &s).await {
                Ok(_) => {
                    info!(secret = %cfg.secret, "created the webhook's CA and serving certificate");
                    Ok(pki)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    // Another replica created it first: use theirs.
                    let theirs = secrets.get(&cfg.secret).await.map_err(api_error)?;
                    Pki::from_secret(&theirs).ok_or_else(theirs_incomplete)
                }
                Err(e) => Err(api_error(e)),
            }
        }
        Some(s) => {
            let Some(stored) = Pki::from_secret(&s) else {
                return Err(SelfSignedError::Incomplete {
                    namespace: cfg.namespace.clone(),
                    name: cfg.secret.clone(),
                });
            };
            let p = plan(&stored, dns, now);
            if p == Plan::Keep {
                return Ok(stored);
            }
            let next = renew(Some(&stored), &p, dns, now)?;
            let mut updated = s.clone();
            updated.data = Some(next.data());
            match secrets
                .replace(&cfg.secret, &PostParams::default(), &updated)
                .await
            {
                Ok(_) => {
                    info!(plan = ?p, "rotated the webhook certificate");
                    Ok(next)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    // Another replica rotated first (resourceVersion moved).
                    let theirs = secrets.get(&cfg.secret).await.map_err(api_error)?;
                    Pki::from_secret(&theirs).ok_or_else(theirs_incomplete)
                }
                Err(e) => Err(api_error(e)),
            }
        }
    }
}

fn patch_for(webhooks: &[Option<String>], bundle_b64: &str) -> Option<json_patch::Patch> {
    let ops: Vec<serde_json::Value> = webhooks
        .iter()
        .enumerate()
        .filter(|(_, have)| have.as_deref() != Some(bundle_b64))
        .map(|(i, _)| json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle_b64}))
        .collect();
    (!ops.is_empty())
        .then(|| serde_json::from_value(json!(ops)).ok())
        .flatten()
}

/// Puts the CA bundle into every webhook of the named configurations of
/// one kind, patching only those whose caBundle differs.
async fn inject_kind<K: WebhookConfiguration>(
    client: &Client,
    configs: &[String],
    b64: &str,
) -> Result<(), kube::Error> {
    let api: Api<K> = Api::all(client.clone());
    for c in existing::<K>(client, configs).await? {
        let have: Vec<Option<String>> = c
            .client_configs()
            .iter()
            .map(|cc| {
                cc.ca_bundle
                    .as_ref()
                    .map(|b| base64::engine::general_purpose::STANDARD.encode(&b.0))
            })
            .collect();
        if let Some(p) = patch_for(&have, b64) {
            let name = c.meta().name.clone().unwrap_or_default();
            api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(p))
                .await?;
            info!(config = %name, kind = %K::kind(&()), "caBundle patched");
        }
    }
    Ok(())
}

/// Puts the CA bundle into every webhook of the named configurations.
async fn inject(client: &Client, configs: &[String], bundle: &str) -> Result<(), kube::Error> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bundle);
    inject_kind::<ValidatingWebhookConfiguration>(client, configs, &b64).await?;
    inject_kind::<MutatingWebhookConfiguration>(client, configs, &b64).await
}

/// What the previous passes did, so a new CA is trusted before it is used.
#[derive(Debug, Default)]
pub struct Rotation {
    /// The CA whose certificate is being served.
    served_ca: Option<String>,
    /// The bundle injected by the previous pass.
    injected: Option<String>,
}

/// One pass: make sure the Secret is current, the bundle is injected, and
/// the served certificate is the stored one. A certificate from a new CA is
/// served only once its bundle has been in the configurations for a whole
/// pass, so the API server trusts it before it sees it.
pub async fn sync(
    client: &Client,
    cfg: &SelfSigned,
    served: &SwappableCert,
    state: &mut Rotation,
    now: i64,
) -> Result<Pki, SelfSignedError> {
    let dns = service_names(client, &cfg.configs)
        .await
        .map_err(|source| SelfSignedError::ReadConfigs {
            configs: cfg.configs.clone(),
            source,
        })?;
    if dns.is_empty() {
        return Err(SelfSignedError::NoService {
            configs: cfg.configs.clone(),
        });
    }
    let pki = current(client, cfg, &dns, now).await?;
    inject(client, &cfg.configs, &pki.ca_bundle)
        .await
        .map_err(|source| SelfSignedError::Inject {
            configs: cfg.configs.clone(),
            source,
        })?;
    let may_serve = match &state.served_ca {
        None => true,
        Some(ca) if *ca == pki.ca_crt => true,
        Some(_) => state.injected.as_deref() == Some(pki.ca_bundle.as_str()),
    };
    state.injected = Some(pki.ca_bundle.clone());
    if may_serve {
        let pair = crate::tls::certified_key_from_pem(
            pki.tls_crt.as_bytes(),
            pki.tls_key.as_bytes(),
            TLS_CRT,
            TLS_KEY,
        )
        .map_err(|source| SelfSignedError::Serve {
            namespace: cfg.namespace.clone(),
            name: cfg.secret.clone(),
            source: Box::new(source),
        })?;
        served.store(pair);
        state.served_ca = Some(pki.ca_crt.clone());
    }
    Ok(pki)
}

/// Keeps the certificate current for as long as the webhook runs.
pub async fn run(
    client: Client,
    cfg: SelfSigned,
    served: Arc<SwappableCert>,
    mut state: Rotation,
    now: fn() -> i64,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = sync(&client, &cfg, &served, &mut state, now()).await {
            warn!(error = %e, "webhook certificate not synced; retrying in a minute");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::testing::{Scripted, status};

    const NOW: i64 = 1_795_392_000;
    const V: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/tlsward";
    const M: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/tlsward";
    const S: &str = "/api/v1/namespaces/tlsward/secrets/tlsward-webhook-tls";

    fn dns() -> Vec<String> {
        [
            "tlsward-webhook",
            "tlsward-webhook.tlsward",
            "tlsward-webhook.tlsward.svc",
            "tlsward-webhook.tlsward.svc.cluster.local",
        ]
        .map(String::from)
        .to_vec()
    }

    fn config(kind: &str, bundle: Option<&str>) -> Value {
        let cc = |path: &str| {
            let mut c = json!({"service": {"name": "tlsward-webhook", "namespace": "tlsward", "path": path, "port": 443}});
            if let Some(b) = bundle {
                c["caBundle"] = json!(base64::engine::general_purpose::STANDARD.encode(b));
            }
            c
        };
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": "tlsward"},
               "webhooks": [{"name": "ingress-tls.tlsward.io", "clientConfig": cc("/validate"),
                             "sideEffects": "None", "admissionReviewVersions": ["v1"]}]})
    }

    fn secret(p: &Pki) -> Value {
        let data: serde_json::Map<String, Value> = p
            .data()
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(&v.0)),
                )
            })
            .collect();
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tlsward-webhook-tls", "namespace": "tlsward", "resourceVersion": "5"},
               "type": "Opaque", "data": data})
    }

    fn cfg() -> SelfSigned {
        SelfSigned {
            namespace: "tlsward".into(),
            secret: "tlsward-webhook-tls".into(),
            configs: vec!["tlsward".into()],
        }
    }

    fn placeholder() -> Arc<SwappableCert> {
        let p = renew(None, &Plan::RenewCa, &["placeholder".to_string()], NOW).unwrap();
        SwappableCert::new(
            crate::tls::certified_key_from_pem(
                p.tls_crt.as_bytes(),
                p.tls_key.as_bytes(),
                "c",
                "k",
            )
            .unwrap(),
        )
    }

    fn served_pem(s: &SwappableCert) -> Vec<u8> {
        s.current().cert[0].as_ref().to_vec()
    }

    fn der(pem: &str) -> Vec<u8> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    fn decode_patch_bundle(patch: &Value) -> String {
        let b = patch[0]["value"].as_str().unwrap();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
    }

    async fn service_lookup(api: &mut Scripted, bundle: Option<&str>) {
        api.expect(
            "GET",
            V,
            200,
            config("ValidatingWebhookConfiguration", bundle),
        )
        .await;
        api.expect(
            "GET",
            M,
            200,
            config("MutatingWebhookConfiguration", bundle),
        )
        .await;
    }

    #[test]
    fn plan_table() {
        let p = renew(None, &Plan::RenewCa, &dns(), NOW).unwrap();
        assert_eq!(plan(&p, &dns(), NOW), Plan::Keep);
        assert_eq!(plan(&p, &dns(), NOW + 59 * 86_400), Plan::Keep);
        assert_eq!(
            plan(&p, &dns(), NOW + 61 * 86_400),
            Plan::RenewLeaf,
            "2/3 of 90 days"
        );
        assert_eq!(
            plan(&p, &["other".to_string()], NOW),
            Plan::RenewLeaf,
            "Service renamed"
        );
        assert_eq!(
            plan(&p, &dns(), NOW + CA_LIFETIME_SECS * 2 / 3),
            Plan::RenewCa
        );
        let broken = Pki {
            ca_crt: "junk".into(),
            ..p
        };
        assert_eq!(plan(&broken, &dns(), NOW), Plan::RenewCa);
    }

    #[tokio::test]
    async fn first_start_creates_the_secret_and_injects_the_bundle() {
        let (client, mut api) = Scripted::new();
        let served = placeholder();
        let task = {
            let served = served.clone();
            tokio::spawn(async move {
                sync(&client, &cfg(), &served, &mut Rotation::default(), NOW).await
            })
        };
        service_lookup(&mut api, None).await;
        api.expect(
            "GET",
            S,
            404,
            status(404, "NotFound", "secrets \"tlsward-webhook-tls\" not found"),
        )
        .await;
        let created = api
            .expect(
                "POST",
                "/api/v1/namespaces/tlsward/secrets?",
                201,
                json!({}),
            )
            .await;
        assert_eq!(created["metadata"]["name"], "tlsward-webhook-tls");
        assert_eq!(created["type"], "Opaque");
        let v = api
            .expect(
                "GET",
                V,
                200,
                config("ValidatingWebhookConfiguration", None),
            )
            .await;
        assert!(v.is_null());
        let vp = api.expect("PATCH", &format!("{V}?"), 200, json!({})).await;
        api.expect("GET", M, 200, config("MutatingWebhookConfiguration", None))
            .await;
        let mp = api.expect("PATCH", &format!("{M}?"), 200, json!({})).await;
        let pki = task.await.unwrap().unwrap();
        api.expect_no_more().await;

        assert_eq!(vp[0]["op"], "add");
        assert_eq!(vp[0]["path"], "/webhooks/0/clientConfig/caBundle");
        assert_eq!(decode_patch_bundle(&vp), pki.ca_bundle);
        assert_eq!(decode_patch_bundle(&mp), pki.ca_bundle);
        let stored = |k: &str| {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(created["data"][k].as_str().unwrap())
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(stored("tls.crt"), pki.tls_crt);
        assert_eq!(
            served_pem(&served),
            der(&pki.tls_crt),
            "the stored certificate is served"
        );
        let (_, _, mut names) = validity(&pki.tls_crt).unwrap();
        names.sort();
        assert_eq!(names, dns());
    }

    #[tokio::test]
    async fn losing_the_create_race_uses_the_winners_secret() {
        let (client, mut api) = Scripted::new();
        let winner = renew(None, &Plan::RenewCa, &dns(), NOW).unwrap();
        let served = placeholder();
        let task = {
            let served = served.clone();
            tokio::spawn(async move {
                sync(&client, &cfg(), &served, &mut Rotation::default(), NOW).await
            })
        };
        service_lookup(&mut api, None).await;
        api.expect("GET", S, 404, status(404, "NotFound", "not found"))
            .await;
        api.expect(
            "POST",
            "/api/v1/namespaces/tlsward/secrets?",
            409,
            status(409, "AlreadyExists", "already exists"),
        )
        .await;
        api.expect("GET", S, 200, secret(&winner)).await;
        api.expect(
            "GET",
            V,
            200,
            config("ValidatingWebhookConfiguration", None),
        )
        .await;
        let vp = api.expect("PATCH", &format!("{V}?"), 200, json!({})).await;
        api.expect(
            "GET",
            M,
            200,
            config("MutatingWebhookConfiguration", Some(&winner.ca_bundle)),
        )
        .await;
        let pki = task.await.unwrap().unwrap();
        api.expect_no_more().await;
        assert_eq!(pki, winner);
        assert_eq!(decode_patch_bundle(&vp), winner.ca_bundle);
        assert_eq!(served_pem(&served), der(&winner.tls_crt));
    }

    #[tokio::test]
    async fn steady_state_writes_nothing() {
        let (client, mut api) = Scripted::new();
        let pki = renew(None, &Plan::RenewCa, &dns(), NOW).unwrap();
        let task = tokio::spawn(async move {
            sync(
                &client,
                &cfg(),
                &placeholder(),
                &mut Rotation::default(),
                NOW + 86_400,
            )
            .await
        });
        service_lookup(&mut api, Some(&pki.ca_bundle)).await;
        api.expect("GET", S, 200, secret(&pki)).await;
        service_lookup(&mut api, Some(&pki.ca_bundle)).await;
        task.await.unwrap().unwrap();
        api.expect_no_more().await;
        assert!(
            api.seen.iter().all(|r| r.starts_with("GET ")),
            "{:?}",
            api.seen
        );
    }

    #[tokio::test]
    async fn leaf_renews_at_two_thirds_and_is_served_at_once() {
        let (client, mut api) = Scripted::new();
        let pki = renew(None, &Plan::RenewCa, &dns(), NOW).unwrap();
        let served = placeholder();
        let later = NOW + 61 * 86_400;
        let task = {
            let served = served.clone();
            tokio::spawn(async move {
                sync(&client, &cfg(), &served, &mut Rotation::default(), later).await
            })
        };
        service_lookup(&mut api, Some(&pki.ca_bundle)).await;
        api.expect("GET", S, 200, secret(&pki)).await;
        let put = api.expect("PUT", &format!("{S}?"), 200, json!({})).await;
        service_lookup(&mut api, Some(&pki.ca_bundle)).await;
        let next = task.await.unwrap().unwrap();
        api.expect_no_more().await;
        assert_eq!(
            put["metadata"]["resourceVersion"], "5",
            "optimistic concurrency"
        );
        assert_eq!(next.ca_crt, pki.ca_crt, "same CA");
        assert_ne!(next.tls_crt, pki.tls_crt);
        assert_eq!(served_pem(&served), der(&next.tls_crt));
        let (from, to, _) = validity(&next.tls_crt).unwrap();
        assert!(from <= later && to > later + 80 * 86_400);
    }

    #[tokio::test]
    async fn ca_rotation_trusts_both_before_serving_the_new_one() {
        let (client, mut api) = Scripted::new();
        let old = renew(None, &Plan::RenewCa, &dns(), NOW).unwrap();
        let served = placeholder();
        let mut state = Rotation::default();
        // Serving the old material first.
        let first = {
            let (served, client) = (served.clone(), client.clone());
            tokio::spawn(async move {
                let r = sync(&client, &cfg(), &served, &mut state, NOW).await;
                (r, state)
            })
        };
        service_lookup(&mut api, Some(&old.ca_bundle)).await;
        api.expect("GET", S, 200, secret(&old)).await;
        service_lookup(&mut api, Some(&old.ca_bundle)).await;
        let (_, mut state) = first.await.unwrap();
        assert_eq!(served_pem(&served), der(&old.tls_crt));

        // Two thirds into the CA's life: new CA, both in the bundle.
        let late = NOW + CA_LIFETIME_SECS * 2 / 3 + 1;
        let second = {
            let (served, client) = (served.clone(), client.clone());
            tokio::spawn(async move {
                let r = sync(&client, &cfg(), &served, &mut state, late).await;
                (r, state)
            })
        };
        service_lookup(&mut api, Some(&old.ca_bundle)).await;
        api.expect("GET", S, 200, secret(&old)).await;
        api.expect("PUT", &format!("{S}?"), 200, json!({})).await;
        api.expect(
            "GET",
            V,
            200,
            config("ValidatingWebhookConfiguration", Some(&old.ca_bundle)),
        )
        .await;
        let vp = api.expect("PATCH", &format!("{V}?"), 200, json!({})).await;
        api.expect(
            "GET",
            M,
            200,
            config("MutatingWebhookConfiguration", Some(&old.ca_bundle)),
        )
        .await;
        api.expect("PATCH", &format!("{M}?"), 200, json!({})).await;
        let (r, mut state) = second.await.unwrap();
        let new = r.unwrap();
        let bundle = decode_patch_bundle(&vp);
        assert!(
            bundle.contains(&new.ca_crt) && bundle.contains(&old.ca_crt),
            "both CAs trusted"
        );
        assert_eq!(
            served_pem(&served),
            der(&old.tls_crt),
            "the new CA's certificate waits a pass"
        );

        // Next pass: the bundle has been in place; the new certificate is served.
        let third = {
            let served = served.clone();
            tokio::spawn(async move { sync(&client, &cfg(), &served, &mut state, late + 60).await })
        };
        service_lookup(&mut api, Some(&new.ca_bundle)).await;
        api.expect("GET", S, 200, secret(&new)).await;
        service_lookup(&mut api, Some(&new.ca_bundle)).await;
        third.await.unwrap().unwrap();
        api.expect_no_more().await;
        assert_eq!(served_pem(&served), der(&new.tls_crt));
    }
}
