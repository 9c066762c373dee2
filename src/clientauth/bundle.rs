//! The pure bundle builder: PEM sources in, a validated CA bundle out.
//!
//! The operator reads the `trustAnchors` and `revocation` sources of a
//! ClientAuthPolicy and hands their text to [`build`], which decides what goes
//! into the CA-bundle Secret (`ca.crt`, `ca.crl`). There is no I/O and no clock
//! here: `now` is a parameter, so the outcome is a function of the inputs alone
//! and the tests can pin time.
//!
//! Rules, in the order they apply:
//! - text outside PEM blocks is ignored (comments, `subject=` lines from
//!   `openssl x509 -text`, blank lines);
//! - an anchor source must hold at least one `CERTIFICATE` block and nothing
//!   else: any other block (a private key above all) is an error, never skipped;
//! - certificates are deduplicated by the SHA-256 of their DER (the first
//!   occurrence, in input order, keeps its source);
//! - only CA certificates (basicConstraints CA:TRUE) are kept: a leaf is
//!   dropped with a [`Note`], because a leaf as trust anchor makes TLS servers
//!   accept only that one certificate (or nothing, depending on the verifier);
//! - expired anchors (notAfter < now) are dropped with a note; anchors not yet
//!   valid (notBefore > now) are kept with a note, so a CA rolled out ahead of
//!   time starts working on its own;
//! - the kept anchors are sorted by fingerprint, so the bundle bytes (and the
//!   content hash) do not depend on the order of the sources;
//! - every CRL must be signed by a kept anchor whose subject equals the CRL
//!   issuer; an expired CRL (nextUpdate < now) is kept with a note.
//!
//! A fatal problem is a [`BundleError`]; the operator then keeps the last good
//! bundle in place, so a bad edit never empties a live trust store.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::{parse_x509_certificate, parse_x509_crl};

/// One PEM input and a human name for it, e.g.
/// `trustAnchors[0] (Secret foocorp-ca, key ca.crt)`. The name is echoed in
/// every note and error so a user knows which source to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemInput {
    /// Where the text came from, for messages.
    pub source: String,
    /// The PEM text.
    pub pem: String,
}

impl PemInput {
    /// A PEM input named `source`.
    pub fn new(source: impl Into<String>, pem: impl Into<String>) -> Self {
        PemInput {
            source: source.into(),
            pem: pem.into(),
        }
    }
}

/// A CA certificate kept in the bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// `sha256:<lowercase hex of the DER>`, as shown in the policy status.
    pub fingerprint: String,
    /// The subject DN, RFC 4514-like (`CN=foo, O=bar`).
    pub subject: String,
    /// notBefore, unix seconds.
    pub not_before: i64,
    /// notAfter, unix seconds.
    pub not_after: i64,
    /// The certificate's DER.
    pub der: Vec<u8>,
    /// The input it came from (the first one, when several held it).
    pub source: String,
}

/// What a [`Note`] is about, so callers can react without parsing messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoteKind {
    /// A certificate without basicConstraints CA:TRUE was dropped.
    LeafDropped,
    /// An expired certificate was dropped.
    ExpiredDropped,
    /// A certificate whose notBefore is still ahead was kept.
    NotYetValid,
    /// A CRL whose nextUpdate is past was kept.
    CrlExpired,
    /// A certificate or CRL given more than once was kept once.
    DuplicateRemoved,
}

/// A non-fatal finding, reported in the policy's Ready condition message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// What kind of finding this is.
    pub kind: NoteKind,
    /// The input it concerns.
    pub source: String,
    /// A sentence for humans.
    pub message: String,
}

/// A validated trust bundle, ready to be written to the CA-bundle Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The kept anchors, sorted by fingerprint.
    pub anchors: Vec<Anchor>,
    /// The kept anchors as PEM, in bundle order, each block ending with a
    /// newline: the Secret's `ca.crt`.
    pub ca_pem: String,
    /// The CRLs as `X509 CRL` PEM blocks (sorted by SHA-256 of their DER,
    /// duplicates removed): the Secret's `ca.crl`. `None` when no CRL was given.
    pub crl_pem: Option<String>,
    /// The earliest notAfter of the kept anchors, unix seconds: when the
    /// operator must look again.
    pub not_after: Option<i64>,
    /// The anchors' fingerprints, in bundle order, for the policy status.
    pub fingerprints: Vec<String>,
    /// Non-fatal findings, in input order.
    pub notes: Vec<Note>,
}

impl Bundle {
    /// Lowercase hex SHA-256 over `ca_pem` and `crl_pem`. The operator stores
    /// it in an annotation and skips writes when it has not changed; it
    /// depends only on the bundle bytes, not on source names or notes.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        // PEM text never holds NUL, so the separators keep the two parts apart.
        h.update(b"ca.crt\0");
        h.update(self.ca_pem.as_bytes());
        if let Some(crl) = &self.crl_pem {
            h.update(b"\0ca.crl\0");
            h.update(crl.as_bytes());
        }
        hex(&h.finalize())
    }
}

/// Why no bundle could be built. Each variant names the input to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleError {
    /// An anchor source is not a set of certificates: bad PEM or base64, bad
    /// DER, no `CERTIFICATE` block, or a block of another kind (such as a
    /// private key).
    InvalidCertificate {
        /// The input at fault.
        source: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Every certificate was dropped (leaf or expired), or none was given.
    NoValidAnchors {
        /// Why each certificate was dropped, `<source>: <message>`.
        reasons: Vec<String>,
    },
    /// A revocation source is not a usable CRL: unparsable, or not signed by
    /// any kept trust anchor.
    InvalidCrl {
        /// The input at fault.
        source: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl BundleError {
    /// The Kubernetes condition reason for `Ready=False`: `InvalidCertificate`,
    /// `NoValidAnchors`, or `InvalidCRL` (its own reason, so a user knows the
    /// fault is under `revocation`, not `trustAnchors`).
    pub fn reason(&self) -> &'static str {
        match self {
            BundleError::InvalidCertificate { .. } => "InvalidCertificate",
            BundleError::NoValidAnchors { .. } => "NoValidAnchors",
            BundleError::InvalidCrl { .. } => "InvalidCRL",
        }
    }
}

// Written by hand rather than with thiserror: thiserror takes a field named
// `source` for the error's cause and requires it to be an `Error`.
impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::InvalidCertificate { source, reason } => {
                write!(f, "{source}: {reason}")
            }
            BundleError::NoValidAnchors { reasons } if reasons.is_empty() => {
                f.write_str("no valid trust anchors")
            }
            BundleError::NoValidAnchors { reasons } => {
                write!(f, "no valid trust anchors: {}", reasons.join("; "))
            }
            BundleError::InvalidCrl { source, reason } => write!(f, "{source}: {reason}"),
        }
    }
}

impl std::error::Error for BundleError {}

/// Builds the trust bundle from anchor and CRL sources at time `now_unix`
/// (unix seconds). See the module documentation for the rules.
pub fn build(
    anchors: &[PemInput],
    crls: &[PemInput],
    now_unix: i64,
) -> Result<Bundle, BundleError> {
    let mut notes = Vec::new();
    let mut dropped = Vec::new();
    let mut kept: BTreeMap<[u8; 32], Anchor> = BTreeMap::new();
    let mut seen: BTreeMap<[u8; 32], String> = BTreeMap::new();

    for input in anchors {
        let invalid = |reason: String| BundleError::InvalidCertificate {
            source: input.source.clone(),
            reason,
        };
        let blocks = read_blocks(&input.pem, Expect::Certificate).map_err(invalid)?;
        for (n, der) in blocks.into_iter().enumerate() {
            let block = n + 1;
            let digest: [u8; 32] = Sha256::digest(&der).into();
            let fingerprint = format!("sha256:{}", hex(&digest));
            if let Some(first) = seen.get(&digest) {
                notes.push(Note {
                    kind: NoteKind::DuplicateRemoved,
                    source: input.source.clone(),
                    message: format!(
                        "certificate {block} ({fingerprint}) is already given by {first}; kept once"
                    ),
                });
                continue;
            }
            seen.insert(digest, input.source.clone());

            let cert =
                parse_certificate(&der).map_err(|e| invalid(format!("certificate {block} {e}")))?;
            let subject = name_or_empty(cert.subject().to_string());
            let not_before = cert.validity().not_before.timestamp();
            let not_after = cert.validity().not_after.timestamp();
            let is_ca = match cert.basic_constraints() {
                Ok(bc) => bc.is_some_and(|bc| bc.value.ca),
                Err(e) => {
                    return Err(invalid(format!(
                        "certificate {block} ({subject}) has a malformed basicConstraints extension: {e}"
                    )));
                }
            };

            if !is_ca {
                let message = format!(
                    "dropped certificate {block} ({subject}, {fingerprint}): not a CA \
                     certificate (no basicConstraints CA:TRUE); give the CA that issued \
                     the client certificates instead"
                );
                dropped.push((cert.subject().as_raw().to_vec(), "not a CA".to_string()));
                notes.push(Note {
                    kind: NoteKind::LeafDropped,
                    source: input.source.clone(),
                    message,
                });
                continue;
            }
            if not_after < now_unix {
                let message = format!(
                    "dropped certificate {block} ({subject}, {fingerprint}): expired at {}",
                    rfc3339(not_after)
                );
                let why = format!("expired at {}", rfc3339(not_after));
                dropped.push((cert.subject().as_raw().to_vec(), why));
                notes.push(Note {
                    kind: NoteKind::ExpiredDropped,
                    source: input.source.clone(),
                    message,
                });
                continue;
            }
            if not_before > now_unix {
                notes.push(Note {
                    kind: NoteKind::NotYetValid,
                    source: input.source.clone(),
                    message: format!(
                        "certificate {block} ({subject}, {fingerprint}) is not valid before {}; \
                         kept, but clients it issued are refused until then",
                        rfc3339(not_before)
                    ),
                });
            }
            kept.insert(
                digest,
                Anchor {
                    fingerprint,
                    subject,
                    not_before,
                    not_after,
                    der,
                    source: input.source.clone(),
                },
            );
        }
    }

    if kept.is_empty() {
        let reasons = if anchors.is_empty() {
            vec!["no trust anchors given".to_string()]
        } else {
            notes
                .iter()
                .filter(|n| matches!(n.kind, NoteKind::LeafDropped | NoteKind::ExpiredDropped))
                .map(|n| format!("{}: {}", n.source, n.message))
                .collect()
        };
        return Err(BundleError::NoValidAnchors { reasons });
    }

    let anchors: Vec<Anchor> = kept.into_values().collect();
    let crl_pem = if crls.is_empty() {
        None
    } else {
        Some(check_crls(crls, &anchors, &dropped, now_unix, &mut notes)?)
    };

    let mut ca_pem = String::new();
    for a in &anchors {
        push_pem(&mut ca_pem, "CERTIFICATE", &a.der);
    }
    Ok(Bundle {
        not_after: anchors.iter().map(|a| a.not_after).min(),
        fingerprints: anchors.iter().map(|a| a.fingerprint.clone()).collect(),
        ca_pem,
        crl_pem,
        notes,
        anchors,
    })
}

/// Parses and checks every CRL against the kept anchors; returns `ca.crl`.
fn check_crls(
    crls: &[PemInput],
    anchors: &[Anchor],
    dropped: &[(Vec<u8>, String)],
    now_unix: i64,
    notes: &mut Vec<Note>,
) -> Result<String, BundleError> {
    // Parsing the anchors cannot fail: each was parsed from the same bytes.
    let parsed: Vec<(&Anchor, X509Certificate<'_>)> = anchors
        .iter()
        .filter_map(|a| Some((a, parse_certificate(&a.der).ok()?)))
        .collect();
    let mut out: BTreeMap<[u8; 32], Vec<u8>> = BTreeMap::new();
    let mut seen: BTreeMap<[u8; 32], String> = BTreeMap::new();

    for input in crls {
        let invalid = |reason: String| BundleError::InvalidCrl {
            source: input.source.clone(),
            reason,
        };
        let blocks = read_blocks(&input.pem, Expect::Crl).map_err(invalid)?;
        for (n, der) in blocks.into_iter().enumerate() {
            let block = n + 1;
            let digest: [u8; 32] = Sha256::digest(&der).into();
            if let Some(first) = seen.get(&digest) {
                notes.push(Note {
                    kind: NoteKind::DuplicateRemoved,
                    source: input.source.clone(),
                    message: format!("CRL {block} is already given by {first}; kept once"),
                });
                continue;
            }
            seen.insert(digest, input.source.clone());

            let crl = match parse_x509_crl(&der) {
                Ok((rest, _)) if !rest.is_empty() => {
                    return Err(invalid(format!(
                        "CRL {block} has {} bytes after its end",
                        rest.len()
                    )));
                }
                Ok((_, crl)) => crl,
                Err(e) => {
                    return Err(invalid(format!(
                        "CRL {block} is not a valid X.509 CRL: {e}"
                    )));
                }
            };
            let issuer_raw = crl.issuer().as_raw();
            let issuer = name_or_empty(crl.issuer().to_string());
            let candidates: Vec<_> = parsed
                .iter()
                .filter(|(_, c)| c.subject().as_raw() == issuer_raw)
                .collect();
            if candidates.is_empty() {
                let mut reason = format!(
                    "CRL {block} is issued by \"{issuer}\", which is not one of the trust \
                     anchors; a CRL must be signed by a trust anchor"
                );
                if let Some((_, why)) = dropped.iter().find(|(s, _)| s.as_slice() == issuer_raw) {
                    reason.push_str(&format!(
                        " (a certificate with that subject was dropped from them: {why})"
                    ));
                }
                return Err(invalid(reason));
            }
            let mut last_err = None;
            let verified =
                candidates
                    .iter()
                    .any(|(_, c)| match crl.verify_signature(c.public_key()) {
                        Ok(()) => true,
                        Err(e) => {
                            last_err = Some(e);
                            false
                        }
                    });
            if !verified {
                let names: Vec<&str> = candidates
                    .iter()
                    .map(|(a, _)| a.fingerprint.as_str())
                    .collect();
                let why = last_err.map(|e| format!(": {e}")).unwrap_or_default();
                return Err(invalid(format!(
                    "CRL {block} names \"{issuer}\" as issuer, but its signature does not \
                     verify with the key of that trust anchor ({}){why}",
                    names.join(", ")
                )));
            }
            if let Some(next) = crl.next_update() {
                let next = next.timestamp();
                if next < now_unix {
                    notes.push(Note {
                        kind: NoteKind::CrlExpired,
                        source: input.source.clone(),
                        message: format!(
                            "CRL {block} of \"{issuer}\" expired at {} (nextUpdate); kept, but \
                             while it is expired TLS servers that enforce CRL expiry (nginx, \
                             for one) reject every client certificate this CA issued: publish \
                             a fresh CRL",
                            rfc3339(next)
                        ),
                    });
                }
            }
            out.insert(digest, der);
        }
    }

    let mut pem = String::new();
    for der in out.values() {
        push_pem(&mut pem, "X509 CRL", der);
    }
    Ok(pem)
}

/// Which PEM blocks a source may hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Certificate,
    Crl,
}

impl Expect {
    fn label(self) -> &'static str {
        match self {
            Expect::Certificate => "CERTIFICATE",
            Expect::Crl => "X509 CRL",
        }
    }
}

/// The DER of every block of the expected kind in `text`, or why the text is
/// unusable. Blocks of any other kind are refused rather than skipped: a key
/// pasted into a trust source is a leak to report, not noise to ignore.
fn read_blocks(text: &str, expect: Expect) -> Result<Vec<Vec<u8>>, String> {
    // The PEM reader skips labels it does not know (such as `ENCRYPTED
    // PRIVATE KEY`), so look at every BEGIN line first, as the reader does:
    // at the start of a line, with exactly five dashes after the label.
    for (line_no, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix("-----BEGIN ") else {
            continue;
        };
        let label = rest.trim_end().trim_end_matches('-');
        if label == expect.label() {
            continue;
        }
        let what = format!("line {}: a \"-----BEGIN {label}-----\" block", line_no + 1);
        return Err(if label.contains("PRIVATE KEY") {
            format!("{what}; remove it: a trust bundle never holds private keys")
        } else {
            match expect {
                Expect::Certificate => format!(
                    "{what}; a trust-anchor source holds only CERTIFICATE blocks \
                     (CRLs go under revocation)"
                ),
                Expect::Crl => format!(
                    "{what}; a revocation source holds only X509 CRL blocks \
                     (CA certificates go under trustAnchors)"
                ),
            }
        });
    }

    let mut blocks = Vec::new();
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(text.as_bytes()) {
        let (kind, der) = item.map_err(pem_error)?;
        let wanted = match expect {
            Expect::Certificate => kind == SectionKind::Certificate,
            Expect::Crl => kind == SectionKind::Crl,
        };
        if wanted {
            blocks.push(der);
        }
    }
    if blocks.is_empty() {
        return Err(format!(
            "no {} block found (a block starts with a line \
             \"-----BEGIN {}-----\" at the start of a line)",
            expect.label(),
            expect.label()
        ));
    }
    Ok(blocks)
}

fn pem_error(e: pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => {
            "malformed PEM: a block has no matching END line".to_string()
        }
        pem::Error::IllegalSectionStart { .. } => "malformed PEM: a bad BEGIN line".to_string(),
        pem::Error::Base64Decode(why) => format!("malformed PEM: bad base64 ({why})"),
        other => format!("malformed PEM: {other}"),
    }
}

/// Parses one certificate, refusing trailing bytes; the error reads after
/// "certificate N".
fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match parse_x509_certificate(der) {
        Ok((rest, _)) if !rest.is_empty() => Err(format!("has {} bytes after its end", rest.len())),
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(format!("is not a valid X.509 certificate: {e}")),
    }
}

/// Appends one PEM block (64-column base64, trailing newline).
fn push_pem(out: &mut String, label: &str, der: &[u8]) {
    let b64 = STANDARD.encode(der);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // Base64 is ASCII, so splitting the bytes never splits a character.
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// `2026-11-23T10:00:00Z`: whole seconds, UTC, as the operator writes
/// status times.
fn rfc3339(unix: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("@{unix}"))
}

fn name_or_empty(name: String) -> String {
    if name.is_empty() {
        "empty subject".to_string()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
        DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
        date_time_ymd,
    };

    use super::*;

    /// 2026-01-01T00:00:00Z, the `now` of every test.
    const NOW: i64 = 1_767_225_600;

    type Ca = CertifiedIssuer<'static, KeyPair>;

    /// All test material, made once with rcgen (nothing is checked in).
    struct Fixture {
        root: Ca,
        intermediate: Ca,
        leaf_pem: String,
        leaf_key_pem: String,
        expired: Ca,
        future: Ca,
        stranger: Ca,
        /// Same subject as `root`, different key.
        impostor: Ca,
        crl_root: String,
        crl_root_v2: String,
        crl_root_expired: String,
        crl_stranger: String,
        crl_impostor: String,
        crl_expired_ca: String,
    }

    fn ca_params(cn: &str, from: (i32, u8, u8), until: (i32, u8, u8)) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name
            .push(DnType::OrganizationName, "tlsward tests");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = date_time_ymd(from.0, from.1, from.2);
        p.not_after = date_time_ymd(until.0, until.1, until.2);
        p
    }

    fn self_signed(cn: &str, from: (i32, u8, u8), until: (i32, u8, u8)) -> Ca {
        let key = KeyPair::generate().expect("key");
        CertifiedIssuer::self_signed(ca_params(cn, from, until), key).expect("self-signed CA")
    }

    fn crl(issuer: &Ca, number: u64, next_update: (i32, u8, u8)) -> String {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2025, 6, 1),
            next_update: date_time_ymd(next_update.0, next_update.1, next_update.2),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(4242u64 + number),
                revocation_time: date_time_ymd(2025, 5, 1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(issuer)
            .expect("CRL")
            .pem()
            .expect("CRL PEM")
    }

    fn fixture() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| {
            let root = self_signed("Test Root CA", (2024, 1, 1), (2035, 1, 1));
            let intermediate = CertifiedIssuer::signed_by(
                ca_params("Test Intermediate CA", (2024, 1, 1), (2030, 1, 1)),
                KeyPair::generate().expect("key"),
                &root,
            )
            .expect("intermediate");
            let leaf_key = KeyPair::generate().expect("key");
            let mut leaf = CertificateParams::new(vec!["client.example.com".to_string()])
                .expect("leaf params");
            leaf.distinguished_name
                .push(DnType::CommonName, "client.example.com");
            let leaf_pem = leaf
                .signed_by(&leaf_key, &intermediate)
                .expect("leaf")
                .pem();
            let expired = self_signed("Old CA", (2015, 1, 1), (2025, 1, 1));
            let future = self_signed("Next CA", (2026, 6, 1), (2036, 6, 1));
            let stranger = self_signed("Stranger CA", (2024, 1, 1), (2035, 1, 1));
            let impostor = self_signed("Test Root CA", (2024, 1, 1), (2035, 1, 1));
            Fixture {
                crl_root: crl(&root, 1, (2026, 6, 1)),
                crl_root_v2: crl(&root, 2, (2026, 7, 1)),
                crl_root_expired: crl(&root, 3, (2025, 12, 1)),
                crl_stranger: crl(&stranger, 1, (2026, 6, 1)),
                crl_impostor: crl(&impostor, 1, (2026, 6, 1)),
                crl_expired_ca: crl(&expired, 1, (2026, 6, 1)),
                leaf_key_pem: leaf_key.serialize_pem(),
                root,
                intermediate,
                leaf_pem,
                expired,
                future,
                stranger,
                impostor,
            }
        })
    }

    fn input(source: &str, pem: &str) -> PemInput {
        PemInput::new(source, pem)
    }

    fn fp(ca: &Ca) -> String {
        format!("sha256:{}", hex(&Sha256::digest(ca.der())))
    }

    /// What a case should give.
    enum Want {
        /// A bundle with these subjects' CNs (any order) and these note kinds.
        Bundle {
            cns: &'static [&'static str],
            notes: &'static [NoteKind],
            crls: usize,
        },
        /// An error with this condition reason whose message names `source`
        /// (when given) and contains `says`.
        Error {
            reason: &'static str,
            source: Option<&'static str>,
            says: &'static str,
        },
    }

    struct Case {
        name: &'static str,
        anchors: Vec<PemInput>,
        crls: Vec<PemInput>,
        want: Want,
    }

    fn cases() -> Vec<Case> {
        let f = fixture();
        let (root, inter) = (f.root.pem(), f.intermediate.pem());
        let two = format!("{root}{inter}");
        vec![
            Case {
                name: "root and intermediate CAs kept",
                anchors: vec![input("a", &two)],
                crls: vec![],
                want: Want::Bundle {
                    cns: &["Test Root CA", "Test Intermediate CA"],
                    notes: &[],
                    crls: 0,
                },
            },
            Case {
                name: "leaf given as anchor dropped with a note",
                anchors: vec![input("a", &root), input("leafy", &f.leaf_pem)],
                crls: vec![],
                want: Want::Bundle {
                    cns: &["Test Root CA"],
                    notes: &[NoteKind::LeafDropped],
                    crls: 0,
                },
            },
            Case {
                name: "only a leaf gives NoValidAnchors",
                anchors: vec![input("leafy", &f.leaf_pem)],
                crls: vec![],
                want: Want::Error {
                    reason: "NoValidAnchors",
                    source: Some("leafy"),
                    says: "not a CA certificate",
                },
            },
            Case {
                name: "expired CA dropped with a note",
                anchors: vec![input("a", &format!("{root}{}", f.expired.pem()))],
                crls: vec![],
                want: Want::Bundle {
                    cns: &["Test Root CA"],
                    notes: &[NoteKind::ExpiredDropped],
                    crls: 0,
                },
            },
            Case {
                name: "only an expired CA gives NoValidAnchors",
                anchors: vec![input("old", &f.expired.pem())],
                crls: vec![],
                want: Want::Error {
                    reason: "NoValidAnchors",
                    source: Some("old"),
                    says: "expired at 2025-01-01T00:00:00Z",
                },
            },
            Case {
                name: "not-yet-valid CA kept with a note",
                anchors: vec![input("next", &f.future.pem())],
                crls: vec![],
                want: Want::Bundle {
                    cns: &["Next CA"],
                    notes: &[NoteKind::NotYetValid],
                    crls: 0,
                },
            },
            Case {
                name: "text between PEM blocks is ignored",
                anchors: vec![input(
                    "a",
                    &format!(
                        "# our root\nsubject=CN = Test Root CA\n{root}\n\nissuer: whoever\r\n{inter}trailing words"
                    ),
                )],
                crls: vec![],
                want: Want::Bundle {
                    cns: &["Test Root CA", "Test Intermediate CA"],
                    notes: &[],
                    crls: 0,
                },
            },
            Case {
                name: "a private key block is refused, naming the source",
                anchors: vec![
                    input("good", &root),
                    input("with-key", &format!("{inter}{}", f.leaf_key_pem)),
                ],
                crls: vec![],
                want: Want::Error {
                    reason: "InvalidCertificate",
                    source: Some("with-key"),
                    says: "remove it: a trust bundle never holds private keys",
                },
            },
            Case {
                name: "an unknown private key label is refused too",
                anchors: vec![input(
                    "enc",
                    &format!(
                        "{root}-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
                    ),
                )],
                crls: vec![],
                want: Want::Error {
                    reason: "InvalidCertificate",
                    source: Some("enc"),
                    says: "never holds private keys",
                },
            },
            Case {
                name: "a CRL block among the anchors is refused",
                anchors: vec![input("mixed", &format!("{root}{}", f.crl_root))],
                crls: vec![],
                want: Want::Error {
                    reason: "InvalidCertificate",
                    source: Some("mixed"),
                    says: "CRLs go under revocation",
                },
            },
            Case {
                name: "garbage base64 is refused, naming the source",
                anchors: vec![input(
                    "junk",
                    "-----BEGIN CERTIFICATE-----\n!!!not base64@@@\n-----END CERTIFICATE-----\n",
                )],
                crls: vec![],
                want: Want::Error {
                    reason: "InvalidCertificate",
                    source: Some("junk"),
                    says: "bad base64",
                },
            },
            Case {
                name: "valid base64 that is not a certificate is refused",
                anchors: vec![input(
                    "notder",
                    "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
                )],
                crls: vec![],
                want: Want::Error {
                    reason: "InvalidCertificate",
                    source: Some("notder"),
                    says: "certificate 1 is not a valid X.509 certificate",
                },
            },
            Case {
                name: "a block without its END line is refused",
                anchors: vec![input("cut", &root[..root.len() / 2])],
                crls: vec![],
                want: Want::Error {
                    reason: "InvalidCertificate",
                    source: Some("cut"),
                    says: "no matching END line",
                },
            },
            Case {
                name: "a source without any certificate is refused",
                anchors: vec![input("a", &root), input("empty", "just words\n")],
                crls: vec![],
                want: Want::Error {
                    reason: "InvalidCertificate",
                    source: Some("empty"),
                    says: "no CERTIFICATE block found",
                },
            },
            Case {
                name: "no anchors at all gives NoValidAnchors",
                anchors: vec![],
                crls: vec![],
                want: Want::Error {
                    reason: "NoValidAnchors",
                    source: None,
                    says: "no trust anchors given",
                },
            },
            Case {
                name: "duplicates across two sources are kept once",
                anchors: vec![input("a", &two), input("b", &root)],
                crls: vec![],
                want: Want::Bundle {
                    cns: &["Test Root CA", "Test Intermediate CA"],
                    notes: &[NoteKind::DuplicateRemoved],
                    crls: 0,
                },
            },
            Case {
                name: "CRL signed by a trust anchor accepted",
                anchors: vec![input("a", &two)],
                crls: vec![input("crl", &f.crl_root)],
                want: Want::Bundle {
                    cns: &["Test Root CA", "Test Intermediate CA"],
                    notes: &[],
                    crls: 1,
                },
            },
            Case {
                name: "same CRL twice kept once",
                anchors: vec![input("a", &root)],
                crls: vec![input("crl", &f.crl_root), input("again", &f.crl_root)],
                want: Want::Bundle {
                    cns: &["Test Root CA"],
                    notes: &[NoteKind::DuplicateRemoved],
                    crls: 1,
                },
            },
            Case {
                name: "expired CRL kept with a note",
                anchors: vec![input("a", &root)],
                crls: vec![input("stale", &f.crl_root_expired)],
                want: Want::Bundle {
                    cns: &["Test Root CA"],
                    notes: &[NoteKind::CrlExpired],
                    crls: 1,
                },
            },
            Case {
                name: "CRL signed by a stranger CA refused, naming source and issuer",
                anchors: vec![input("a", &two)],
                crls: vec![input("ok", &f.crl_root), input("foreign", &f.crl_stranger)],
                want: Want::Error {
                    reason: "InvalidCRL",
                    source: Some("foreign"),
                    says: "issued by \"CN=Stranger CA, O=tlsward tests\", which is not one of the trust anchors",
                },
            },
            Case {
                name: "CRL with an anchor's name but another key refused",
                anchors: vec![input("a", &root)],
                crls: vec![input("forged", &f.crl_impostor)],
                want: Want::Error {
                    reason: "InvalidCRL",
                    source: Some("forged"),
                    says: "signature does not verify",
                },
            },
            Case {
                name: "CRL of a dropped (expired) anchor refused",
                anchors: vec![input("a", &format!("{root}{}", f.expired.pem()))],
                crls: vec![input("old-crl", &f.crl_expired_ca)],
                want: Want::Error {
                    reason: "InvalidCRL",
                    source: Some("old-crl"),
                    says: "was dropped from them: expired at",
                },
            },
            Case {
                name: "certificate in a revocation source refused",
                anchors: vec![input("a", &root)],
                crls: vec![input("crl-with-cert", &format!("{}{root}", f.crl_root))],
                want: Want::Error {
                    reason: "InvalidCRL",
                    source: Some("crl-with-cert"),
                    says: "CA certificates go under trustAnchors",
                },
            },
            Case {
                name: "unparsable CRL refused",
                anchors: vec![input("a", &root)],
                crls: vec![input(
                    "bad-crl",
                    "-----BEGIN X509 CRL-----\naGVsbG8gd29ybGQ=\n-----END X509 CRL-----\n",
                )],
                want: Want::Error {
                    reason: "InvalidCRL",
                    source: Some("bad-crl"),
                    says: "CRL 1 is not a valid X.509 CRL",
                },
            },
            Case {
                name: "revocation source without a CRL refused",
                anchors: vec![input("a", &root)],
                crls: vec![input("nothing", "")],
                want: Want::Error {
                    reason: "InvalidCRL",
                    source: Some("nothing"),
                    says: "no X509 CRL block found",
                },
            },
        ]
    }

    fn cn(subject: &str) -> &str {
        subject
            .split(", ")
            .find_map(|part| part.strip_prefix("CN="))
            .unwrap_or(subject)
    }

    #[test]
    fn table() {
        let mut failures = Vec::new();
        for case in cases() {
            let got = build(&case.anchors, &case.crls, NOW);
            let problem = match (&case.want, &got) {
                (Want::Bundle { cns, notes, crls }, Ok(b)) => {
                    let mut want: Vec<&str> = cns.to_vec();
                    want.sort_unstable();
                    let mut have: Vec<&str> = b.anchors.iter().map(|a| cn(&a.subject)).collect();
                    have.sort_unstable();
                    let kinds: Vec<NoteKind> = b.notes.iter().map(|n| n.kind).collect();
                    let have_crls = b
                        .crl_pem
                        .as_deref()
                        .map_or(0, |p| p.matches("-----BEGIN X509 CRL-----").count());
                    if have != want {
                        Some(format!("anchors {have:?}, want {want:?}"))
                    } else if kinds != *notes {
                        Some(format!("notes {:?}, want {notes:?}", b.notes))
                    } else if have_crls != *crls {
                        Some(format!("{have_crls} CRLs, want {crls}"))
                    } else if b.crl_pem.is_none() != case.crls.is_empty() {
                        Some(format!("crl_pem {:?}", b.crl_pem))
                    } else {
                        None
                    }
                }
                (
                    Want::Error {
                        reason,
                        source,
                        says,
                    },
                    Err(e),
                ) => {
                    let text = e.to_string();
                    let named = match (source, e) {
                        (None, _) => true,
                        (
                            Some(s),
                            BundleError::InvalidCertificate { source, .. }
                            | BundleError::InvalidCrl { source, .. },
                        ) => source == s,
                        (Some(s), BundleError::NoValidAnchors { reasons }) => {
                            reasons.iter().all(|r| r.starts_with(&format!("{s}: ")))
                        }
                    };
                    if e.reason() != *reason || !named || !text.contains(says) {
                        Some(format!(
                            "error {} {text:?}, want {reason} naming {source:?} saying {says:?}",
                            e.reason()
                        ))
                    } else {
                        None
                    }
                }
                (_, Ok(b)) => Some(format!("got a bundle {:?}", b.fingerprints)),
                (_, Err(e)) => Some(format!("got error {e}")),
            };
            if let Some(p) = problem {
                failures.push(format!("{}: {p}", case.name));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn notes_name_their_source() {
        let f = fixture();
        let b = build(
            &[
                input("trustAnchors[0]", &f.root.pem()),
                input("trustAnchors[1]", &f.leaf_pem),
                input("trustAnchors[2]", &f.expired.pem()),
            ],
            &[],
            NOW,
        )
        .expect("bundle");
        let got: Vec<(&str, NoteKind)> = b
            .notes
            .iter()
            .map(|n| (n.source.as_str(), n.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("trustAnchors[1]", NoteKind::LeafDropped),
                ("trustAnchors[2]", NoteKind::ExpiredDropped),
            ]
        );
        assert!(b.notes[0].message.contains("client.example.com"));
        assert!(b.notes[1].message.contains("Old CA"));
    }

    #[test]
    fn anchors_carry_fingerprint_subject_validity_and_source() {
        let f = fixture();
        let b = build(&[input("src", &f.root.pem())], &[], NOW).expect("bundle");
        let a = &b.anchors[0];
        assert_eq!(a.fingerprint, fp(&f.root));
        assert!(
            a.fingerprint.len() == 7 + 64
                && a.fingerprint[7..]
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert_eq!(a.subject, "CN=Test Root CA, O=tlsward tests");
        assert_eq!(a.not_before, date_time_ymd(2024, 1, 1).unix_timestamp());
        assert_eq!(a.not_after, date_time_ymd(2035, 1, 1).unix_timestamp());
        assert_eq!(a.der, f.root.der().to_vec());
        assert_eq!(a.source, "src");
        assert_eq!(b.fingerprints, [fp(&f.root)]);
        assert_eq!(b.crl_pem, None);
    }

    #[test]
    fn ca_pem_round_trips_in_bundle_order() {
        let f = fixture();
        let b = build(
            &[input(
                "a",
                &format!("{}{}", f.root.pem(), f.intermediate.pem()),
            )],
            &[input("c", &f.crl_root)],
            NOW,
        )
        .expect("bundle");
        assert!(b.ca_pem.ends_with("-----END CERTIFICATE-----\n"));
        assert!(b.ca_pem.lines().all(|l| l.len() <= 64));
        let ders: Vec<Vec<u8>> = read_blocks(&b.ca_pem, Expect::Certificate).expect("re-read");
        let want: Vec<Vec<u8>> = b.anchors.iter().map(|a| a.der.clone()).collect();
        assert_eq!(ders, want);
        let mut sorted = b.fingerprints.clone();
        sorted.sort();
        assert_eq!(b.fingerprints, sorted);
        let crl_pem = b.crl_pem.expect("crl_pem");
        assert!(crl_pem.ends_with("-----END X509 CRL-----\n"));
        // The CRL is re-encoded, but its DER is unchanged.
        assert_eq!(
            read_blocks(&crl_pem, Expect::Crl).expect("re-read"),
            read_blocks(&f.crl_root, Expect::Crl).expect("read")
        );
    }

    #[test]
    fn order_does_not_depend_on_input_order() {
        let f = fixture();
        let pems = [
            f.root.pem(),
            f.intermediate.pem(),
            f.future.pem(),
            f.stranger.pem(),
        ];
        let crls = [f.crl_root.clone(), f.crl_stranger.clone()];
        let reference = build(
            &[input("x", &pems.concat())],
            &[input("y", &crls.concat())],
            NOW,
        )
        .expect("bundle");
        // Every rotation, each certificate in its own source, and reversed.
        for shift in 0..pems.len() {
            let mut order = pems.to_vec();
            order.rotate_left(shift);
            let mut inputs: Vec<PemInput> = order
                .iter()
                .enumerate()
                .map(|(i, p)| input(&format!("s{i}"), p))
                .collect();
            let mut crl_inputs = vec![input("c0", &crls[0]), input("c1", &crls[1])];
            if shift % 2 == 1 {
                inputs.reverse();
                crl_inputs.reverse();
            }
            let b = build(&inputs, &crl_inputs, NOW).expect("bundle");
            assert_eq!(b.fingerprints, reference.fingerprints, "shift {shift}");
            assert_eq!(b.ca_pem, reference.ca_pem, "shift {shift}");
            assert_eq!(b.crl_pem, reference.crl_pem, "shift {shift}");
            assert_eq!(b.content_hash(), reference.content_hash(), "shift {shift}");
        }
    }

    #[test]
    fn not_after_is_the_earliest() {
        let f = fixture();
        let b = build(
            &[
                input("root", &f.root.pem()),
                input("inter", &f.intermediate.pem()),
                input("next", &f.future.pem()),
            ],
            &[],
            NOW,
        )
        .expect("bundle");
        assert_eq!(
            b.not_after,
            Some(date_time_ymd(2030, 1, 1).unix_timestamp())
        );
    }

    #[test]
    fn expiry_and_validity_bounds_follow_now() {
        let f = fixture();
        let until = date_time_ymd(2025, 1, 1).unix_timestamp();
        // notAfter == now is still valid; one second later it is expired.
        let at = build(&[input("old", &f.expired.pem())], &[], until).expect("bundle");
        assert!(at.notes.is_empty());
        let after = build(&[input("old", &f.expired.pem())], &[], until + 1);
        assert!(matches!(after, Err(BundleError::NoValidAnchors { .. })));
        // Once its notBefore has passed, the future CA carries no note.
        let later = date_time_ymd(2027, 1, 1).unix_timestamp();
        let b = build(&[input("next", &f.future.pem())], &[], later).expect("bundle");
        assert!(b.notes.is_empty());
    }

    #[test]
    fn content_hash_changes_with_the_crl_only() {
        let f = fixture();
        let anchors = [input("a", &f.root.pem())];
        let plain = build(&anchors, &[], NOW).expect("bundle");
        let v1 = build(&anchors, &[input("c", &f.crl_root)], NOW).expect("bundle");
        let v1_again = build(
            &[input("renamed", &format!("comment\n{}", f.root.pem()))],
            &[input("other name", &f.crl_root)],
            NOW,
        )
        .expect("bundle");
        let v2 = build(&anchors, &[input("c", &f.crl_root_v2)], NOW).expect("bundle");

        let hash = v1.content_hash();
        assert_eq!(hash.len(), 64);
        assert!(
            hash.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert_eq!(hash, v1.content_hash(), "stable across calls");
        assert_eq!(
            hash,
            v1_again.content_hash(),
            "stable across source names and text"
        );
        assert_ne!(hash, v2.content_hash(), "a new CRL changes it");
        assert_ne!(hash, plain.content_hash(), "adding a CRL changes it");
        assert_eq!(
            plain.content_hash(),
            build(&anchors, &[], NOW).expect("b").content_hash()
        );
    }

    #[test]
    fn impostor_ca_with_root_subject_is_kept_and_both_verify_their_crls() {
        // Two anchors with the same subject (a key rotation): each one's CRL
        // verifies against its own key.
        let f = fixture();
        let b = build(
            &[input("old", &f.root.pem()), input("new", &f.impostor.pem())],
            &[input("c1", &f.crl_root), input("c2", &f.crl_impostor)],
            NOW,
        )
        .expect("bundle");
        assert_eq!(b.anchors.len(), 2);
        assert_eq!(
            b.crl_pem
                .as_deref()
                .map(|p| p.matches("BEGIN X509 CRL").count()),
            Some(2)
        );
    }

    #[test]
    fn reason_names_the_condition() {
        let e = |s: &str| s.to_string();
        assert_eq!(
            BundleError::InvalidCertificate {
                source: e("s"),
                reason: e("r")
            }
            .reason(),
            "InvalidCertificate"
        );
        assert_eq!(
            BundleError::NoValidAnchors { reasons: vec![] }.reason(),
            "NoValidAnchors"
        );
        assert_eq!(
            BundleError::InvalidCrl {
                source: e("s"),
                reason: e("r")
            }
            .reason(),
            "InvalidCRL"
        );
    }
}
