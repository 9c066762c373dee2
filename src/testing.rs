//! Test support shared by unit tests: a scripted Kubernetes API server for
//! list/watch consumers (reflectors), in the tower_test style, and a writer
//! that captures log lines.

use std::collections::HashMap;

use axum::http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::mpsc;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, body: Vec<u8>) {
    send.send_response(
        Response::builder()
            .status(StatusCode::OK)
            .body(Body::from(body))
            .unwrap(),
    );
}

/// Answers LISTs from `lists` (by URL path); parks WATCHes until the test
/// sends an event for that path, then delivers it as one watch line.
pub async fn api_server(
    mut handle: Handle,
    lists: HashMap<&'static str, Vec<Value>>,
    mut events: mpsc::Receiver<(&'static str, Value)>,
) {
    let mut parked: HashMap<String, Vec<tower_test::mock::SendResponse<Response<Body>>>> =
        HashMap::new();
    loop {
        tokio::select! {
            r = handle.next_request() => {
                let Some((req, send)) = r else { return };
                let path = req.uri().path().to_string();
                if req.uri().query().unwrap_or_default().contains("watch=true") {
                    parked.entry(path).or_default().push(send);
                    continue;
                }
                let items = lists.get(path.as_str()).cloned().unwrap_or_default();
                let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items});
                respond(send, serde_json::to_vec(&list).unwrap());
            }
            e = events.recv() => {
                let Some((path, event)) = e else { return };
                let send = parked.get_mut(path).and_then(Vec::pop).expect("a parked watch for the path");
                let mut line = serde_json::to_vec(&event).unwrap();
                line.push(b'\n');
                respond(send, line);
            }
        }
    }
}

/// A strictly ordered script: each request must be the expected one.
pub struct Scripted {
    handle: Handle,
    /// Requests seen, as "METHOD path?query".
    pub seen: Vec<String>,
}

impl Scripted {
    /// A client whose every request goes to the returned script.
    pub fn new() -> (kube::Client, Self) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (
            kube::Client::new(service, "default"),
            Self {
                handle,
                seen: Vec::new(),
            },
        )
    }

    /// Takes the next request, asserts its method and path (with query),
    /// answers it, and returns the request body as JSON (Null if empty).
    pub async fn expect(
        &mut self,
        method: &str,
        path_and_query: &str,
        status: u16,
        reply: Value,
    ) -> Value {
        let want = format!("{method} {path_and_query}");
        self.expect_matching(&want, |got| got == want, status, Some(reply))
            .await
    }

    /// Takes the next request, asserts `matches("METHOD path?query")`, and
    /// answers `reply`, or echoes the request body when `reply` is None.
    pub async fn expect_matching(
        &mut self,
        what: &str,
        matches: impl Fn(&str) -> bool,
        status: u16,
        reply: Option<Value>,
    ) -> Value {
        use http_body_util::BodyExt;
        let (request, send) = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            self.handle.next_request(),
        )
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}; seen {:?}", self.seen))
        .expect("the client was dropped");
        let got = format!("{} {}", request.method(), request.uri());
        self.seen.push(got.clone());
        assert!(
            matches(&got),
            "request #{}: expected {what}, got {got}",
            self.seen.len()
        );
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let reply = reply.unwrap_or_else(|| body.clone());
        send.send_response(
            Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
        body
    }

    /// Asserts nothing else is sent within a short while.
    pub async fn expect_no_more(&mut self) {
        if let Ok(Some((req, _))) = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            self.handle.next_request(),
        )
        .await
        {
            panic!("unexpected request {} {}", req.method(), req.uri());
        }
    }
}

/// A Kubernetes `Status` for a failed request.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// A log writer that keeps every byte written to it; clones share the bytes.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }

    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.bytes()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A global subscriber that records nothing and decides nothing up front.
///
/// Tests capture logs with a thread-local subscriber
/// (`tracing::subscriber::set_default`). Without a global one, a callsite
/// first reached on another test's thread, where no subscriber is set, may
/// be cached as never enabled, and a capturing test then misses its line.
/// With this installed every callsite stays "sometimes": each event asks
/// the subscriber of the thread it happens on.
struct Undecided;

impl tracing::Subscriber for Undecided {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Installs [`Undecided`] as the global subscriber, once per test binary;
/// call it before capturing logs.
pub fn capture_logs_reliably() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing::subscriber::set_global_default(Undecided);
    });
    tracing::callsite::rebuild_interest_cache();
}

/// A CRL built by hand, DER field by field, in the shapes rcgen will not
/// make (it always adds CRL Number and Authority Key Identifier): above
/// all the version 1 CRL without extensions that `openssl ca -gencrl`
/// writes when the CA configuration has no `crlnumber` file, which OpenSSL
/// accepts and rustls refuses. Signed with the issuer's ECDSA P-256 key.
#[derive(Clone, Debug)]
pub struct RawCrl {
    /// Version 2 (the `version` field is present).
    pub v2: bool,
    /// With a CRL Number extension.
    pub crl_number: bool,
    /// With an Authority Key Identifier extension.
    pub authority_key_id: bool,
    /// With a nextUpdate field (2039-01-01).
    pub next_update: bool,
    /// Serial numbers of revoked certificates, as big-endian bytes.
    pub revoked: Vec<Vec<u8>>,
}

impl RawCrl {
    /// What `openssl ca -gencrl` writes without `crlnumber`: version 1, no
    /// extensions, with nextUpdate.
    pub fn extensionless() -> Self {
        Self {
            v2: false,
            crl_number: false,
            authority_key_id: false,
            next_update: true,
            revoked: Vec::new(),
        }
    }

    /// A CRL RFC 5280 is happy with: version 2, both extensions.
    pub fn conforming() -> Self {
        Self {
            v2: true,
            crl_number: true,
            authority_key_id: true,
            ..Self::extensionless()
        }
    }

    /// The same, revoking `serial` too.
    pub fn revoking(mut self, serial: &[u8]) -> Self {
        self.revoked.push(serial.to_vec());
        self
    }

    /// The signed CRL's DER. `issuer_der` is the issuing CA's certificate.
    pub fn der(&self, issuer_der: &[u8], key: &rcgen::KeyPair) -> Vec<u8> {
        use rcgen::SigningKey;
        assert_eq!(
            key.algorithm(),
            &rcgen::PKCS_ECDSA_P256_SHA256,
            "RawCrl signs with ECDSA P-256 only"
        );
        let (_, issuer) = x509_parser::parse_x509_certificate(issuer_der).expect("issuer");
        // ecdsa-with-SHA256, without parameters.
        let alg = tlv(
            0x30,
            &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
        );
        let time = |t: &str| tlv(0x17, t.as_bytes());
        let mut tbs = Vec::new();
        if self.v2 {
            tbs.extend(tlv(0x02, &[1]));
        }
        tbs.extend(&alg);
        tbs.extend(issuer.subject().as_raw());
        tbs.extend(time("250601000000Z"));
        if self.next_update {
            tbs.extend(time("390101000000Z"));
        }
        if !self.revoked.is_empty() {
            let entries: Vec<u8> = self
                .revoked
                .iter()
                .flat_map(|serial| {
                    let mut s = serial.clone();
                    if s.first().is_some_and(|b| b & 0x80 != 0) {
                        s.insert(0, 0);
                    }
                    let mut entry = tlv(0x02, &s);
                    entry.extend(time("250501000000Z"));
                    tlv(0x30, &entry)
                })
                .collect();
            tbs.extend(tlv(0x30, &entries));
        }
        let mut extensions = Vec::new();
        if self.authority_key_id {
            // SEQUENCE { [0] keyIdentifier }: webpki does not check the value.
            let key_id = tlv(0x30, &tlv(0x80, &[0x5a; 20]));
            let ext = [tlv(0x06, &[0x55, 0x1d, 0x23]), tlv(0x04, &key_id)].concat();
            extensions.extend(tlv(0x30, &ext));
        }
        if self.crl_number {
            let ext = [tlv(0x06, &[0x55, 0x1d, 0x14]), tlv(0x04, &tlv(0x02, &[7]))].concat();
            extensions.extend(tlv(0x30, &ext));
        }
        if !extensions.is_empty() {
            tbs.extend(tlv(0xa0, &tlv(0x30, &extensions)));
        }
        let tbs = tlv(0x30, &tbs);
        let signature = key.sign(&tbs).expect("sign");
        let mut bits = vec![0];
        bits.extend(signature);
        tlv(0x30, &[tbs, alg, tlv(0x03, &bits)].concat())
    }

    /// The signed CRL as an `X509 CRL` PEM block.
    pub fn pem(&self, issuer_der: &[u8], key: &rcgen::KeyPair) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.der(issuer_der, key));
        let mut out = String::from("-----BEGIN X509 CRL-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push('\n');
        }
        out.push_str("-----END X509 CRL-----\n");
        out
    }
}

/// One DER element: tag, definite length, content.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    crate::proxy::identity::der_tlv(tag, content)
}
/// Runs a property test with a seed drawn for this run and named when it
/// fails, so any failure can be replayed: `PROPTEST_RNG_SEED=<seed>` (the
/// message gives the command). `PROPTEST_CASES` overrides `cases`. No
/// regression files are written: the seed is the record.
pub fn check_property<S: proptest::strategy::Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), proptest::test_runner::TestCaseError>,
) {
    use proptest::test_runner::{Config, RngSeed, TestRunner};
    let seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            // Nanoseconds, mixed so that runs a moment apart differ in every bit.
            now.map_or(1, |d| d.as_nanos() as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(29)
        });
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
    let mut runner = TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, test) {
        panic!(
            "{name}: {e}\nseed {seed}: PROPTEST_RNG_SEED={seed} cargo test {name} replays this run"
        );
    }
}
