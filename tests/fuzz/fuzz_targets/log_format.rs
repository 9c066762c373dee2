//! The log line layouts (`tlsward::telemetry::log_format`), through the
//! subscriber and batched writer production installs, on events and spans
//! made from the input: any values (strings, `%display`, `?debug`, errors,
//! integers of every width, floats with NaN and infinities, booleans), field
//! and span names with quotes, `=`, spaces, line breaks, bidirectional
//! controls and the keys the JSON layout writes itself. Both layouts, every
//! input:
//!
//! - one event is exactly one line, with no raw control or unsafe
//!   character in it;
//! - a JSON line parses, has no duplicate key and carries exactly the
//!   event's fields and its innermost span's;
//! - a text line reads back: level, spans with their fields, target,
//!   message, and every `key=value`.
//!
//! The checks are `src/telemetry/log_format/line_check.rs`, the same the
//! property tests (`generated_tests`) use. Field and span names come from a
//! bounded set (the callsites made for them are kept, not leaked per run);
//! values are unbounded.

#![no_main]

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use tlsward::telemetry::{LogFormat, log_writer, subscriber};
use tracing::Level;
use tracing_subscriber::EnvFilter;

#[allow(dead_code)]
#[path = "../../../src/telemetry/log_format/line_check.rs"]
mod line_check;

use line_check::{GenEvent, GenSpan, Node, Val};

/// Characters that need care somewhere: escapes, quotes, separators,
/// line ends, terminal and bidirectional controls, multi-byte UTF-8.
const SPECIAL: &[char] = &[
    '\n', '\r', '\t', '\0', '\x1b', '\x7f', '\u{85}', '\u{9b}', '\u{2028}', '\u{2029}', '\u{202e}',
    '\u{2066}', '\u{061c}', '\u{200e}', '"', '\\', '=', ' ', '{', '}', ':', ',', 'é', '漢', '🦀',
    '\'', 'u',
];

/// Names the layouts treat specially.
const NAMES: &[&str] = &[
    "timestamp",
    "level",
    "target",
    "span",
    "spans",
    "message",
    "name",
    "fields.level",
    "fields.fields.level",
    "fields.span",
    "fields.name",
    "r#type",
    "type",
    "a",
    "",
];

fn text(u: &mut Unstructured) -> Result<String> {
    let len = u.int_in_range(0..=16)?;
    (0..len)
        .map(|_| {
            Ok(match u.int_in_range(0..=7)? {
                0..=3 => char::from(u.int_in_range(b'a'..=b'z')?),
                4..=6 => *u.choose(SPECIAL)?,
                _ => u.arbitrary::<char>()?,
            })
        })
        .collect()
}

/// A name: one of a bounded set, so that the callsites made for them stay
/// few (`NAMES`, or up to three characters of `SPECIAL` and `a`, `b`).
fn name(u: &mut Unstructured) -> Result<String> {
    if u.ratio(1, 2)? {
        return Ok(u.choose(NAMES)?.to_string());
    }
    let len = u.int_in_range(1..=3)?;
    (0..len)
        .map(|_| {
            Ok(match u.int_in_range(0..=3)? {
                0 => 'a',
                1 => 'b',
                _ => *u.choose(SPECIAL)?,
            })
        })
        .collect()
}

fn val(u: &mut Unstructured) -> Result<Val> {
    Ok(match u.int_in_range(0..=9)? {
        0 => Val::Str(text(u)?),
        1 => Val::Display(text(u)?),
        2 => Val::Debug(text(u)?),
        3 => Val::Error(text(u)?),
        4 => Val::I64(u.arbitrary()?),
        5 => Val::U64(u.arbitrary()?),
        6 => Val::I128(u.arbitrary()?),
        7 => Val::U128(u.arbitrary()?),
        8 => {
            let any = f64::from_bits(u.arbitrary()?);
            Val::F64(*u.choose(&[
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                -0.0,
                0.5,
                1e300,
                5e-324,
                f64::MAX,
                any,
            ])?)
        }
        _ => Val::Bool(u.arbitrary()?),
    })
}

fn event(u: &mut Unstructured) -> Result<GenEvent> {
    let level = *u.choose(&[
        Level::TRACE,
        Level::DEBUG,
        Level::INFO,
        Level::WARN,
        Level::ERROR,
    ])?;
    let target = *u.choose(&["tlsward", "tlsward::access", "kube_runtime"])?;
    let mut fields = Vec::new();
    if u.ratio(2, 3)? {
        let message = if u.arbitrary()? {
            Val::Str(text(u)?)
        } else {
            Val::Display(text(u)?)
        };
        fields.push(("message".to_string(), message));
    }
    for _ in 0..u.int_in_range(0..=5)? {
        fields.push((name(u)?, val(u)?));
    }
    Ok(GenEvent {
        level,
        target,
        fields,
    })
}

fn span(u: &mut Unstructured) -> Result<GenSpan> {
    let name = if u.ratio(3, 4)? {
        u.choose(&["reconcile", "review", "conn"])?.to_string()
    } else {
        self::name(u)?
    };
    let mut fields = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        fields.push((name_or_clash(u)?, val(u)?, u.ratio(1, 3)?));
    }
    Ok(GenSpan { name, fields })
}

/// Span field names clash often with one another and with `name`.
fn name_or_clash(u: &mut Unstructured) -> Result<String> {
    if u.ratio(2, 5)? {
        Ok(u.choose(&["name", "a", "fields.a"])?.to_string())
    } else {
        name(u)
    }
}

fn nodes(u: &mut Unstructured, depth: u32) -> Result<Vec<Node>> {
    let mut out = Vec::new();
    for _ in 0..u.int_in_range(1..=4)? {
        if depth < 3 && u.ratio(1, 3)? {
            out.push(Node::Span(span(u)?, nodes(u, depth + 1)?));
        } else {
            out.push(Node::Event(event(u)?));
        }
    }
    Ok(out)
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(nodes) = nodes(&mut u, 0) else {
        return;
    };
    for format in [LogFormat::Json, LogFormat::Text] {
        let sink = Sink::default();
        let (writer, flusher) = log_writer::batched(sink.clone());
        let mut expected = Vec::new();
        tracing::subscriber::with_default(
            subscriber(format, EnvFilter::new("trace"), false, writer),
            || line_check::play(&nodes, &mut Vec::new(), &mut expected),
        );
        drop(flusher);
        let out = std::mem::take(&mut *sink.0.lock().unwrap_or_else(PoisonError::into_inner));
        let out = String::from_utf8(out).expect("log lines are UTF-8");
        let lines = line_check::lines(&out, expected.len())
            .unwrap_or_else(|why| panic!("{format:?}: {why}\n{nodes:?}"));
        for (line, exp) in lines.iter().zip(&expected) {
            let checked = match format {
                LogFormat::Json => line_check::check_json(line, exp),
                _ => line_check::check_text(line, exp),
            };
            if let Err(why) = checked {
                panic!("{format:?}: {why}\n{nodes:?}");
            }
        }
    }
});
