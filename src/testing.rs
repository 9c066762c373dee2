//! Test support shared by unit tests: a scripted Kubernetes API server for
//! list/watch consumers (reflectors), in the tower_test style.

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
