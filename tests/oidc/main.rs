//! OIDC at the proxy (issue 14), end to end: the real `tlsward proxy` in
//! directory mode, a real OpenID provider (npm oidc-provider, started by
//! `common/oidc_provider.rs`), the echo upstream, and curl as the client
//! (a cookie-keeping browser for the login flows). Each test starts its own
//! provider and proxy (`world`), so tests run in parallel.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/oidc_provider.rs"]
mod oidc_provider;
#[path = "../proxy/support.rs"]
mod support;

mod world;

mod bearer;
mod binding;
mod headers;
mod login;
mod login_attacks;
mod rotation;
