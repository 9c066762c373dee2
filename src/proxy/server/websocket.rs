//! WebSockets over h2 (RFC 8441): an extended CONNECT with
//! `:protocol websocket` goes to the upstream as an HTTP/1.1 WebSocket
//! handshake (RFC 6455), and the upstream's `101` becomes the client's
//! `200`; then the two are tunnelled (see [`crate::conn::h2::tunnel`]).
//!
//! Upstreams speak HTTP/1.1 WebSockets, so the proxy plays the HTTP/1.1
//! client: it makes the `Sec-WebSocket-Key` (an h2 client sends none) and
//! checks the upstream's `Sec-WebSocket-Accept` against it, so that a `101`
//! from something that did not read the handshake is not taken for one.

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode};
use tracing::warn;

use super::{Connection, Forwarded, ProxyBody, Shared, strip_hop_by_hop, text, upstream_answer};
use crate::proxy::upstream::{PooledBody, UpstreamError};

const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
const SEC_WEBSOCKET_VERSION: HeaderName = HeaderName::from_static("sec-websocket-version");
const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");
/// RFC 6455 section 1.3: appended to the key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// An h2 WebSocket on its way to the upstream: the client's side of the
/// tunnel-to-be, and the `Sec-WebSocket-Accept` the upstream must answer.
pub(super) struct H2WebSocket {
    client: OnUpgrade,
    accept: String,
}

impl H2WebSocket {
    /// Turns an h2 extended CONNECT for a WebSocket into an HTTP/1.1
    /// WebSocket handshake (a GET with a fresh key and version 13; the
    /// client's `Sec-WebSocket-Protocol` and `-Extensions` stay). `None`
    /// for any other request. Another CONNECT (another `:protocol`, or a
    /// plain CONNECT: the proxy is no forward proxy) gets 501 here and
    /// never reaches the upstream. The `Upgrade` headers are the caller's.
    pub(super) fn from_connect<B>(
        req: &mut Request<B>,
    ) -> Result<Option<Box<Self>>, Box<Response<ProxyBody>>> {
        if req.method() != Method::CONNECT || req.version() != hyper::Version::HTTP_2 {
            return Ok(None);
        }
        match req.extensions().get::<hyper::ext::Protocol>() {
            Some(p) if p.as_str().eq_ignore_ascii_case("websocket") => {}
            Some(p) => {
                return Err(Box::new(text(
                    StatusCode::NOT_IMPLEMENTED,
                    format!(
                        "extended CONNECT for {:?} is not supported: only websocket is\n",
                        p.as_str()
                    ),
                )));
            }
            None => {
                return Err(Box::new(text(
                    StatusCode::NOT_IMPLEMENTED,
                    "CONNECT is not supported: only an extended CONNECT for websocket is\n".into(),
                )));
            }
        }
        let mut nonce = [0u8; 16];
        if aws_lc_rs::rand::fill(&mut nonce).is_err() {
            return Err(Box::new(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no random WebSocket key could be made\n".into(),
            )));
        }
        let key = base64::engine::general_purpose::STANDARD.encode(nonce);
        let accept = accept_for(&key);
        let client = hyper::upgrade::on(&mut *req);
        req.extensions_mut().remove::<hyper::ext::Protocol>();
        *req.method_mut() = Method::GET;
        let headers = req.headers_mut();
        // Base64 is a valid header value; the fallback is never taken.
        if let Ok(v) = HeaderValue::from_str(&key) {
            headers.insert(SEC_WEBSOCKET_KEY, v);
        }
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        headers.remove(SEC_WEBSOCKET_ACCEPT);
        Ok(Some(Box::new(Self { client, accept })))
    }

    /// The client's answer: `200` and the tunnel when the upstream switched
    /// to the WebSocket it was asked for; 502 for a `101` with the wrong
    /// `Sec-WebSocket-Accept` or any other success (a 2xx would open an
    /// h2 tunnel to nothing); other statuses, failures and timeouts as for
    /// any request.
    pub(super) fn answer(
        self,
        sent: Result<Result<Response<PooledBody>, UpstreamError>, tokio::time::error::Elapsed>,
        f: &Forwarded<'_>,
        conn: &Connection,
        shared: &Shared,
    ) -> Response<ProxyBody> {
        let (addr, backend) = (f.addr, &f.backend.name);
        match sent {
            Ok(Ok(mut resp)) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                let accepted = resp
                    .headers()
                    .get(SEC_WEBSOCKET_ACCEPT)
                    .is_some_and(|v| v.as_bytes() == self.accept.as_bytes());
                if !accepted {
                    warn!(upstream = %addr, "upstream answered 101 without the WebSocket's Sec-WebSocket-Accept");
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!("upstream {backend} did not complete the WebSocket handshake\n"),
                    );
                }
                let upstream = hyper::upgrade::on(&mut resp);
                tokio::spawn(crate::conn::h2::tunnel(
                    self.client,
                    upstream,
                    conn.activity.clone(),
                ));
                let (parts, _) = resp.into_parts();
                let mut headers = parts.headers;
                strip_hop_by_hop(&mut headers);
                headers.remove(SEC_WEBSOCKET_ACCEPT);
                // A successful CONNECT has no body (RFC 9113 8.5).
                headers.remove(header::CONTENT_LENGTH);
                let mut ok = Response::new(Empty::<Bytes>::new().map_err(|n| match n {}).boxed());
                *ok.headers_mut() = headers;
                ok
            }
            Ok(Ok(resp)) if resp.status().is_success() => {
                warn!(upstream = %addr, status = resp.status().as_u16(), "upstream did not switch to WebSocket");
                text(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "upstream {backend} answered {} to a WebSocket handshake\n",
                        resp.status().as_u16()
                    ),
                )
            }
            other => upstream_answer(other, f, conn, shared),
        }
    }
}

/// RFC 6455 section 4.2.2: the `Sec-WebSocket-Accept` for `key`.
fn accept_for(key: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{ACCEPT_GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(protocol: Option<&'static str>) -> Request<()> {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .version(hyper::Version::HTTP_2)
            .uri("https://a.example.test/chat")
            .header("sec-websocket-protocol", "chat")
            .header("sec-websocket-key", "client-chosen")
            .body(())
            .unwrap();
        if let Some(p) = protocol {
            req.extensions_mut()
                .insert(hyper::ext::Protocol::from_static(p));
        }
        req
    }

    #[test]
    fn the_accept_value_is_rfc_6455s() {
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn an_extended_connect_for_websocket_becomes_a_get_with_a_fresh_key() {
        let mut req = connect(Some("websocket"));
        let ws = H2WebSocket::from_connect(&mut req).ok().flatten().unwrap();
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.headers()["sec-websocket-version"], "13");
        assert_eq!(req.headers()["sec-websocket-protocol"], "chat");
        let key = req.headers()["sec-websocket-key"].to_str().unwrap();
        let nonce = base64::engine::general_purpose::STANDARD
            .decode(key)
            .unwrap();
        assert_eq!(nonce.len(), 16, "RFC 6455: a 16-byte nonce, base64");
        assert_eq!(ws.accept, accept_for(key));
        let mut again = connect(Some("websocket"));
        H2WebSocket::from_connect(&mut again)
            .ok()
            .flatten()
            .unwrap();
        assert_ne!(
            again.headers()["sec-websocket-key"],
            key,
            "a key per request"
        );
    }

    #[test]
    fn other_connects_are_refused_and_other_requests_left_alone() {
        for p in [Some("connect-udp"), None] {
            let mut req = connect(p);
            let Err(resp) = H2WebSocket::from_connect(&mut req) else {
                panic!("{p:?} was not refused");
            };
            assert_eq!(resp.status(), StatusCode::NOT_IMPLEMENTED);
        }
        let mut get = Request::get("https://a.example.test/")
            .version(hyper::Version::HTTP_2)
            .body(())
            .unwrap();
        assert!(matches!(H2WebSocket::from_connect(&mut get), Ok(None)));
        let mut h1_connect = connect(Some("websocket"));
        *h1_connect.version_mut() = hyper::Version::HTTP_11;
        assert!(matches!(
            H2WebSocket::from_connect(&mut h1_connect),
            Ok(None)
        ));
    }
}
