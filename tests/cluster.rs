//! Against a real API server (kind/k3d in the cluster CI workflow): these
//! cannot run on machines without one, so they are ignored by default.
//! Run with `cargo test --test cluster -- --ignored` after
//! `kubectl apply -f crds/` and with `tlsward operator` running.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use serde_json::json;
use tlsward::clientauth::ClientAuthPolicy;

#[tokio::test]
#[ignore = "needs a cluster"]
async fn policy_becomes_a_bundle_secret_and_ready() {
    let client = Client::try_default().await.expect("a kubeconfig");
    let ns = format!("tlsward-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();

    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params
        .self_signed(&KeyPair::generate().unwrap())
        .unwrap()
        .pem();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "corp-ca"}, "stringData": {"ca.crt": ca}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let policies: Api<ClientAuthPolicy> = Api::namespaced(client.clone(), &ns);
    policies
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"apiVersion": "tlsward.io/v1alpha1", "kind": "ClientAuthPolicy",
                "metadata": {"name": "clients"},
                "spec": {"trustAnchors": [{"secretRef": {"name": "corp-ca"}}]}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = policies
            .get("clients")
            .await
            .ok()
            .and_then(|p| p.status)
            .is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
        let bundle = secrets.get_opt("clients-ca").await.unwrap();
        if ready && let Some(b) = bundle {
            let data = b.data.unwrap_or_default();
            assert_eq!(String::from_utf8_lossy(&data["ca.crt"].0).trim(), ca.trim());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no bundle Secret / Ready=True within 60 s"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}
