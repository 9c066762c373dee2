//! ingress-nginx annotations the proxy does not implement: the Ingress is
//! served without them, one log line names them (again only when the list
//! changes), and `tlsward_proxy_ingress_unsupported_annotations` counts them
//! per Ingress. The real binary in directory mode, an rcgen certificate, a
//! real echo upstream and a rustls client.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

const HOST: &str = "shop.migration.test";
const LINE: &str = "ingress-nginx annotations not implemented";
const GAUGE: &str = "tlsward_proxy_ingress_unsupported_annotations";
const SHOP: &[(&str, &str)] = &[("namespace", "default"), ("ingress", "shop")];

fn shop(annotations: Value) -> Value {
    let paths: &[(&str, &str, &str)] = &[("Prefix", "/store", "echo")];
    let mut ing = ingress("shop", None, "shop-tls", &[Rule { host: HOST, paths }]);
    ing["metadata"]["annotations"] = annotations;
    ing
}

fn lines(proxy: &Proxy) -> usize {
    proxy.log().lines().filter(|l| l.contains(LINE)).count()
}

/// The count of report lines once it reaches `n`, or after 3 s: log lines
/// are written in batches, up to 50 ms after they are logged.
fn wait_lines(proxy: &Proxy, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(3);
    while lines(proxy) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    lines(proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_nginx_annotations_are_logged_once_and_counted_per_ingress() {
    let ca = Ca::new("migration test CA");
    let server = ca.server(&[HOST], "shop", 2030);
    let upstream = Upstream::start("echo");
    let config = tempfile::tempdir().unwrap();
    let dir = config.path();
    write_json(
        dir,
        "secrets.json",
        &[tls_secret("shop-tls", &server.cert_pem, &server.key_pem)],
    );
    let echo = service("echo", &[upstream.addr]);
    write_json(
        dir,
        "app.json",
        &[
            echo.clone(),
            shop(json!({
                "nginx.ingress.kubernetes.io/rewrite-target": "/",
                "nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers \"X: y\";",
                "nginx.ingress.kubernetes.io/proxy-connect-timeout": "5",
            })),
        ],
    );
    let proxy = Proxy::start(dir, &[]);

    // Served, and without the rewrite: the upstream sees the path as sent.
    let cfg = client_config(&ca, None, &[b"http/1.1"]);
    let r = get_once(proxy.https, HOST, cfg, "/store/item")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["path"], "/store/item");
    // Not a configuration problem: the reload succeeded.
    assert_eq!(proxy.metric("tlsward_proxy_config_problems", &[]), 0.0);

    assert_eq!(proxy.wait_metric(GAUGE, SHOP, |v| v == 2.0), 2.0);
    assert!(
        proxy.wait_log(&[
            LINE,
            "nginx.ingress.kubernetes.io/configuration-snippet,nginx.ingress.kubernetes.io/rewrite-target",
        ]),
        "{}",
        proxy.log()
    );
    assert_eq!(wait_lines(&proxy, 1), 1, "{}", proxy.log());

    // A rebuild for another reason does not repeat the line.
    let reloads = proxy.metric("tlsward_proxy_reloads_total", &[]);
    write_json(dir, "other.json", &[service("other", &[upstream.addr])]);
    assert!(proxy.wait_metric("tlsward_proxy_reloads_total", &[], |v| v > reloads) > reloads);
    // Past the log writer's batching, so a repeat would be written by now.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lines(&proxy), 1, "{}", proxy.log());

    // A changed list is logged again, and the gauge follows.
    write_json(
        dir,
        "app.json",
        &[
            echo.clone(),
            shop(json!({"nginx.ingress.kubernetes.io/rewrite-target": "/"})),
        ],
    );
    assert_eq!(proxy.wait_metric(GAUGE, SHOP, |v| v == 1.0), 1.0);
    assert_eq!(wait_lines(&proxy, 2), 2, "{}", proxy.log());

    // Nothing left to report: the series goes.
    write_json(dir, "app.json", &[echo, shop(json!({}))]);
    let deadline = Instant::now() + Duration::from_secs(3);
    while proxy.metrics().contains(GAUGE_SERIES) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !proxy.metrics().contains(GAUGE_SERIES),
        "{}",
        proxy.metrics()
    );
}

const GAUGE_SERIES: &str = "tlsward_proxy_ingress_unsupported_annotations{";
