//! Bytes in, an AdmissionReview body out, mostly one the reader reads.
//!
//! Shared by the reader's property test (`review::tests`) and the
//! `review_reader` fuzz target (`tests/fuzz`, which includes this file by
//! path), so it uses nothing of the crate: the caller passes the Ingresses
//! to start from (the kubectl-made ones of `policies/ingresses/`).
//!
//! The bytes are read as a plan: which Ingress (and old object), the
//! envelope the API server puts around it with each field usually as sent
//! and sometimes missing, null, of another type or repeated, a few edits
//! anywhere in the tree (a value replaced, a key dropped, repeated, renamed
//! or added, an array grown or cut), then how to write it (whitespace,
//! escapes serde_json never writes) and rarely a byte changed. When the
//! bytes run out every choice is the first one, which is the plain review:
//! so short inputs and random bytes alike mostly give well-formed reviews,
//! and the reader/serde comparison is made on most of them.

use serde_json::Value;

/// A JSON tree that keeps key order and duplicate keys.
#[derive(Clone, Debug)]
pub enum Node {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Node>),
    Obj(Vec<(String, Node)>),
}

impl From<&Value> for Node {
    fn from(v: &Value) -> Self {
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => Node::Num(n.to_string()),
            Value::String(s) => Node::Str(s.clone()),
            Value::Array(items) => Node::Arr(items.iter().map(Node::from).collect()),
            Value::Object(fields) => Node::Obj(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), Node::from(v)))
                    .collect(),
            ),
        }
    }
}

/// The plan's bytes, read front to back; past the end every byte is 0,
/// which every choice below reads as "as the API server sends it".
pub struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes(data)
    }

    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    /// A number below `n` (at most 256).
    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n.max(1)
    }

    /// Rarely: true for `n` (at most 64) of the 256 byte values, a window
    /// from 0x40 that holds none of the values libFuzzer likes to insert
    /// (0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff), and not 0.
    fn rarely(&mut self, n: u8) -> bool {
        self.byte().wrapping_sub(0x40) < n.min(64)
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

/// Strings the policy reacts to, and strings that end or straddle the
/// reader's 64-byte blocks.
const WORDS: &[&str] = &[
    "a.example.com",
    "*.example.com",
    "shop-tls",
    "A.Example.COM.",
    "*.*.example.com",
    "bücher.example",
    "xn--bcher-kva.example",
    "",
    "-bad-",
    "nginx",
    "internal",
    "letsencrypt",
    "true",
    "inventory-clients",
    "partner-clients",
    "kube-system",
    "networking.k8s.io/v1",
    "Ingress",
    "v1",
    "CREATE",
    "DELETE",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
    "é中😀\u{2028}",
];

/// Keys the reader reads (and a few it skips).
const KEYS: &[&str] = &[
    "host",
    "hosts",
    "secretName",
    "tls",
    "rules",
    "ingressClassName",
    "defaultBackend",
    "labels",
    "annotations",
    "deletionTimestamp",
    "name",
    "namespace",
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "tlsward.io/client-auth-policy",
    "tlsward.io/exempt",
    "cert-manager.io/cluster-issuer",
    "cert-manager.io/issuer",
    "kubernetes.io/tls-acme",
    "kubernetes.io/ingress.class",
    "app",
    "status",
    "generation",
];

/// Characters for made-up strings: plain ones, what JSON escapes, what the
/// reader's scan flags, and multi-byte UTF-8.
const CHARS: &[char] = &[
    'a', 'z', '0', '.', '-', '/', '*', ' ', '"', '\\', '\n', '\u{1}', '\u{1f}', '\u{7f}', 'é',
    '中', '\u{2028}', '😀',
];

fn text(b: &mut Bytes) -> String {
    if !b.rarely(64) {
        return b.pick(WORDS).to_string();
    }
    let len = b.below(80);
    (0..len)
        .map(|_| if b.rarely(96) { b.pick(CHARS) } else { 'x' })
        .collect()
}

/// Any value: mostly small.
fn junk(b: &mut Bytes, depth: u32) -> Node {
    match b.below(if depth > 2 { 4 } else { 6 }) {
        0 => Node::Str(text(b)),
        1 => Node::Null,
        2 => Node::Bool(b.byte().is_multiple_of(2)),
        3 => Node::Num(
            b.pick(&["0", "-1", "12.5", "1e9", "-0.0E-2", "7", "1E400"])
                .to_string(),
        ),
        4 => Node::Arr((0..b.below(4)).map(|_| junk(b, depth + 1)).collect()),
        _ => Node::Obj(
            (0..b.below(4))
                .map(|_| (text(b), junk(b, depth + 1)))
                .collect(),
        ),
    }
}

/// `key: good`, usually; rarely missing, null, of another type or twice.
fn field(out: &mut Vec<(String, Node)>, b: &mut Bytes, key: &str, good: Node) {
    if !b.rarely(4) {
        out.push((key.into(), good));
        return;
    }
    match b.below(4) {
        0 => {}
        1 => out.push((key.into(), Node::Null)),
        2 => out.push((key.into(), junk(b, 1))),
        _ => {
            out.push((key.into(), good.clone()));
            out.push((key.into(), good));
        }
    }
}

fn s(v: &str) -> Node {
    Node::Str(v.into())
}

/// The AdmissionReview the API server sends for `object`, as `kubectl`
/// would have it: envelope fields, the request's kind, resource and user.
pub fn review(b: &mut Bytes, object: Node, old: Option<Node>, operation: &str) -> Node {
    let gvk = |b: &mut Bytes| {
        let mut k = Vec::new();
        field(&mut k, b, "group", s("networking.k8s.io"));
        field(&mut k, b, "version", s("v1"));
        field(&mut k, b, "kind", s("Ingress"));
        Node::Obj(k)
    };
    let mut r = Vec::new();
    field(&mut r, b, "uid", s("705ab4f5-6393-11e8-b7cc-42010a800002"));
    let kind = gvk(b);
    field(&mut r, b, "kind", kind);
    r.push((
        "resource".into(),
        Node::Obj(vec![
            ("group".into(), s("networking.k8s.io")),
            ("version".into(), s("v1")),
            ("resource".into(), s("ingresses")),
        ]),
    ));
    let request_kind = gvk(b);
    r.push(("requestKind".into(), request_kind));
    field(&mut r, b, "name", s("shop"));
    field(&mut r, b, "namespace", s("payments"));
    field(&mut r, b, "operation", s(operation));
    r.push((
        "userInfo".into(),
        Node::Obj(vec![
            ("username".into(), s("kubernetes-admin")),
            (
                "groups".into(),
                Node::Arr(vec![s("kubeadm:cluster-admins"), s("system:authenticated")]),
            ),
        ]),
    ));
    let (object, old) = match operation {
        "DELETE" => (Node::Null, old.unwrap_or(object)),
        _ => (object, old.unwrap_or(Node::Null)),
    };
    field(&mut r, b, "object", object);
    field(&mut r, b, "oldObject", old);
    let dry_run = b.rarely(32);
    field(&mut r, b, "dryRun", Node::Bool(dry_run));
    r.push((
        "options".into(),
        Node::Obj(vec![
            ("kind".into(), s("CreateOptions")),
            ("apiVersion".into(), s("meta.k8s.io/v1")),
            ("fieldManager".into(), s("kubectl-client-side-apply")),
        ]),
    ));
    let mut top = Vec::new();
    field(&mut top, b, "kind", s("AdmissionReview"));
    field(&mut top, b, "apiVersion", s("admission.k8s.io/v1"));
    field(&mut top, b, "request", Node::Obj(r));
    Node::Obj(top)
}

/// One edit somewhere below `node`: walk down into one of the request's
/// objects (an edit of the envelope itself mostly makes a body that is no
/// review at all), then on with odds of 3 in 4, then change what is there.
fn edit(node: &mut Node, b: &mut Bytes, depth: u32) {
    let deeper = |b: &mut Bytes| depth < 2 || depth < 8 && b.below(4) != 0;
    match node {
        Node::Obj(fields) if depth < 2 => {
            // Into `request`, then into one of its objects.
            let inner: Vec<usize> = (0..fields.len())
                .filter(|&i| matches!(fields[i].1, Node::Obj(_)))
                .collect();
            if !inner.is_empty() {
                let i = inner[b.below(inner.len())];
                return edit(&mut fields[i].1, b, depth + 1);
            }
        }
        Node::Obj(fields) if !fields.is_empty() && deeper(b) => {
            let i = b.below(fields.len());
            return edit(&mut fields[i].1, b, depth + 1);
        }
        Node::Arr(items) if !items.is_empty() && deeper(b) => {
            let i = b.below(items.len());
            return edit(&mut items[i], b, depth + 1);
        }
        _ => {}
    }
    match (b.below(8), node) {
        (0, Node::Obj(fields)) if !fields.is_empty() => {
            let i = b.below(fields.len());
            fields.remove(i);
        }
        (1, Node::Obj(fields)) if !fields.is_empty() => {
            let i = b.below(fields.len());
            let copy = fields[i].clone();
            fields.push(copy);
        }
        (2, Node::Obj(fields)) => {
            let key = b.pick(KEYS).to_string();
            let value = if b.below(2) == 0 {
                Node::Str(text(b))
            } else {
                junk(b, 1)
            };
            let at = b.below(fields.len() + 1);
            fields.insert(at.min(fields.len()), (key, value));
        }
        (3, Node::Obj(fields)) if fields.len() > 1 => {
            let (i, j) = (b.below(fields.len()), b.below(fields.len()));
            fields.swap(i, j);
        }
        (4, Node::Arr(items)) if !items.is_empty() => {
            let i = b.below(items.len());
            if b.below(2) == 0 {
                items.remove(i);
            } else {
                let copy = items[i].clone();
                items.push(copy);
            }
        }
        (5, node) => *node = junk(b, 1),
        (_, node) => *node = Node::Str(text(b)),
    }
}

/// `review` with up to three edits in it; more often none.
pub fn edited(b: &mut Bytes, mut review: Node) -> Node {
    let edits = match b.byte() {
        0..=127 => 0,
        128..=207 => 1,
        208..=243 => 2,
        _ => 3,
    };
    for _ in 0..edits {
        edit(&mut review, b, 0);
    }
    review
}

/// How a review is written: compact, as serde_json and the API server
/// write it, unless the plan asks for whitespace between tokens or for
/// escapes serde_json never writes (`\/`, `\u0061`).
pub struct Style {
    whitespace: bool,
    odd_escapes: bool,
}

impl Style {
    pub fn new(b: &mut Bytes) -> Self {
        Style {
            whitespace: b.rarely(48),
            odd_escapes: b.rarely(24),
        }
    }
}

/// Writes `node` as JSON in `style`.
pub fn write(node: &Node, style: &Style, b: &mut Bytes, out: &mut Vec<u8>) {
    if style.whitespace && b.rarely(32) {
        out.extend_from_slice(b.pick(&[" ", "\n  ", "\r\n\t"]).as_bytes());
    }
    match node {
        Node::Null => out.extend_from_slice(b"null"),
        Node::Bool(v) => out.extend_from_slice(if *v { b"true" } else { b"false" }),
        Node::Num(n) => out.extend_from_slice(n.as_bytes()),
        Node::Str(v) => write_str(v, style, b, out),
        Node::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, style, b, out);
            }
            out.push(b']');
        }
        Node::Obj(fields) => {
            out.push(b'{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, style, b, out);
                out.push(b':');
                write(v, style, b, out);
            }
            out.push(b'}');
        }
    }
}

fn write_str(v: &str, style: &Style, b: &mut Bytes, out: &mut Vec<u8>) {
    let odd_escape = style.odd_escapes && b.rarely(16);
    out.push(b'"');
    for (i, c) in v.chars().enumerate() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '/' if odd_escape => out.extend_from_slice(b"\\/"),
            c if (c as u32) < 0x20 || (i == 0 && odd_escape) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.extend_from_slice(format!("\\u{u:04x}").as_bytes());
                }
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Rarely, one byte changed, removed or repeated.
pub fn mutate_bytes(b: &mut Bytes, out: &mut Vec<u8>) {
    if out.is_empty() || !b.rarely(3) {
        return;
    }
    let at = (usize::from(b.byte()) << 8 | usize::from(b.byte())) % out.len();
    match b.below(3) {
        0 => out[at] ^= 1 << b.below(8),
        1 => {
            out.remove(at);
        }
        _ => out.insert(at, out[at]),
    }
}

/// The whole plan: a review around one of `ingresses` (JSON values), edited,
/// written and perhaps damaged.
pub fn body(ingresses: &[Node], data: &[u8]) -> Vec<u8> {
    let mut b = Bytes::new(data);
    let object = if ingresses.is_empty() {
        Node::Obj(Vec::new())
    } else {
        ingresses[b.below(ingresses.len())].clone()
    };
    let old = match b.below(4) {
        0 if !ingresses.is_empty() => Some(ingresses[b.below(ingresses.len())].clone()),
        1 => Some(object.clone()),
        _ => None,
    };
    let operation = b.pick(&["CREATE", "UPDATE", "CREATE", "UPDATE", "DELETE", "CONNECT"]);
    let review = review(&mut b, object, old, operation);
    let review = edited(&mut b, review);
    let style = Style::new(&mut b);
    let mut out = Vec::new();
    write(&review, &style, &mut b, &mut out);
    mutate_bytes(&mut b, &mut out);
    out
}
