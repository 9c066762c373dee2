//! OpenID Connect at the proxy: bearer tokens for APIs and browser login for
//! people, optionally bound to the client certificate (RFC 8705).
//!
//! The pure parts (`jwt`, `token_cache`, `session`, `login`, `paths`) take
//! bytes, keys and `now` and return data; `client` and `keys` talk to
//! identity providers.

pub mod client;
pub mod jwt;
pub mod keys;
pub mod login;
pub mod paths;
pub mod session;
pub mod token_cache;

// The test IdP; the operator's tests use it too.
#[cfg(test)]
pub(crate) mod fixtures;
