//! The import rules `docs/architecture.md` states, checked over `src/`.
//!
//! The pure cores are what the webhook, `check`, the operator and the proxy
//! share; they stay shareable only while they import no role and no I/O. A
//! new `use crate::webhook` inside `admission`, or a file read inside
//! `labels`, fails here with the file and the import, before anyone has to
//! notice it in review. The known exceptions are listed with their reason,
//! as the architecture page lists them.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A source file as a module path relative to `src/` (`proxy/routes`,
/// `admission/mod`), and its code with comments and test modules removed.
struct Source {
    module: String,
    code: String,
}

fn sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&src).expect("under src/");
        let module = rel.with_extension("").to_string_lossy().replace('\\', "/");
        // Test-only files: fixtures and scripted API servers may import anything.
        if module == "testing"
            || module.ends_with("/tests")
            || module.ends_with("fixtures")
            || module.ends_with("generated_tests")
        {
            continue;
        }
        let text = fs::read_to_string(&path).expect("read source");
        // The code before the first inline `#[cfg(test)] mod NAME {`
        // (a `mod tests;` line elsewhere does not cut the file); comments dropped.
        let inline_test_module = text.match_indices("#[cfg(test)]\nmod ").find(|(at, _)| {
            text[*at..]
                .lines()
                .nth(1)
                .is_some_and(|l| l.trim_end().ends_with('{'))
        });
        let body = match inline_test_module {
            Some((at, _)) => &text[..at],
            None => &text[..],
        };
        let code = body
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        out.push(Source { module, code });
    }
    assert!(
        out.len() >= 30,
        "found only {} source files under src/: is the walk broken?",
        out.len()
    );
    out
}

/// The top-level crate modules a file names as `crate::NAME`.
fn crate_imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let name: String = code[at + "crate::".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

fn source<'a>(all: &'a [Source], module: &str) -> &'a Source {
    all.iter().find(|s| s.module == module).unwrap_or_else(|| {
        panic!("src/{module}.rs is gone: update tests/layout.rs and docs/architecture.md")
    })
}

/// The shared cores, and what each may import from the crate.
const CORES: &[(&str, &[&str])] = &[
    ("labels", &[]),
    ("fast_hash", &[]),
    ("admission/hosts", &[]),
    ("admission/object", &["ingress_nginx", "labels"]),
    (
        "admission/mod",
        &["clientauth", "ingress_nginx", "labels", "policy"],
    ),
    ("policy", &["labels"]),
    ("clientauth/mod", &["fast_hash", "labels"]),
    ("clientauth/bundle", &[]),
    ("proxy/routes", &["ingress_nginx"]),
    ("ingress_nginx/mod", &[]),
    ("ingress_nginx/catalogue", &[]),
    ("ingress_nginx/client_auth", &[]),
    ("ingress_nginx/backend", &[]),
    ("oidc/jwt", &[]),
    ("oidc/token_cache", &["fast_hash", "oidc"]),
    ("oidc/session", &[]),
    ("oidc/login", &[]),
    ("oidc/paths", &[]),
    ("proxy/host_auth", &["clientauth", "oidc"]),
    ("proxy/identity", &["clientauth"]),
    // Exceptions (docs/architecture.md, "Where the layout bends"): the
    // proxy's world is made of `manifests::Document`s, and its snapshot
    // builds rustls configurations through `tls`.
    ("proxy/world", &["admission", "clientauth", "manifests"]),
    (
        "proxy/snapshot",
        &[
            "admission",
            "clientauth",
            "fast_hash",
            "ingress_nginx",
            "manifests",
            "tls",
        ],
    ),
    (
        "proxy/problem",
        &[
            "admission",
            "clientauth",
            "ingress_nginx",
            "manifests",
            "tls",
        ],
    ),
];

/// What no core may use: the network, the async runtime, the Kubernetes
/// client, or the file system. `policy::IngressTlsPolicy::load` is the one
/// documented file read in a core.
const IO: &[&str] = &[
    "tokio::",
    "hyper::",
    "axum",
    "kube::Client",
    "kube::Api",
    "kube::runtime",
    "std::fs",
    "TcpStream",
    "TcpListener",
];

#[test]
fn cores_import_only_cores() {
    let all = sources();
    let mut problems = Vec::new();
    for (module, allowed) in CORES {
        let s = source(&all, module);
        for import in crate_imports(&s.code) {
            if !allowed.contains(&import.as_str()) {
                problems.push(format!("src/{module}.rs imports crate::{import}"));
            }
        }
        for io in IO {
            let documented = *module == "policy" && *io == "std::fs";
            if s.code.contains(io) && !documented {
                problems.push(format!("src/{module}.rs uses {io}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "a pure core reaches outside the cores (see docs/architecture.md, \"What may import what\"):\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn no_role_imports_another() {
    let all = sources();
    // quickstart runs the proxy: the one documented role-to-role import.
    let roles: &[(&str, &[&str])] = &[
        ("webhook", &["operator", "proxy", "check", "quickstart"]),
        ("operator", &["webhook", "proxy", "check", "quickstart"]),
        ("proxy", &["webhook", "operator", "check", "quickstart"]),
        ("check", &["webhook", "operator", "proxy", "quickstart"]),
        ("quickstart", &["webhook", "operator", "check"]),
    ];
    let mut problems = Vec::new();
    let mut seen = 0;
    for s in &all {
        let top = s.module.split('/').next().unwrap_or_default();
        let Some((_, forbidden)) = roles.iter().find(|(r, _)| *r == top) else {
            continue;
        };
        seen += 1;
        for import in crate_imports(&s.code) {
            if forbidden.contains(&import.as_str()) {
                problems.push(format!("src/{}.rs imports crate::{import}", s.module));
            }
        }
    }
    assert!(
        seen >= 15,
        "only {seen} role files found: is the walk broken?"
    );
    assert!(
        problems.is_empty(),
        "a role imports another role (share through the cores instead):\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_walk_sees_imports() {
    // The rules above pass vacuously if the import scan finds nothing.
    let all = sources();
    let admission = crate_imports(&source(&all, "admission/mod").code);
    assert!(admission.contains("clientauth") && admission.contains("policy"));
    let webhook = crate_imports(&source(&all, "webhook/mod").code);
    assert!(webhook.contains("admission") && webhook.contains("telemetry"));
}
