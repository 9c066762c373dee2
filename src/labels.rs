//! Kubernetes label selectors, compiled once and matched many times.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels to match against, wherever they are stored: a typed object's map,
/// or pairs borrowed from a request body.
pub trait Labels {
    /// The value of `key`, if the label is set.
    fn label(&self, key: &str) -> Option<&str>;
    /// Every label.
    fn each_label(&self) -> impl Iterator<Item = (&str, &str)>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }

    fn each_label(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Why a label selector was refused. Phrased to follow the selector's own
/// field path (`exemptions.namespaceSelector: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// `In` or `NotIn` with an empty `values` list, which Kubernetes refuses.
    #[error("matchExpressions[{index}]: operator {operator} needs at least one value")]
    NoValues {
        /// Position in `matchExpressions`.
        index: usize,
        /// `In` or `NotIn`.
        operator: String,
    },
    /// An operator Kubernetes does not have.
    #[error(
        "matchExpressions[{index}].operator {operator:?} is not one of In, NotIn, Exists, DoesNotExist"
    )]
    UnknownOperator {
        /// Position in `matchExpressions`.
        index: usize,
        /// The operator as written.
        operator: String,
    },
}

/// One compiled requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A validated label selector. An empty selector matches everything, as in
/// Kubernetes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Validates the operators once, so matching cannot fail later.
    pub fn compile(sel: &LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement::Equals(k.clone(), v.clone()));
        }
        for (index, e) in sel.match_expressions.iter().flatten().enumerate() {
            let values = e.values.clone().unwrap_or_default();
            let needs_values = || {
                if values.is_empty() {
                    Err(SelectorError::NoValues {
                        index,
                        operator: e.operator.clone(),
                    })
                } else {
                    Ok(())
                }
            };
            let r = match e.operator.as_str() {
                "In" => {
                    needs_values()?;
                    Requirement::In(e.key.clone(), values)
                }
                "NotIn" => {
                    needs_values()?;
                    Requirement::NotIn(e.key.clone(), values)
                }
                "Exists" => Requirement::Exists(e.key.clone()),
                "DoesNotExist" => Requirement::DoesNotExist(e.key.clone()),
                other => {
                    return Err(SelectorError::UnknownOperator {
                        index,
                        operator: other.to_string(),
                    });
                }
            };
            requirements.push(r);
        }
        Ok(Self { requirements })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &(impl Labels + ?Sized)) -> bool {
        let one_of = |vs: &[String], l: &str| vs.iter().any(|v| v == l);
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.label(k) == Some(v.as_str()),
            Requirement::In(k, vs) => labels.label(k).is_some_and(|l| one_of(vs, l)),
            Requirement::NotIn(k, vs) => labels.label(k).is_none_or(|l| !one_of(vs, l)),
            Requirement::Exists(k) => labels.label(k).is_some(),
            Requirement::DoesNotExist(k) => labels.label(k).is_none(),
        })
    }

    /// One `key=value` every matching object must carry, if the selector has
    /// one. Lets an index look up candidates instead of scanning them all.
    pub fn index_key(&self) -> Option<(&str, &str)> {
        self.requirements.iter().find_map(|r| match r {
            Requirement::Equals(k, v) => Some((k.as_str(), v.as_str())),
            Requirement::In(k, vs) if vs.len() == 1 => Some((k.as_str(), vs[0].as_str())),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn operators_follow_kubernetes_semantics() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "shop")])),
            match_expressions: Some(vec![
                expr("tier", "In", &["web", "api"]),
                expr("env", "NotIn", &["dev"]),
                expr("team", "Exists", &[]),
                expr("legacy", "DoesNotExist", &[]),
            ]),
        };
        let s = Selector::compile(&sel).unwrap();
        let base = [("app", "shop"), ("tier", "web"), ("team", "a")];
        assert!(s.matches(&labels(&base)));
        let mut with_env = base.to_vec();
        with_env.push(("env", "dev"));
        assert!(!s.matches(&labels(&with_env)));
        let mut with_legacy = base.to_vec();
        with_legacy.push(("legacy", "1"));
        assert!(!s.matches(&labels(&with_legacy)));
        assert!(!s.matches(&labels(&[("app", "shop"), ("tier", "db"), ("team", "a")])));
        assert!(!s.matches(&labels(&[("app", "shop"), ("tier", "web")])));
        assert_eq!(s.index_key(), Some(("app", "shop")));
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = Selector::compile(&LabelSelector::default()).unwrap();
        assert!(s.matches(&BTreeMap::new()));
        assert_eq!(s.index_key(), None);
    }

    #[test]
    fn in_without_values_is_refused() {
        let sel = LabelSelector {
            match_expressions: Some(vec![expr("a", "In", &[])]),
            ..Default::default()
        };
        let err = Selector::compile(&sel).unwrap_err();
        assert!(
            matches!(&err, SelectorError::NoValues { index: 0, operator } if operator == "In"),
            "{err:?}"
        );
        assert!(err.to_string().contains("matchExpressions[0]"), "{err}");
    }

    /// Against kube's selector (`kube::core::Selector`) as the oracle, on
    /// selectors and label sets over a few keys and values: what tlsward
    /// compiles kube accepts and matches alike; what tlsward refuses kube
    /// refuses, but for `In`/`NotIn` with an empty list, which Kubernetes'
    /// validation refuses and kube-core takes. The `labels` fuzz target
    /// checks the same.
    #[test]
    fn agrees_with_kubes_selector() {
        use kube::core::{Selector as KubeSelector, SelectorExt};
        use proptest::prelude::*;

        let word = || {
            prop_oneof![
                6 => prop::sample::select(vec!["app", "tier", "web", "", "env", "App", "a/b"]),
                1 => Just("prod"),
            ]
            .prop_map(str::to_string)
        };
        let op = prop::sample::select(vec!["In", "NotIn", "Exists", "DoesNotExist", "in", ""]);
        let expr = (
            word(),
            op,
            prop::option::of(prop::collection::vec(word(), 0..3)),
        )
            .prop_map(|(key, op, values)| LabelSelectorRequirement {
                key,
                operator: op.to_string(),
                values,
            });
        let map = || prop::collection::btree_map(word(), word(), 0..4);
        let selector = (
            prop::option::of(map()),
            prop::option::of(prop::collection::vec(expr, 0..4)),
        )
            .prop_map(|(match_labels, match_expressions)| LabelSelector {
                match_labels,
                match_expressions,
            });
        crate::testing::check_property(
            "agrees_with_kubes_selector",
            2000,
            (selector, prop::collection::vec(map(), 1..6)),
            |(sel, sets)| {
                let theirs = KubeSelector::try_from(sel.clone());
                let (ours, theirs) = match (Selector::compile(&sel), theirs) {
                    (Ok(ours), Ok(theirs)) => (ours, theirs),
                    (Err(_), Err(_)) => return Ok(()),
                    (Err(SelectorError::NoValues { index, .. }), Ok(_)) => {
                        let e = &sel.match_expressions.as_ref().unwrap()[index];
                        prop_assert!(e.values.as_ref().is_some_and(Vec::is_empty), "{:?}", e);
                        return Ok(());
                    }
                    (ours, theirs) => {
                        return Err(TestCaseError::fail(format!("{ours:?} / {theirs:?}")));
                    }
                };
                for set in &sets {
                    let want = theirs.matches(set);
                    prop_assert_eq!(ours.matches(set), want, "{:?} on {:?}", sel, set);
                    if want && let Some((k, v)) = ours.index_key() {
                        prop_assert_eq!(set.get(k).map(String::as_str), Some(v));
                    }
                }
                Ok(())
            },
        );
    }
}
