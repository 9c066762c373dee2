//! What the chart modules share: the tools (helm, kubernetes-validate,
//! promtool) from `.tools/bin` or PATH, failing under CI=true when one is
//! missing; the install scenarios (default values, every option flipped,
//! the alternatives, a ClusterIP proxy, monitoring on); `helm template` run
//! for real and parsed; and the helpers that pick objects, workloads,
//! arguments, the rendered policy and the values tree out of the result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub const CHART: &str = "charts/tlsward";
pub const KUBERNETES_VERSION: &str = "1.33.0";
pub const MONITORING_API: &str = "monitoring.coreos.com/v1";
pub const ALL_OPTIONS: &str = "charts/tlsward/ci/all-options-values.yaml";
pub const ALTERNATIVES: &str = "charts/tlsward/ci/alternatives-values.yaml";
pub const COMPONENTS: [&str; 3] = ["webhook", "operator", "proxy"];
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A tool from `.tools/bin` (where scripts/install-test-tools.sh puts helm)
/// or PATH. When it is missing: a failure under CI=true, else None after a
/// notice.
pub fn tool(name: &str) -> Option<PathBuf> {
    let local = root().join(".tools/bin").join(name);
    let found = if local.is_file() {
        Some(local)
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    };
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "{name} is not installed, and CI=true: run scripts/install-test-tools.sh"
        );
        eprintln!(
            "NOTICE: skipping this test: {name} is not installed (scripts/install-test-tools.sh installs it)"
        );
    }
    found
}

pub fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One way of installing the chart.
#[derive(Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub release: &'static str,
    pub namespace: &'static str,
    /// The name every resource name starts with.
    pub full: &'static str,
    /// Whether cert-manager issues the webhook's certificate.
    pub cert_manager: bool,
    pub args: &'static [&'static str],
}

impl Scenario {
    pub fn is(&self, other: &Scenario) -> bool {
        self.name == other.name
    }
}

pub const DEFAULTS: Scenario = Scenario {
    name: "default values",
    release: "tlsward",
    namespace: "tlsward",
    full: "tlsward",
    cert_manager: false,
    args: &[],
};

pub const FLIPPED: Scenario = Scenario {
    name: "every option flipped",
    release: "tlsward",
    namespace: "tlsward",
    full: "edge-tls",
    cert_manager: true,
    args: &["-f", ALL_OPTIONS, "--api-versions", MONITORING_API],
};

pub const ALTERNATIVE: Scenario = Scenario {
    name: "the alternative choices, another release and namespace",
    release: "edge",
    namespace: "other-ns",
    full: "edge-tlsward",
    cert_manager: true,
    args: &["-f", ALTERNATIVES],
};

pub const CLUSTER_IP: Scenario = Scenario {
    name: "ClusterIP proxy; monitoring asked for where the API is missing",
    release: "edge",
    namespace: "other-ns",
    full: "edge-tlsward",
    cert_manager: false,
    args: &[
        "--set",
        "proxy.service.type=ClusterIP",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.prometheusRule.enabled=true",
    ],
};

pub const MONITORED: Scenario = Scenario {
    name: "defaults with ServiceMonitor and PrometheusRule",
    release: "tlsward",
    namespace: "tlsward",
    full: "tlsward",
    cert_manager: false,
    args: &[
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--api-versions",
        MONITORING_API,
    ],
};

pub const SCENARIOS: [&Scenario; 5] = [&DEFAULTS, &FLIPPED, &ALTERNATIVE, &CLUSTER_IP, &MONITORED];

/// `helm template` of a scenario plus extra arguments: the manifests, or
/// helm's error output.
pub fn template(helm: &Path, s: &Scenario, extra: &[&str]) -> Result<String, String> {
    let mut args = vec![
        "template",
        s.release,
        CHART,
        "--namespace",
        s.namespace,
        "--kube-version",
        KUBERNETES_VERSION,
    ];
    args.extend_from_slice(s.args);
    args.extend_from_slice(extra);
    let out = run(helm, &args);
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("helm prints UTF-8"))
    } else {
        Err(output_text(&out))
    }
}

pub fn parse(manifests: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(manifests)
        .unwrap_or_else(|e| panic!("helm template printed invalid YAML: {e}\n{manifests}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// The objects a scenario renders.
pub fn render(helm: &Path, s: &Scenario) -> Vec<Value> {
    render_with(helm, s, &[])
}

pub fn render_with(helm: &Path, s: &Scenario, extra: &[&str]) -> Vec<Value> {
    let text = template(helm, s, extra)
        .unwrap_or_else(|e| panic!("{}: helm template {extra:?} failed:\n{e}", s.name));
    parse(&text)
}

pub fn kind_of(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

pub fn name_of(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| kind_of(d) == kind).collect()
}

pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found = docs
        .iter()
        .filter(|d| kind_of(d) == kind && name_of(d) == name)
        .collect::<Vec<_>>();
    assert_eq!(found.len(), 1, "exactly one {kind} {name}");
    found[0]
}

pub fn component_of(o: &Value) -> &str {
    o["metadata"]["labels"][COMPONENT_LABEL]
        .as_str()
        .unwrap_or_default()
}

/// Deployments and DaemonSets.
pub fn workloads(docs: &[Value]) -> Vec<&Value> {
    docs.iter()
        .filter(|d| matches!(kind_of(d), "Deployment" | "DaemonSet"))
        .collect()
}

pub fn workload<'a>(docs: &'a [Value], component: &str) -> &'a Value {
    let found: Vec<_> = workloads(docs)
        .into_iter()
        .filter(|w| component_of(w) == component)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {component} workload");
    found[0]
}

pub fn container(w: &Value) -> &Value {
    let containers = w["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "{}: one container", name_of(w));
    &containers[0]
}

pub fn args_of(w: &Value) -> Vec<String> {
    container(w)["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

/// The value following `flag` in `args`.
pub fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .map(|i| args.get(i + 1).expect("flag value").as_str())
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The name every resource name starts with, in a scenario.
pub fn fullname(s: &Scenario) -> String {
    s.full.to_string()
}

/// The labels of a workload's pods.
pub fn pod_labels(w: &Value) -> &Value {
    &w["spec"]["template"]["metadata"]["labels"]
}

/// The workload's selector labels.
pub fn selector(w: &Value) -> &Value {
    &w["spec"]["selector"]["matchLabels"]
}

/// Whether a label selector (a map) selects the given labels.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    let sel = selector.as_object().expect("selector map");
    !sel.is_empty() && sel.iter().all(|(k, v)| &labels[k] == v)
}

pub fn write_temp(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

/// The admission policy in the ConfigMap the webhook mounts.
pub fn policy_text(docs: &[Value], s: &Scenario) -> String {
    let cm = find(docs, "ConfigMap", &format!("{}-policy", fullname(s)));
    cm["data"]["ingress-tls.yaml"]
        .as_str()
        .expect("ingress-tls.yaml")
        .to_string()
}

pub fn policy_of(docs: &[Value], s: &Scenario) -> Value {
    serde_saphyr::from_str(&policy_text(docs, s)).expect("policy YAML")
}

/// The chart values tree: every leaf (a scalar, a list, an empty map, or a
/// `resources` block) with its dotted path.
pub fn leaves(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    for (k, x) in v.as_object().expect("map") {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match x {
            Value::Object(m) if !m.is_empty() && k != "resources" => leaves(&path, x, out),
            _ => {
                out.insert(path, x.clone());
            }
        }
    }
}

pub fn values() -> Value {
    serde_saphyr::from_str(&read("charts/tlsward/values.yaml")).expect("values.yaml")
}
