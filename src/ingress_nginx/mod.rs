//! ingress-nginx's `nginx.ingress.kubernetes.io/*` annotations, read as
//! plain data so the webhook, `check` and the proxy agree on what each one
//! means in tlsward and which ones do not carry over.
//!
//! Pure: no I/O, no Kubernetes client. Each submodule owns one family.

pub mod backend;
pub mod catalogue;
pub mod client_auth;

/// The prefix every ingress-nginx annotation key starts with.
pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";
