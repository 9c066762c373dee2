//! The workloads the chart renders: every pod under the restricted Pod
//! Security Standard; containers with the image, probes, resources and JSON
//! logs; a ServiceAccount, Service and PodDisruptionBudget per component;
//! replicas and high-availability settings from the values; and
//! NetworkPolicies that admit exactly the ports each component serves. Uses
//! the real `helm template` over the scenarios in `support`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::*;

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
