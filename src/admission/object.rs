//! The part of an Ingress that admission reads, borrowed from wherever the
//! Ingress came from: a typed `k8s_openapi` Ingress (`check`, tests), or the
//! JSON of an AdmissionReview (the webhook).
//!
//! Why not the `k8s_openapi` type everywhere: decoding a whole Ingress
//! copies every string and builds maps nobody reads (`managedFields`, the
//! `last-applied-configuration` annotation, backends). On the webhook's hot
//! path that cost more than the policy itself. Decoded here,
//! strings without JSON escapes are borrowed from the request body, and
//! unread fields are skipped. The API server has already decoded the object
//! against its schema before any webhook sees it, so skipping unread fields
//! loses no checking that matters.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::api::networking::v1::Ingress;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::labels::Labels;

/// The annotations admission reads; every other one is skipped unread.
pub const READ_ANNOTATIONS: &[&str] = &[
    super::CLIENT_AUTH_ANNOTATION,
    super::EXEMPT_ANNOTATION,
    super::CM_ISSUER,
    super::CM_CLUSTER_ISSUER,
    super::CM_ISSUER_KIND,
    super::CM_ISSUER_GROUP,
    super::TLS_ACME,
    super::LEGACY_CLASS,
    super::NGINX_AUTH_SECRET,
    super::NGINX_VERIFY_CLIENT,
    super::NGINX_VERIFY_DEPTH,
];

/// Whether admission keeps annotation `key`: one of [`READ_ANNOTATIONS`],
/// or any ingress-nginx key, which the migration warnings assess.
pub fn is_read_annotation(key: &str) -> bool {
    READ_ANNOTATIONS.contains(&key) || key.starts_with(crate::ingress_nginx::PREFIX)
}

/// A string borrowed from the input when it can be, copied when JSON escapes
/// force it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Str<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'a> From<&'a str> for Str<'a> {
    fn from(s: &'a str) -> Self {
        Str(Cow::Borrowed(s))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(s)))
            }
        }
        d.deserialize_str(StrVisitor)
    }
}

/// `key: value` pairs of a JSON object, in input order. A later duplicate
/// key wins, as it does when Kubernetes decodes the object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pairs<'a>(pub Vec<(Str<'a>, Str<'a>)>);

impl<'a> Pairs<'a> {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| &**v)
    }
}

impl Labels for Pairs<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key)
    }

    fn each_label(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

/// Decodes a JSON object into [`Pairs`], keeping only the keys `keep`
/// accepts; the other values are skipped without being decoded.
fn pairs<'de, D: Deserializer<'de>>(
    d: D,
    keep: fn(&str) -> bool,
) -> Result<Option<Pairs<'de>>, D::Error> {
    struct PairsVisitor(fn(&str) -> bool);
    impl<'de> Visitor<'de> for PairsVisitor {
        type Value = Option<Pairs<'de>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of strings to strings")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(key) = map.next_key::<Str<'de>>()? {
                if (self.0)(&key) {
                    out.push((key, map.next_value::<Str<'de>>()?));
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(Some(Pairs(out)))
        }
    }
    d.deserialize_option(OptionMap(PairsVisitor(keep)))
}

/// Lets `null` and a missing field mean the same, as in Kubernetes.
struct OptionMap<V>(V);

impl<'de, V: Visitor<'de, Value = Option<Pairs<'de>>>> Visitor<'de> for OptionMap<V> {
    type Value = Option<Pairs<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self.0)
    }
}

fn all_labels<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Pairs<'de>>, D::Error> {
    pairs(d, |_| true)
}

fn read_annotations<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Pairs<'de>>, D::Error> {
    pairs(d, is_read_annotation)
}

/// An Ingress as admission sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressObject<'a> {
    /// `apiVersion`, when the input carries one.
    #[serde(borrow, default)]
    pub api_version: Option<Str<'a>>,
    /// `kind`, when the input carries one.
    #[serde(borrow, default)]
    pub kind: Option<Str<'a>>,
    /// The metadata admission reads.
    #[serde(borrow, default)]
    pub metadata: Metadata<'a>,
    /// The spec admission reads.
    #[serde(borrow, default)]
    pub spec: Option<Spec<'a>>,
}

/// `metadata`, less what admission never reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata<'a> {
    /// `metadata.name`; absent under `generateName`.
    #[serde(borrow, default)]
    pub name: Option<Str<'a>>,
    /// `metadata.namespace`.
    #[serde(borrow, default)]
    pub namespace: Option<Str<'a>>,
    /// Every label, for ClientAuthPolicy selectors.
    #[serde(borrow, default, deserialize_with = "all_labels")]
    pub labels: Option<Pairs<'a>>,
    /// Only the annotations [`is_read_annotation`] keeps; `Some` whenever the
    /// object has an annotations map, since mutation patches differ then.
    #[serde(borrow, default, deserialize_with = "read_annotations")]
    pub annotations: Option<Pairs<'a>>,
    /// Whether `metadata.deletionTimestamp` is set: deletion has begun.
    #[serde(default, deserialize_with = "present")]
    pub deletion_timestamp: bool,
}

/// `spec`, less the backends, which admission never reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec<'a> {
    /// `spec.ingressClassName`.
    #[serde(borrow, default)]
    pub ingress_class_name: Option<Str<'a>>,
    /// Whether `spec.defaultBackend` is set.
    #[serde(default, deserialize_with = "present")]
    pub default_backend: bool,
    /// `spec.tls`.
    #[serde(borrow, default)]
    pub tls: Option<Vec<Tls<'a>>>,
    /// `spec.rules`.
    #[serde(borrow, default)]
    pub rules: Option<Vec<Rule<'a>>>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<IgnoredAny>::deserialize(d)?.is_some())
}

/// One `spec.tls` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tls<'a> {
    /// `hosts`.
    #[serde(borrow, default)]
    pub hosts: Option<Vec<Str<'a>>>,
    /// `secretName`.
    #[serde(borrow, default)]
    pub secret_name: Option<Str<'a>>,
}

/// One `spec.rules` entry; only its host matters to admission.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Rule<'a> {
    /// `host`.
    #[serde(borrow, default)]
    pub host: Option<Str<'a>>,
}

fn borrowed(s: &Option<String>) -> Option<Str<'_>> {
    s.as_deref().map(Str::from)
}

fn borrowed_pairs<'a>(
    map: &'a Option<std::collections::BTreeMap<String, String>>,
    keep: fn(&str) -> bool,
) -> Option<Pairs<'a>> {
    map.as_ref().map(|m| {
        Pairs(
            m.iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (Str::from(k.as_str()), Str::from(v.as_str())))
                .collect(),
        )
    })
}

impl<'a> From<&'a Ingress> for IngressObject<'a> {
    fn from(ing: &'a Ingress) -> Self {
        use k8s_openapi::Resource;
        let m = &ing.metadata;
        IngressObject {
            api_version: Some(Str::from(Ingress::API_VERSION)),
            kind: Some(Str::from(Ingress::KIND)),
            metadata: Metadata {
                name: borrowed(&m.name),
                namespace: borrowed(&m.namespace),
                labels: borrowed_pairs(&m.labels, |_| true),
                annotations: borrowed_pairs(&m.annotations, is_read_annotation),
                deletion_timestamp: m.deletion_timestamp.is_some(),
            },
            spec: ing.spec.as_ref().map(|s| Spec {
                ingress_class_name: borrowed(&s.ingress_class_name),
                default_backend: s.default_backend.is_some(),
                tls: s.tls.as_ref().map(|entries| {
                    entries
                        .iter()
                        .map(|e| Tls {
                            hosts: e
                                .hosts
                                .as_ref()
                                .map(|hs| hs.iter().map(|h| Str::from(h.as_str())).collect()),
                            secret_name: borrowed(&e.secret_name),
                        })
                        .collect()
                }),
                rules: s.rules.as_ref().map(|rules| {
                    rules
                        .iter()
                        .map(|r| Rule {
                            host: borrowed(&r.host),
                        })
                        .collect()
                }),
            }),
        }
    }
}

impl IngressObject<'_> {
    /// Whether the object names networking.k8s.io/v1 Ingress, or names
    /// nothing (a bare object is taken as what the request says it is).
    pub fn is_ingress_v1(&self) -> bool {
        use k8s_openapi::Resource;
        self.api_version
            .as_deref()
            .is_none_or(|v| v == Ingress::API_VERSION)
            && self.kind.as_deref().is_none_or(|k| k == Ingress::KIND)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KUBECTL_LIKE: &str = r#"{"apiVersion":"networking.k8s.io/v1","kind":"Ingress",
        "metadata":{"name":"web","namespace":"shop","labels":{"app":"web","team":"a\"b"},
          "annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"big\":true}",
                         "cert-manager.io/cluster-issuer":"le"},
          "managedFields":[{"manager":"kubectl"}]},
        "spec":{"ingressClassName":"nginx","defaultBackend":{"service":{"name":"x"}},
          "tls":[{"hosts":["a.example.com"],"secretName":"web-tls"}],
          "rules":[{"host":"a.example.com","http":{"paths":[]}},{}]},
        "status":{}}"#;

    #[test]
    fn decoding_borrows_strings_and_keeps_only_what_admission_reads() {
        let o: IngressObject = serde_json::from_str(KUBECTL_LIKE).unwrap();
        assert!(o.is_ingress_v1());
        assert!(matches!(
            o.metadata.name.as_ref().unwrap().0,
            Cow::Borrowed("web")
        ));
        let labels = o.metadata.labels.as_ref().unwrap();
        assert_eq!(labels.get("team"), Some("a\"b"));
        let annotations = o.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations.0.len(), 1, "{annotations:?}");
        assert_eq!(
            annotations.get("cert-manager.io/cluster-issuer"),
            Some("le")
        );
        let spec = o.spec.as_ref().unwrap();
        assert!(spec.default_backend);
        assert_eq!(spec.rules.as_ref().unwrap()[1].host, None);
        assert_eq!(
            spec.tls.as_ref().unwrap()[0].secret_name.as_deref(),
            Some("web-tls")
        );
    }

    #[test]
    fn decoding_agrees_with_the_typed_ingress() {
        let typed: Ingress = serde_json::from_str(KUBECTL_LIKE).unwrap();
        let decoded: IngressObject = serde_json::from_str(KUBECTL_LIKE).unwrap();
        assert_eq!(IngressObject::from(&typed), decoded);
    }

    #[test]
    fn nulls_mean_absent_and_wrong_types_are_errors() {
        let json =
            json!({"metadata": {"labels": null, "annotations": null}, "spec": {"tls": null}})
                .to_string();
        let o: IngressObject = serde_json::from_str(&json).unwrap();
        assert_eq!(o.metadata.labels, None);
        assert_eq!(o.metadata.annotations, None);
        let err = serde_json::from_str::<IngressObject>(r#"{"spec":{"rules":"not-a-list"}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
        assert!(
            serde_json::from_str::<IngressObject>(r#"{"metadata":{"labels":{"a":1}}}"#).is_err()
        );
    }

    #[test]
    fn a_later_duplicate_key_wins() {
        let o: IngressObject =
            serde_json::from_str(r#"{"metadata":{"labels":{"a":"1","a":"2"}}}"#).unwrap();
        assert_eq!(o.metadata.labels.unwrap().get("a"), Some("2"));
    }
}
