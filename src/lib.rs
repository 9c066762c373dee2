//! tlsward: keeps Kubernetes ingress traffic on TLS and enforces mutual TLS
//! at the edge. The pure policy cores live in `admission`, `policy`,
//! `labels` and `clientauth`; I/O lives in `manifests`, `check`, `webhook`
//! and `tls`.

// The one exception is the webhook reader's SSE2 scan, allowed where it
// stands with its SAFETY argument.
#![deny(unsafe_code)]

pub mod admission;
pub mod check;
pub mod clientauth;
pub mod conn;
mod fast_hash;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingress_nginx;
pub mod labels;
pub mod manifests;
pub mod oidc;
pub mod operator;
pub mod policy;
pub mod proxy;
pub mod quickstart;
pub mod shutdown;
pub mod telemetry;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod webhook;
