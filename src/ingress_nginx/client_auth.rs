//! The `auth-tls-*` annotations, `ssl-redirect` and `force-ssl-redirect`:
//! the implicit per-host client-auth policy an Ingress asks for.
