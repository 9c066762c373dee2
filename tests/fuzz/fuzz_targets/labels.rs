//! tlsward's label selectors (`tlsward::labels::Selector`) against kube's
//! (`kube::core::Selector`) as the oracle, on selectors and label sets made
//! of a few keys and values, so that matches and misses are both common:
//!
//! - a selector tlsward compiles, kube accepts too, and both match the same
//!   label sets (as a map, and as the pairs of a request body, where a later
//!   duplicate key wins);
//! - a selector tlsward refuses, kube refuses too, except `In`/`NotIn` with
//!   an empty `values` list: Kubernetes' API validation refuses that and so
//!   does tlsward; kube-core takes it (as "matches nothing"/"everything");
//! - `index_key`, when there is one, is carried by every label set the
//!   selector matches.

#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::core::{Selector as KubeSelector, SelectorExt};
use libfuzzer_sys::fuzz_target;
use tlsward::admission::object::{Pairs, Str};
use tlsward::labels::{Selector, SelectorError};

/// A key or value: mostly one of a few, so that they collide.
#[derive(Arbitrary, Debug)]
enum Word {
    Common(u8),
    Any(String),
}

const WORDS: &[&str] = &[
    "app",
    "tier",
    "web",
    "",
    "env",
    "prod",
    "App",
    "tlsward.io/exempt",
    "true",
    "a b",
];

impl Word {
    fn text(&self) -> String {
        match self {
            Word::Common(i) => WORDS[usize::from(*i) % WORDS.len()].to_string(),
            Word::Any(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Expression {
    key: Word,
    operator: Operator,
    values: Option<Vec<Word>>,
}

#[derive(Arbitrary, Debug)]
struct Case {
    match_labels: Option<Vec<(Word, Word)>>,
    match_expressions: Option<Vec<Expression>>,
    /// Label sets to match; pairs, so a key may come twice (a request body).
    label_sets: Vec<Vec<(Word, Word)>>,
}

fuzz_target!(|case: Case| {
    let selector = LabelSelector {
        match_labels: case
            .match_labels
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.text(), v.text())).collect()),
        match_expressions: case.match_expressions.as_ref().map(|es| {
            es.iter()
                .map(|e| LabelSelectorRequirement {
                    key: e.key.text(),
                    operator: match &e.operator {
                        Operator::In => "In".into(),
                        Operator::NotIn => "NotIn".into(),
                        Operator::Exists => "Exists".into(),
                        Operator::DoesNotExist => "DoesNotExist".into(),
                        Operator::Other(s) => s.clone(),
                    },
                    values: e
                        .values
                        .as_ref()
                        .map(|v| v.iter().map(Word::text).collect()),
                })
                .collect()
        }),
    };
    let ours = Selector::compile(&selector);
    let theirs = KubeSelector::try_from(selector.clone());
    let (ours, theirs) = match (ours, theirs) {
        (Ok(ours), Ok(theirs)) => (ours, theirs),
        (Err(_), Err(_)) => return,
        (Err(SelectorError::NoValues { index, .. }), Ok(_)) => {
            let e = &selector.match_expressions.as_ref().expect("an expression")[index];
            assert!(
                e.values.as_ref().is_some_and(Vec::is_empty),
                "refused {e:?} as without values, which kube takes"
            );
            return;
        }
        (ours, theirs) => panic!("tlsward: {ours:?}\nkube: {theirs:?}\nfor {selector:?}"),
    };
    for set in &case.label_sets {
        let pairs: Vec<(String, String)> = set.iter().map(|(k, v)| (k.text(), v.text())).collect();
        // A map keeps the last value of a key, as Pairs does.
        let map: BTreeMap<String, String> = pairs.iter().cloned().collect();
        let body = Pairs(
            pairs
                .iter()
                .map(|(k, v)| (Str::from(k.as_str()), Str::from(v.as_str())))
                .collect(),
        );
        let want = theirs.matches(&map);
        assert_eq!(ours.matches(&map), want, "{selector:?} on {map:?}");
        assert_eq!(ours.matches(&body), want, "{selector:?} on pairs {pairs:?}");
        if want && let Some((k, v)) = ours.index_key() {
            assert_eq!(
                map.get(k).map(String::as_str),
                Some(v),
                "index key of {selector:?}"
            );
        }
    }
});
