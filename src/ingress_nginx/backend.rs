//! How to reach an Ingress's backends: `backend-protocol`, `proxy-ssl-*`,
//! `proxy-body-size` and the `proxy-*-timeout` annotations.
