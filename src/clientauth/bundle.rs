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
//! - every CRL must be one the TLS stack can use ([`check_crl`],
//!   the same rule the proxy's verifier applies: a CRL without the RFC 5280
//!   extensions is refused here, not silently at the data plane), and must
//!   be signed by a kept anchor whose subject equals the CRL issuer; an
//!   expired CRL (nextUpdate < now) is kept with a note.
//!
//! A fatal problem is a [`BundleError`]; the operator then keeps the last good
//! bundle in place, so a bad edit never empties a live trust store.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use sha2::{Digest, Sha256};

use super::FailureReason;
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
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
    /// The same CRLs as DER, in the same order, for a TLS verifier.
    pub crls: Vec<Vec<u8>>,
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
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// An anchor source is not a set of CA certificates: bad PEM or base64,
    /// bad DER, no `CERTIFICATE` block, or a block of another kind (such as
    /// a private key).
    #[error("{input}: {problem}")]
    InvalidCertificate {
        /// The input at fault.
        input: String,
        /// What is wrong with it.
        problem: CertificateProblem,
    },
    /// Every certificate was dropped, as leaf or expired.
    #[error("no valid trust anchors{}", listed(dropped))]
    NoValidAnchors {
        /// The notes that dropped them, each naming its input.
        dropped: Vec<Note>,
    },
    /// The policy lists no trust-anchor source at all.
    #[error("no valid trust anchors: no trust anchors given")]
    NoAnchorsGiven,
    /// A revocation source is not a usable CRL: unparsable, or not signed by
    /// any kept trust anchor.
    #[error("{input}: {problem}")]
    InvalidCrl {
        /// The input at fault.
        input: String,
        /// What is wrong with it.
        problem: CrlProblem,
    },
}

/// `: <source>: <message>; ...` for each note, or nothing when there is none.
fn listed(notes: &[Note]) -> String {
    let mut out = String::new();
    for (i, n) in notes.iter().enumerate() {
        out.push_str(if i == 0 { ": " } else { "; " });
        out.push_str(&n.source);
        out.push_str(": ");
        out.push_str(&n.message);
    }
    out
}

impl BundleError {
    /// The Ready condition's reason: `InvalidCRL` has its own, so a user
    /// knows the fault is under `revocation`, not `trustAnchors`.
    pub fn reason(&self) -> FailureReason {
        match self {
            BundleError::InvalidCertificate { .. } => FailureReason::InvalidCertificate,
            BundleError::NoValidAnchors { .. } | BundleError::NoAnchorsGiven => {
                FailureReason::NoValidAnchors
            }
            BundleError::InvalidCrl { .. } => FailureReason::InvalidCrl,
        }
    }
}

/// What is wrong with a source's PEM text, whichever kind it should hold.
/// Blocks of another kind are refused rather than skipped: a key pasted
/// into a trust source is a leak to report, not noise to ignore.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PemProblem {
    /// A private-key block, of any label.
    #[error(
        "line {line}: a \"-----BEGIN {label}-----\" block; remove it: a trust bundle never holds private keys"
    )]
    PrivateKey {
        /// The BEGIN line's number, from 1.
        line: usize,
        /// The block's label, e.g. `RSA PRIVATE KEY`.
        label: String,
    },
    /// A block other than `CERTIFICATE` in a trust-anchor source.
    #[error(
        "line {line}: a \"-----BEGIN {label}-----\" block; a trust-anchor source holds only CERTIFICATE blocks (CRLs go under revocation)"
    )]
    NotACertificate {
        /// The BEGIN line's number, from 1.
        line: usize,
        /// The block's label.
        label: String,
    },
    /// A block other than `X509 CRL` in a revocation source.
    #[error(
        "line {line}: a \"-----BEGIN {label}-----\" block; a revocation source holds only X509 CRL blocks (CA certificates go under trustAnchors)"
    )]
    NotACrl {
        /// The BEGIN line's number, from 1.
        line: usize,
        /// The block's label.
        label: String,
    },
    /// A BEGIN line whose END line never comes. `block` counts the
    /// source's PEM blocks from 1.
    #[error("malformed PEM: block {block} has no matching END line")]
    MissingEnd {
        /// Which block.
        block: usize,
    },
    /// A BEGIN line the PEM reader cannot read.
    #[error("malformed PEM: block {block} has a bad BEGIN line")]
    BadBegin {
        /// Which block.
        block: usize,
    },
    /// A block whose body is not base64.
    #[error("malformed PEM: block {block} is not valid base64 ({why})")]
    Base64 {
        /// Which block.
        block: usize,
        /// What the decoder said.
        why: String,
    },
    /// Anything else the PEM reader refused, in its words.
    #[error("malformed PEM: block {block}: {why}")]
    Other {
        /// Which block.
        block: usize,
        /// What the reader said.
        why: String,
    },
    /// A trust-anchor source without a `CERTIFICATE` block.
    #[error(
        "no CERTIFICATE block found (a block starts with a line \"-----BEGIN CERTIFICATE-----\" at the start of a line)"
    )]
    NoCertificateBlock,
    /// A revocation source without an `X509 CRL` block.
    #[error(
        "no X509 CRL block found (a block starts with a line \"-----BEGIN X509 CRL-----\" at the start of a line)"
    )]
    NoCrlBlock,
}

/// What is wrong with a trust-anchor source. `block` counts the source's
/// certificates from 1.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// The PEM text itself.
    #[error(transparent)]
    Pem(#[from] PemProblem),
    /// A certificate's DER is followed by more bytes.
    #[error("certificate {block} has {len} bytes after its end")]
    TrailingBytes {
        /// Which certificate.
        block: usize,
        /// How many bytes follow it.
        len: usize,
    },
    /// A block's DER is not an X.509 certificate.
    #[error("certificate {block} is not a valid X.509 certificate: {why}")]
    Unparsable {
        /// Which certificate.
        block: usize,
        /// What the parser said.
        why: x509_parser::nom::Err<X509Error>,
    },
    /// The basicConstraints extension cannot be read, so whether the
    /// certificate is a CA is unknown.
    #[error("certificate {block} ({subject}) has a malformed basicConstraints extension: {why}")]
    BadBasicConstraints {
        /// Which certificate.
        block: usize,
        /// Its subject.
        subject: String,
        /// What the parser said.
        why: X509Error,
    },
}

/// What is wrong with a revocation source. `block` counts the source's CRLs
/// from 1.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CrlProblem {
    /// The PEM text itself.
    #[error(transparent)]
    Pem(#[from] PemProblem),
    /// A CRL's DER is followed by more bytes.
    #[error("CRL {block} has {len} bytes after its end")]
    TrailingBytes {
        /// Which CRL.
        block: usize,
        /// How many bytes follow it.
        len: usize,
    },
    /// A block's DER is not an X.509 CRL.
    #[error("CRL {block} is not a valid X.509 CRL: {why}")]
    Unparsable {
        /// Which CRL.
        block: usize,
        /// What the parser said.
        why: x509_parser::nom::Err<X509Error>,
    },
    /// The TLS stack cannot use the CRL (the proxy would refuse it).
    #[error("CRL {block} cannot be used: {refusal}")]
    Refused {
        /// Which CRL.
        block: usize,
        /// Why, and how to make one it accepts.
        refusal: CrlRefusal,
    },
    /// No kept trust anchor has the CRL's issuer as subject.
    #[error(
        "CRL {block} is issued by \"{issuer}\", which is not one of the trust anchors; a CRL must be signed by a trust anchor{}",
        dropped.map(|why| format!(" (a certificate with that subject was dropped from them: {why})")).unwrap_or_default()
    )]
    UnknownIssuer {
        /// Which CRL.
        block: usize,
        /// The CRL's issuer DN.
        issuer: String,
        /// Why a certificate with that subject was left out of the anchors,
        /// if one was.
        dropped: Option<DropReason>,
    },
    /// The signature verifies with none of the anchors named as issuer.
    #[error(
        "CRL {block} names \"{issuer}\" as issuer, but its signature does not verify with the key of that trust anchor ({}){}",
        anchors.join(", "),
        why.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
    )]
    BadSignature {
        /// Which CRL.
        block: usize,
        /// The CRL's issuer DN.
        issuer: String,
        /// Fingerprints of the anchors with that subject.
        anchors: Vec<String>,
        /// What the last verification said.
        why: Option<X509Error>,
    },
}

/// Why a certificate given as trust anchor was left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    /// It has no basicConstraints CA:TRUE.
    #[error("not a CA")]
    NotCa,
    /// Its notAfter (unix seconds) is past.
    #[error("expired at {}", rfc3339(*not_after))]
    Expired {
        /// notAfter, unix seconds.
        not_after: i64,
    },
}

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
        let invalid = |problem: CertificateProblem| BundleError::InvalidCertificate {
            input: input.source.clone(),
            problem,
        };
        let blocks = read_blocks(&input.pem, Expect::Certificate).map_err(|e| invalid(e.into()))?;
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

            let cert = parse_certificate(&der, block).map_err(invalid)?;
            let subject = name_or_empty(cert.subject().to_string());
            let not_before = cert.validity().not_before.timestamp();
            let not_after = cert.validity().not_after.timestamp();
            let is_ca = match cert.basic_constraints() {
                Ok(bc) => bc.is_some_and(|bc| bc.value.ca),
                Err(why) => {
                    return Err(invalid(CertificateProblem::BadBasicConstraints {
                        block,
                        subject,
                        why,
                    }));
                }
            };

            if !is_ca {
                let message = format!(
                    "dropped certificate {block} ({subject}, {fingerprint}): not a CA \
                     certificate (no basicConstraints CA:TRUE); give the CA that issued \
                     the client certificates instead"
                );
                dropped.push((cert.subject().as_raw().to_vec(), DropReason::NotCa));
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
                let why = DropReason::Expired { not_after };
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

    if anchors.is_empty() {
        return Err(BundleError::NoAnchorsGiven);
    }
    if kept.is_empty() {
        let dropped = notes
            .into_iter()
            .filter(|n| matches!(n.kind, NoteKind::LeafDropped | NoteKind::ExpiredDropped))
            .collect();
        return Err(BundleError::NoValidAnchors { dropped });
    }

    let anchors: Vec<Anchor> = kept.into_values().collect();
    let (crl_pem, crls) = if crls.is_empty() {
        (None, Vec::new())
    } else {
        let ders = check_crls(crls, &anchors, &dropped, now_unix, &mut notes)?;
        let mut pem = String::new();
        for der in &ders {
            push_pem(&mut pem, "X509 CRL", der);
        }
        (Some(pem), ders)
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
        crls,
        notes,
        anchors,
    })
}

/// Parses and checks every CRL against the kept anchors; returns their DER
/// in `ca.crl` order.
fn check_crls(
    crls: &[PemInput],
    anchors: &[Anchor],
    dropped: &[(Vec<u8>, DropReason)],
    now_unix: i64,
    notes: &mut Vec<Note>,
) -> Result<Vec<Vec<u8>>, BundleError> {
    // Parsing the anchors cannot fail: each was parsed from the same bytes.
    let parsed: Vec<(&Anchor, X509Certificate<'_>)> = anchors
        .iter()
        .filter_map(|a| Some((a, parse_x509_certificate(&a.der).ok()?.1)))
        .collect();
    let mut out: BTreeMap<[u8; 32], Vec<u8>> = BTreeMap::new();
    let mut seen: BTreeMap<[u8; 32], String> = BTreeMap::new();

    for input in crls {
        let invalid = |problem: CrlProblem| BundleError::InvalidCrl {
            input: input.source.clone(),
            problem,
        };
        let blocks = read_blocks(&input.pem, Expect::Crl).map_err(|e| invalid(e.into()))?;
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
                    return Err(invalid(CrlProblem::TrailingBytes {
                        block,
                        len: rest.len(),
                    }));
                }
                Ok((_, crl)) => crl,
                Err(why) => return Err(invalid(CrlProblem::Unparsable { block, why })),
            };
            if let Err(refusal) = check_crl(&der) {
                return Err(invalid(CrlProblem::Refused { block, refusal }));
            }
            let issuer_raw = crl.issuer().as_raw();
            let issuer = name_or_empty(crl.issuer().to_string());
            let candidates: Vec<_> = parsed
                .iter()
                .filter(|(_, c)| c.subject().as_raw() == issuer_raw)
                .collect();
            if candidates.is_empty() {
                return Err(invalid(CrlProblem::UnknownIssuer {
                    block,
                    issuer,
                    dropped: dropped
                        .iter()
                        .find(|(s, _)| s.as_slice() == issuer_raw)
                        .map(|(_, why)| *why),
                }));
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
                return Err(invalid(CrlProblem::BadSignature {
                    block,
                    issuer,
                    anchors: candidates
                        .iter()
                        .map(|(a, _)| a.fingerprint.clone())
                        .collect(),
                    why: last_err,
                }));
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

    Ok(out.into_values().collect())
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
/// unusable. Blocks of any other kind are refused rather than skipped.
fn read_blocks(text: &str, expect: Expect) -> Result<Vec<Vec<u8>>, PemProblem> {
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
        let (line, label) = (line_no + 1, label.to_string());
        return Err(if label.contains("PRIVATE KEY") {
            PemProblem::PrivateKey { line, label }
        } else {
            match expect {
                Expect::Certificate => PemProblem::NotACertificate { line, label },
                Expect::Crl => PemProblem::NotACrl { line, label },
            }
        });
    }

    let mut blocks = Vec::new();
    for (n, item) in <(SectionKind, Vec<u8>)>::pem_slice_iter(text.as_bytes()).enumerate() {
        // Every block the reader returns is of the expected label (others
        // were refused above), so `n` counts the source's blocks.
        let (kind, der) = item.map_err(|e| pem_problem(n + 1, e))?;
        let wanted = match expect {
            Expect::Certificate => kind == SectionKind::Certificate,
            Expect::Crl => kind == SectionKind::Crl,
        };
        if wanted {
            blocks.push(der);
        }
    }
    if blocks.is_empty() {
        return Err(match expect {
            Expect::Certificate => PemProblem::NoCertificateBlock,
            Expect::Crl => PemProblem::NoCrlBlock,
        });
    }
    Ok(blocks)
}

fn pem_problem(block: usize, e: pem::Error) -> PemProblem {
    match e {
        pem::Error::MissingSectionEnd { .. } => PemProblem::MissingEnd { block },
        pem::Error::IllegalSectionStart { .. } => PemProblem::BadBegin { block },
        pem::Error::Base64Decode(why) => PemProblem::Base64 { block, why },
        other => PemProblem::Other {
            block,
            why: other.to_string(),
        },
    }
}

/// Parses certificate number `block`, refusing trailing bytes.
fn parse_certificate(der: &[u8], block: usize) -> Result<X509Certificate<'_>, CertificateProblem> {
    match parse_x509_certificate(der) {
        Ok((rest, _)) if !rest.is_empty() => Err(CertificateProblem::TrailingBytes {
            block,
            len: rest.len(),
        }),
        Ok((_, cert)) => Ok(cert),
        Err(why) => Err(CertificateProblem::Unparsable { block, why }),
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

/// How to make a CRL every TLS stack accepts, for the messages below.
const CRL_FIX: &str = "produce a conforming CRL with `openssl ca -gencrl` from a CA configuration \
     that sets `crlnumber` (a file holding the next CRL number, e.g. 01) and `crl_extensions` \
     naming a section with `authorityKeyIdentifier=keyid:always`";

/// Why the TLS stack (rustls' webpki) refuses a CRL. [`check_crl`] decides;
/// x509-parser, which is lenient, only tells which RFC 5280 rule is broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrlRefusal {
    /// A version 1 CRL, or one without extensions. RFC 5280 section 5.2
    /// requires CRL Number and Authority Key Identifier; OpenSSL accepts a
    /// CRL without them, webpki does not.
    #[error(
        "it lacks {}, which RFC 5280 section 5.2 requires in every CRL, so rustls refuses it \
         (OpenSSL accepts it, so it may work elsewhere); {fix}",
        missing_extensions(*crl_number, *authority_key_id),
        fix = CRL_FIX
    )]
    MissingExtensions {
        /// The CRL Number extension (2.5.29.20) is absent.
        crl_number: bool,
        /// The Authority Key Identifier extension (2.5.29.35) is absent.
        authority_key_id: bool,
    },
    /// No nextUpdate field (RFC 5280 section 5.1.2.5 requires one).
    #[error(
        "it has no nextUpdate field, which RFC 5280 section 5.1.2.5 requires, so rustls refuses it; {fix}",
        fix = CRL_FIX
    )]
    MissingNextUpdate,
    /// A delta CRL: rustls supports complete CRLs only.
    #[error("it is a delta CRL, which rustls does not support; publish the complete CRL instead")]
    Delta,
    /// Anything else webpki refused, in its words.
    #[error("rustls refuses it ({0}); {fix}", fix = CRL_FIX)]
    Other(String),
}

fn missing_extensions(crl_number: bool, authority_key_id: bool) -> &'static str {
    match (crl_number, authority_key_id) {
        (true, true) => "the CRL Number and Authority Key Identifier extensions",
        (true, false) => "the CRL Number extension",
        (false, true) => "the Authority Key Identifier extension",
        (false, false) => "the extensions",
    }
}

/// The one rule for CRLs: whether the TLS stack can use this CRL (DER).
/// The bundle builder (operator and proxy) and `tls::client_verifier` both ask
/// it, so the operator never reports Synced for a CRL the proxy refuses.
/// Pure: the same parser rustls runs when a verifier is built.
pub fn check_crl(der: &[u8]) -> Result<(), CrlRefusal> {
    use x509_parser::oid_registry::{
        OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_CRL_NUMBER,
        OID_X509_EXT_DELTA_CRL_INDICATOR,
    };
    use x509_parser::x509::X509Version;
    let Err(refused) = webpki::OwnedCertRevocationList::from_der(der) else {
        return Ok(());
    };
    let other = || CrlRefusal::Other(format!("{refused:?}"));
    let Ok((_, crl)) = x509_parser::parse_x509_crl(der) else {
        return Err(other());
    };
    let has = |oid: &x509_parser::oid_registry::Oid| crl.extensions().iter().any(|e| e.oid == *oid);
    let crl_number = !has(&OID_X509_EXT_CRL_NUMBER);
    let authority_key_id = !has(&OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER);
    let missing = CrlRefusal::MissingExtensions {
        crl_number,
        authority_key_id,
    };
    // In webpki's own order: version 2, nextUpdate, then a non-empty
    // extensions list, so the first reported fault is the one it hit.
    if crl.version() != Some(X509Version::V2) {
        return Err(if crl_number || authority_key_id {
            missing
        } else {
            other()
        });
    }
    if crl.next_update().is_none() {
        return Err(CrlRefusal::MissingNextUpdate);
    }
    if crl.extensions().is_empty() {
        return Err(missing);
    }
    if has(&OID_X509_EXT_DELTA_CRL_INDICATOR) {
        return Err(CrlRefusal::Delta);
    }
    Err(other())
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
        /// Signed by `root`, version 1, no extensions (OpenSSL's default).
        crl_root_extensionless: String,
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
                crl_root_extensionless: crate::testing::RawCrl::extensionless()
                    .pem(root.der(), root.key()),
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
                    says: "block 1 is not valid base64",
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
                    says: "block 1 has no matching END line",
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
                name: "CRL without extensions refused, naming what is missing and the fix",
                anchors: vec![input("a", &root)],
                crls: vec![input("no-ext", &f.crl_root_extensionless)],
                want: Want::Error {
                    reason: "InvalidCRL",
                    source: Some("no-ext"),
                    says: "CRL 1 cannot be used: it lacks the CRL Number and Authority Key \
                           Identifier extensions, which RFC 5280 section 5.2 requires",
                },
            },
            Case {
                name: "the refused CRL is named by its number in the source",
                anchors: vec![input("a", &root)],
                crls: vec![input(
                    "two",
                    &format!("{}{}", f.crl_root, f.crl_root_extensionless),
                )],
                want: Want::Error {
                    reason: "InvalidCRL",
                    source: Some("two"),
                    says: "CRL 2 cannot be used",
                },
            },
            Case {
                name: "a malformed CRL block is refused, not skipped",
                anchors: vec![input("a", &root)],
                crls: vec![input(
                    "bad-block",
                    &format!(
                        "{}-----BEGIN X509 CRL-----\n!!not base64!!\n-----END X509 CRL-----\n",
                        f.crl_root
                    ),
                )],
                want: Want::Error {
                    reason: "InvalidCRL",
                    source: Some("bad-block"),
                    says: "block 2 is not valid base64",
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
                            BundleError::InvalidCertificate { input, .. }
                            | BundleError::InvalidCrl { input, .. },
                        ) => input == s && text.starts_with(&format!("{s}: ")),
                        (Some(s), BundleError::NoValidAnchors { dropped }) => {
                            !dropped.is_empty()
                                && dropped.iter().all(|n| n.source == *s)
                                && text.contains(&format!(": {s}: "))
                        }
                        (Some(_), BundleError::NoAnchorsGiven) => false,
                    };
                    if e.reason().as_str() != *reason || !named || !text.contains(says) {
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
        let problem = CertificateProblem::Pem(PemProblem::NoCertificateBlock);
        let crl_problem = CrlProblem::Pem(PemProblem::NoCrlBlock);
        let cases = [
            (
                BundleError::InvalidCertificate {
                    input: "s".into(),
                    problem,
                },
                "InvalidCertificate",
            ),
            (
                BundleError::NoValidAnchors { dropped: vec![] },
                "NoValidAnchors",
            ),
            (BundleError::NoAnchorsGiven, "NoValidAnchors"),
            (
                BundleError::InvalidCrl {
                    input: "s".into(),
                    problem: crl_problem,
                },
                "InvalidCRL",
            ),
        ];
        for (error, reason) in cases {
            assert_eq!(error.reason().as_str(), reason, "{error}");
        }
    }

    /// Writes the `bundle` fuzz target's seeds into `$TLSWARD_FUZZ_SEEDS`
    /// (tests/fuzz/make-seeds.sh runs it): the certificates and CRLs above,
    /// in the target's two forms (byte 0 picks `now`, 0 for NOW; byte 1
    /// the form). Certificates and CRLs only: no private key is written.
    #[test]
    #[ignore = "writes the fuzz seeds; run by tests/fuzz/make-seeds.sh"]
    fn write_fuzz_seeds() {
        let dir = std::path::PathBuf::from(
            std::env::var_os("TLSWARD_FUZZ_SEEDS").expect("TLSWARD_FUZZ_SEEDS names the folder"),
        );
        std::fs::create_dir_all(&dir).unwrap();
        let f = fixture();
        let owned = [
            f.root.pem(),
            f.intermediate.pem(),
            f.leaf_pem.clone(),
            f.expired.pem(),
            f.future.pem(),
            f.stranger.pem(),
            f.impostor.pem(),
        ];
        let [root, inter, leaf, expired, future, stranger, impostor] =
            owned.each_ref().map(String::as_str);
        let (crl_root, crl_stranger) = (f.crl_root.as_str(), f.crl_stranger.as_str());
        // Text form: sources cut at `%%` (anchors) and `%%crl` (revocation).
        let text: &[(&str, Vec<&str>, Vec<&str>)] = &[
            ("chain-and-crl", vec![root, inter], vec![crl_root]),
            ("two-sources", vec![root, inter], vec![]),
            ("crl-unknown-issuer", vec![root], vec![crl_stranger]),
            (
                "impostor",
                vec![impostor, root],
                vec![f.crl_impostor.as_str()],
            ),
            (
                "expired-only",
                vec![expired],
                vec![f.crl_expired_ca.as_str()],
            ),
            ("leaf-and-root", vec![leaf, root], vec![]),
            ("not-yet-valid", vec![future, stranger], vec![crl_stranger]),
            (
                "duplicates",
                vec![root, root],
                vec![
                    crl_root,
                    f.crl_root_v2.as_str(),
                    f.crl_root_expired.as_str(),
                    crl_root,
                ],
            ),
        ];
        for (name, anchors, crls) in text {
            let mut out = String::new();
            for (i, a) in anchors.iter().enumerate() {
                if i > 0 {
                    out.push_str("%%\n");
                }
                out.push_str(a);
            }
            for c in crls {
                out.push_str("%%crl\n");
                out.push_str(c);
            }
            let mut bytes = vec![0u8, 0u8];
            bytes.extend_from_slice(out.as_bytes());
            std::fs::write(dir.join(format!("text-{name}")), bytes).unwrap();
        }
        let annotated = format!(
            "subject=CN = Test Root CA, O = tlsward tests\nissuer=CN = Test Root CA\n\n{root}\n# comment\n{inter}"
        );
        let mut bytes = vec![0u8, 0u8];
        bytes.extend_from_slice(annotated.as_bytes());
        std::fs::write(dir.join("text-openssl-annotated"), bytes).unwrap();

        // DER form: blocks joined by `%%%%`, each after a flags byte (bit 0
        // revocation, bits 1-3 the label: 0 CERTIFICATE, 1 X509 CRL; bit 4
        // a new source).
        let der = |pem: &str, expect| read_blocks(pem, expect).unwrap().remove(0);
        let cert = |pem: &str| der(pem, Expect::Certificate);
        let crl = |pem: &str| der(pem, Expect::Crl);
        type Blocks = Vec<(u8, Vec<u8>)>;
        let blocks: &[(&str, Blocks)] = &[
            (
                "chain-and-crl",
                vec![
                    (0x00, cert(root)),
                    (0x10, cert(inter)),
                    (0x03, crl(crl_root)),
                ],
            ),
            ("leaf", vec![(0x00, cert(leaf)), (0x00, cert(expired))]),
            (
                "impostor",
                vec![(0x00, cert(impostor)), (0x03, crl(crl_root))],
            ),
            ("future", vec![(0x00, cert(future))]),
        ];
        for (name, list) in blocks {
            let mut bytes = vec![0u8, 1u8];
            for (i, (flags, der)) in list.iter().enumerate() {
                if i > 0 {
                    bytes.extend_from_slice(b"%%%%");
                }
                bytes.push(*flags);
                bytes.extend_from_slice(der);
            }
            std::fs::write(dir.join(format!("der-{name}")), bytes).unwrap();
        }
    }

    /// Every case above, with its PEM text damaged (characters replaced,
    /// lines dropped, repeated or cut short, at any time `now`): the builder
    /// answers with a bundle or an error naming a source, never a panic;
    /// and a bundle it builds gives itself back from its own `ca.crt` and
    /// `ca.crl`. The `bundle` fuzz target checks the same, from raw DER too.
    #[test]
    fn damaged_sources_give_errors_or_sound_bundles() {
        use proptest::prelude::*;

        let cases = cases();
        let damage = (
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            0..6u8,
        );
        crate::testing::check_property(
            "damaged_sources_give_errors_or_sound_bundles",
            300,
            (
                0..cases.len(),
                prop::collection::vec(damage, 1..4),
                prop::sample::select(vec![NOW, 0, i64::MIN, i64::MAX, NOW + 10 * 365 * 86_400]),
            ),
            |(case, damages, now)| {
                let mut anchors = cases[case].anchors.clone();
                let mut crls = cases[case].crls.clone();
                for (which, at, how) in damages {
                    let total = anchors.len() + crls.len();
                    if total == 0 {
                        break;
                    }
                    let i = which.index(total);
                    let pem = if i < anchors.len() {
                        &mut anchors[i].pem
                    } else {
                        &mut crls[i - anchors.len()].pem
                    };
                    let lines: Vec<&str> = pem.split_inclusive('\n').collect();
                    if lines.is_empty() {
                        continue;
                    }
                    let l = at.index(lines.len());
                    let mut out: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
                    match how {
                        0 => {
                            out.remove(l);
                        }
                        1 => out.insert(l, lines[l].to_string()),
                        2 => out.truncate(l),
                        _ => {
                            let chars: Vec<char> = out[l].chars().collect();
                            let c = at
                                .index(chars.len().max(1))
                                .min(chars.len().saturating_sub(1));
                            let with =
                                ['A', '-', '=', ' ', '\u{0}', 'é', '\n'][usize::from(how) % 7];
                            out[l] = chars
                                .iter()
                                .enumerate()
                                .map(|(k, &ch)| if k == c { with } else { ch })
                                .collect();
                        }
                    }
                    *pem = out.concat();
                }
                match build(&anchors, &crls, now) {
                    Ok(bundle) => {
                        for pair in bundle.anchors.windows(2) {
                            prop_assert!(pair[0].fingerprint < pair[1].fingerprint);
                        }
                        let again_crls: Vec<PemInput> =
                            bundle.crl_pem.iter().map(|p| input("ca.crl", p)).collect();
                        let again = build(&[input("ca.crt", &bundle.ca_pem)], &again_crls, now)
                            .map_err(|e| TestCaseError::fail(format!("own output refused: {e}")))?;
                        prop_assert_eq!(&again.ca_pem, &bundle.ca_pem);
                        prop_assert_eq!(&again.crl_pem, &bundle.crl_pem);
                    }
                    Err(e) => {
                        let shown = e.to_string();
                        let named = match &e {
                            BundleError::InvalidCertificate { input, .. } => {
                                anchors.iter().any(|a| &a.source == input)
                            }
                            BundleError::InvalidCrl { input, .. } => {
                                crls.iter().any(|c| &c.source == input)
                            }
                            _ => true,
                        };
                        prop_assert!(named, "{}", shown);
                    }
                }
                Ok(())
            },
        );
    }
}
