//! Every ingress-nginx annotation key tlsward knows of, and whether it
//! carries over: supported, mapped onto a tlsward feature, or not supported
//! (with what to do instead).
