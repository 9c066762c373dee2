//! `tlsward check`: the admission policy over manifest files, exactly as the
//! API server would apply it (mutate, then validate the mutated object).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::networking::v1::Ingress;
use serde::Serialize;
use serde_json::Value;

use crate::admission::{self, Context, DEFAULT_NAMESPACE, Mutation, Review, Verdict};
use crate::clientauth::{ClientAuthPolicy, PolicyIndex};
use crate::ingress_nginx::catalogue::Finding;
use crate::labels::Selector;
use crate::manifests::{Document, ManifestError};
use crate::policy::IngressTlsPolicy;

/// The result for one Ingress.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressResult {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The file it came from.
    pub source: String,
    /// Its document number in that file.
    pub document: usize,
    /// Whether the policy has nothing to say against it.
    pub pass: bool,
    /// The verdict on the object after mutation.
    pub verdict: Verdict,
    /// The RFC 6902 patch the mutating webhook would apply.
    pub patch: json_patch::Patch,
    /// Warnings from mutation.
    pub mutation_warnings: Vec<String>,
    /// For an Ingress of a class tlsward's proxy serves, how its ingress-nginx
    /// annotations carry over; absent for other classes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration: Option<Migration>,
}

/// How one Ingress's `nginx.ingress.kubernetes.io/*` annotations fare on
/// tlsward's proxy.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Migration {
    /// Each ingress-nginx annotation, sorted by key, with its status
    /// (`carries_over`, `mapped`, `not_supported`, `unknown`).
    pub annotations: Vec<Finding>,
    /// Whether any of them does not carry over: served by tlsward as it
    /// stands, the Ingress would behave differently than on ingress-nginx.
    pub changes_behaviour: bool,
}

impl Migration {
    fn of(annotations: Vec<Finding>) -> Self {
        Migration {
            changes_behaviour: annotations.iter().any(|f| !f.carries_over()),
            annotations,
        }
    }
}

/// The migration summary of a run: which Ingresses served by tlsward would
/// change behaviour.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationSummary {
    /// Ingresses of a class tlsward's proxy serves.
    pub served: usize,
    /// `namespace/name` of each served Ingress with an annotation that does
    /// not carry over, in input order.
    pub changing_behaviour: Vec<String>,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// One entry per Ingress, in input order.
    pub results: Vec<IngressResult>,
    /// Documents that were not Ingresses.
    pub skipped: usize,
    /// Which served Ingresses would change behaviour (see
    /// [`IngressResult::migration`]).
    pub migration: MigrationSummary,
}

impl Report {
    /// 0 when every Ingress passes, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.results.iter().all(|r| r.pass) {
            0
        } else {
            1
        }
    }

    /// `PASS ns/name` / `FAIL ns/name: reasons` lines, warnings indented, and
    /// a summary.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for r in &self.results {
            let id = format!("{}/{}", r.namespace, r.name);
            if r.pass {
                out.push_str(&format!("PASS {id}"));
                if let Some(why) = &r.verdict.exempt {
                    out.push_str(&format!(" (exempt: {why})"));
                }
            } else {
                out.push_str(&format!("FAIL {id}: {}", r.verdict.message()));
            }
            out.push('\n');
            let shown_as_failure =
                |w: &String| r.verdict.violations.iter().any(|v| &v.to_string() == w);
            for w in r
                .mutation_warnings
                .iter()
                .chain(r.verdict.warnings.iter().filter(|w| !shown_as_failure(w)))
            {
                out.push_str(&format!("  warning: {w}\n"));
            }
        }
        let m = &self.migration;
        if !m.changing_behaviour.is_empty() {
            out.push_str(&format!(
                "migration: {} of {} Ingresses served by tlsward would change behaviour (ingress-nginx annotations that do not carry over): {}\n",
                m.changing_behaviour.len(),
                m.served,
                m.changing_behaviour.join(", ")
            ));
        }
        let failed = self.results.iter().filter(|r| !r.pass).count();
        out.push_str(&format!(
            "{} Ingresses: {} passed, {} failed; {} other documents skipped\n",
            self.results.len(),
            self.results.len() - failed,
            failed,
            self.skipped
        ));
        out
    }
}

fn is_kind(doc: &Document, group: &str, kind: &str) -> bool {
    let (api_version, k) = doc.type_meta();
    k == kind
        && api_version
            .split_once('/')
            .map_or(group.is_empty(), |(g, _)| g == group)
}

fn decode<T: serde::de::DeserializeOwned>(
    doc: &Document,
    what: &'static str,
) -> Result<T, CheckError> {
    serde_json::from_value(doc.value.clone()).map_err(|source| CheckError::Decode {
        path: doc.source.clone(),
        index: doc.index,
        what,
        source,
    })
}

/// Why `check` could not give a verdict on its input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// A file could not be read or a document did not parse.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// An Ingress of an API version that current clusters no longer serve.
    #[error(
        "{path}: document {index}: apiVersion {api_version:?} Ingress is not served by Kubernetes 1.22 and later: convert it to networking.k8s.io/v1"
    )]
    RetiredIngressApi {
        /// The file.
        path: String,
        /// 1-based document number.
        index: usize,
        /// The document's `apiVersion`.
        api_version: String,
    },
    /// A document of a kind `check` reads does not decode as that kind.
    #[error("{path}: document {index}: not a valid {what}: {source}")]
    Decode {
        /// The file.
        path: String,
        /// 1-based document number.
        index: usize,
        /// The kind it should be, such as `networking.k8s.io/v1 Ingress`.
        what: &'static str,
        /// The decoder's error, naming the field.
        source: serde_json::Error,
    },
    /// The admission chain itself failed on an Ingress.
    #[error("{path}: document {index}: {source}")]
    Admit {
        /// The file.
        path: String,
        /// 1-based document number.
        index: usize,
        /// What failed.
        source: AdmitError,
    },
}

/// Why [`admit`] could not replay the admission chain. Each is a tlsward
/// bug, not a problem with the Ingress.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdmitError {
    /// The Ingress did not encode as JSON, so the patch had nothing to apply to.
    #[error("internal: the Ingress does not encode as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// The mutating webhook's own patch did not apply to the Ingress.
    #[error("internal: mutation patch does not apply: {0}")]
    Patch(#[source] json_patch::PatchError),
    /// The patched object is no longer a valid Ingress.
    #[error("internal: the mutated Ingress does not decode: {0}")]
    Decode(#[source] serde_json::Error),
}

/// Evaluates every Ingress in `docs` against `policy`. ClientAuthPolicies and
/// Namespaces in `docs` are what the policy knows of the cluster.
pub fn evaluate(docs: &[Document], policy: &IngressTlsPolicy) -> Result<Report, CheckError> {
    let mut policies: Vec<ClientAuthPolicy> = Vec::new();
    let mut namespace_labels: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    let mut ingresses: Vec<(&Document, Ingress)> = Vec::new();
    let mut skipped = 0;
    for doc in docs {
        let (api_version, kind) = doc.type_meta();
        if kind == "Ingress" && api_version != "networking.k8s.io/v1" {
            return Err(CheckError::RetiredIngressApi {
                path: doc.source.clone(),
                index: doc.index,
                api_version: api_version.to_string(),
            });
        }
        if is_kind(doc, "networking.k8s.io", "Ingress") {
            ingresses.push((doc, decode(doc, "networking.k8s.io/v1 Ingress")?));
        } else if is_kind(doc, "tlsward.io", "ClientAuthPolicy") {
            let mut p: ClientAuthPolicy = decode(doc, "tlsward.io/v1alpha1 ClientAuthPolicy")?;
            p.metadata
                .namespace
                .get_or_insert_with(|| DEFAULT_NAMESPACE.into());
            policies.push(p);
            skipped += 1;
        } else {
            if is_kind(doc, "", "Namespace")
                && let Some(name) = doc.value.pointer("/metadata/name").and_then(Value::as_str)
            {
                let labels = doc
                    .value
                    .pointer("/metadata/labels")
                    .and_then(|l| serde_json::from_value(l.clone()).ok())
                    .unwrap_or_default();
                namespace_labels.insert(name.to_string(), labels);
            }
            skipped += 1;
        }
    }
    let known = PolicyIndex::new(&policies);
    let selector = policy
        .exemptions
        .namespace_selector
        .as_ref()
        .and_then(|s| Selector::compile(s).ok());
    let mut results = Vec::new();
    let mut migration = MigrationSummary::default();
    for (doc, ingress) in ingresses {
        let namespace = ingress
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.into());
        let ctx = Context {
            policy,
            namespace_exemption: selector.as_ref(),
            known: &known,
            namespace_labels: namespace_labels.get(&namespace),
        };
        let (mutation, verdict) =
            admit(&ingress, &namespace, &ctx).map_err(|source| CheckError::Admit {
                path: doc.source.clone(),
                index: doc.index,
                source,
            })?;
        // Assessed on the Ingress as written: mutation only ever adds
        // auth-tls-* keys kept equal to a ClientAuthPolicy.
        let migration_report =
            admission::migration_findings(&(&ingress).into(), policy).map(Migration::of);
        let name = ingress.metadata.name.clone().unwrap_or_default();
        if let Some(m) = &migration_report {
            migration.served += 1;
            if m.changes_behaviour {
                migration
                    .changing_behaviour
                    .push(format!("{namespace}/{name}"));
            }
        }
        results.push(IngressResult {
            name,
            namespace,
            source: doc.source.clone(),
            document: doc.index,
            pass: verdict.exempt.is_some() || verdict.violations.is_empty(),
            verdict,
            patch: mutation.patch,
            mutation_warnings: mutation.warnings,
            migration: migration_report,
        });
    }
    Ok(Report {
        results,
        skipped,
        migration,
    })
}

/// Mutates, applies the patch, and validates the result, as the API server's
/// admission chain does.
pub fn admit(
    ingress: &Ingress,
    namespace: &str,
    ctx: &Context,
) -> Result<(Mutation, Verdict), AdmitError> {
    let review = Review {
        ingress: ingress.into(),
        old: None,
        namespace,
    };
    let mutation = admission::mutate(&review, ctx);
    if mutation.patch.0.is_empty() {
        return Ok((mutation, admission::validate(&review, ctx)));
    }
    let mut doc = serde_json::to_value(ingress).map_err(AdmitError::Encode)?;
    json_patch::patch(&mut doc, &mutation.patch).map_err(AdmitError::Patch)?;
    let mutated: Ingress = serde_json::from_value(doc).map_err(AdmitError::Decode)?;
    let verdict = admission::validate(
        &Review {
            ingress: (&mutated).into(),
            old: None,
            namespace,
        },
        ctx,
    );
    Ok((mutation, verdict))
}

/// How `check` prints its report.
#[derive(Clone, Copy, Debug)]
pub enum OutputFormat {
    /// One line per Ingress.
    Text,
    /// The whole report as JSON.
    Json,
}

/// The `check` command: reads, evaluates, prints, and returns the exit code
/// (0 pass, 1 violations, 2 unreadable input or policy). `ingress_classes`
/// are served by tlsward's proxy for this run, besides the policy's
/// `proxyIngressClasses`. Annotations that do not carry over are warnings:
/// they never change the exit code.
pub fn run(
    paths: &[std::path::PathBuf],
    policy: Option<&std::path::Path>,
    format: OutputFormat,
    ingress_classes: &[String],
) -> u8 {
    let mut policy = match policy.map(IngressTlsPolicy::load).transpose() {
        Ok(p) => p.unwrap_or_default(),
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    policy
        .proxy_ingress_classes
        .extend(ingress_classes.iter().cloned());
    let report = crate::manifests::read_paths(paths)
        .map_err(CheckError::from)
        .and_then(|docs| evaluate(&docs, &policy));
    match report {
        Ok(r) => {
            match format {
                OutputFormat::Text => print!("{}", r.to_text()),
                OutputFormat::Json => match serde_json::to_string_pretty(&r) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return 2;
                    }
                },
            }
            r.exit_code() as u8
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
