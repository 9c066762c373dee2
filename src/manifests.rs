//! Reading Kubernetes manifests from files, directories and stdin: the
//! formats `kubectl apply -f` takes (multi-document YAML, JSON, `kind: List`).

use std::path::{Path, PathBuf};

use serde_json::Value;
use serde_saphyr::Spanned;
use serde_saphyr::granit_parser::{Event, Parser};

/// One object, and where it came from.
#[derive(Clone, Debug)]
pub struct Document {
    /// The file (or `-` for stdin).
    pub source: String,
    /// 1-based position of the document in the file, counting empty ones.
    pub index: usize,
    /// The object.
    pub value: Value,
}

impl Document {
    /// `apiVersion` and `kind`, or empty strings.
    pub fn type_meta(&self) -> (&str, &str) {
        let s = |k| {
            self.value
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        (s("apiVersion"), s("kind"))
    }
}

/// Why input could not be read; always names the file, and the document.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A document is not valid YAML or JSON, or not a Kubernetes object.
    /// Line numbers inside `message` count from the top of the file.
    #[error("{path}: document {index}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based document number.
        index: usize,
        /// The parser's message.
        message: String,
    },
}

fn is_manifest(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Expands directories (recursively, sorted, manifest extensions only) and
/// keeps files and `-` as given.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ManifestError> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" || !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let mut stack = vec![p.clone()];
        let mut found = Vec::new();
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|source| ManifestError::Io {
                path: dir.display().to_string(),
                source,
            })?;
            for e in entries {
                let e = e.map_err(|source| ManifestError::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
                let path = e.path();
                if path.is_dir() {
                    stack.push(path);
                } else if is_manifest(&path) {
                    found.push(path);
                }
            }
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// Reads every object from `paths`. `kind: List` is flattened into its items,
/// which keep the List's document index.
pub fn read_paths(paths: &[PathBuf]) -> Result<Vec<Document>, ManifestError> {
    let mut docs = Vec::new();
    for path in expand(paths)? {
        let (source, text) = if path.as_os_str() == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|source| {
                ManifestError::Io {
                    path: "-".into(),
                    source,
                }
            })?;
            ("-".to_string(), s)
        } else {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Io {
                path: shown.clone(),
                source,
            })?;
            (shown, text)
        };
        docs.extend(parse_text(&source, &text)?);
    }
    Ok(docs)
}

/// A file's documents with their 1-based numbers, or the number of the one
/// that could not be read and why. JSON is YAML, but a file that starts like
/// JSON is first read as a stream of JSON values (as `kubectl apply` reads
/// one): for broken JSON, serde_json's message is the clearer one.
fn documents(text: &str) -> Result<Vec<(usize, Value)>, (usize, String)> {
    if !text.trim_start().starts_with(['{', '[']) {
        return yaml_documents(text);
    }
    let mut docs = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match value {
            Ok(value) => docs.push((docs.len() + 1, value)),
            // JSON-looking YAML (`{kind: Namespace}`) is still YAML.
            Err(json) => {
                return yaml_documents(text).map_err(|_| (docs.len() + 1, json.to_string()));
            }
        }
    }
    Ok(docs)
}

/// serde-saphyr's multi-document reader, which skips empty and null
/// documents and reports lines from the top of the file. It does not say
/// which document a value or an error belongs to, so the parser's
/// document-start events are counted for that.
fn yaml_documents(text: &str) -> Result<Vec<(usize, Value)>, (usize, String)> {
    let starts = document_starts(text);
    // The document a position (1-based line and column) falls in.
    let number = |line: u64, column: u64| starts.partition_point(|&s| s <= (line, column)).max(1);
    match serde_saphyr::from_multiple_with_options::<Spanned<Value>>(text, yaml_options()) {
        Ok(docs) => Ok(docs
            .into_iter()
            .map(|d| (number(d.referenced.line(), d.referenced.column()), d.value))
            .collect()),
        Err(e) => {
            let index = match e.location() {
                Some(at) => number(at.line(), at.column()),
                // Unplaced: the last document the parser got into.
                None => starts.len().max(1),
            };
            Err((index, e.to_string()))
        }
    }
}

/// serde-saphyr's defaults budget a whole stream (1,024 documents, 250,000
/// nodes) against YAML bombs; a manifest file of thousands of policies is
/// legitimate, so the stream-wide counts are raised. The per-value limits
/// (depth, aliases, scalar bytes, input size) keep their defaults.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: MAX_DOCUMENTS,
            max_nodes: 200 * MAX_DOCUMENTS,
            max_events: 400 * MAX_DOCUMENTS,
        },
    }
}

/// The most documents one file may hold.
pub const MAX_DOCUMENTS: usize = 100_000;

/// Where each document of a YAML stream starts (1-based line and column),
/// up to the first syntax error.
fn document_starts(text: &str) -> Vec<(u64, u64)> {
    let mut parser = Parser::new_from_str(text);
    let mut starts = Vec::new();
    while let Some(Ok((event, span))) = parser.next_event() {
        if let Event::DocumentStart(..) = event {
            let at = span.start;
            starts.push((at.line() as u64, at.col() as u64 + 1));
        }
    }
    starts
}

/// Parses one file's text into objects.
pub fn parse_text(source: &str, text: &str) -> Result<Vec<Document>, ManifestError> {
    let mut out = Vec::new();
    let docs = documents(text).map_err(|(index, message)| ManifestError::Parse {
        path: source.to_string(),
        index,
        message,
    })?;
    for (index, value) in docs {
        let parse_err = |message: String| ManifestError::Parse {
            path: source.to_string(),
            index,
            message,
        };
        if value.is_null() {
            continue;
        }
        if !value.is_object() {
            return Err(parse_err(
                "is not a Kubernetes object (expected a mapping with apiVersion and kind)".into(),
            ));
        }
        if value.get("kind").and_then(Value::as_str) == Some("List")
            || value
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List") && value.get("items").is_some())
        {
            let items = value
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            out.extend(items.into_iter().map(|value| Document {
                source: source.to_string(),
                index,
                value,
            }));
        } else {
            out.push(Document {
                source: source.to_string(),
                index,
                value,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_with_comments_and_blank_documents() {
        let text = "# leading comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\n# only a comment\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n";
        let docs = parse_text("f.yaml", text).unwrap();
        assert_eq!(docs.len(), 2);
        // Numbered as the YAML parser counts documents: the comment before
        // the first `---` is not one, the two empty ones between are.
        assert_eq!(docs[0].type_meta(), ("v1", "Namespace"));
        assert_eq!(docs[0].index, 1);
        assert_eq!(docs[1].type_meta(), ("v1", "Secret"));
        assert_eq!(docs[1].index, 4);
    }

    #[test]
    fn thousands_of_documents_in_one_file_are_all_read() {
        // The webhook's --client-auth-policies and check read files of
        // thousands of policies; the YAML reader's default budget stops at
        // 1,024 documents.
        let one = "apiVersion: tlsward.io/v1alpha1\nkind: ClientAuthPolicy\nmetadata:\n  name: p\n  namespace: ns\nspec:\n  trustAnchors:\n    - secretRef: {name: ca}\n  ingressSelector:\n    matchLabels: {app: a}\n";
        let text = vec![one; 5_000].join("---\n");
        let docs = parse_text("many.yaml", &text).unwrap();
        assert_eq!(docs.len(), 5_000);
        assert_eq!(docs[4_999].index, 5_000);
    }

    #[test]
    fn content_on_the_document_marker_line_is_kept() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n\
            --- {apiVersion: networking.k8s.io/v1, kind: Ingress, metadata: {name: web}}\n\
            --- !Secret\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n\
            ...\n\
            --- # a comment on the marker\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n";
        let docs = parse_text("f.yaml", text).unwrap();
        let seen: Vec<_> = docs
            .iter()
            .map(|d| {
                (
                    d.index,
                    d.type_meta().1,
                    d.value["metadata"]["name"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (1, "Namespace", Some("a")),
                (2, "Ingress", Some("web")),
                (3, "Secret", Some("s")),
                (4, "ConfigMap", Some("c")),
            ]
        );
    }

    #[test]
    fn json_and_list() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}},{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"b"}}]}"#;
        let docs = parse_text("f.json", text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].value["metadata"]["name"], "b");
    }

    #[test]
    fn json_streams_and_json_looking_yaml() {
        let text = "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\"}\n{\"apiVersion\": \"v1\", \"kind\": \"Secret\"}\n";
        let docs = parse_text("f.json", text).unwrap();
        let seen: Vec<_> = docs.iter().map(|d| (d.index, d.type_meta().1)).collect();
        assert_eq!(seen, [(1, "Namespace"), (2, "Secret")]);
        // A flow mapping is YAML, not JSON.
        let docs = parse_text(
            "f.yaml",
            "{apiVersion: v1, kind: Namespace}\n---\nkind: Secret\n",
        )
        .unwrap();
        let seen: Vec<_> = docs.iter().map(|d| (d.index, d.type_meta().1)).collect();
        assert_eq!(seen, [(1, "Namespace"), (2, "Secret")]);
        // Broken JSON is reported by the JSON parser.
        let err = parse_text("f.json", "{\"apiVersion\": \"v1\",, }")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "f.json: document 1: key must be a string at line 1 column 21"
        );
    }

    #[test]
    fn errors_name_file_and_document() {
        let text = "apiVersion: v1\nkind: Namespace\n---\nkind: [unclosed\n";
        let err = parse_text("bad.yaml", text).unwrap_err().to_string();
        assert!(err.starts_with("bad.yaml: document 2: "), "{err}");
        // Lines count from the top of the file; a leading `---` opens
        // document 1.
        let err = parse_text("bad.yaml", &format!("---\n{text}"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bad.yaml: document 2: "), "{err}");
        assert!(err.contains("line 5 column 7"), "{err}");
        let err = parse_text("s.yaml", "just a string\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a Kubernetes object"), "{err}");
    }

    /// Text put together from YAML and JSON pieces (markers, flow and block
    /// collections, anchors, tags, quotes, Lists): the reader answers
    /// without a panic; an error names the file and a document from 1;
    /// documents come in file order; each mapping written back as JSON
    /// reads back as itself. The `manifests` fuzz target checks the same.
    #[test]
    fn any_text_reads_to_documents_in_order_or_a_placed_error() {
        use proptest::prelude::*;

        let piece = prop::sample::select(vec![
            "---\n",
            "...\n",
            "\n",
            "apiVersion: v1\n",
            "kind: List\n",
            "kind: Secret\n",
            "items:\n",
            "- ",
            "  ",
            "metadata: {name: a}\n",
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"a\"",
            "'b'",
            "&x ",
            "*x",
            "!tag ",
            "# c\n",
            "key: value\n",
            "1e400",
            "-0",
            "null",
            "~",
            "? ",
            "|\n  text\n",
            "{\"kind\": \"Namespace\"}",
            "é",
            "\t",
        ]);
        crate::testing::check_property(
            "any_text_reads_to_documents_in_order_or_a_placed_error",
            1000,
            prop::collection::vec(piece, 0..24),
            |pieces| {
                let text = pieces.concat();
                match parse_text("p.yaml", &text) {
                    Err(ManifestError::Parse {
                        path,
                        index,
                        message,
                    }) => {
                        prop_assert_eq!(path, "p.yaml");
                        prop_assert!(index >= 1, "document {} for {:?}: {}", index, text, message);
                    }
                    Err(other) => return Err(TestCaseError::fail(format!("{other}"))),
                    Ok(docs) => {
                        let mut last = 1;
                        for d in &docs {
                            prop_assert!(d.index >= last, "{:?}", text);
                            last = d.index;
                            let list = d
                                .value
                                .get("kind")
                                .and_then(Value::as_str)
                                .is_some_and(|k| k.ends_with("List"));
                            if !d.value.is_object() || list {
                                continue;
                            }
                            let json = serde_json::to_string(&d.value).unwrap();
                            let again = parse_text("p.json", &json)
                                .map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
                            prop_assert_eq!(again.len(), 1);
                            prop_assert_eq!(&again[0].value, &d.value, "{}", json);
                        }
                    }
                }
                Ok(())
            },
        );
    }
}
