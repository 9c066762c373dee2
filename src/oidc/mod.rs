//! OpenID Connect at the proxy: bearer tokens for APIs and browser login for
//! people, optionally bound to the client certificate (RFC 8705).
//!
//! The pure parts (`jwt`, `session`, `login`) take bytes, keys and `now`
//! and return data; `client` and `keys` talk to identity providers.

pub mod jwt;
pub mod paths;
