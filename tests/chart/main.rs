//! The Helm chart in `charts/tlsward`, checked with the real tools: `helm lint
//! --strict`, `helm template` with the default values and with every option
//! flipped, `kubernetes-validate --strict` against the Kubernetes 1.33
//! schemas, and `promtool` on the alerting rules. In code, on the rendered
//! objects: the restricted Pod Security Standard on every pod, the exact RBAC
//! of each component (and no `*` anywhere), webhook configurations identical
//! to `webhooks/*.yaml`, a namespaceSelector that exempts kube-system and the
//! release namespace, a values schema that refuses wrong types and unknown
//! keys, a README that documents every value, and flags the binary knows.
//!
//! A test whose tool is missing (helm, kubernetes-validate, promtool) fails
//! under CI=true and is skipped with a notice otherwise;
//! scripts/install-test-tools.sh installs all three.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

const CHART: &str = "charts/tlsward";
const KUBERNETES_VERSION: &str = "1.33.0";
const MONITORING_API: &str = "monitoring.coreos.com/v1";
const ALL_OPTIONS: &str = "charts/tlsward/ci/all-options-values.yaml";
const ALTERNATIVES: &str = "charts/tlsward/ci/alternatives-values.yaml";
const COMPONENTS: [&str; 3] = ["webhook", "operator", "proxy"];
const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A tool from `.tools/bin` (where scripts/install-test-tools.sh puts helm)
/// or PATH. When it is missing: a failure under CI=true, else None after a
/// notice.
fn tool(name: &str) -> Option<PathBuf> {
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

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One way of installing the chart.
#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    release: &'static str,
    namespace: &'static str,
    /// The name every resource name starts with.
    full: &'static str,
    /// Whether cert-manager issues the webhook's certificate.
    cert_manager: bool,
    args: &'static [&'static str],
}

impl Scenario {
    fn is(&self, other: &Scenario) -> bool {
        self.name == other.name
    }
}

const DEFAULTS: Scenario = Scenario {
    name: "default values",
    release: "tlsward",
    namespace: "tlsward",
    full: "tlsward",
    cert_manager: false,
    args: &[],
};

const FLIPPED: Scenario = Scenario {
    name: "every option flipped",
    release: "tlsward",
    namespace: "tlsward",
    full: "edge-tls",
    cert_manager: true,
    args: &["-f", ALL_OPTIONS, "--api-versions", MONITORING_API],
};

const ALTERNATIVE: Scenario = Scenario {
    name: "the alternative choices, another release and namespace",
    release: "edge",
    namespace: "other-ns",
    full: "edge-tlsward",
    cert_manager: true,
    args: &["-f", ALTERNATIVES],
};

const CLUSTER_IP: Scenario = Scenario {
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

const MONITORED: Scenario = Scenario {
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

const SCENARIOS: [&Scenario; 5] = [&DEFAULTS, &FLIPPED, &ALTERNATIVE, &CLUSTER_IP, &MONITORED];

/// `helm template` of a scenario plus extra arguments: the manifests, or
/// helm's error output.
fn template(helm: &Path, s: &Scenario, extra: &[&str]) -> Result<String, String> {
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

fn parse(manifests: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(manifests)
        .unwrap_or_else(|e| panic!("helm template printed invalid YAML: {e}\n{manifests}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// The objects a scenario renders.
fn render(helm: &Path, s: &Scenario) -> Vec<Value> {
    render_with(helm, s, &[])
}

fn render_with(helm: &Path, s: &Scenario, extra: &[&str]) -> Vec<Value> {
    let text = template(helm, s, extra)
        .unwrap_or_else(|e| panic!("{}: helm template {extra:?} failed:\n{e}", s.name));
    parse(&text)
}

fn kind_of(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

fn name_of(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| kind_of(d) == kind).collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found = docs
        .iter()
        .filter(|d| kind_of(d) == kind && name_of(d) == name)
        .collect::<Vec<_>>();
    assert_eq!(found.len(), 1, "exactly one {kind} {name}");
    found[0]
}

fn component_of(o: &Value) -> &str {
    o["metadata"]["labels"][COMPONENT_LABEL]
        .as_str()
        .unwrap_or_default()
}

/// Deployments and DaemonSets.
fn workloads(docs: &[Value]) -> Vec<&Value> {
    docs.iter()
        .filter(|d| matches!(kind_of(d), "Deployment" | "DaemonSet"))
        .collect()
}

fn workload<'a>(docs: &'a [Value], component: &str) -> &'a Value {
    let found: Vec<_> = workloads(docs)
        .into_iter()
        .filter(|w| component_of(w) == component)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {component} workload");
    found[0]
}

fn container(w: &Value) -> &Value {
    let containers = w["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "{}: one container", name_of(w));
    &containers[0]
}

fn args_of(w: &Value) -> Vec<String> {
    container(w)["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

/// The value following `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .map(|i| args.get(i + 1).expect("flag value").as_str())
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The name every resource name starts with, in a scenario.
fn fullname(s: &Scenario) -> String {
    s.full.to_string()
}

/// The labels of a workload's pods.
fn pod_labels(w: &Value) -> &Value {
    &w["spec"]["template"]["metadata"]["labels"]
}

/// The workload's selector labels.
fn selector(w: &Value) -> &Value {
    &w["spec"]["selector"]["matchLabels"]
}

/// Whether a label selector (a map) selects the given labels.
fn selects(selector: &Value, labels: &Value) -> bool {
    let sel = selector.as_object().expect("selector map");
    !sel.is_empty() && sel.iter().all(|(k, v)| &labels[k] == v)
}

fn write_temp(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

// ---------------------------------------------------------------------------
// helm lint, kubernetes-validate
// ---------------------------------------------------------------------------

#[test]
fn helm_lint_strict_passes_with_defaults_and_every_option_flipped() {
    let Some(helm) = tool("helm") else { return };
    for values in [None, Some(ALL_OPTIONS), Some(ALTERNATIVES)] {
        let mut args = vec!["lint", "--strict", CHART];
        if let Some(v) = values {
            args.extend(["-f", v]);
        }
        let out = run(&helm, &args);
        let text = output_text(&out);
        assert!(out.status.success(), "helm {args:?}:\n{text}");
        assert!(
            text.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{text}"
        );
    }
    // The lint really checks the values: a wrong type fails it.
    let out = run(
        &helm,
        &["lint", "--strict", CHART, "--set", "webhook.replicas=two"],
    );
    assert!(
        !out.status.success(),
        "helm lint accepted webhook.replicas=two:\n{}",
        output_text(&out)
    );
}

/// Kinds kubernetes-validate has no schema for (they come with cert-manager's
/// and prometheus-operator's CRDs); it warns about them and nothing else.
const CRD_KINDS: [(&str, &str); 4] = [
    ("Certificate", "cert-manager.io/v1"),
    ("Issuer", "cert-manager.io/v1"),
    ("ServiceMonitor", MONITORING_API),
    ("PrometheusRule", MONITORING_API),
];

#[test]
fn rendered_manifests_pass_strict_kubernetes_schema_validation() {
    let Some(helm) = tool("helm") else { return };
    let Some(validator) = tool("kubernetes-validate") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, s) in SCENARIOS.iter().enumerate() {
        let manifests = template(&helm, s, &["--include-crds"])
            .unwrap_or_else(|e| panic!("{}: helm template failed:\n{e}", s.name));
        let objects = parse(&manifests);
        assert!(
            objects
                .iter()
                .any(|o| kind_of(o) == "CustomResourceDefinition"),
            "{}: --include-crds renders the CRD",
            s.name
        );
        let file = write_temp(&dir, &format!("rendered-{i}.yaml"), &manifests);
        let file_arg = file.to_str().expect("UTF-8 path");
        let out = run(
            &validator,
            &["--strict", "-k", KUBERNETES_VERSION, file_arg],
        );
        let text = output_text(&out);
        assert!(
            out.status.success(),
            "{}: kubernetes-validate --strict -k {KUBERNETES_VERSION} failed:\n{text}",
            s.name
        );
        let passed = text.lines().filter(|l| l.contains(" passed ")).count();
        let schemaless = objects
            .iter()
            .filter(|o| {
                CRD_KINDS
                    .iter()
                    .any(|(k, v)| kind_of(o) == *k && o["apiVersion"] == *v)
            })
            .count();
        assert_eq!(
            passed + schemaless,
            objects.len(),
            "{}: every object is validated, except CRD kinds:\n{text}",
            s.name
        );
        for line in text.lines().filter(|l| !l.contains(" passed ")) {
            let expected = line.starts_with("WARN")
                && CRD_KINDS
                    .iter()
                    .any(|(k, v)| line.contains(&format!("kind {k} with api version {v}")));
            assert!(expected, "{}: unexpected validator output: {line}", s.name);
        }
    }
}

// ---------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------

#[test]
fn every_pod_runs_under_the_restricted_pod_security_standard() {
    let Some(helm) = tool("helm") else { return };
    for s in SCENARIOS {
        let docs = render(&helm, s);
        let pods = workloads(&docs);
        assert_eq!(pods.len(), 3, "{}: three workloads", s.name);
        for w in pods {
            let what = format!("{}: {} {}", s.name, kind_of(w), name_of(w));
            let spec = &w["spec"]["template"]["spec"];
            let pod = &spec["securityContext"];
            assert_eq!(pod["runAsNonRoot"], true, "{what}");
            assert_eq!(pod["runAsUser"], 65532, "{what}");
            assert_eq!(pod["runAsGroup"], 65532, "{what}");
            assert_eq!(
                pod["seccompProfile"],
                json!({"type": "RuntimeDefault"}),
                "{what}"
            );
            assert_eq!(spec["automountServiceAccountToken"], true, "{what}");
            for forbidden in ["hostNetwork", "hostPID", "hostIPC", "hostUsers"] {
                assert!(spec.get(forbidden).is_none(), "{what}: {forbidden}");
            }
            for v in spec["volumes"].as_array().into_iter().flatten() {
                assert!(
                    v.get("configMap").is_some() || v.get("secret").is_some(),
                    "{what}: only ConfigMap and Secret volumes: {v}"
                );
            }
            let all: Vec<&Value> = ["initContainers", "containers", "ephemeralContainers"]
                .iter()
                .flat_map(|k| spec[*k].as_array().into_iter().flatten())
                .collect();
            assert_eq!(all.len(), 1, "{what}: one container");
            for c in all {
                let sc = &c["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}), "{what}");
                assert!(sc.get("privileged").is_none(), "{what}");
                for key in ["runAsUser", "runAsNonRoot"] {
                    assert!(
                        sc.get(key)
                            .is_none_or(|v| v != &json!(0) && v != &json!(false)),
                        "{what}: container {key} overrides the pod's"
                    );
                }
                for p in c["ports"].as_array().into_iter().flatten() {
                    assert!(p.get("hostPort").is_none(), "{what}: hostPort");
                }
            }
        }
    }
}

#[test]
fn containers_run_the_image_with_probes_resources_and_json_logs() {
    let Some(helm) = tool("helm") else { return };
    for s in [&DEFAULTS, &FLIPPED] {
        let flipped = s.is(&FLIPPED);
        let docs = render(&helm, s);
        for component in COMPONENTS {
            let w = workload(&docs, component);
            let c = container(w);
            let what = format!("{}: {component}", s.name);
            let (image, policy) = if flipped {
                ("registry.example.com/mirror/tlsward:0.1.0-rc.1", "Always")
            } else {
                ("ghcr.io/tlsward/tlsward:0.1.0", "IfNotPresent")
            };
            assert_eq!(c["image"], image, "{what}");
            assert_eq!(c["imagePullPolicy"], policy, "{what}");
            let args = args_of(w);
            assert_eq!(args[0], component, "{what}: the subcommand comes first");
            assert_eq!(
                flag(&args, "--admin-listen"),
                Some("0.0.0.0:9090"),
                "{what}"
            );
            assert_eq!(
                flag(&args, "--log-format"),
                Some(if flipped { "text" } else { "json" }),
                "{what}"
            );
            let admin = c["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .find(|p| p["name"] == "admin")
                .unwrap_or_else(|| panic!("{what}: admin port"));
            assert_eq!(admin["containerPort"], 9090, "{what}");
            assert_eq!(
                c["livenessProbe"]["httpGet"],
                json!({"path": "/healthz", "port": "admin"}),
                "{what}"
            );
            assert_eq!(
                c["readinessProbe"]["httpGet"],
                json!({"path": "/readyz", "port": "admin"}),
                "{what}"
            );
            for kind in ["requests", "limits"] {
                for r in ["cpu", "memory"] {
                    assert!(
                        c["resources"][kind].get(r).is_some(),
                        "{what}: resources.{kind}.{r}"
                    );
                }
            }
        }
    }
}

#[test]
fn each_component_has_its_own_service_account_service_and_disruption_budget() {
    let Some(helm) = tool("helm") else { return };
    for s in SCENARIOS {
        let docs = render(&helm, s);
        let full = fullname(s);
        let mut accounts = BTreeSet::new();
        for component in COMPONENTS {
            let what = format!("{}: {component}", s.name);
            let w = workload(&docs, component);
            assert_eq!(name_of(w), format!("{full}-{component}"), "{what}");
            assert_eq!(w["metadata"]["namespace"], s.namespace, "{what}");
            let labels = pod_labels(w);
            assert!(selects(selector(w), labels), "{what}: selector");
            for other in COMPONENTS.iter().filter(|c| **c != component) {
                let theirs = pod_labels(workload(&docs, other));
                assert!(
                    !selects(selector(w), theirs),
                    "{what}: its selector must not select {other} pods"
                );
            }

            // Its own ServiceAccount.
            let sa_name = w["spec"]["template"]["spec"]["serviceAccountName"]
                .as_str()
                .expect("serviceAccountName");
            assert_eq!(sa_name, format!("{full}-{component}"), "{what}");
            let sa = find(&docs, "ServiceAccount", sa_name);
            assert_eq!(sa["metadata"]["namespace"], s.namespace, "{what}");
            assert!(accounts.insert(sa_name.to_string()), "{what}: shared SA");

            // A PodDisruptionBudget that keeps one pod.
            let pdbs: Vec<_> = of_kind(&docs, "PodDisruptionBudget")
                .into_iter()
                .filter(|p| selects(&p["spec"]["selector"]["matchLabels"], labels))
                .collect();
            assert_eq!(pdbs.len(), 1, "{what}: one PDB");
            assert_eq!(pdbs[0]["spec"]["minAvailable"], 1, "{what}");
            assert_eq!(
                &pdbs[0]["spec"]["selector"]["matchLabels"],
                selector(w),
                "{what}"
            );

            // A Service in front of it.
            let services: Vec<_> = of_kind(&docs, "Service")
                .into_iter()
                .filter(|svc| selects(&svc["spec"]["selector"], labels))
                .collect();
            assert!(!services.is_empty(), "{what}: a Service");

            // Spread over nodes when it is a Deployment.
            let spread = &w["spec"]["template"]["spec"]["topologySpreadConstraints"];
            if kind_of(w) == "Deployment" {
                let spread = spread.as_array().expect("topologySpreadConstraints");
                assert_eq!(spread.len(), 1, "{what}");
                assert_eq!(spread[0]["topologyKey"], "kubernetes.io/hostname", "{what}");
                assert_eq!(spread[0]["whenUnsatisfiable"], "ScheduleAnyway", "{what}");
                assert_eq!(
                    &spread[0]["labelSelector"]["matchLabels"],
                    selector(w),
                    "{what}"
                );
                assert_eq!(
                    w["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0,
                    "{what}"
                );
            }
        }
        assert_eq!(of_kind(&docs, "ServiceAccount").len(), 3, "{}", s.name);
        assert_eq!(of_kind(&docs, "PodDisruptionBudget").len(), 3, "{}", s.name);
    }
}

#[test]
fn replicas_and_high_availability_follow_the_values() {
    let Some(helm) = tool("helm") else { return };
    let docs = render(&helm, &DEFAULTS);
    for component in COMPONENTS {
        let w = workload(&docs, component);
        assert_eq!(kind_of(w), "Deployment", "{component}");
        assert_eq!(
            w["spec"]["replicas"], 2,
            "{component}: two replicas by default"
        );
    }
    let docs = render(&helm, &FLIPPED);
    assert_eq!(workload(&docs, "webhook")["spec"]["replicas"], 3);
    assert_eq!(workload(&docs, "operator")["spec"]["replicas"], 3);
    let proxy = workload(&docs, "proxy");
    assert_eq!(kind_of(proxy), "DaemonSet");
    assert!(
        proxy["spec"].get("replicas").is_none(),
        "a DaemonSet has no replicas"
    );
    assert_eq!(proxy["spec"]["updateStrategy"]["type"], "RollingUpdate");
    let pod = &proxy["spec"]["template"]["spec"];
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(
        pod["nodeSelector"],
        json!({"node-role.kubernetes.io/edge": ""})
    );
    assert_eq!(pod["tolerations"][0]["key"], "node-role.kubernetes.io/edge");
    assert!(pod["affinity"]["podAffinity"].is_object());
    assert_eq!(
        pod["imagePullSecrets"],
        json!([{"name": "registry-credentials"}])
    );
    assert_eq!(
        proxy["spec"]["template"]["metadata"]["labels"]["team"],
        "platform"
    );
    assert_eq!(
        proxy["spec"]["template"]["metadata"]["annotations"]["example.com/scrape"],
        "false"
    );
    assert_eq!(
        proxy["metadata"]["labels"]["team"], "platform",
        "commonLabels"
    );
    assert_eq!(
        container(proxy)["resources"]["limits"],
        json!({"cpu": "4", "memory": "1Gi"})
    );
    let docs = render(&helm, &ALTERNATIVE);
    assert_eq!(workload(&docs, "proxy")["spec"]["replicas"], 3);
    assert_eq!(kind_of(workload(&docs, "proxy")), "Deployment");
}

// ---------------------------------------------------------------------------
// RBAC
// ---------------------------------------------------------------------------

/// A rule as (apiGroups, resources, resourceNames, verbs).
type Rule<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str]);

/// Every (apiGroup, resource, resourceName or "", verb) a set of rules grants.
fn grants(rules: &Value) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules.as_array().expect("rules") {
        let names = strings(&rule["resourceNames"]);
        let names = if names.is_empty() {
            vec![String::new()]
        } else {
            names
        };
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for n in &names {
                    for v in strings(&rule["verbs"]) {
                        out.insert((g.clone(), r.clone(), n.clone(), v));
                    }
                }
            }
        }
    }
    out
}

fn expected_grants(rules: &[Rule]) -> BTreeSet<(String, String, String, String)> {
    let as_json: Vec<Value> = rules
        .iter()
        .map(|(g, r, n, v)| json!({"apiGroups": g, "resources": r, "resourceNames": n, "verbs": v}))
        .collect();
    grants(&Value::Array(as_json))
}

fn assert_role(docs: &[Value], s: &Scenario, kind: &str, component: &str, want: &[Rule]) {
    let name = format!("{}-{component}", fullname(s));
    let role = find(docs, kind, &name);
    let what = format!("{}: {kind} {name}", s.name);
    assert_eq!(grants(&role["rules"]), expected_grants(want), "{what}");
    if kind == "Role" {
        assert_eq!(role["metadata"]["namespace"], s.namespace, "{what}");
    }
    let binding_kind = format!("{kind}Binding");
    let binding = find(docs, &binding_kind, &name);
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}),
        "{what}"
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": name, "namespace": s.namespace}]),
        "{what}: bound to the component's own ServiceAccount only"
    );
}

const READ: &[&str] = &["get", "list", "watch"];

fn operator_rules() -> Vec<Rule<'static>> {
    vec![
        (&["tlsward.io"], &["clientauthpolicies"], &[], READ),
        (
            &["tlsward.io"],
            &["clientauthpolicies/status"],
            &[],
            &["get", "patch"],
        ),
        (
            &[""],
            &["secrets"],
            &[],
            &["get", "list", "watch", "create", "patch"],
        ),
        (&[""], &["configmaps"], &[], READ),
        (&["networking.k8s.io"], &["ingresses"], &[], READ),
        (&["events.k8s.io"], &["events"], &[], &["create", "patch"]),
    ]
}

fn proxy_rules() -> Vec<Rule<'static>> {
    vec![
        (&["networking.k8s.io"], &["ingresses"], &[], READ),
        (
            &["networking.k8s.io"],
            &["ingresses/status"],
            &[],
            &["get", "update", "patch"],
        ),
        (&["networking.k8s.io"], &["ingressclasses"], &[], READ),
        (&[""], &["secrets", "configmaps", "services"], &[], READ),
        (&["discovery.k8s.io"], &["endpointslices"], &[], READ),
        (&["tlsward.io"], &["clientauthpolicies"], &[], READ),
    ]
}

const LEASES: &[Rule<'static>] = &[(
    &["coordination.k8s.io"],
    &["leases"],
    &[],
    &["get", "create", "patch"],
)];

#[test]
fn rbac_grants_each_component_exactly_what_it_needs() {
    let Some(helm) = tool("helm") else { return };

    // Self-managed webhook certificate (the default), in two namespaces.
    for s in [&DEFAULTS, &CLUSTER_IP] {
        let docs = render(&helm, s);
        let full = fullname(s);
        let secret = format!("{full}-webhook-tls");
        assert_role(
            &docs,
            s,
            "ClusterRole",
            "webhook",
            &[
                (&["tlsward.io"], &["clientauthpolicies"], &[], READ),
                (&[""], &["namespaces"], &[], READ),
                (
                    &["admissionregistration.k8s.io"],
                    &[
                        "validatingwebhookconfigurations",
                        "mutatingwebhookconfigurations",
                    ],
                    &[full.as_str()],
                    &["get", "patch"],
                ),
            ],
        );
        assert_role(
            &docs,
            s,
            "Role",
            "webhook",
            &[
                (
                    &[""],
                    &["secrets"],
                    &[secret.as_str()],
                    &["get", "update", "patch"],
                ),
                (&[""], &["secrets"], &[], &["create"]),
            ],
        );
        assert_role(&docs, s, "ClusterRole", "operator", &operator_rules());
        assert_role(&docs, s, "Role", "operator", LEASES);
        assert_role(&docs, s, "ClusterRole", "proxy", &proxy_rules());
        assert_eq!(of_kind(&docs, "ClusterRole").len(), 3, "{}", s.name);
        assert_eq!(of_kind(&docs, "Role").len(), 2, "{}", s.name);

        // The names the webhook is allowed to write are the ones it is told to.
        let args = args_of(workload(&docs, "webhook"));
        assert_eq!(
            flag(&args, "--self-signed-secret"),
            Some(format!("{}/{secret}", s.namespace).as_str())
        );
        assert_eq!(flag(&args, "--webhook-config"), Some(full.as_str()));
    }

    // cert-manager mode: the webhook writes nothing at all.
    for s in [&FLIPPED, &ALTERNATIVE] {
        let docs = render(&helm, s);
        assert_role(
            &docs,
            s,
            "ClusterRole",
            "webhook",
            &[
                (&["tlsward.io"], &["clientauthpolicies"], &[], READ),
                (&[""], &["namespaces"], &[], READ),
            ],
        );
        let webhook_role = format!("{}-webhook", fullname(s));
        assert!(
            of_kind(&docs, "Role")
                .iter()
                .all(|r| name_of(r) != webhook_role),
            "{}: no webhook Role in cert-manager mode",
            s.name
        );
        assert_role(&docs, s, "ClusterRole", "operator", &operator_rules());
        assert_role(&docs, s, "Role", "operator", LEASES);
        assert_role(&docs, s, "ClusterRole", "proxy", &proxy_rules());
    }
}

#[test]
fn no_role_grants_a_wildcard() {
    let Some(helm) = tool("helm") else { return };
    for s in SCENARIOS {
        let docs = render(&helm, s);
        let roles: Vec<_> = docs
            .iter()
            .filter(|d| matches!(kind_of(d), "Role" | "ClusterRole"))
            .collect();
        assert!(!roles.is_empty(), "{}", s.name);
        for role in roles {
            assert!(
                role.get("aggregationRule").is_none(),
                "{}: {}",
                s.name,
                name_of(role)
            );
            for rule in role["rules"].as_array().expect("rules") {
                assert!(rule.get("nonResourceURLs").is_none(), "{rule}");
                for key in ["verbs", "resources", "apiGroups", "resourceNames"] {
                    for item in strings(&rule[key]) {
                        assert!(
                            !item.contains('*'),
                            "{}: {} {}: `*` in {key}: {rule}",
                            s.name,
                            kind_of(role),
                            name_of(role)
                        );
                    }
                }
                for verb in strings(&rule["verbs"]) {
                    assert!(
                        !matches!(
                            verb.as_str(),
                            "escalate" | "bind" | "impersonate" | "delete" | "deletecollection"
                        ),
                        "{}: {} grants {verb}",
                        s.name,
                        name_of(role)
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Webhook configurations
// ---------------------------------------------------------------------------

fn webhook_config<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn only_hook(config: &Value) -> &Value {
    let hooks = config["webhooks"].as_array().expect("webhooks");
    assert_eq!(hooks.len(), 1, "one webhook in {}", name_of(config));
    &hooks[0]
}

#[test]
fn webhook_configurations_match_the_files_in_webhooks() {
    let Some(helm) = tool("helm") else { return };
    // Release tlsward in namespace tlsward is what webhooks/*.yaml describe.
    let docs = render(&helm, &DEFAULTS);
    for (file, kind) in [
        (
            "webhooks/validating-webhook.yaml",
            "ValidatingWebhookConfiguration",
        ),
        (
            "webhooks/mutating-webhook.yaml",
            "MutatingWebhookConfiguration",
        ),
    ] {
        let repo: Value = serde_saphyr::from_str(&read(file)).expect("YAML");
        let rendered = webhook_config(&docs, kind);
        assert_eq!(rendered["apiVersion"], repo["apiVersion"], "{file}");
        assert_eq!(
            rendered["metadata"]["name"], repo["metadata"]["name"],
            "{file}"
        );
        assert_eq!(
            rendered["webhooks"], repo["webhooks"],
            "{file} and the chart's {kind} differ: keep them in sync"
        );
        assert!(
            rendered["metadata"].get("annotations").is_none(),
            "no cert-manager annotation in the self-managed mode"
        );
    }
}

#[test]
fn webhook_configurations_carry_the_settings_from_the_values() {
    let Some(helm) = tool("helm") else { return };
    for (s, failure_policy, timeout) in [
        (&DEFAULTS, "Fail", 5),
        (&CLUSTER_IP, "Fail", 5),
        (&FLIPPED, "Ignore", 10),
        (&ALTERNATIVE, "Fail", 5),
    ] {
        let docs = render(&helm, s);
        let full = fullname(s);
        let cert_manager = s.cert_manager;
        for (kind, hook_name, path) in [
            (
                "ValidatingWebhookConfiguration",
                "ingress-tls.tlsward.io",
                "/validate",
            ),
            (
                "MutatingWebhookConfiguration",
                "ingress-tls-mutate.tlsward.io",
                "/mutate",
            ),
        ] {
            let what = format!("{}: {kind}", s.name);
            let config = webhook_config(&docs, kind);
            // Both share the name the webhook is given with --webhook-config.
            assert_eq!(name_of(config), full, "{what}");
            let hook = only_hook(config);
            assert_eq!(hook["name"], hook_name, "{what}");
            assert_eq!(hook["failurePolicy"], failure_policy, "{what}");
            assert_eq!(hook["matchPolicy"], "Equivalent", "{what}");
            assert_eq!(hook["sideEffects"], "None", "{what}");
            assert_eq!(hook["timeoutSeconds"], timeout, "{what}");
            assert_eq!(hook["admissionReviewVersions"], json!(["v1"]), "{what}");
            assert_eq!(
                hook["rules"],
                json!([{
                    "apiGroups": ["networking.k8s.io"],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["ingresses"],
                    "scope": "Namespaced",
                }]),
                "{what}"
            );
            assert_eq!(
                hook["clientConfig"],
                json!({"service": {
                    "namespace": s.namespace,
                    "name": format!("{full}-webhook"),
                    "path": path,
                    "port": 443,
                }}),
                "{what}: the webhook Service, and no caBundle"
            );
            assert!(hook.get("objectSelector").is_none(), "{what}");
            if kind.starts_with("Mutating") {
                assert_eq!(hook["reinvocationPolicy"], "IfNeeded", "{what}");
            } else {
                assert!(hook.get("reinvocationPolicy").is_none(), "{what}");
            }
            let injection = &config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"];
            if cert_manager {
                assert_eq!(
                    injection,
                    &json!(format!("{}/{full}-webhook", s.namespace)),
                    "{what}"
                );
            } else {
                assert!(injection.is_null(), "{what}");
            }
        }

        // The Service the configurations call serves 443 from the webhook's 8443.
        let svc = find(&docs, "Service", &format!("{full}-webhook"));
        let https = svc["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["port"] == 443)
            .expect("port 443");
        assert_eq!(https["targetPort"], "https", "{}", s.name);
        let webhook = workload(&docs, "webhook");
        assert!(selects(&svc["spec"]["selector"], pod_labels(webhook)));
        let port = container(webhook)["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == "https")
            .cloned()
            .expect("https port");
        assert_eq!(port["containerPort"], 8443, "{}", s.name);
        assert_eq!(flag(&args_of(webhook), "--listen"), Some("0.0.0.0:8443"));
    }
}

fn namespace_selector(docs: &[Value], kind: &str) -> Value {
    only_hook(webhook_config(docs, kind))["namespaceSelector"].clone()
}

#[test]
fn webhook_namespace_selector_exempts_kube_system_and_the_release_namespace() {
    let Some(helm) = tool("helm") else { return };
    let cases: [(Scenario, &[&str]); 4] = [
        (DEFAULTS, &["kube-system", "tlsward"]),
        (
            Scenario {
                name: "namespace other-ns",
                namespace: "other-ns",
                ..DEFAULTS
            },
            &["kube-system", "other-ns"],
        ),
        (
            Scenario {
                name: "installed in kube-system",
                namespace: "kube-system",
                ..DEFAULTS
            },
            &["kube-system"],
        ),
        (
            FLIPPED,
            &["kube-system", "tlsward", "monitoring", "cert-manager"],
        ),
    ];
    for (s, excluded) in &cases {
        let docs = render(&helm, s);
        for kind in [
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
        ] {
            assert_eq!(
                namespace_selector(&docs, kind),
                json!({"matchExpressions": [{
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": excluded,
                }]}),
                "{}: {kind}",
                s.name
            );
        }
        // The policy exempts the release namespace as well.
        let policy = policy_of(&docs, s);
        assert!(
            strings(&policy["exemptions"]["namespaces"]).contains(&s.namespace.to_string()),
            "{}: {policy}",
            s.name
        );
    }
}

#[test]
fn webhook_certificate_is_self_managed_by_default_and_from_cert_manager_on_request() {
    let Some(helm) = tool("helm") else { return };
    let common = |args: &[String], what: &str| {
        assert_eq!(flag(args, "--listen"), Some("0.0.0.0:8443"), "{what}");
        assert_eq!(
            flag(args, "--policy"),
            Some("/etc/tlsward/policy/ingress-tls.yaml"),
            "{what}"
        );
        assert!(args.iter().any(|a| a == "--kubernetes"), "{what}");
    };
    let mounts = |w: &Value| -> BTreeMap<String, String> {
        container(w)["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                assert_eq!(m["readOnly"], true, "{m}");
                (
                    m["mountPath"].as_str().expect("path").to_string(),
                    m["name"].as_str().expect("name").to_string(),
                )
            })
            .collect()
    };
    let volume = |w: &Value, name: &str| -> Value {
        w["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("volume {name}"))
    };

    // Self-managed: no TLS files, no cert-manager objects.
    let docs = render(&helm, &DEFAULTS);
    let w = workload(&docs, "webhook");
    let args = args_of(w);
    common(&args, "self-managed");
    assert_eq!(
        flag(&args, "--self-signed-secret"),
        Some("tlsward/tlsward-webhook-tls")
    );
    assert_eq!(flag(&args, "--webhook-config"), Some("tlsward"));
    assert!(flag(&args, "--tls-cert").is_none() && flag(&args, "--tls-key").is_none());
    let m = mounts(w);
    assert_eq!(m.len(), 1, "only the policy is mounted: {m:?}");
    assert_eq!(
        volume(w, &m["/etc/tlsward/policy"])["configMap"]["name"],
        "tlsward-policy"
    );
    for kind in ["Certificate", "Issuer"] {
        assert!(
            of_kind(&docs, kind).is_empty(),
            "{kind} without cert-manager"
        );
    }

    // cert-manager with the chart's self-signed Issuer, and with the user's own.
    for (s, issuer) in [
        (
            &FLIPPED,
            json!({"name": "edge-tls-webhook-selfsigned", "kind": "Issuer", "group": "cert-manager.io"}),
        ),
        (
            &ALTERNATIVE,
            json!({"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}),
        ),
    ] {
        let docs = render(&helm, s);
        let full = fullname(s);
        let ns = s.namespace;
        let what = s.name;
        let w = workload(&docs, "webhook");
        let args = args_of(w);
        common(&args, what);
        assert_eq!(
            flag(&args, "--tls-cert"),
            Some("/etc/tlsward/tls/tls.crt"),
            "{what}"
        );
        assert_eq!(
            flag(&args, "--tls-key"),
            Some("/etc/tlsward/tls/tls.key"),
            "{what}"
        );
        assert!(flag(&args, "--self-signed-secret").is_none(), "{what}");
        assert!(flag(&args, "--webhook-config").is_none(), "{what}");
        let cert = find(&docs, "Certificate", &format!("{full}-webhook"));
        assert_eq!(cert["metadata"]["namespace"], ns, "{what}");
        let svc = format!("{full}-webhook");
        assert_eq!(
            cert["spec"]["dnsNames"],
            json!([svc, format!("{svc}.{ns}"), format!("{svc}.{ns}.svc")]),
            "{what}"
        );
        assert_eq!(cert["spec"]["issuerRef"], issuer, "{what}");
        let m = mounts(w);
        let tls = volume(w, &m["/etc/tlsward/tls"]);
        assert_eq!(
            tls["secret"]["secretName"], cert["spec"]["secretName"],
            "{what}"
        );
        let issuers = of_kind(&docs, "Issuer");
        if issuer["kind"] == "Issuer" {
            assert_eq!(issuers.len(), 1, "{what}");
            assert_eq!(name_of(issuers[0]), issuer["name"], "{what}");
            assert_eq!(issuers[0]["spec"], json!({"selfSigned": {}}), "{what}");
        } else {
            assert!(issuers.is_empty(), "{what}: the user's issuer is used");
        }
    }
}

// ---------------------------------------------------------------------------
// Policy, operator, proxy
// ---------------------------------------------------------------------------

/// The admission policy in the ConfigMap the webhook mounts.
fn policy_text(docs: &[Value], s: &Scenario) -> String {
    let cm = find(docs, "ConfigMap", &format!("{}-policy", fullname(s)));
    cm["data"]["ingress-tls.yaml"]
        .as_str()
        .expect("ingress-tls.yaml")
        .to_string()
}

fn policy_of(docs: &[Value], s: &Scenario) -> Value {
    serde_saphyr::from_str(&policy_text(docs, s)).expect("policy YAML")
}

#[test]
fn policy_config_map_renders_the_policy_values() {
    let Some(helm) = tool("helm") else { return };
    let docs = render(&helm, &DEFAULTS);
    assert_eq!(
        policy_of(&docs, &DEFAULTS),
        json!({
            "apiVersion": "tlsward.io/v1alpha1",
            "kind": "IngressTLSPolicy",
            "enforcement": "Deny",
            "allowCatchAll": false,
            "allowExistingViolations": false,
            "exemptions": {
                "namespaces": ["tlsward"],
                "ingressClasses": [],
                "allowExemptAnnotation": false,
            },
            "certManager": {},
            "autoTLS": {"enabled": false},
            "clientAuth": {"nginxIngressClasses": ["nginx"]},
        })
    );
    let docs = render(&helm, &FLIPPED);
    assert_eq!(
        policy_of(&docs, &FLIPPED),
        json!({
            "apiVersion": "tlsward.io/v1alpha1",
            "kind": "IngressTLSPolicy",
            "enforcement": "Warn",
            "allowCatchAll": true,
            "allowExistingViolations": true,
            "exemptions": {
                "namespaces": ["legacy-apps", "tlsward"],
                "namespaceSelector": {
                    "matchLabels": {"tlsward.io/exempt": "true"},
                    "matchExpressions": [{"key": "team", "operator": "In", "values": ["platform"]}],
                },
                "ingressClasses": ["internal"],
                "allowExemptAnnotation": true,
            },
            "certManager": {"issuer": {
                "name": "letsencrypt-prod", "kind": "ClusterIssuer", "group": "cert-manager.io",
            }},
            "autoTLS": {"enabled": true},
            "clientAuth": {"nginxIngressClasses": ["nginx", "nginx-internal"]},
        })
    );
    let docs = render(&helm, &ALTERNATIVE);
    let p = policy_of(&docs, &ALTERNATIVE);
    assert_eq!(p["enforcement"], "DryRun");
    assert_eq!(
        p["certManager"]["issuer"],
        json!({"name": "corp-pca", "kind": "AWSPCAClusterIssuer", "group": "awspca.cert-manager.io"})
    );
    assert_eq!(p["exemptions"]["namespaces"], json!(["other-ns"]));
}

fn tlsward() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tlsward"));
    c.current_dir(root());
    c
}

#[test]
fn tlsward_accepts_the_rendered_policy() {
    let Some(helm) = tool("helm") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, s) in [&DEFAULTS, &FLIPPED, &ALTERNATIVE].into_iter().enumerate() {
        let docs = render(&helm, s);
        let file = write_temp(&dir, &format!("policy-{i}.yaml"), &policy_text(&docs, s));
        for (samples, deny_code) in [
            ("policies/ingresses/allowed", 0),
            ("policies/ingresses/denied", 1),
        ] {
            let out = tlsward()
                .arg("check")
                .arg("--policy")
                .arg(&file)
                .args(["-f", samples])
                .output()
                .expect("run tlsward check");
            let code = out.status.code();
            // 2 would mean the policy file was refused.
            if s.is(&DEFAULTS) {
                assert_eq!(
                    code,
                    Some(deny_code),
                    "{}: {samples}:\n{}",
                    s.name,
                    output_text(&out)
                );
            } else {
                assert!(
                    matches!(code, Some(0 | 1)),
                    "{}: tlsward refused the rendered policy:\n{}",
                    s.name,
                    output_text(&out)
                );
            }
        }
    }
}

#[test]
fn operator_is_leader_elected_with_its_pod_identity() {
    let Some(helm) = tool("helm") else { return };
    let docs = render(&helm, &DEFAULTS);
    let w = workload(&docs, "operator");
    let args = args_of(w);
    assert_eq!(
        args,
        [
            "operator",
            "--admin-listen",
            "0.0.0.0:9090",
            "--leader-election-namespace",
            "$(POD_NAMESPACE)",
            "--identity",
            "$(POD_NAME)",
            "--log-format",
            "json",
            "--log-level",
            "info",
        ]
    );
    assert_eq!(
        container(w)["env"],
        json!([
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ])
    );
}

#[test]
fn proxy_serves_its_ingress_class_behind_its_service() {
    let Some(helm) = tool("helm") else { return };
    for (s, class, service_type, default_class) in [
        (&DEFAULTS, "tlsward", "LoadBalancer", false),
        (&FLIPPED, "tlsward-edge", "NodePort", true),
        (&ALTERNATIVE, "tlsward", "LoadBalancer", false),
        (&CLUSTER_IP, "tlsward", "ClusterIP", false),
    ] {
        let what = s.name;
        let docs = render(&helm, s);
        let full = fullname(s);
        let w = workload(&docs, "proxy");
        let args = args_of(w);
        assert_eq!(
            flag(&args, "--https-listen"),
            Some("0.0.0.0:8443"),
            "{what}"
        );
        assert_eq!(flag(&args, "--http-listen"), Some("0.0.0.0:8080"), "{what}");
        assert_eq!(
            flag(&args, "--admin-listen"),
            Some("0.0.0.0:9090"),
            "{what}"
        );
        assert_eq!(flag(&args, "--ingress-class"), Some(class), "{what}");
        let published = format!("{}/{full}-proxy", s.namespace);
        assert_eq!(
            flag(&args, "--publish-service"),
            Some(published.as_str()),
            "{what}"
        );

        // The published Service is the proxy's, with 443 and 80.
        let svc = find(&docs, "Service", &format!("{full}-proxy"));
        assert!(selects(&svc["spec"]["selector"], pod_labels(w)), "{what}");
        assert_eq!(svc["spec"]["type"], service_type, "{what}");
        let ports: BTreeMap<i64, String> = svc["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| {
                (
                    p["port"].as_i64().expect("port"),
                    p["targetPort"]
                        .as_str()
                        .expect("named targetPort")
                        .to_string(),
                )
            })
            .collect();
        assert_eq!(
            ports,
            BTreeMap::from([(80, "http".to_string()), (443, "https".to_string())]),
            "{what}: only 443 and 80 on the public Service"
        );
        let named: BTreeMap<String, i64> = container(w)["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().expect("name").to_string(),
                    p["containerPort"].as_i64().expect("port"),
                )
            })
            .collect();
        assert_eq!(named["https"], 8443, "{what}");
        assert_eq!(named["http"], 8080, "{what}");
        match service_type {
            "ClusterIP" => assert!(svc["spec"].get("externalTrafficPolicy").is_none()),
            _ => assert!(svc["spec"]["externalTrafficPolicy"].is_string(), "{what}"),
        }
        if s.is(&ALTERNATIVE) {
            assert_eq!(svc["spec"]["loadBalancerClass"], "example.com/internal");
            assert_eq!(svc["spec"]["externalTrafficPolicy"], "Local");
        } else {
            assert!(svc["spec"].get("loadBalancerClass").is_none(), "{what}");
        }

        // The IngressClass it serves.
        let ic = find(&docs, "IngressClass", class);
        assert_eq!(
            ic["spec"],
            json!({"controller": "tlsward.io/proxy"}),
            "{what}"
        );
        let annotation =
            &ic["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"];
        if default_class {
            assert_eq!(annotation, "true", "{what}");
        } else {
            assert!(annotation.is_null(), "{what}");
        }
    }
}

/// Every `--flag` the chart passes exists on the binary's subcommand.
#[test]
fn every_flag_the_chart_passes_exists_in_the_binary() {
    let Some(helm) = tool("helm") else { return };
    for s in [&DEFAULTS, &FLIPPED] {
        let docs = render(&helm, s);
        for component in COMPONENTS {
            let args = args_of(workload(&docs, component));
            let out = tlsward()
                .args([component, "--help"])
                .output()
                .expect("run tlsward --help");
            assert!(out.status.success(), "{}", output_text(&out));
            let help = String::from_utf8_lossy(&out.stdout);
            for flag in args.iter().filter(|a| a.starts_with("--")) {
                let known = help
                    .split(|c: char| {
                        c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == ']'
                    })
                    .any(|word| word == flag);
                assert!(
                    known,
                    "{}: the chart passes {flag} to `tlsward {component}`, which does not know it:\n{help}",
                    s.name
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// NetworkPolicy, monitoring
// ---------------------------------------------------------------------------

fn ports_of(rule: &Value) -> BTreeSet<i64> {
    rule["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            assert_eq!(p["protocol"], "TCP");
            p["port"].as_i64().expect("numeric port")
        })
        .collect()
}

#[test]
fn network_policies_admit_only_the_ports_each_component_serves() {
    let Some(helm) = tool("helm") else { return };
    for s in [&DEFAULTS, &ALTERNATIVE] {
        let docs = render(&helm, s);
        let policies = of_kind(&docs, "NetworkPolicy");
        assert_eq!(policies.len(), 3, "{}", s.name);
        for component in COMPONENTS {
            let what = format!("{}: {component}", s.name);
            let w = workload(&docs, component);
            let np: Vec<_> = policies
                .iter()
                .filter(|p| selects(&p["spec"]["podSelector"]["matchLabels"], pod_labels(w)))
                .collect();
            assert_eq!(np.len(), 1, "{what}: one NetworkPolicy");
            let spec = &np[0]["spec"];
            assert_eq!(spec["policyTypes"], json!(["Ingress"]), "{what}");
            let mut admitted = BTreeSet::new();
            for rule in spec["ingress"].as_array().expect("ingress rules") {
                let ports = ports_of(rule);
                if ports.contains(&9090) {
                    assert_eq!(ports.len(), 1, "{what}: the admin port has its own rule");
                    if s.is(&ALTERNATIVE) {
                        assert_eq!(rule["from"].as_array().map(Vec::len), Some(2), "{what}");
                    } else {
                        assert!(rule.get("from").is_none(), "{what}");
                    }
                } else {
                    assert!(rule.get("from").is_none(), "{what}: served ports are open");
                }
                admitted.extend(ports);
            }
            let served: BTreeSet<i64> = container(w)["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .map(|p| p["containerPort"].as_i64().expect("port"))
                .collect();
            assert_eq!(admitted, served, "{what}: exactly the container ports");
        }
    }
    let docs = render(&helm, &FLIPPED);
    assert!(
        of_kind(&docs, "NetworkPolicy").is_empty(),
        "networkPolicy.enabled=false"
    );
}

#[test]
fn monitoring_objects_render_only_when_enabled_and_the_api_exists() {
    let Some(helm) = tool("helm") else { return };
    let kinds = ["ServiceMonitor", "PrometheusRule"];
    let count = |docs: &[Value]| {
        kinds
            .iter()
            .map(|k| of_kind(docs, k).len())
            .collect::<Vec<_>>()
    };
    assert_eq!(count(&render(&helm, &DEFAULTS)), [0, 0], "off by default");
    assert_eq!(
        count(&render_with(
            &helm,
            &DEFAULTS,
            &["--api-versions", MONITORING_API]
        )),
        [0, 0],
        "off by default, even with the API"
    );
    assert_eq!(
        count(&render(&helm, &CLUSTER_IP)),
        [0, 0],
        "enabled, but no API"
    );
    assert_eq!(count(&render(&helm, &MONITORED)), [1, 1]);
    assert_eq!(count(&render(&helm, &FLIPPED)), [1, 1]);

    // The ServiceMonitor scrapes exactly the three metrics Services.
    for s in [&MONITORED, &FLIPPED] {
        let docs = render(&helm, s);
        let sm = of_kind(&docs, "ServiceMonitor")[0];
        assert_eq!(sm["metadata"]["namespace"], s.namespace);
        assert_eq!(
            sm["spec"]["namespaceSelector"],
            json!({"matchNames": [s.namespace]})
        );
        let endpoints = sm["spec"]["endpoints"].as_array().expect("endpoints");
        assert_eq!(endpoints.len(), 1);
        assert_eq!(endpoints[0]["port"], "metrics");
        assert_eq!(endpoints[0]["path"], "/metrics");
        let scraped: Vec<_> = of_kind(&docs, "Service")
            .into_iter()
            .filter(|svc| {
                selects(
                    &sm["spec"]["selector"]["matchLabels"],
                    &svc["metadata"]["labels"],
                )
            })
            .collect();
        let mut components: Vec<&str> = scraped.iter().map(|svc| component_of(svc)).collect();
        components.sort();
        assert_eq!(components, ["operator", "proxy", "webhook"], "{}", s.name);
        for svc in scraped {
            let metrics = svc["spec"]["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .find(|p| p["name"] == "metrics")
                .cloned()
                .unwrap_or_else(|| panic!("{}: metrics port", name_of(svc)));
            assert_eq!(metrics["targetPort"], "admin");
            assert_eq!(
                svc["spec"]["type"], "ClusterIP",
                "metrics stay in the cluster"
            );
        }
        if s.is(&FLIPPED) {
            assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
            assert_eq!(endpoints[0]["interval"], "15s");
            let rule = of_kind(&docs, "PrometheusRule")[0];
            assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
        }
    }
}

/// The rendered PrometheusRule's groups, as a Prometheus rules file.
fn rules_of(helm: &Path) -> Value {
    let docs = render(helm, &MONITORED);
    let rule = of_kind(&docs, "PrometheusRule")[0].clone();
    assert_eq!(rule["apiVersion"], MONITORING_API);
    let spec = rule["spec"].clone();
    assert_eq!(
        spec.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["groups".to_string()])
    );
    spec
}

fn alerts(rules: &Value) -> BTreeMap<String, Value> {
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .map(|r| {
            (
                r["alert"]
                    .as_str()
                    .expect("alerting rules only")
                    .to_string(),
                r.clone(),
            )
        })
        .collect()
}

#[test]
fn prometheus_rules_pass_promtool_check() {
    let Some(helm) = tool("helm") else { return };
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let rules = rules_of(&helm);
    let found = alerts(&rules);
    let expected = [
        (
            "TlswardCertificateExpiresIn14Days",
            "tlsward_certificate_expiry_timestamp_seconds",
            "14 * 86400",
            "warning",
        ),
        (
            "TlswardCertificateExpiresIn3Days",
            "tlsward_certificate_expiry_timestamp_seconds",
            "3 * 86400",
            "critical",
        ),
        (
            "TlswardTrustAnchorExpiresIn14Days",
            "tlsward_trust_anchor_expiry_timestamp_seconds",
            "14 * 86400",
            "warning",
        ),
        (
            "TlswardTrustAnchorExpiresIn3Days",
            "tlsward_trust_anchor_expiry_timestamp_seconds",
            "3 * 86400",
            "critical",
        ),
        (
            "TlswardReconcileFailures",
            "increase(tlsward_operator_reconcile_failures_total[15m]) > 0",
            "",
            "warning",
        ),
        (
            "TlswardWebhookErrorRate",
            "tlsward_webhook_reviews_total{verdict=~\"invalid|bad_request\"}",
            "> 0.05",
            "warning",
        ),
    ];
    assert_eq!(found.len(), expected.len(), "{:?}", found.keys());
    for (name, metric, threshold, severity) in expected {
        let rule = &found[name];
        let expr = rule["expr"].as_str().expect("expr");
        assert!(
            expr.contains(metric) && expr.contains(threshold),
            "{name}: {expr}"
        );
        assert_eq!(rule["labels"]["severity"], severity, "{name}");
        assert!(rule["annotations"]["summary"].is_string(), "{name}");
        assert!(rule["annotations"]["description"].is_string(), "{name}");
    }
    assert_eq!(found["TlswardWebhookErrorRate"]["for"], "10m");

    let dir = tempfile::tempdir().expect("tempdir");
    // JSON is YAML; promtool reads it as a rules file.
    let file = write_temp(&dir, "tlsward-rules.yaml", &rules.to_string());
    let out = run(
        &promtool,
        &["check", "rules", file.to_str().expect("UTF-8")],
    );
    let text = output_text(&out);
    assert!(out.status.success(), "promtool check rules:\n{text}");
    assert!(text.contains("SUCCESS: 6 rules found"), "{text}");

    // promtool really checks: a broken expression fails.
    let mut broken = rules.clone();
    broken["groups"][0]["rules"][0]["expr"] =
        json!("(tlsward_certificate_expiry_timestamp_seconds - time() < ");
    let file = write_temp(&dir, "broken-rules.yaml", &broken.to_string());
    let out = run(
        &promtool,
        &["check", "rules", file.to_str().expect("UTF-8")],
    );
    assert!(!out.status.success(), "promtool accepted a broken rule");
}

/// The alerts fire on the series they are about, and stay quiet otherwise:
/// `promtool test rules` over synthetic series. (Annotations are templated
/// text; `promtool check rules` above validates their templates.)
#[test]
fn prometheus_alerts_fire_when_they_should() {
    let Some(helm) = tool("helm") else { return };
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let mut rules = rules_of(&helm);
    for group in rules["groups"].as_array_mut().expect("groups") {
        for rule in group["rules"].as_array_mut().expect("rules") {
            rule.as_object_mut().expect("rule").remove("annotations");
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    write_temp(&dir, "rules.yaml", &rules.to_string());
    const DAY: i64 = 86400;
    let cert = "tlsward_certificate_expiry_timestamp_seconds";
    let anchor = "tlsward_trust_anchor_expiry_timestamp_seconds";
    let reviews = "tlsward_webhook_reviews_total";
    let alert = |name: &str, labels: Value| json!({"exp_labels": merge(json!({"alertname": name}), labels)});
    let tests = json!({
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                // 10 days left: the 14-day warning, not the 3-day alert; 40 days: nothing.
                "interval": "1m",
                "input_series": [
                    {"series": format!("{cert}{{host=\"a.example.com\",secret=\"web/a-tls\"}}"), "values": format!("{}+0x60", 10 * DAY)},
                    {"series": format!("{cert}{{host=\"b.example.com\",secret=\"web/b-tls\"}}"), "values": format!("{}+0x60", 40 * DAY)},
                    {"series": format!("{anchor}{{namespace=\"corp\",policy=\"clients\",fingerprint=\"sha256:ab\"}}"), "values": format!("{}+0x60", 2 * DAY)},
                ],
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": "TlswardCertificateExpiresIn14Days",
                     "exp_alerts": [alert("TlswardCertificateExpiresIn14Days", json!({"severity": "warning", "host": "a.example.com", "secret": "web/a-tls"}))]},
                    {"eval_time": "20m", "alertname": "TlswardCertificateExpiresIn3Days", "exp_alerts": []},
                    {"eval_time": "20m", "alertname": "TlswardTrustAnchorExpiresIn14Days",
                     "exp_alerts": [alert("TlswardTrustAnchorExpiresIn14Days", json!({"severity": "warning", "namespace": "corp", "policy": "clients", "fingerprint": "sha256:ab"}))]},
                    {"eval_time": "20m", "alertname": "TlswardTrustAnchorExpiresIn3Days",
                     "exp_alerts": [alert("TlswardTrustAnchorExpiresIn3Days", json!({"severity": "critical", "namespace": "corp", "policy": "clients", "fingerprint": "sha256:ab"}))]},
                ],
            },
            {
                // Failures keep coming: alert. A flat counter: none.
                "interval": "1m",
                "input_series": [
                    {"series": "tlsward_operator_reconcile_failures_total{reason=\"SourceNotFound\"}", "values": "0+1x40"},
                    {"series": "tlsward_operator_reconcile_failures_total{reason=\"InvalidCertificate\"}", "values": "3+0x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": "TlswardReconcileFailures",
                     "exp_alerts": [alert("TlswardReconcileFailures", json!({"severity": "warning", "reason": "SourceNotFound"}))]},
                ],
            },
            {
                // 2 of 12 reviews per minute unreadable (17%): alert after 10 minutes.
                "interval": "1m",
                "input_series": [
                    {"series": format!("{reviews}{{webhook=\"validate\",operation=\"CREATE\",verdict=\"allowed\"}}"), "values": "0+10x40"},
                    {"series": format!("{reviews}{{webhook=\"validate\",operation=\"unknown\",verdict=\"bad_request\"}}"), "values": "0+2x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "8m", "alertname": "TlswardWebhookErrorRate", "exp_alerts": []},
                    {"eval_time": "30m", "alertname": "TlswardWebhookErrorRate",
                     "exp_alerts": [alert("TlswardWebhookErrorRate", json!({"severity": "warning"}))]},
                ],
            },
            {
                // 1 of 100 (1%), and many denials (a denial is not an error): no alert.
                "interval": "1m",
                "input_series": [
                    {"series": format!("{reviews}{{webhook=\"validate\",operation=\"CREATE\",verdict=\"denied\"}}"), "values": "0+60x40"},
                    {"series": format!("{reviews}{{webhook=\"validate\",operation=\"CREATE\",verdict=\"allowed\"}}"), "values": "0+39x40"},
                    {"series": format!("{reviews}{{webhook=\"mutate\",operation=\"CREATE\",verdict=\"invalid\"}}"), "values": "0+1x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": "TlswardWebhookErrorRate", "exp_alerts": []},
                ],
            },
        ],
    });
    let file = write_temp(&dir, "tests.yaml", &tests.to_string());
    let out = run(&promtool, &["test", "rules", file.to_str().expect("UTF-8")]);
    assert!(
        out.status.success(),
        "promtool test rules:\n{}",
        output_text(&out)
    );
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

// ---------------------------------------------------------------------------
// Values, schema, README, CRD, chart metadata
// ---------------------------------------------------------------------------

#[test]
fn values_schema_rejects_wrong_types_and_unknown_keys() {
    let Some(helm) = tool("helm") else { return };
    let refused = [
        ("--set", "webhook.replicas=two", "/webhook/replicas"),
        ("--set-string", "operator.replicas=2", "/operator/replicas"),
        ("--set", "webhook.nope=1", "'nope' not allowed"),
        ("--set", "nope=1", "'nope' not allowed"),
        ("--set", "policy.exemptions.nope=true", "'nope' not allowed"),
        ("--set", "policy.enforcement=Block", "/policy/enforcement"),
        (
            "--set",
            "webhook.failurePolicy=Open",
            "/webhook/failurePolicy",
        ),
        (
            "--set",
            "webhook.timeoutSeconds=31",
            "/webhook/timeoutSeconds",
        ),
        ("--set", "proxy.kind=StatefulSet", "/proxy/kind"),
        (
            "--set",
            "proxy.service.type=External",
            "/proxy/service/type",
        ),
        (
            "--set",
            "networkPolicy.enabled=yes",
            "/networkPolicy/enabled",
        ),
        ("--set", "webhook.replicas=0", "/webhook/replicas"),
        (
            "--set",
            "webhook.certManager.issuerRef.kind=ClusterIssuer",
            "/webhook/certManager/issuerRef",
        ),
        (
            "--set",
            "webhook.podLabels.team=1",
            "/webhook/podLabels/team",
        ),
        (
            "--set",
            "proxy.tolerations[0].effect=Sometimes",
            "/proxy/tolerations/0/effect",
        ),
    ];
    for (how, value, mention) in refused {
        let err = template(&helm, &DEFAULTS, &[how, value])
            .err()
            .unwrap_or_else(|| panic!("{how} {value} was accepted"));
        assert!(
            err.contains("values don't meet the specifications of the schema"),
            "{how} {value}: not a schema error:\n{err}"
        );
        assert!(
            err.contains(mention),
            "{how} {value}: {mention} not in:\n{err}"
        );
    }
    // The same keys with good values pass.
    for value in [
        "webhook.replicas=3",
        "policy.enforcement=DryRun",
        "webhook.failurePolicy=Ignore",
        "webhook.timeoutSeconds=30",
        "proxy.kind=DaemonSet",
        "proxy.service.type=ClusterIP",
        "networkPolicy.enabled=false",
        "webhook.certManager.issuerRef.name=corp-ca",
        "webhook.podLabels.team=platform",
        "proxy.tolerations[0].effect=NoExecute",
    ] {
        if let Err(e) = template(&helm, &DEFAULTS, &["--set", value]) {
            panic!("--set {value} was refused:\n{e}");
        }
    }
}

/// The chart values tree: every leaf (a scalar, a list, an empty map, or a
/// `resources` block) with its dotted path.
fn leaves(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
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

fn values() -> Value {
    serde_saphyr::from_str(&read("charts/tlsward/values.yaml")).expect("values.yaml")
}

fn schema() -> Value {
    serde_json::from_str(&read("charts/tlsward/values.schema.json")).expect("schema JSON")
}

/// Follows `$ref` and single-`allOf` wrappers to the schema that applies.
fn resolve<'a>(schema: &'a Value, node: &'a Value) -> &'a Value {
    let reference = node["$ref"]
        .as_str()
        .or_else(|| node["allOf"][0]["$ref"].as_str());
    match reference {
        Some(r) => {
            let name = r.strip_prefix("#/definitions/").expect("local definition");
            resolve(schema, &schema["definitions"][name])
        }
        None => node,
    }
}

#[test]
fn values_schema_types_every_value_and_closes_every_object() {
    let schema = schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");

    // Every value in values.yaml has a property in the schema.
    let mut all = BTreeMap::new();
    leaves("", &values(), &mut all);
    for path in all.keys() {
        let mut node = &schema;
        for key in path.split('.') {
            node = resolve(&schema, node);
            node = node["properties"]
                .get(key)
                .unwrap_or_else(|| panic!("values.schema.json has no {path}"));
        }
        let node = resolve(&schema, node);
        assert!(
            node["type"].is_string() || node["type"].is_array(),
            "{path}: no type"
        );
    }

    // Every object either refuses unknown keys or types them (maps of
    // labels, annotations, resources). The affinity kinds are Kubernetes
    // objects the API server validates.
    fn walk(path: &str, node: &Value, out: &mut Vec<String>) {
        match node {
            Value::Object(m) => {
                if m.get("type") == Some(&json!("object"))
                    && !path.contains("/affinity/properties/")
                {
                    match m.get("additionalProperties") {
                        Some(Value::Bool(false)) | Some(Value::Object(_)) => {}
                        _ => out.push(path.to_string()),
                    }
                }
                for (k, v) in m {
                    walk(&format!("{path}/{k}"), v, out);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(&format!("{path}/{i}"), v, out);
                }
            }
            _ => {}
        }
    }
    let mut open = Vec::new();
    walk("", &schema, &mut open);
    assert!(
        open.is_empty(),
        "objects that accept unknown keys: {open:?}"
    );
}

#[test]
fn chart_readme_documents_every_value_with_its_default() {
    let readme = read("charts/tlsward/README.md");
    assert!(readme.contains("helm install tlsward charts/tlsward -n tlsward --create-namespace"));
    let mut all = BTreeMap::new();
    leaves("", &values(), &mut all);
    let mut rows = BTreeMap::new();
    for line in readme.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 4, "name, type, default, description: {line}");
        let name = cells[0].trim_matches('`').to_string();
        assert!(!cells[1].is_empty() && !cells[3].is_empty(), "{line}");
        let default: Value = serde_json::from_str(cells[2].trim_matches('`'))
            .unwrap_or_else(|e| panic!("{name}: default is not JSON: {e}"));
        rows.insert(name, default);
    }
    for (path, value) in &all {
        let documented = rows
            .get(path)
            .unwrap_or_else(|| panic!("charts/tlsward/README.md has no row for `{path}`"));
        assert_eq!(documented, value, "README default of {path}");
    }
    let stale: Vec<_> = rows.keys().filter(|k| !all.contains_key(*k)).collect();
    assert!(
        stale.is_empty(),
        "README rows for values that do not exist: {stale:?}"
    );
}

#[test]
fn chart_crd_is_the_repository_crd() {
    let chart =
        std::fs::read(root().join("charts/tlsward/crds/clientauthpolicies.tlsward.io.yaml"))
            .expect("chart CRD");
    let repo = std::fs::read(root().join("crds/clientauthpolicies.tlsward.io.yaml")).expect("CRD");
    assert!(
        chart == repo,
        "charts/tlsward/crds/ differs from crds/: cp crds/clientauthpolicies.tlsward.io.yaml charts/tlsward/crds/"
    );
    let crds: Vec<_> = std::fs::read_dir(root().join("charts/tlsward/crds"))
        .expect("crds dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(crds.len(), 1, "{crds:?}");
}

#[test]
fn chart_metadata_and_names() {
    let chart: Value =
        serde_saphyr::from_str(&read("charts/tlsward/Chart.yaml")).expect("Chart.yaml");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "tlsward");
    assert_eq!(chart["version"], "0.1.0");
    assert_eq!(chart["appVersion"], "0.1.0");
    assert_eq!(chart["kubeVersion"], ">=1.29.0-0");

    let Some(helm) = tool("helm") else { return };
    // Too old a cluster is refused.
    let err = template(&helm, &DEFAULTS, &["--kube-version", "1.28.0"]).expect_err("1.28 refused");
    assert!(err.contains("kubeVersion"), "{err}");

    // Names: the release name when it contains the chart name, else
    // <release>-tlsward; overridable; always valid DNS labels.
    for (release, extra, full) in [
        ("tlsward", vec![], "tlsward"),
        ("tlsward-prod", vec![], "tlsward-prod"),
        ("edge", vec![], "edge-tlsward"),
        ("edge", vec!["--set", "fullnameOverride=tls"], "tls"),
        (
            "a-very-long-release-name-for-testing-limits",
            vec![],
            "a-very-long-release-name-for-testing-lim",
        ),
    ] {
        let s = Scenario {
            name: "names",
            release,
            ..DEFAULTS
        };
        let docs = render_with(&helm, &s, &extra);
        find(&docs, "Service", &format!("{full}-webhook"));
        find(&docs, "ValidatingWebhookConfiguration", full);
        find(&docs, "MutatingWebhookConfiguration", full);
        for o in &docs {
            let name = name_of(o);
            assert!(
                name.len() <= 63
                    && !name.starts_with('-')
                    && !name.ends_with('-')
                    && name.chars().all(|c| c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || c == '-'
                        || c == '.'),
                "{release}: {} {name:?} is not a valid name",
                kind_of(o)
            );
        }
    }
}
