//! `status.loadBalancer` on the Ingresses the proxy serves, taken from the
//! proxy's own Service, as other ingress controllers publish it.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

/// The addresses to publish: the Service's load-balancer ingress, else its
/// external IPs. Empty when it has neither (nothing is written then).
pub fn addresses(svc: &Service) -> Vec<IngressLoadBalancerIngress> {
    let lb: Vec<IngressLoadBalancerIngress> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .into_iter()
        .flatten()
        .map(|i| IngressLoadBalancerIngress {
            ip: i.ip.clone(),
            hostname: i.hostname.clone(),
            ports: None,
        })
        .collect();
    if !lb.is_empty() {
        return lb;
    }
    svc.spec
        .as_ref()
        .and_then(|s| s.external_ips.as_ref())
        .into_iter()
        .flatten()
        .map(|ip| IngressLoadBalancerIngress {
            ip: Some(ip.clone()),
            hostname: None,
            ports: None,
        })
        .collect()
}

/// Patches every Ingress whose published addresses differ from `want`.
/// Replicas may race here; the patch is idempotent.
pub async fn publish(client: &Client, ingresses: &[Ingress], want: &[IngressLoadBalancerIngress]) {
    if want.is_empty() {
        return;
    }
    for ing in ingresses {
        let have = ing
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_deref())
            .unwrap_or_default();
        if have == want {
            continue;
        }
        let ns = ing.namespace().unwrap_or_default();
        let api: Api<Ingress> = Api::namespaced(client.clone(), &ns);
        let patch = json!({"status": {"loadBalancer": {"ingress": want}}});
        match api
            .patch_status(
                &ing.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                info!(ingress = %format!("{ns}/{}", ing.name_any()), "status.loadBalancer published")
            }
            Err(e) => {
                warn!(ingress = %format!("{ns}/{}", ing.name_any()), error = %e, "could not publish status")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::testing::Scripted;

    fn svc(v: Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn ingress(name: &str, status: Value) -> Ingress {
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "shop"}, "status": status}),
        )
        .unwrap()
    }

    #[test]
    fn addresses_come_from_the_load_balancer_then_external_ips() {
        let lb = svc(
            json!({"metadata": {"name": "p"}, "spec": {"externalIPs": ["192.0.2.9"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.net"}]}}}),
        );
        let got = addresses(&lb);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(got[1].hostname.as_deref(), Some("lb.example.net"));
        let ext = svc(json!({"metadata": {"name": "p"}, "spec": {"externalIPs": ["192.0.2.9"]}}));
        assert_eq!(addresses(&ext)[0].ip.as_deref(), Some("192.0.2.9"));
        assert!(
            addresses(&svc(
                json!({"metadata": {"name": "p"}, "spec": {"type": "ClusterIP"}})
            ))
            .is_empty()
        );
    }

    #[tokio::test]
    async fn only_ingresses_with_other_addresses_are_patched() {
        let (client, mut api) = Scripted::new();
        let want = addresses(&svc(json!({"metadata": {"name": "p"},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}})));
        let ingresses = vec![
            ingress(
                "current",
                json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}),
            ),
            ingress(
                "stale",
                json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}}),
            ),
            ingress("new", json!({})),
        ];
        let task = tokio::spawn(async move { publish(&client, &ingresses, &want).await });
        for name in ["stale", "new"] {
            let body = api
                .expect(
                    "PATCH",
                    &format!("/apis/networking.k8s.io/v1/namespaces/shop/ingresses/{name}/status?"),
                    200,
                    json!({}),
                )
                .await;
            assert_eq!(
                body,
                json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}})
            );
        }
        task.await.unwrap();
        api.expect_no_more().await;
    }
}
