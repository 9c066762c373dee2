//! The webhook's hand-written AdmissionReview reader (with its SSE2 scan)
//! against serde as the oracle: whenever the reader reads a body, serde must
//! read it too, to the same request, and both must decide the same (verdict,
//! response, patch, status), under every policy of
//! `tlsward::fuzzing::webhook_snapshots`, for both hooks. Every body, read
//! or not, must be decided without a panic.
//!
//! Inputs that start with `{`, `[` or whitespace are bodies as they are
//! (the kubectl-made seeds). Any other input is a plan
//! (`src/webhook/review/plan.rs`, shared with the reader's property test): a
//! kubectl-made Ingress from `policies/ingresses/` wrapped in an
//! AdmissionReview, a few structured edits (a value replaced, a key dropped,
//! repeated, moved or added), a way of writing the JSON (whitespace, escapes
//! serde_json never writes) and rarely a byte changed. Most plans are
//! reviews the reader reads, so the comparison is made on most inputs; the
//! target prints the share it read.

#![no_main]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use tlsward::fuzzing::{
    namespace_lookups, review_reader_agrees_with_serde, sample_ingresses, webhook_snapshots,
};
use tlsward::webhook::review::{Hook, decide};

/// The plans, shared with the reader's property test.
#[allow(dead_code)]
#[path = "../../../src/webhook/review/plan.rs"]
mod plan;

/// Inputs seen and read by the reader: [raw bodies, plans].
static RUNS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static READ: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// The kubectl-made Ingresses of `policies/ingresses/`, as JSON trees.
fn ingresses() -> &'static [plan::Node] {
    static INGRESSES: OnceLock<Vec<plan::Node>> = OnceLock::new();
    INGRESSES.get_or_init(|| sample_ingresses().iter().map(plan::Node::from).collect())
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let raw = matches!(first, b'{' | b'[' | b' ' | b'\n' | b'\t' | b'\r');
    let planned;
    let body: &[u8] = if raw {
        data
    } else {
        planned = plan::body(ingresses(), rest);
        &planned
    };
    let snapshots = webhook_snapshots();
    let snapshot = &snapshots[usize::from(first) % snapshots.len()];
    let lookups = namespace_lookups();
    let lookup = lookups[usize::from(first / 8) % lookups.len()];
    let mut read = false;
    for hook in [Hook::Validate, Hook::Mutate] {
        match review_reader_agrees_with_serde(hook, body, snapshot, lookup) {
            Ok(r) => read |= r,
            Err(why) => panic!(
                "reader and serde disagree ({hook:?}): {why}\nbody: {}",
                String::from_utf8_lossy(body)
            ),
        }
        if !read {
            // serde's path alone: it must answer, never panic.
            let _ = decide(hook, body, snapshot, lookup);
        }
    }
    let mode = usize::from(!raw);
    RUNS[mode].fetch_add(1, Ordering::Relaxed);
    READ[mode].fetch_add(u64::from(read), Ordering::Relaxed);
    let [raw_runs, plan_runs] = RUNS.each_ref().map(|a| a.load(Ordering::Relaxed));
    let [raw_read, plan_read] = READ.each_ref().map(|a| a.load(Ordering::Relaxed));
    let runs = raw_runs + plan_runs;
    if runs.is_power_of_two() && runs >= 1024 {
        let pct = |read: u64, runs: u64| read * 100 / runs.max(1);
        eprintln!(
            "review_reader: the reader read {} of {runs} inputs ({}%): {plan_read} of {plan_runs} plans ({}%), {raw_read} of {raw_runs} raw bodies ({}%)",
            raw_read + plan_read,
            pct(raw_read + plan_read, runs),
            pct(plan_read, plan_runs),
            pct(raw_read, raw_runs),
        );
    }
});
