//! CPU cost of the pure ClientAuthPolicy bundle builder
//! (`tlsward::clientauth::bundle::build`), without Kubernetes I/O.
//!
//! ```text
//! cargo bench --bench bundle_builder
//! ```
//!
//! Benchmarks, all over 100 distinct self-signed CA certificates (ECDSA
//! P-256, made with rcgen once, outside the timed loop) split across 4
//! sources, as a policy with four `trustAnchors` entries gives them:
//! - `bundle_builder/100_anchors_4_sources`: the anchors alone;
//! - `bundle_builder/100_anchors_4_sources_4_crls`: plus a CRL from the first
//!   CA of each source, so four CRL signatures are verified too.
//!
//! After a `cargo bench` run the target is checked against criterion's median
//! estimate: 100 anchors in <= 5 ms.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::Criterion;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber, date_time_ymd,
};
use tlsward::clientauth::bundle::{PemInput, build};

/// How many CA certificates the bundle holds.
const ANCHORS: usize = 100;
/// How many sources they are spread over.
const SOURCES: usize = 4;
/// 2026-01-01T00:00:00Z: every CA is valid then.
const NOW: i64 = 1_767_225_600;
/// The target for 100 anchors, in nanoseconds.
const TARGET_NS: f64 = 5_000_000.0;

type Ca = CertifiedIssuer<'static, KeyPair>;

/// CA number `i`; notAfter is staggered by `i` days so the earliest-expiry
/// scan sees distinct values.
fn ca(i: usize) -> Ca {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, format!("Bench CA {i}"));
    p.distinguished_name
        .push(DnType::OrganizationName, "tlsward bench");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = date_time_ymd(2025, 1, 1);
    p.not_after = date_time_ymd(2030, 1, 1) + Duration::from_secs(86_400 * i as u64);
    let key = KeyPair::generate().expect("key pair");
    CertifiedIssuer::self_signed(p, key).expect("self-signed CA")
}

fn crl(issuer: &Ca) -> String {
    CertificateRevocationListParams {
        this_update: date_time_ymd(2025, 12, 1),
        next_update: date_time_ymd(2026, 2, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .expect("CRL")
    .pem()
    .expect("CRL PEM")
}

fn main() {
    let cas: Vec<Ca> = (0..ANCHORS).map(ca).collect();
    let chunk = ANCHORS.div_ceil(SOURCES);
    let anchors: Vec<PemInput> = cas
        .chunks(chunk)
        .enumerate()
        .map(|(i, group)| {
            let pem: String = group.iter().map(|c| c.pem()).collect();
            PemInput::new(
                format!("trustAnchors[{i}] (Secret bench-ca-{i}, key ca.crt)"),
                pem,
            )
        })
        .collect();
    let crls: Vec<PemInput> = cas
        .chunks(chunk)
        .enumerate()
        .map(|(i, group)| PemInput::new(format!("revocation[{i}]"), crl(&group[0])))
        .collect();

    // The fixture must build cleanly, or the numbers mean nothing.
    let plain = build(&anchors, &[], NOW).expect("bundle");
    assert_eq!(plain.anchors.len(), ANCHORS);
    assert!(plain.notes.is_empty(), "{:?}", plain.notes);
    let with_crls = build(&anchors, &crls, NOW).expect("bundle with CRLs");
    assert!(with_crls.notes.is_empty(), "{:?}", with_crls.notes);

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("bundle_builder");
    g.bench_function("100_anchors_4_sources", |b| {
        b.iter(|| build(black_box(&anchors), black_box(&[]), black_box(NOW)))
    });
    g.bench_function("100_anchors_4_sources_4_crls", |b| {
        b.iter(|| build(black_box(&anchors), black_box(&crls), black_box(NOW)))
    });
    g.finish();
    c.final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` runs each
    // benchmark once in test mode, where there are no estimates to check.
    if std::env::args().any(|a| a == "--bench") {
        report_target();
    }
}

/// Where criterion writes its estimates, resolved the way criterion does for
/// a bench run by cargo.
fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(home.into());
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(target).join("criterion"));
    }
    // <target>/release/deps/bundle_builder-<hash>
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// Criterion's median estimate of one benchmark, in nanoseconds.
fn median_ns(id: &str) -> Option<f64> {
    let path = criterion_dir()?.join(id).join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn report_target() {
    println!("\nTarget (criterion median estimates of the last run):");
    for id in [
        "bundle_builder/100_anchors_4_sources",
        "bundle_builder/100_anchors_4_sources_4_crls",
    ] {
        match median_ns(id) {
            Some(ns) => println!(
                "  {id}: median {:.3} ms (target <= 5 ms): {}",
                ns / 1e6,
                if ns <= TARGET_NS { "met" } else { "MISSED" }
            ),
            None => println!("  {id}: no estimate (benchmark filtered out?)"),
        }
    }
}
