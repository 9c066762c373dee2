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
