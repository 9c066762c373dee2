//! `tlsward proxy` end to end: the real binary in directory mode, an rcgen
//! PKI made at test time, a real upstream, and real clients (curl and a
//! rustls client in the test). One module per feature; the harness and the
//! standard world most of them share are in `support`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/grpc_raw.rs"]
mod grpc_raw;
mod support;

mod backends;
mod broken_input;
mod chaos;
mod identity_headers;
mod ingress_nginx_auth;
mod limits;
mod migration_report;
mod protocols;
mod reload;
mod routing;
mod scanners;
mod shutdown;
mod tls_verification;
mod websocket_h2;
