//! The sample Ingresses under `policies/ingresses/` and the default policy
//! file, run through the real `tlsward check` binary.
//!
//! Every sample starts with `# expect: PASS` (under `allowed/`) or
//! `# expect: <part of the FAIL message>` (under `denied/`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tlsward::policy::{Enforcement, IngressTlsPolicy};

const POLICY_FILE: &str = "policies/ingress-tls.yaml";
const CLIENT_AUTH_POLICIES: &str = "policies/clientauthpolicies";
const MIN_SAMPLES: usize = 5;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What one run of the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.describe()))
    }

    /// The summary line, which is always the last one.
    fn summary(&self) -> &str {
        self.stdout.lines().last().unwrap_or_default()
    }
}

/// Runs `tlsward ARGS` from the repository root, with `stdin` as input.
fn tlsward_with_stdin(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tlsward"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tlsward");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for tlsward");
    Run {
        code: out.status.code().expect("tlsward was killed by a signal"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

fn tlsward(args: &[&str]) -> Run {
    tlsward_with_stdin(args, b"")
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .to_str()
        .expect("UTF-8 path")
        .to_string()
}

/// Every file under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("directory entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The samples in `policies/ingresses/<kind>`, at least [`MIN_SAMPLES`].
fn samples(kind: &str) -> Vec<PathBuf> {
    let dir = root().join("policies/ingresses").join(kind);
    let files = files_under(&dir);
    assert!(
        files.len() >= MIN_SAMPLES,
        "{} holds {} files; expected at least {MIN_SAMPLES}",
        dir.display(),
        files.len()
    );
    files
}

/// The text after `# expect: ` on the first line; panics if there is none.
fn expectation(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", rel(path)));
    let first = text.lines().next().unwrap_or_default();
    let expect = first
        .strip_prefix("# expect: ")
        .unwrap_or_else(|| {
            panic!(
                "{}: the first line must be `# expect: PASS` or `# expect: <part of the FAIL message>`, found {first:?}",
                rel(path)
            )
        })
        .trim();
    assert!(!expect.is_empty(), "{}: empty expect line", rel(path));
    expect.to_string()
}

/// `namespace/name` of the single Ingress in a sample file.
fn ingress_id(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read sample");
    let v: Value =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: not YAML: {e}", rel(path)));
    assert_eq!(v["kind"], "Ingress", "{}", rel(path));
    assert_eq!(v["apiVersion"], "networking.k8s.io/v1", "{}", rel(path));
    let ns = v["metadata"]["namespace"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: give the sample a metadata.namespace", rel(path)));
    let name = v["metadata"]["name"].as_str().expect("metadata.name");
    format!("{ns}/{name}")
}

fn sample(kind: &str, file: &str) -> String {
    format!("policies/ingresses/{kind}/{file}")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&path, text).expect("write temp file");
    path.to_str().expect("UTF-8 temp path").to_string()
}

#[test]
fn every_sample_is_under_allowed_or_denied_and_has_an_expect_line() {
    let base = root().join("policies/ingresses");
    for f in files_under(&base) {
        let kind = f
            .strip_prefix(&base)
            .expect("under base")
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default()
            .to_string();
        assert!(
            kind == "allowed" || kind == "denied",
            "{}: samples go under allowed/ or denied/",
            rel(&f)
        );
        assert_eq!(
            f.extension().and_then(|e| e.to_str()),
            Some("yaml"),
            "{}: samples are .yaml files",
            rel(&f)
        );
        let expect = expectation(&f);
        if kind == "allowed" {
            assert_eq!(expect, "PASS", "{}: allowed samples expect PASS", rel(&f));
        } else {
            assert_ne!(
                expect,
                "PASS",
                "{}: denied samples expect a FAIL message",
                rel(&f)
            );
        }
    }
}

#[test]
fn allowed_samples_pass() {
    for f in samples("allowed") {
        assert_eq!(expectation(&f), "PASS", "{}", rel(&f));
        let id = ingress_id(&f);
        // The ClientAuthPolicies let the bound sample's binding resolve.
        let run = tlsward(&["check", "-f", &rel(&f), "-f", CLIENT_AUTH_POLICIES]);
        let ctx = format!("{}: {}", rel(&f), run.describe());
        assert_eq!(run.code, 0, "{ctx}");
        assert!(
            run.stdout.lines().any(|l| l == format!("PASS {id}")),
            "{ctx}"
        );
        assert!(
            run.summary()
                .starts_with("1 Ingresses: 1 passed, 0 failed;"),
            "{ctx}"
        );
        assert!(!run.stdout.contains("warning:"), "{ctx}");
        assert!(run.stderr.is_empty(), "{ctx}");
    }
}

#[test]
fn denied_samples_fail_with_the_expected_message() {
    for f in samples("denied") {
        let expect = expectation(&f);
        let id = ingress_id(&f);
        let run = tlsward(&["check", "-f", &rel(&f)]);
        let ctx = format!("{}: {}", rel(&f), run.describe());
        assert_eq!(run.code, 1, "{ctx}");
        let prefix = format!("FAIL {id}: ");
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line; {ctx}"));
        assert!(
            line.contains(&expect),
            "{}: the FAIL line does not contain {expect:?}:\n{line}",
            rel(&f)
        );
        assert!(
            run.summary()
                .starts_with("1 Ingresses: 0 passed, 1 failed;"),
            "{ctx}"
        );
    }
}

#[test]
fn client_auth_binding_writes_the_nginx_annotations() {
    let f = sample("allowed", "client-auth-bound.yaml");
    let run = tlsward(&["check", "-f", &f, "-f", CLIENT_AUTH_POLICIES, "-o", "json"]);
    assert_eq!(run.code, 0, "{}", run.describe());
    let patch = &run.json()["results"][0]["patch"];
    let add = |key: &str, value: &str| {
        json!({
            "op": "add",
            "path": format!("/metadata/annotations/{}", key.replace('/', "~1")),
            "value": value,
        })
    };
    let want = json!([
        add(
            "nginx.ingress.kubernetes.io/auth-tls-secret",
            "partners/partner-clients-ca"
        ),
        add("nginx.ingress.kubernetes.io/auth-tls-verify-client", "on"),
        add("nginx.ingress.kubernetes.io/auth-tls-verify-depth", "1"),
    ]);
    assert_eq!(patch, &want, "{}", run.describe());

    // Without the ClientAuthPolicy it still passes, with a warning that
    // clients will be refused.
    let run = tlsward(&["check", "-f", &f]);
    assert_eq!(run.code, 0, "{}", run.describe());
    assert!(
        run.stdout.contains(
            "warning: tlsward.io/client-auth-policy names ClientAuthPolicy \"partner-clients\", which does not exist"
        ),
        "{}",
        run.describe()
    );
}

#[test]
fn policy_file_is_the_secure_default() {
    let policy = IngressTlsPolicy::load(&root().join(POLICY_FILE)).expect("policy file loads");
    assert_eq!(policy.api_version.as_deref(), Some("tlsward.io/v1alpha1"));
    assert_eq!(policy.kind.as_deref(), Some("IngressTLSPolicy"));
    assert_eq!(policy.enforcement, Enforcement::Deny);
    assert!(!policy.allow_catch_all);
    assert!(!policy.exemptions.allow_exempt_annotation);
    assert!(policy.exemptions.namespaces.is_empty());
    assert!(policy.exemptions.namespace_selector.is_none());
    assert!(policy.exemptions.ingress_classes.is_empty());
    assert!(policy.cert_manager.issuer.is_none());
    assert!(!policy.auto_tls.enabled);
    // Apart from naming itself, the file is exactly the built-in default.
    let unnamed = IngressTlsPolicy {
        api_version: None,
        kind: None,
        ..policy
    };
    assert_eq!(unnamed, IngressTlsPolicy::default());

    let f = sample("denied", "no-tls.yaml");
    let run = tlsward(&["check", "--policy", POLICY_FILE, "-f", &f]);
    assert_eq!(run.code, 1, "{}", run.describe());
    assert!(
        run.stdout
            .starts_with("FAIL corp-services/inventory: spec.rules[0].host"),
        "{}",
        run.describe()
    );
}

#[test]
fn samples_give_the_same_results_with_the_policy_file_as_without() {
    let args = [
        "check",
        "-f",
        "policies/ingresses",
        "-f",
        CLIENT_AUTH_POLICIES,
        "-o",
        "json",
    ];
    let without = tlsward(&args);
    let mut with_args = args.to_vec();
    with_args.extend(["--policy", POLICY_FILE]);
    let with = tlsward(&with_args);
    assert_eq!(without.code, 1, "{}", without.describe());
    assert_eq!(with.code, 1, "{}", with.describe());
    assert_eq!(with.json(), without.json());
}

/// The commented-out `certManager:` example in the policy file, uncommented.
fn issuer_example(policy: &str) -> String {
    let lines: Vec<&str> = policy.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == "# certManager:")
        .expect("the policy file shows a commented-out certManager example");
    let mut out = String::new();
    for l in &lines[start..] {
        match l.strip_prefix("# ") {
            Some(body) if body.starts_with(' ') || body.starts_with("certManager:") => {
                out.push_str(body);
                out.push('\n');
            }
            _ => break,
        }
    }
    out
}

#[test]
fn commented_issuer_example_is_valid_and_never_overwrites_a_users_issuer() {
    let policy = read(POLICY_FILE);
    let example = issuer_example(&policy);
    assert!(example.contains("name: letsencrypt-prod"), "{example}");
    assert_eq!(policy.matches("\ncertManager: {}\n").count(), 1);
    let enabled = policy.replace("\ncertManager: {}\n", &format!("\n{example}"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let policy_path = write(tmp.path(), "policy.yaml", &enabled);
    let loaded = IngressTlsPolicy::load(Path::new(&policy_path)).expect("example loads");
    let issuer = loaded.cert_manager.issuer.expect("issuer set");
    assert_eq!(
        (
            issuer.name.as_str(),
            issuer.kind.as_str(),
            issuer.group.as_str()
        ),
        ("letsencrypt-prod", "ClusterIssuer", "cert-manager.io")
    );

    let run = tlsward(&[
        "check",
        "--policy",
        &policy_path,
        "-f",
        &sample("allowed", "exact-host.yaml"),
        "-o",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.describe());
    assert_eq!(
        run.json()["results"][0]["patch"],
        json!([{
            "op": "add",
            "path": "/metadata/annotations",
            "value": {"cert-manager.io/cluster-issuer": "letsencrypt-prod"},
        }])
    );

    for user_chose in ["user-cluster-issuer.yaml", "external-issuer.yaml"] {
        let run = tlsward(&[
            "check",
            "--policy",
            &policy_path,
            "-f",
            &sample("allowed", user_chose),
            "-o",
            "json",
        ]);
        assert_eq!(run.code, 0, "{user_chose}: {}", run.describe());
        assert_eq!(run.json()["results"][0]["patch"], json!([]), "{user_chose}");
    }
}

#[test]
fn json_output_over_the_policies_directory() {
    let run = tlsward(&["check", "-f", "policies/", "-o", "json"]);
    assert_eq!(run.code, 1, "{}", run.describe());
    let report = run.json();
    let results = report["results"].as_array().expect("results array");
    let allowed = samples("allowed");
    let denied = samples("denied");
    assert_eq!(results.len(), allowed.len() + denied.len(), "{report:#}");
    for r in results {
        let source = r["source"].as_str().expect("source");
        let expected_pass = if source.contains("/ingresses/allowed/") {
            true
        } else if source.contains("/ingresses/denied/") {
            false
        } else {
            panic!("unexpected Ingress from {source}")
        };
        assert_eq!(r["pass"], expected_pass, "{r:#}");
        assert!(r["namespace"].is_string() && r["name"].is_string(), "{r:#}");
        assert_eq!(r["document"], 1, "{r:#}");
        assert!(r["patch"].is_array(), "{r:#}");
        assert!(r["mutationWarnings"].is_array(), "{r:#}");
        let violations = r["verdict"]["violations"].as_array().expect("violations");
        assert_eq!(violations.is_empty(), expected_pass, "{r:#}");
        for v in violations {
            assert!(v["field"].is_string() && v["message"].is_string(), "{v}");
        }
    }
    // The policy file and the ClientAuthPolicy are not Ingresses.
    assert!(
        report["skipped"].as_u64().expect("skipped") >= 2,
        "{report:#}"
    );
}

#[test]
fn reads_a_kubectl_made_ingress_from_stdin() {
    let pass = read(&sample("allowed", "exact-host.yaml"));
    let run = tlsward_with_stdin(&["check", "-f", "-"], pass.as_bytes());
    assert_eq!(run.code, 0, "{}", run.describe());
    assert_eq!(
        run.stdout,
        "PASS shop/shop\n1 Ingresses: 1 passed, 0 failed; 0 other documents skipped\n"
    );

    let fail = read(&sample("denied", "no-tls.yaml"));
    let run = tlsward_with_stdin(&["check", "-f", "-", "-o", "json"], fail.as_bytes());
    assert_eq!(run.code, 1, "{}", run.describe());
    let r = &run.json()["results"][0];
    assert_eq!(r["source"], "-");
    assert_eq!(r["name"], "inventory");
    assert_eq!(r["pass"], false);
}

const INGRESS: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: NAME
  namespace: recursion
spec:
  rules:
  - host: NAME.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
  tls:
  - hosts: [NAME.example.com]
    secretName: NAME-tls
";

#[test]
fn directories_are_read_recursively() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    write(d, "top.yaml", &INGRESS.replace("NAME", "top"));
    write(d, "a/mid.yml", &INGRESS.replace("NAME", "mid"));
    write(d, "a/b/c/deep.yaml", &INGRESS.replace("NAME", "deep"));
    let json = serde_json::to_string(
        &serde_saphyr::from_str::<Value>(&INGRESS.replace("NAME", "json")).expect("YAML"),
    )
    .expect("JSON");
    write(d, "a/b/as.json", &json);
    // Not a manifest extension: never read, so its garbage is harmless.
    write(d, "a/notes.txt", "this: [is not yaml\n");
    let run = tlsward(&["check", "-f", d.to_str().expect("UTF-8")]);
    assert_eq!(run.code, 0, "{}", run.describe());
    let mut passed: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("PASS recursion/"))
        .collect();
    passed.sort_unstable();
    assert_eq!(passed, ["deep", "json", "mid", "top"], "{}", run.describe());
    assert_eq!(
        run.summary(),
        "4 Ingresses: 4 passed, 0 failed; 0 other documents skipped"
    );

    // The samples directory: both subdirectories are found.
    let run = tlsward(&["check", "-f", "policies/ingresses"]);
    let total = samples("allowed").len() + samples("denied").len();
    assert_eq!(run.code, 1, "{}", run.describe());
    assert!(
        run.summary().starts_with(&format!(
            "{total} Ingresses: {} passed, {} failed;",
            samples("allowed").len(),
            samples("denied").len()
        )),
        "{}",
        run.describe()
    );
}

#[test]
fn yaml_syntax_error_exits_2_naming_file_and_document() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "{}---\n# the second document is broken\nmetadata: {{name: [unclosed\n",
        INGRESS.replace("NAME", "fine")
    );
    let path = write(tmp.path(), "broken.yaml", &text);
    let run = tlsward(&["check", "-f", &path]);
    assert_eq!(run.code, 2, "{}", run.describe());
    assert!(
        run.stderr.contains(&format!("{path}: document 2: ")),
        "{}",
        run.describe()
    );
    assert!(run.stdout.is_empty(), "{}", run.describe());

    // Unreadable inputs and policies exit 2 as well.
    let missing = tmp.path().join("missing.yaml");
    let missing = missing.to_str().expect("UTF-8");
    let run = tlsward(&["check", "-f", missing]);
    assert_eq!(run.code, 2, "{}", run.describe());
    assert!(run.stderr.contains(missing), "{}", run.describe());
    let run = tlsward(&[
        "check",
        "--policy",
        missing,
        "-f",
        &sample("allowed", "exact-host.yaml"),
    ]);
    assert_eq!(run.code, 2, "{}", run.describe());
    let typo = write(tmp.path(), "typo.yaml", "enforcment: Warn\n");
    let run = tlsward(&[
        "check",
        "--policy",
        &typo,
        "-f",
        &sample("allowed", "exact-host.yaml"),
    ]);
    assert_eq!(run.code, 2, "{}", run.describe());
    assert!(run.stderr.contains("enforcment"), "{}", run.describe());
}

#[test]
fn kind_list_is_flattened() {
    // As `kubectl get ingress -o yaml` prints it.
    let item = |name: &str, tls: bool| {
        let mut s = format!(
            "- apiVersion: networking.k8s.io/v1\n  kind: Ingress\n  metadata:\n    name: {name}\n    namespace: listed\n  spec:\n    rules:\n    - host: {name}.example.com\n"
        );
        if tls {
            s.push_str(&format!(
                "    tls:\n    - hosts: [{name}.example.com]\n      secretName: {name}-tls\n"
            ));
        }
        s
    };
    let yaml = format!(
        "apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n{}{}",
        item("good", true),
        item("bad", false)
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = write(tmp.path(), "list.yaml", &yaml);
    let run = tlsward(&["check", "-f", &path]);
    assert_eq!(run.code, 1, "{}", run.describe());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "PASS listed/good", "{}", run.describe());
    assert!(
        lines[1].starts_with("FAIL listed/bad: spec.rules[0].host \"bad.example.com\""),
        "{}",
        run.describe()
    );
    // The List itself is not counted as a document of its own.
    assert_eq!(
        run.summary(),
        "2 Ingresses: 1 passed, 1 failed; 0 other documents skipped"
    );

    // The same in JSON, made from two samples.
    let items: Vec<Value> = [
        sample("allowed", "exact-host.yaml"),
        sample("denied", "no-tls.yaml"),
    ]
    .iter()
    .map(|p| serde_saphyr::from_str(&read(p)).expect("sample YAML"))
    .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let path = write(tmp.path(), "list.json", &list.to_string());
    let run = tlsward(&["check", "-f", &path, "-o", "json"]);
    assert_eq!(run.code, 1, "{}", run.describe());
    let report = run.json();
    let ids: Vec<(String, bool)> = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                format!(
                    "{}/{}",
                    r["namespace"].as_str().unwrap(),
                    r["name"].as_str().unwrap()
                ),
                r["pass"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("shop/shop".to_string(), true),
            ("corp-services/inventory".to_string(), false)
        ]
    );
}

#[test]
fn other_documents_are_counted_as_skipped() {
    let text = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: recursion\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: recursion\ndata:\n  a: b\n---\n# an empty document is not counted\n---\n{}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: recursion\nspec:\n  ports:\n  - port: 80\n",
        INGRESS.replace("NAME", "web")
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = write(tmp.path(), "app.yaml", &text);
    let run = tlsward(&["check", "-f", &path]);
    assert_eq!(run.code, 0, "{}", run.describe());
    assert_eq!(
        run.stdout,
        "PASS recursion/web\n1 Ingresses: 1 passed, 0 failed; 3 other documents skipped\n"
    );
    let run = tlsward(&["check", "-f", &path, "-o", "json"]);
    assert_eq!(run.json()["skipped"], 3);
    assert_eq!(run.json()["results"][0]["document"], 4);
}

#[test]
fn warn_and_dry_run_enforcement_still_exit_1_on_violations() {
    // `check` reports violations whatever the enforcement: Report::exit_code
    // fails any Ingress with violations unless it is exempt.
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = sample("denied", "no-tls.yaml");
    for mode in ["Warn", "DryRun"] {
        let policy = write(
            tmp.path(),
            &format!("{mode}.yaml"),
            &format!(
                "apiVersion: tlsward.io/v1alpha1\nkind: IngressTLSPolicy\nenforcement: {mode}\n"
            ),
        );
        let run = tlsward(&["check", "--policy", &policy, "-f", &f]);
        assert_eq!(run.code, 1, "{mode}: {}", run.describe());
        assert!(
            run.stdout.starts_with(
                "FAIL corp-services/inventory: spec.rules[0].host \"inventory.example.com\" is not covered by TLS"
            ),
            "{mode}: {}",
            run.describe()
        );
        // The violation is shown once, not repeated as a warning.
        assert!(
            !run.stdout.contains("warning:"),
            "{mode}: {}",
            run.describe()
        );

        let run = tlsward(&["check", "--policy", &policy, "-f", &f, "-o", "json"]);
        assert_eq!(run.code, 1, "{mode}: {}", run.describe());
        let r = &run.json()["results"][0];
        assert_eq!(r["pass"], false, "{mode}");
        // The webhook would admit it...
        assert_eq!(r["verdict"]["allowed"], true, "{mode}");
        assert_eq!(
            r["verdict"]["violations"].as_array().map(Vec::len),
            Some(1),
            "{mode}"
        );
        // ...with the violation as a warning in Warn mode only.
        let warnings = r["verdict"]["warnings"].as_array().expect("warnings").len();
        assert_eq!(warnings, usize::from(mode == "Warn"), "{mode}: {r:#}");
    }
}

#[test]
fn namespace_selector_exemption_uses_namespace_documents_in_the_input() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let policy = write(
        tmp.path(),
        "policy.yaml",
        "exemptions:\n  namespaceSelector:\n    matchLabels:\n      tlsward.io/exempt: \"true\"\n",
    );
    let f = sample("denied", "no-tls.yaml");
    // Without the Namespace object, its labels are unknown: no exemption.
    let run = tlsward(&["check", "--policy", &policy, "-f", &f]);
    assert_eq!(run.code, 1, "{}", run.describe());

    let ns = write(
        tmp.path(),
        "namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: corp-services\n  labels:\n    tlsward.io/exempt: \"true\"\n",
    );
    let run = tlsward(&["check", "--policy", &policy, "-f", &ns, "-f", &f]);
    assert_eq!(run.code, 0, "{}", run.describe());
    assert_eq!(
        run.stdout.lines().next(),
        Some(
            "PASS corp-services/inventory (exempt: namespace \"corp-services\" matches exemptions.namespaceSelector)"
        ),
        "{}",
        run.describe()
    );
}
