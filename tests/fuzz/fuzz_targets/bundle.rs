//! The CA-bundle builder (`tlsward::clientauth::bundle::build`) on any
//! trust-anchor and CRL sources, at any time: it never panics (a bad
//! source is an error naming that source), and a bundle it builds is sound:
//!
//! - anchors sorted by fingerprint, each once, each the SHA-256 of its DER,
//!   none expired at `now`; `not_after` the earliest; `fingerprints` theirs;
//! - built again from its own `ca.crt` and `ca.crl` at the same time, it
//!   gives the same bundle bytes (the operator's content hash is stable).
//!
//! Input: byte 0 picks `now`; byte 1 picks the form of the rest.
//! - even: PEM text (lossy UTF-8), cut into sources at lines `%%` (next
//!   source: trust anchors) and `%%crl` (next source: revocation). The
//!   seeds are the test PKI's certificates and CRLs made with rcgen.
//! - odd: DER blocks separated by `%%%%`, each wrapped into a PEM block
//!   here, so libFuzzer mutates the DER itself (basicConstraints,
//!   validity, signatures) rather than its base64. A block's first byte
//!   says: bit 0 revocation, bits 1-3 the label, bit 4 a new source, bit 5
//!   text before the block.

#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use tlsward::clientauth::bundle::{Bundle, BundleError, PemInput, build};

/// 2026-01-01T00:00:00Z, the `now` of the bundle tests.
const NOW: i64 = 1_767_225_600;

const LABELS: &[&str] = &[
    "CERTIFICATE",
    "X509 CRL",
    "CERTIFICATE",
    "X509 CRL",
    "PRIVATE KEY",
    "TRUSTED CERTIFICATE",
    "PUBLIC KEY",
    "CERTIFICATE REQUEST",
];

fn now(selector: u8) -> i64 {
    match selector % 8 {
        0..=3 => NOW,
        4 => 0,
        5 => i64::MIN,
        6 => i64::MAX,
        _ => NOW + i64::from(selector) * 86_400 * 365,
    }
}

fn text_sources(text: &str) -> (Vec<PemInput>, Vec<PemInput>) {
    let (mut anchors, mut crls) = (Vec::new(), Vec::new());
    let mut current = String::new();
    let mut crl = false;
    let mut finish = |crl: bool, pem: String| {
        let list = if crl { &mut crls } else { &mut anchors };
        let name = format!(
            "{}[{}]",
            if crl { "revocation" } else { "trustAnchors" },
            list.len()
        );
        list.push(PemInput::new(name, pem));
    };
    for line in text.split_inclusive('\n') {
        match line.trim_end() {
            "%%" | "%%crl" => {
                finish(crl, std::mem::take(&mut current));
                crl = line.trim_end() == "%%crl";
            }
            _ => current.push_str(line),
        }
    }
    finish(crl, current);
    (anchors, crls)
}

fn der_sources(data: &[u8]) -> (Vec<PemInput>, Vec<PemInput>) {
    let (mut anchors, mut crls): (Vec<PemInput>, Vec<PemInput>) = (Vec::new(), Vec::new());
    for chunk in split(data, b"%%%%") {
        let Some((&flags, der)) = chunk.split_first() else {
            continue;
        };
        let list = if flags & 1 == 1 {
            &mut crls
        } else {
            &mut anchors
        };
        if list.is_empty() || flags & 0x10 != 0 {
            let name = format!(
                "{}[{}]",
                if flags & 1 == 1 {
                    "revocation"
                } else {
                    "trustAnchors"
                },
                list.len()
            );
            list.push(PemInput::new(name, String::new()));
        }
        let pem = &mut list.last_mut().expect("just pushed").pem;
        if flags & 0x20 != 0 {
            pem.push_str("subject=CN = from openssl x509 -subject\n");
        }
        let label = LABELS[usize::from(flags >> 1) % LABELS.len()];
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        pem.push_str(&format!("-----BEGIN {label}-----\n"));
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str(&format!("-----END {label}-----\n"));
    }
    (anchors, crls)
}

fn split<'a>(data: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(sep.len()).position(|w| w == sep) {
            Some(i) => {
                rest = Some(&r[i + sep.len()..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_bundle(bundle: &Bundle, now: i64) {
    assert!(!bundle.anchors.is_empty());
    for pair in bundle.anchors.windows(2) {
        assert!(
            pair[0].fingerprint < pair[1].fingerprint,
            "not sorted, or twice"
        );
    }
    for a in &bundle.anchors {
        assert_eq!(
            a.fingerprint,
            format!("sha256:{}", hex(&Sha256::digest(&a.der)))
        );
        assert!(a.not_after >= now, "expired anchor kept: {a:?}");
    }
    assert_eq!(
        bundle.not_after,
        bundle.anchors.iter().map(|a| a.not_after).min()
    );
    let fps: Vec<&String> = bundle.anchors.iter().map(|a| &a.fingerprint).collect();
    assert_eq!(bundle.fingerprints.iter().collect::<Vec<_>>(), fps);
    assert_eq!(bundle.content_hash(), bundle.clone().content_hash());
}

fn check_error(e: &BundleError, anchors: &[PemInput], crls: &[PemInput]) {
    let shown = e.to_string();
    assert!(!shown.is_empty());
    let _ = e.reason();
    match e {
        BundleError::InvalidCertificate { input, .. } => {
            assert!(anchors.iter().any(|a| &a.source == input), "{shown}")
        }
        BundleError::InvalidCrl { input, .. } => {
            assert!(crls.iter().any(|c| &c.source == input), "{shown}")
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let [when, form, rest @ ..] = data else {
        return;
    };
    let now = now(*when);
    let (anchors, crls) = if form % 2 == 0 {
        text_sources(&String::from_utf8_lossy(rest))
    } else {
        der_sources(rest)
    };
    let bundle = match build(&anchors, &crls, now) {
        Ok(bundle) => bundle,
        Err(e) => return check_error(&e, &anchors, &crls),
    };
    check_bundle(&bundle, now);
    // Its own output, built again, is the same bundle.
    let again_crls: Vec<PemInput> = bundle
        .crl_pem
        .iter()
        .map(|pem| PemInput::new("ca.crl", pem.clone()))
        .collect();
    let again = build(
        &[PemInput::new("ca.crt", bundle.ca_pem.clone())],
        &again_crls,
        now,
    )
    .unwrap_or_else(|e| panic!("its own ca.crt/ca.crl refused: {e}"));
    assert_eq!(again.ca_pem, bundle.ca_pem);
    assert_eq!(again.crl_pem, bundle.crl_pem);
    assert_eq!(again.fingerprints, bundle.fingerprints);
    assert_eq!(again.content_hash(), bundle.content_hash());
});
