//! Reading Kubernetes manifests from files, directories and stdin: the
//! formats `kubectl apply -f` takes (multi-document YAML, JSON, `kind: List`).

use std::path::{Path, PathBuf};

use serde_json::Value;

/// One object, and where it came from.
#[derive(Clone, Debug)]
pub struct Document {
    /// The file (or `-` for stdin).
    pub source: String,
    /// 1-based position of the YAML document in the file.
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
    /// Line numbers inside `message` count from the document's first line.
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

/// Splits on `---` lines, as kubectl's YAML reader does, keeping each
/// document's first line number. JSON is YAML, so a JSON file is one document.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let (mut start, mut start_line) = (0, 1);
    let mut offset = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") || bare == "..." {
            docs.push((start_line, &text[start..offset]));
            start = offset + line.len();
            start_line = n + 2;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start..]));
    docs
}

fn is_blank_yaml(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t.starts_with('%')
    })
}

/// Parses one file's text into objects.
pub fn parse_text(source: &str, text: &str) -> Result<Vec<Document>, ManifestError> {
    let mut out = Vec::new();
    for (i, (first_line, doc)) in split_documents(text).into_iter().enumerate() {
        let index = i + 1;
        if is_blank_yaml(doc) {
            continue;
        }
        let parse_err = |message: String| ManifestError::Parse {
            path: source.to_string(),
            index,
            message: format!("(starts at line {first_line}) {message}"),
        };
        let value: Value = if doc.trim_start().starts_with(['{', '[']) {
            serde_json::from_str(doc).map_err(|e| parse_err(e.to_string()))?
        } else {
            serde_saphyr::from_str(doc).map_err(|e| parse_err(e.to_string()))?
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
        assert_eq!(docs[0].type_meta(), ("v1", "Namespace"));
        assert_eq!(docs[0].index, 2);
        assert_eq!(docs[1].type_meta(), ("v1", "Secret"));
        assert_eq!(docs[1].index, 5);
    }

    #[test]
    fn json_and_list() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}},{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"b"}}]}"#;
        let docs = parse_text("f.json", text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].value["metadata"]["name"], "b");
    }

    #[test]
    fn errors_name_file_and_document() {
        let text = "apiVersion: v1\nkind: Namespace\n---\nkind: [unclosed\n";
        let err = parse_text("bad.yaml", text).unwrap_err().to_string();
        assert!(err.starts_with("bad.yaml: document 2: "), "{err}");
        let err = parse_text("s.yaml", "just a string\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a Kubernetes object"), "{err}");
    }
}
