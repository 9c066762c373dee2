//! The floor the webhook is measured against (see `benches/webhook_load.rs`
//! and docs/benchmarks.md): the HTTPS stack `tlsward webhook` had before it
//! served with hyper directly under `tlsward::conn`'s connection limits
//! (axum-server 0.9, rustls with the aws-lc-rs provider, TLS 1.3 and 1.2,
//! ALPN h2 and http/1.1, a multi-threaded tokio runtime with one worker per
//! core) answering `POST /validate` with a fixed AdmissionReview. The body is
//! read but never parsed, so anything tlsward costs beyond this is the cost
//! of deciding, logging and counting.
//!
//! ```text
//! cargo build --release --example baseline_webhook
//! target/release/examples/baseline_webhook --tls-cert tls.crt --tls-key tls.key --listen 127.0.0.1:9443
//! ```
//!
//! For benchmarking only: it admits everything.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::routing::post;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The answer to every review.
const RESPONSE: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true}}"#;

struct Args {
    tls_cert: PathBuf,
    tls_key: PathBuf,
    listen: SocketAddr,
}

fn parse_args() -> Result<Args, String> {
    let usage = "usage: baseline_webhook --tls-cert FILE --tls-key FILE [--listen ADDR]";
    let (mut cert, mut key, mut listen) = (None, None, "127.0.0.1:9443".to_string());
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{usage}"))?;
        match flag.as_str() {
            "--tls-cert" => cert = Some(PathBuf::from(value)),
            "--tls-key" => key = Some(PathBuf::from(value)),
            "--listen" => listen = value,
            _ => return Err(format!("unknown argument {flag:?}\n{usage}")),
        }
    }
    Ok(Args {
        tls_cert: cert.ok_or(usage)?,
        tls_key: key.ok_or(usage)?,
        listen: listen
            .parse()
            .map_err(|e| format!("--listen {listen:?}: {e}"))?,
    })
}

fn server_config(args: &Args) -> Result<rustls::ServerConfig, String> {
    let chain = CertificateDer::pem_file_iter(&args.tls_cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", args.tls_cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&args.tls_key)
        .map_err(|e| format!("{}: {e}", args.tls_key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = parse_args()?;
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(server_config(&args)?));
    let app = Router::new().route(
        "/validate",
        // Taking the body as Bytes reads it completely, as tlsward does,
        // but nothing looks inside.
        post(|_body: Bytes| async { ([(header::CONTENT_TYPE, "application/json")], RESPONSE) }),
    );
    eprintln!("baseline_webhook listening on https://{}", args.listen);
    axum_server::bind_rustls(args.listen, tls)
        .serve(app.into_make_service())
        .await
        .map_err(|e| format!("serving on {}: {e}", args.listen))
}
