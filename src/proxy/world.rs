//! The objects the proxy serves from, as plain data. Both sources (a
//! directory of manifests, or Kubernetes watches) produce a `World`; the
//! snapshot builder turns it into routing and TLS state.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::Value;

use super::problem::{Issue, Problem};

use crate::admission::DEFAULT_NAMESPACE;
use crate::clientauth::ClientAuthPolicy;
use crate::manifests::Document;

/// Every object kind the proxy reads.
#[derive(Clone, Debug, Default)]
pub struct World {
    /// Ingresses (all classes; the builder filters).
    pub ingresses: Vec<Ingress>,
    /// TLS Secrets and CA sources.
    pub secrets: Vec<Secret>,
    /// CA sources.
    pub config_maps: Vec<ConfigMap>,
    /// Client-auth policies.
    pub policies: Vec<ClientAuthPolicy>,
    /// Services (for ports and the `tlsward.io/upstream` shortcut).
    pub services: Vec<Service>,
    /// Endpoints of Services.
    pub endpoint_slices: Vec<EndpointSlice>,
    /// Whether a Service may name its endpoints with `tlsward.io/upstream`.
    /// Only in directory mode, where whoever writes the directory runs the
    /// proxy. From Kubernetes, anyone allowed to edit a Service could point
    /// the proxy at any address it reaches (a cloud metadata endpoint, the
    /// API server), so there endpoints come from EndpointSlices only.
    pub upstream_annotation_trusted: bool,
}

fn decode<T: serde::de::DeserializeOwned>(doc: &Document) -> Result<T, Problem> {
    serde_json::from_value(doc.value.clone()).map_err(|e| Problem {
        object: format!("{} document {}", doc.source, doc.index),
        issue: Issue::Undecodable {
            kind: doc.type_meta().1.to_string(),
            why: Arc::new(e),
        },
    })
}

fn default_namespace(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    meta.namespace
        .get_or_insert_with(|| DEFAULT_NAMESPACE.to_string());
}

/// A Secret written with `stringData`, as the API server stores it: merged
/// into `data`.
fn secret_from(value: &Value, doc: &Document) -> Result<Secret, Problem> {
    let mut secret: Secret = decode(doc)?;
    if let Some(string_data) = value.get("stringData").and_then(Value::as_object) {
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (k, v) in string_data {
            if let Some(s) = v.as_str() {
                data.insert(k.clone(), ByteString(s.as_bytes().to_vec()));
            }
        }
    }
    Ok(secret)
}

impl World {
    /// Sorts manifests into a world. Documents of other kinds are ignored;
    /// undecodable ones are reported and left out.
    pub fn from_documents(docs: &[Document]) -> (World, Vec<Problem>) {
        let mut w = World {
            upstream_annotation_trusted: true,
            ..World::default()
        };
        let mut problems = Vec::new();
        for doc in docs {
            let (api_version, kind) = doc.type_meta();
            let group = api_version.split_once('/').map_or("", |(g, _)| g);
            let result = match (group, kind) {
                ("networking.k8s.io", "Ingress") => decode::<Ingress>(doc).map(|mut o| {
                    default_namespace(&mut o.metadata);
                    w.ingresses.push(o);
                }),
                ("", "Secret") => secret_from(&doc.value, doc).map(|mut o| {
                    default_namespace(&mut o.metadata);
                    w.secrets.push(o);
                }),
                ("", "ConfigMap") => decode::<ConfigMap>(doc).map(|mut o| {
                    default_namespace(&mut o.metadata);
                    w.config_maps.push(o);
                }),
                ("", "Service") => decode::<Service>(doc).map(|mut o| {
                    default_namespace(&mut o.metadata);
                    w.services.push(o);
                }),
                ("discovery.k8s.io", "EndpointSlice") => {
                    decode::<EndpointSlice>(doc).map(|mut o| {
                        default_namespace(&mut o.metadata);
                        w.endpoint_slices.push(o);
                    })
                }
                ("tlsward.io", "ClientAuthPolicy") => {
                    decode::<ClientAuthPolicy>(doc).map(|mut o| {
                        default_namespace(&mut o.metadata);
                        w.policies.push(o);
                    })
                }
                _ => Ok(()),
            };
            if let Err(p) = result {
                problems.push(p);
            }
        }
        (w, problems)
    }
}
