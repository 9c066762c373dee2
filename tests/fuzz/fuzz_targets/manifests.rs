//! The manifest reader (`tlsward::manifests::parse_text`: multi-document
//! YAML, JSON streams, `kind: List`) on any text, as `tlsward check -f`, the
//! proxy's `--config-dir` and the webhook's policy files feed it:
//!
//! - it answers without panicking (and, with `-timeout`, in bounded time);
//! - an error names the file and a document number from 1;
//! - documents come in file order (numbers from 1, never decreasing), and
//!   each one that is not an item of a List is a mapping;
//! - each document written back as JSON reads back as the same one
//!   document (numbers to within the last bit: serde_json's float reader
//!   may round it).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tlsward::manifests::{ManifestError, parse_text};

const FILE: &str = "fuzz.yaml";

/// Equal, floats to within a few ulps.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, x), (ky, y))| kx == ky && same(x, y))
        }
        _ => a == b,
    }
}

fn is_list(v: &Value) -> bool {
    v.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || k.ends_with("List") && v.get("items").is_some())
}

fuzz_target!(|data: &[u8]| {
    // Files are read with read_to_string: only UTF-8 reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let docs = match parse_text(FILE, text) {
        Ok(docs) => docs,
        Err(e) => {
            let shown = e.to_string();
            match e {
                ManifestError::Parse { path, index, .. } => {
                    assert_eq!(path, FILE);
                    assert!(index >= 1, "document {index}: {shown}");
                    assert!(
                        shown.starts_with(&format!("{FILE}: document {index}: ")),
                        "{shown}"
                    );
                }
                other => panic!("not a parse error: {other:?}"),
            }
            return;
        }
    };
    let mut last = 1;
    for doc in &docs {
        assert_eq!(doc.source, FILE);
        assert!(doc.index >= last, "document {} after {last}", doc.index);
        last = doc.index;
        if !doc.value.is_object() {
            // Only a List's items are passed on whatever they are.
            continue;
        }
        if is_list(&doc.value) {
            continue;
        }
        let json = serde_json::to_string(&doc.value).expect("a Value serializes");
        let again = parse_text(FILE, &json).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert_eq!(again.len(), 1, "{json}");
        assert_eq!(again[0].index, 1);
        assert!(
            same(&again[0].value, &doc.value),
            "{json} read back as {}",
            again[0].value
        );
    }
});
