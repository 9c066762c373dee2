//! tlsward: keeps Kubernetes ingress traffic on TLS and enforces mutual TLS
//! at the edge. The pure policy cores live in `admission`, `policy`,
//! `labels` and `clientauth`; I/O lives in `check`, `webhook` and `tls`.

pub mod admission;
pub mod clientauth;
pub mod labels;
pub mod policy;
