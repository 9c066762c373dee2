//! `admission.k8s.io/v1` AdmissionReview in, AdmissionReview out, with no
//! HTTP in sight. A well-formed review is parsed once, straight into the
//! borrowed [`IngressObject`] admission reads; only a malformed one is parsed
//! again, to say what is wrong with it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::networking::v1::Ingress;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::admission::{self, AUDIT_VIOLATIONS_KEY, IngressObject, Review};
use crate::policy::Enforcement;

#[cfg(test)]
mod plan;
mod reader;

/// Which endpoint was called.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hook {
    /// `POST /validate`.
    Validate,
    /// `POST /mutate`.
    Mutate,
}

impl Hook {
    /// Every endpoint, in the order of their discriminants.
    pub const ALL: [Hook; 2] = [Hook::Validate, Hook::Mutate];

    /// The metrics/log label.
    pub fn label(self) -> &'static str {
        match self {
            Hook::Validate => "validate",
            Hook::Mutate => "mutate",
        }
    }
}

/// A request's operation, as the metrics count it: the four the API server
/// sends, and [`Operation::Unknown`] for anything else, so a caller cannot
/// mint label values.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// `CREATE`.
    Create,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `CONNECT`.
    Connect,
    /// Anything else, and bodies too broken to name one.
    Unknown,
}

impl Operation {
    /// Every operation, in the order of their discriminants.
    pub const ALL: [Operation; 5] = [
        Operation::Create,
        Operation::Update,
        Operation::Delete,
        Operation::Connect,
        Operation::Unknown,
    ];

    /// The operation named by `request.operation`.
    pub fn of(operation: &str) -> Self {
        match operation {
            "CREATE" => Operation::Create,
            "UPDATE" => Operation::Update,
            "DELETE" => Operation::Delete,
            "CONNECT" => Operation::Connect,
            _ => Operation::Unknown,
        }
    }

    /// The metrics label: the API server's spelling, or `unknown`.
    pub fn label(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
            Operation::Unknown => "unknown",
        }
    }
}

/// How a review was answered: the `verdict` of the metrics and the log line.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReviewVerdict {
    /// Allowed with nothing to say.
    Allowed,
    /// Refused by the policy (code 403).
    Denied,
    /// Allowed, with the violations as warnings (`enforcement: Warn`).
    Warned,
    /// The mutating webhook returned a patch.
    Patched,
    /// The policy does not apply to the object.
    Exempt,
    /// An AdmissionReview whose object is not a decodable Ingress (code 400,
    /// in-band).
    Invalid,
    /// A body that is not an AdmissionReview at all (HTTP 400).
    BadRequest,
}

impl ReviewVerdict {
    /// Every verdict, in the order of their discriminants.
    pub const ALL: [ReviewVerdict; 7] = [
        ReviewVerdict::Allowed,
        ReviewVerdict::Denied,
        ReviewVerdict::Warned,
        ReviewVerdict::Patched,
        ReviewVerdict::Exempt,
        ReviewVerdict::Invalid,
        ReviewVerdict::BadRequest,
    ];

    /// The metrics/log label. The chart's alerts select on these values.
    pub fn label(self) -> &'static str {
        match self {
            ReviewVerdict::Allowed => "allowed",
            ReviewVerdict::Denied => "denied",
            ReviewVerdict::Warned => "warned",
            ReviewVerdict::Patched => "patched",
            ReviewVerdict::Exempt => "exempt",
            ReviewVerdict::Invalid => "invalid",
            ReviewVerdict::BadRequest => "bad_request",
        }
    }
}

const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";

/// The envelope, generic over how `object`/`oldObject` are decoded: straight
/// into [`IngressObject`] on the fast path, or kept raw (`&RawValue`) on the
/// slow path that explains what is wrong with a body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a, O> {
    #[serde(borrow, default)]
    api_version: Cow<'a, str>,
    #[serde(borrow, default)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    request: Option<RequestIn<'a, O>>,
}

#[derive(Deserialize)]
struct GroupVersionKind<'a> {
    #[serde(borrow, default)]
    group: Cow<'a, str>,
    #[serde(borrow, default)]
    version: Cow<'a, str>,
    #[serde(borrow, default)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn<'a, O> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(borrow)]
    kind: GroupVersionKind<'a>,
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    operation: Cow<'a, str>,
    #[serde(default = "none")]
    object: Option<O>,
    #[serde(default = "none")]
    old_object: Option<O>,
    #[serde(default)]
    dry_run: bool,
}

fn none<O>() -> Option<O> {
    None
}

/// A request whose objects are decoded.
struct Parsed<'a> {
    uid: Cow<'a, str>,
    kind: GroupVersionKind<'a>,
    name: Cow<'a, str>,
    namespace: Option<Cow<'a, str>>,
    operation: Cow<'a, str>,
    dry_run: bool,
    /// `Err` carries why `request.object` does not decode.
    object: Result<Option<IngressObject<'a>>, serde_json::Error>,
    old: Option<IngressObject<'a>>,
}

impl<'a, O> RequestIn<'a, O> {
    fn parsed(
        self,
        object: Result<Option<IngressObject<'a>>, serde_json::Error>,
        old: Option<IngressObject<'a>>,
    ) -> Parsed<'a> {
        Parsed {
            uid: self.uid,
            kind: self.kind,
            name: self.name,
            namespace: self.namespace,
            operation: self.operation,
            dry_run: self.dry_run,
            object,
            old,
        }
    }
}

/// Decodes a well-formed review in one pass (the normal case): with the
/// hand-written [`reader`] when it can, else with serde. A body neither
/// accepts is decoded again, slowly, to say precisely what is wrong.
fn parse(body: &[u8]) -> Result<Parsed<'_>, BadRequest> {
    // One UTF-8 check of the whole body instead of one per string.
    if let Ok(text) = std::str::from_utf8(body)
        && let Some(parsed) = reader::review(text).ok().or_else(|| parse_with_serde(text))
    {
        return Ok(parsed);
    }
    parse_slowly(body)
}

/// [`parse`] without the hand-written reader: what every body would get
/// if the reader did not exist. The reader's oracle.
fn parse_without_reader(body: &[u8]) -> Result<Parsed<'_>, BadRequest> {
    if let Ok(text) = std::str::from_utf8(body)
        && let Some(parsed) = parse_with_serde(text)
    {
        return Ok(parsed);
    }
    parse_slowly(body)
}

/// The one-pass decode with serde's derived decoders.
fn parse_with_serde(text: &str) -> Option<Parsed<'_>> {
    let ReviewIn {
        api_version,
        kind,
        request: Some(mut req),
    } = serde_json::from_str::<ReviewIn<IngressObject>>(text).ok()?
    else {
        return None;
    };
    if api_version != API_VERSION || kind != KIND {
        return None;
    }
    let object = req.object.take();
    let old = req.old_object.take();
    // A foreign apiVersion/kind inside an object: let the slow path word it.
    (object.as_ref().is_none_or(IngressObject::is_ingress_v1)
        && old.as_ref().is_none_or(IngressObject::is_ingress_v1))
    .then(|| req.parsed(Ok(object), old))
}

fn parse_slowly(body: &[u8]) -> Result<Parsed<'_>, BadRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BadRequest::Empty);
    }
    let review: ReviewIn<&RawValue> = serde_json::from_slice(body).map_err(BadRequest::Json)?;
    if review.api_version != API_VERSION || review.kind != KIND {
        return Err(BadRequest::WrongType {
            api_version: review.api_version.into_owned(),
            kind: review.kind.into_owned(),
        });
    }
    let req = review.request.ok_or(BadRequest::NoRequest)?;
    let object = match req.object {
        None => Ok(None),
        Some(raw) => decode_ingress(raw.get()).map(Some),
    };
    // The old object only refines decisions; an undecodable one is ignored.
    let old = req
        .old_object
        .and_then(|raw| decode_ingress(raw.get()).ok());
    Ok(req.parsed(object, old))
}

/// Decodes with the full `k8s_openapi` type first, whose errors (a foreign
/// apiVersion, a field of the wrong type anywhere) are the clearest, then
/// keeps the borrowed form admission reads.
fn decode_ingress(json: &str) -> Result<IngressObject<'_>, serde_json::Error> {
    serde_json::from_str::<Ingress>(json)?;
    serde_json::from_str(json)
}

/// The `status` of a response.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Status {
    /// HTTP-like code: 403 for a policy denial, 400 for an undecodable object.
    pub code: u16,
    /// Shown by kubectl after `denied the request:`.
    pub message: String,
    /// `Forbidden` or `BadRequest`.
    pub reason: StatusReason,
}

impl Status {
    /// A refusal for `reason`, with the code that goes with it.
    fn new(reason: StatusReason, message: String) -> Self {
        Status {
            code: reason.code(),
            message,
            reason,
        }
    }
}

/// The Kubernetes `StatusReason` of a refused review.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusReason {
    /// The policy refuses the object (code 403).
    Forbidden,
    /// The object is not a decodable Ingress (code 400).
    BadRequest,
}

impl StatusReason {
    /// The reason as the API server's `metav1.StatusReason` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusReason::Forbidden => "Forbidden",
            StatusReason::BadRequest => "BadRequest",
        }
    }

    /// The HTTP-like code that goes with the reason.
    pub fn code(self) -> u16 {
        match self {
            StatusReason::Forbidden => 403,
            StatusReason::BadRequest => 400,
        }
    }
}

impl Serialize for StatusReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The `response` of an AdmissionReview.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response<'a> {
    /// Echo of the request's uid.
    pub uid: Cow<'a, str>,
    /// Whether the API server may store the object.
    pub allowed: bool,
    /// Why not, when not allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Base64 of the RFC 6902 patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// Always `JSONPatch` when `patch` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// Added to the audit event, prefixed with the webhook's name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
    /// Shown by kubectl as `Warning: ...`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: &'a Response<'a>,
}

/// A decided review, with what the log line and metrics need. Strings are
/// borrowed from the request body.
#[derive(Debug)]
pub struct Decision<'a> {
    /// The response to send.
    pub response: Response<'a>,
    /// How the review was answered.
    pub verdict: ReviewVerdict,
    /// The request's operation.
    pub operation: Cow<'a, str>,
    /// The object's namespace and name.
    pub object: ObjectName<'a>,
    /// Whether the request was a dry run.
    pub dry_run: bool,
}

/// `namespace/name` of the reviewed object, for the log line.
#[derive(Debug)]
pub struct ObjectName<'a> {
    /// `request.namespace`; empty for cluster-scoped objects.
    pub namespace: Cow<'a, str>,
    /// `request.name`.
    pub name: Cow<'a, str>,
}

impl std::fmt::Display for ObjectName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl Decision<'_> {
    /// The AdmissionReview JSON to send back.
    pub fn to_json(&self) -> Vec<u8> {
        let out = ReviewOut {
            api_version: API_VERSION,
            kind: KIND,
            response: &self.response,
        };
        let plain = self.is_plain_allow();
        // One allocation. A plain allow gets its exact size (a uid needs no
        // escaping), which also lets the HTTP body take the Vec over without
        // allocating again.
        let mut json = Vec::with_capacity(if plain {
            PLAIN_ALLOW_HEAD.len() + self.response.uid.len() + 2 + PLAIN_ALLOW_TAIL.len()
        } else {
            256
        });
        // Plain structs of strings and maps always serialize.
        let written = if plain {
            // Most answers: only the uid varies, so only it goes through serde.
            json.extend_from_slice(PLAIN_ALLOW_HEAD.as_bytes());
            serde_json::to_writer(&mut json, &self.response.uid)
                .map(|()| json.extend_from_slice(PLAIN_ALLOW_TAIL.as_bytes()))
        } else {
            serde_json::to_writer(&mut json, &out)
        };
        match written {
            Ok(()) => json,
            Err(_) => Vec::new(),
        }
    }

    fn is_plain_allow(&self) -> bool {
        let r = &self.response;
        r.allowed
            && r.status.is_none()
            && r.patch.is_none()
            && r.patch_type.is_none()
            && r.audit_annotations.is_empty()
            && r.warnings.is_empty()
    }
}

/// What serde writes around the uid of an answer that only allows.
const PLAIN_ALLOW_HEAD: &str =
    r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#;
const PLAIN_ALLOW_TAIL: &str = r#","allowed":true}}"#;

/// A body that is not an AdmissionReview at all: answered with HTTP 400
/// and this message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BadRequest {
    /// Nothing but whitespace was sent.
    #[error("request body is empty: expected an {API_VERSION} {KIND}")]
    Empty,
    /// The body is not JSON of the AdmissionReview's shape.
    #[error("request body is not an {API_VERSION} {KIND}: {0}")]
    Json(#[source] serde_json::Error),
    /// A review of another version, such as `admission.k8s.io/v1beta1`.
    #[error(
        "got apiVersion {api_version:?} kind {kind:?}, expected {API_VERSION} {KIND}: register the webhook with admissionReviewVersions: [v1]"
    )]
    WrongType {
        /// The body's `apiVersion`.
        api_version: String,
        /// The body's `kind`.
        kind: String,
    },
    /// A review with no `request`.
    #[error("{KIND} has no request")]
    NoRequest,
}

/// Why a review's object cannot be decided on: answered in-band with
/// `allowed: false`, code 400 and this message.
#[derive(Debug, thiserror::Error)]
enum Invalid {
    /// The webhook was registered for a kind other than Ingress.
    #[error(
        "this webhook reviews networking.k8s.io/v1 Ingress, not {got}: fix the webhook configuration's rules"
    )]
    NotIngress {
        /// `request.kind` as `group/version kind`.
        got: String,
    },
    /// A CREATE or UPDATE without `request.object`.
    #[error("request.object is missing")]
    Missing,
    /// `request.object` does not decode as an Ingress.
    #[error("request.object is not a decodable networking.k8s.io/v1 Ingress: {0}")]
    Undecodable(#[source] serde_json::Error),
}

fn response(uid: Cow<'_, str>) -> Response<'_> {
    Response {
        uid,
        allowed: true,
        status: None,
        patch: None,
        patch_type: None,
        audit_annotations: BTreeMap::new(),
        warnings: Vec::new(),
    }
}

/// Where the labels of a request's namespace come from (the webhook's
/// Namespace reflector in a cluster).
pub type NamespaceLabels<'a> =
    &'a dyn Fn(&str) -> Option<std::sync::Arc<k8s_openapi::api::core::v1::Namespace>>;

/// Decides one review. Errors are for bodies that are not AdmissionReviews;
/// a review of a bad object is answered in-band with code 400.
pub fn decide<'b>(
    hook: Hook,
    body: &'b [u8],
    snapshot: &super::Snapshot,
    namespaces: Option<NamespaceLabels>,
) -> Result<Decision<'b>, BadRequest> {
    Ok(decide_parsed(hook, parse(body)?, snapshot, namespaces))
}

/// [`decide`] after the body is parsed.
fn decide_parsed<'b>(
    hook: Hook,
    req: Parsed<'b>,
    snapshot: &super::Snapshot,
    namespaces: Option<NamespaceLabels>,
) -> Decision<'b> {
    let mut d = Decision {
        response: response(req.uid),
        verdict: ReviewVerdict::Allowed,
        operation: req.operation,
        object: ObjectName {
            namespace: req.namespace.clone().unwrap_or_default(),
            name: req.name,
        },
        dry_run: req.dry_run,
    };
    if matches!(d.operation.as_ref(), "DELETE" | "CONNECT") {
        return d;
    }
    let invalid = |mut d: Decision<'b>, why: Invalid| {
        d.response.allowed = false;
        d.response.status = Some(Status::new(StatusReason::BadRequest, why.to_string()));
        d.verdict = ReviewVerdict::Invalid;
        d
    };
    let gvk = &req.kind;
    if (gvk.group.as_ref(), gvk.version.as_ref(), gvk.kind.as_ref())
        != ("networking.k8s.io", "v1", "Ingress")
    {
        let got = if gvk.group.is_empty() {
            format!("{} {}", gvk.version, gvk.kind)
        } else {
            format!("{}/{} {}", gvk.group, gvk.version, gvk.kind)
        };
        return invalid(d, Invalid::NotIngress { got });
    }
    let ingress = match req.object {
        Ok(Some(ingress)) => ingress,
        Ok(None) => return invalid(d, Invalid::Missing),
        Err(e) => return invalid(d, Invalid::Undecodable(e)),
    };
    let old = req.old;
    // Cheap: both are usually borrowed from the body.
    let namespace: Cow<str> = match (&req.namespace, &ingress.metadata.namespace) {
        (Some(ns), _) => ns.clone(),
        (None, Some(ns)) => ns.0.clone(),
        (None, None) => Cow::Borrowed(crate::admission::DEFAULT_NAMESPACE),
    };
    let namespace = namespace.as_ref();
    let review = Review {
        ingress,
        old,
        namespace,
    };
    let ns_object = namespaces.and_then(|lookup| lookup(namespace));
    let ctx = &snapshot.context(ns_object.as_ref().and_then(|n| n.metadata.labels.as_ref()));
    match hook {
        Hook::Validate => {
            let v = admission::validate(&review, ctx);
            d.verdict = if v.exempt.is_some() {
                ReviewVerdict::Exempt
            } else if !v.allowed {
                ReviewVerdict::Denied
            } else if !v.violations.is_empty() {
                ReviewVerdict::Warned
            } else {
                ReviewVerdict::Allowed
            };
            if !v.allowed {
                d.response.allowed = false;
                d.response.status = Some(Status::new(StatusReason::Forbidden, v.message()));
            } else if ctx.policy.enforcement == Enforcement::DryRun && !v.violations.is_empty() {
                d.response
                    .audit_annotations
                    .insert(AUDIT_VIOLATIONS_KEY.into(), v.message());
            }
            d.response.warnings = v.warnings;
        }
        Hook::Mutate => {
            let m = admission::mutate(&review, ctx);
            if !m.patch.0.is_empty() {
                let json = serde_json::to_vec(&m.patch).unwrap_or_default();
                d.response.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
                d.response.patch_type = Some("JSONPatch");
                d.verdict = ReviewVerdict::Patched;
            }
            d.response.warnings = m.warnings;
        }
    }
    d
}

/// The AdmissionReview the API server would send for `object`: for
/// debugging a webhook with curl (`tlsward review -f ingress.yaml`).
pub fn request_for(object: &serde_json::Value, operation: &str, uid: &str) -> serde_json::Value {
    use serde_json::{Value, json};
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().unwrap_or_default();
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or(crate::admission::DEFAULT_NAMESPACE);
    let (object, old) = match operation {
        "DELETE" => (Value::Null, object.clone()),
        _ => (object.clone(), Value::Null),
    };
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "name": object["metadata"]["name"].as_str().or(old["metadata"]["name"].as_str()).unwrap_or_default(),
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "tlsward-review"},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    })
}

/// What a parse yields, in a comparable form.
fn view(p: &Parsed) -> String {
    format!(
        "{:?}",
        (
            [&p.uid, &p.kind.group, &p.kind.version, &p.kind.kind],
            (&p.name, &p.namespace, &p.operation, p.dry_run),
            (&p.object, &p.old),
        )
    )
}

/// The hand-written reader held to serde's answers on one body: when the
/// reader reads it, serde must read it too, to the same request and object,
/// and the decision (verdict, response JSON with its patch or status,
/// warnings) must be the same byte for byte. Returns whether the reader
/// read the body; when it gives up, [`decide`] takes serde's path, so there
/// is nothing to compare. The oracle of the `review_reader` fuzz target and
/// of the property tests (docs/fuzzing.md).
pub(crate) fn reader_agrees_with_serde(
    hook: Hook,
    body: &[u8],
    snapshot: &super::Snapshot,
    namespaces: Option<NamespaceLabels>,
) -> Result<bool, String> {
    let Some(fast) = std::str::from_utf8(body)
        .ok()
        .and_then(|text| reader::review(text).ok())
    else {
        return Ok(false);
    };
    let slow = match parse_without_reader(body) {
        Ok(slow) => slow,
        Err(e) => return Err(format!("the reader read a body serde refuses: {e}")),
    };
    if let Err(e) = &slow.object {
        return Err(format!(
            "the reader read request.object, serde finds it undecodable: {e}"
        ));
    }
    let (fast_view, slow_view) = (view(&fast), view(&slow));
    if fast_view != slow_view {
        return Err(format!(
            "the reader read\n  {fast_view}\nserde read\n  {slow_view}"
        ));
    }
    let answer = |d: Decision| format!("{d:?} {}", String::from_utf8_lossy(&d.to_json()));
    let fast = answer(decide_parsed(hook, fast, snapshot, namespaces));
    let slow = answer(decide_parsed(hook, slow, snapshot, namespaces));
    if fast != slow {
        return Err(format!(
            "decided on the reader's parse\n  {fast}\non serde's\n  {slow}"
        ));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::IngressTlsPolicy;
    use serde_json::{Value, json};

    fn review_of(object: Value, old: Value, operation: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": API_VERSION, "kind": KIND,
            "request": {"uid": "u-1", "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
                        "operation": operation, "namespace": "shop", "name": "web",
                        "object": object, "oldObject": old}}))
        .unwrap()
    }

    fn ingress(host: &str, tls: bool) -> Value {
        let mut i = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web", "namespace": "shop", "uid": "x", "generation": 3,
                "managedFields": [{"manager": "kubectl", "fieldsType": "FieldsV1",
                                   "fieldsV1": {"f:spec": {"f:rules": {}}}}]},
            "spec": {"rules": [{"host": host}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}});
        if tls {
            i["spec"]["tls"] = json!([{"hosts": [host], "secretName": "web-tls"}]);
        }
        i
    }

    fn decide_validate(body: &[u8]) -> Decision<'_> {
        let snapshot = super::super::Snapshot::new(IngressTlsPolicy::default(), &[]);
        decide(Hook::Validate, body, &snapshot, None).unwrap()
    }

    #[test]
    fn a_full_object_with_managed_fields_and_status_is_decided_on_its_spec() {
        let body = review_of(ingress("a.example.com", true), Value::Null, "CREATE");
        let allowed = decide_validate(&body);
        assert_eq!(
            (allowed.verdict, allowed.response.allowed),
            (ReviewVerdict::Allowed, true)
        );
        assert_eq!(allowed.object.to_string(), "shop/web");
        let body = review_of(ingress("a.example.com", false), Value::Null, "CREATE");
        let denied = decide_validate(&body);
        assert_eq!(denied.verdict, ReviewVerdict::Denied);
        let message = denied.response.status.unwrap().message;
        assert!(message.contains("a.example.com"), "{message}");
    }

    #[test]
    fn an_object_of_another_api_version_gets_the_full_decoders_explanation() {
        let mut old_api = ingress("a.example.com", true);
        old_api["apiVersion"] = json!("extensions/v1beta1");
        let body = review_of(old_api, Value::Null, "CREATE");
        let d = decide_validate(&body);
        assert_eq!(d.verdict, ReviewVerdict::Invalid);
        let status = d.response.status.unwrap();
        assert_eq!(status.code, 400);
        assert!(
            status
                .message
                .starts_with("request.object is not a decodable networking.k8s.io/v1 Ingress"),
            "{}",
            status.message
        );
    }

    #[test]
    fn an_undecodable_old_object_is_ignored_not_fatal() {
        let body = review_of(
            ingress("a.example.com", true),
            json!({"spec": {"rules": "not-a-list"}}),
            "UPDATE",
        );
        let d = decide_validate(&body);
        assert_eq!(
            (d.verdict, d.response.allowed),
            (ReviewVerdict::Allowed, true)
        );
    }

    #[test]
    fn a_plain_allow_is_encoded_as_serde_encodes_it() {
        for uid in ["705ab4f5-6393-11e8-b7cc-42010a800002", "q\"uote\\ \u{1} é"] {
            let mut d = Decision {
                response: response(Cow::Borrowed(uid)),
                verdict: ReviewVerdict::Allowed,
                operation: Cow::Borrowed("CREATE"),
                object: ObjectName {
                    namespace: Cow::Borrowed("ns"),
                    name: Cow::Borrowed("web"),
                },
                dry_run: false,
            };
            let serde = |d: &Decision| {
                serde_json::to_vec(&ReviewOut {
                    api_version: API_VERSION,
                    kind: KIND,
                    response: &d.response,
                })
                .unwrap()
            };
            assert!(d.is_plain_allow());
            assert_eq!(String::from_utf8(d.to_json()), String::from_utf8(serde(&d)));
            // Anything more takes the general path.
            d.response.warnings.push("w".into());
            assert!(!d.is_plain_allow());
            assert_eq!(d.to_json(), serde(&d));
        }
    }

    #[test]
    fn unknown_operations_do_not_become_label_values() {
        assert_eq!(Operation::of("CREATE").label(), "CREATE");
        assert_eq!(Operation::of("DROP TABLE").label(), "unknown");
    }

    #[test]
    fn refusals_carry_the_kubernetes_reason_and_code() {
        let wire = |d: &Decision| {
            let v: Value = serde_json::from_slice(&d.to_json()).unwrap();
            v["response"]["status"].clone()
        };
        let body = review_of(ingress("a.example.com", false), Value::Null, "CREATE");
        let denied = wire(&decide_validate(&body));
        assert_eq!(
            (&denied["reason"], &denied["code"]),
            (&json!("Forbidden"), &json!(403))
        );
        let body = review_of(
            json!({"spec": {"rules": "not-a-list"}}),
            Value::Null,
            "CREATE",
        );
        let invalid = wire(&decide_validate(&body));
        assert_eq!(
            (&invalid["reason"], &invalid["code"]),
            (&json!("BadRequest"), &json!(400))
        );
    }

    /// Random plans (see `plan`) around the kubectl-made Ingresses of
    /// `policies/ingresses/`: wherever the reader reads a body, serde must
    /// read it to the same request, and both hooks must decide the same
    /// under every policy of the fuzzing snapshots. The plans are made so
    /// that the reader reads most of them; that share is asserted too, so
    /// the comparison cannot quietly stop being made.
    #[test]
    fn reader_agrees_with_serde_on_planned_reviews() {
        use proptest::prelude::*;
        use std::cell::Cell;

        let ingresses: Vec<plan::Node> = crate::fuzzing::sample_ingresses()
            .iter()
            .map(plan::Node::from)
            .collect();
        assert!(
            ingresses.len() >= 10,
            "{} sample Ingresses",
            ingresses.len()
        );
        let snapshots = crate::fuzzing::webhook_snapshots();
        let lookups = crate::fuzzing::namespace_lookups();
        let (runs, read) = (Cell::new(0u32), Cell::new(0u32));
        let cases = 1500;
        crate::testing::check_property(
            "reader_agrees_with_serde_on_planned_reviews",
            cases,
            (
                proptest::collection::vec(any::<u8>(), 0..400),
                0..snapshots.len(),
                0..lookups.len(),
            ),
            |(bytes, s, l)| {
                let body = plan::body(&ingresses, &bytes);
                let mut was_read = false;
                for hook in Hook::ALL {
                    let agreed = reader_agrees_with_serde(hook, &body, &snapshots[s], lookups[l])
                        .map_err(|why| {
                        TestCaseError::fail(format!(
                            "{why}\nbody: {}",
                            String::from_utf8_lossy(&body)
                        ))
                    })?;
                    was_read |= agreed;
                }
                runs.set(runs.get() + 1);
                read.set(read.get() + u32::from(was_read));
                Ok(())
            },
        );
        let (runs, read) = (runs.get(), read.get());
        assert!(
            read * 100 >= runs * 60,
            "the reader read only {read} of {runs} planned reviews: the plans no longer reach it"
        );
    }
}
