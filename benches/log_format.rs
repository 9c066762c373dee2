//! The cost of formatting one webhook review line: tracing-subscriber's own
//! text and JSON formatters against `tlsward::telemetry::log_format`, into
//! a writer that discards the bytes (so only formatting is timed).
//!
//! ```text
//! cargo bench --bench log_format
//! ```

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tlsward::telemetry::log_format::{LineFields, LineFormat};
use tracing::info;

/// Swallows every line.
struct Discard;

impl std::io::Write for Discard {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        black_box(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The line `tlsward webhook` logs for every review.
fn review_line(duration_us: u64) {
    let uid = "705ab4f5-6393-11e8-b7cc-42010a800002";
    let object = "payments/shop";
    let operation = "CREATE";
    info!(
        webhook = "validate",
        uid = %uid,
        object = %object,
        operation = %operation,
        verdict = "allowed",
        dry_run = false,
        duration_us,
        "review"
    );
}

fn bench(c: &mut Criterion, name: &str, subscriber: impl tracing::Subscriber + Send + Sync) {
    tracing::subscriber::with_default(subscriber, || {
        c.bench_function(name, |b| b.iter(|| review_line(black_box(17))));
    });
}

fn formats(c: &mut Criterion) {
    let fmt = || {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(|| Discard)
            .with_ansi(false)
    };
    bench(c, "review_line/tracing_subscriber_text", fmt().finish());
    bench(
        c,
        "review_line/tracing_subscriber_json",
        fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .finish(),
    );
    for json in [false, true] {
        let name = if json { "tlsward_json" } else { "tlsward_text" };
        bench(
            c,
            &format!("review_line/{name}"),
            fmt()
                .fmt_fields(LineFields { json })
                .event_format(LineFormat { json })
                .finish(),
        );
    }
}

criterion_group!(benches, formats);
criterion_main!(benches);
