//! The proxy's Host/`:authority` reader (`request_host` in
//! `src/proxy/server.rs` over `proxy::authority`, reached through
//! `tlsward::fuzzing`), on any authority hyper would hand it, as a Host
//! header and as the request target (`:authority`, absolute form), with or
//! without another Host header beside the target:
//!
//! - it answers (a host, or why there is none) without a panic;
//! - a host it returns is normal (lower case, no trailing dot, normalising
//!   it again changes nothing) and can travel on: it is a valid header
//!   value and a URL's authority (`tlsward::fuzzing::check_routed_host`);
//! - the same authority gives the same answer in both places, so the
//!   Host/SNI check (421) cannot be side-stepped by choosing the form.
//!
//! Input: a byte choosing scheme and whether a second Host header is sent,
//! then the authority.

#![no_main]

use hyper::Request;
use hyper::header::{HOST, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tlsward::fuzzing::{check_routed_host, request_host};

fuzz_target!(|data: &[u8]| {
    let Some((&form, raw)) = data.split_first() else {
        return;
    };
    // As a Host header, with an origin-form target (HTTP/1.1); any bytes
    // hyper takes as a header value.
    let by_header = HeaderValue::from_bytes(raw).ok().map(|v| {
        let mut req = Request::new(());
        *req.uri_mut() = "/".parse().expect("origin form");
        req.headers_mut().insert(HOST, v);
        request_host(&req)
    });
    let Ok(text) = std::str::from_utf8(raw) else {
        if let Some(Ok(host)) = &by_header {
            panic!("{host:?} from a Host header that is not UTF-8: {raw:?}");
        }
        return;
    };
    // As the authority of the target; the target wins over a Host header.
    let scheme = if form % 2 == 0 { "https" } else { "http" };
    let by_target = format!("{scheme}://{text}/")
        .parse::<hyper::Uri>()
        .ok()
        .map(|uri| {
            let mut req = Request::new(());
            *req.uri_mut() = uri;
            if form & 2 != 0 {
                req.headers_mut()
                    .insert(HOST, HeaderValue::from_static("other.example"));
            }
            request_host(&req)
        });
    for host in [&by_header, &by_target].into_iter().flatten().flatten() {
        if let Err(why) = check_routed_host(host) {
            panic!("{why} (from {text:?})");
        }
    }
    if let (Some(h), Some(t)) = (&by_header, &by_target)
        && !text.contains(['/', '?', '#'])
    {
        assert_eq!(h, t, "Host {text:?} and :authority {text:?} disagree");
    }
});
