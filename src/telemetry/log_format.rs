//! The two log line layouts, written by hand.
//!
//! They keep the layouts of tracing-subscriber's `Full` text format and of
//! its flattened JSON format, but tracing-subscriber's formatters spend
//! more on a webhook review line than the policy decision the line reports.
//! These spend less (`cargo bench --bench log_format`; figures in
//! docs/benchmarks.md), because values that need no escaping are copied as
//! they are and the date is formatted once a second.

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events: `TIMESTAMP LEVEL spans: target: message key=value ...`
/// as text, or one flattened JSON object per line.
#[derive(Clone, Copy, Debug)]
pub struct LineFormat {
    /// One JSON object per line instead of text.
    pub json: bool,
}

/// Formats the fields of spans, which [`LineFormat`] then prints with the
/// events inside them. Must use the same `json` as the [`LineFormat`].
#[derive(Clone, Copy, Debug)]
pub struct LineFields {
    /// `"key":value` pairs instead of `key=value`.
    pub json: bool,
}

impl<'w> FormatFields<'w> for LineFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = FieldWriter::new(&mut writer, self.json, true);
        fields.record(&mut v);
        v.result
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut writer = current.as_writer();
        let mut v = FieldWriter::new(&mut writer, self.json, first);
        fields.record(&mut v);
        v.result
    }
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The line is built in a plain String and handed over in one write:
        // `Writer` is a `dyn fmt::Write`, and a line is some thirty pieces.
        LINE.with(|kept| {
            // Busy only if formatting a value logged: then a fresh String.
            let mut fresh = String::new();
            let mut kept = kept.try_borrow_mut();
            let line = match &mut kept {
                Ok(kept) => {
                    kept.clear();
                    &mut **kept
                }
                Err(_) => &mut fresh,
            };
            self.format_line(ctx, line, w.has_ansi_escapes(), event)?;
            w.write_str(line)
        })
    }
}

thread_local! {
    /// The line being formatted on this thread, kept for its capacity.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

impl LineFormat {
    fn format_line<S, N>(
        &self,
        ctx: &FmtContext<'_, S, N>,
        w: &mut String,
        ansi: bool,
        event: &Event<'_>,
    ) -> fmt::Result
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        let meta = event.metadata();
        if self.json {
            w.write_str("{\"timestamp\":\"")?;
            write_timestamp(w, SystemTime::now())?;
            w.write_str("\",\"level\":\"")?;
            w.write_str(meta.level().as_str())?;
            w.write_char('"')?;
            let mut v = FieldWriter::new(w, true, false);
            event.record(&mut v);
            v.result?;
            w.write_str(",\"target\":")?;
            json_str(w, meta.target())?;
            if let Some(span) = ctx.lookup_current() {
                w.write_str(",\"span\":{\"name\":")?;
                json_str(w, span.name())?;
                if let Some(f) = span.extensions().get::<FormattedFields<N>>()
                    && !f.fields.is_empty()
                {
                    w.write_char(',')?;
                    w.write_str(&f.fields)?;
                }
                w.write_char('}')?;
            }
            return w.write_str("}\n");
        }
        write_timestamp(w, SystemTime::now())?;
        w.write_char(' ')?;
        write_level(w, meta.level(), ansi)?;
        w.write_char(' ')?;
        if let Some(scope) = ctx.event_scope() {
            let mut any = false;
            for span in scope.from_root() {
                any = true;
                w.write_str(span.name())?;
                if let Some(f) = span.extensions().get::<FormattedFields<N>>()
                    && !f.fields.is_empty()
                {
                    write!(w, "{{{}}}", f.fields)?;
                }
                w.write_char(':')?;
            }
            if any {
                w.write_char(' ')?;
            }
        }
        w.write_str(meta.target())?;
        w.write_str(": ")?;
        let mut v = FieldWriter::new(w, false, true);
        event.record(&mut v);
        v.result?;
        w.write_char('\n')
    }
}

/// Writes `key=value` (text) or `"key":value` (JSON) pairs, separated by a
/// space or a comma. `first` says whether a separator is due before the
/// first pair.
struct FieldWriter<'a, W: Write> {
    w: &'a mut W,
    json: bool,
    first: bool,
    result: fmt::Result,
}

impl<'a, W: Write> FieldWriter<'a, W> {
    fn new(w: &'a mut W, json: bool, first: bool) -> Self {
        Self {
            w,
            json,
            first,
            result: Ok(()),
        }
    }

    /// Writes the separator and the key; the caller writes the value.
    fn key(&mut self, field: &Field) -> fmt::Result {
        let sep = if self.json { ',' } else { ' ' };
        if !std::mem::take(&mut self.first) {
            self.w.write_char(sep)?;
        }
        // `r#type` is the field `type`.
        let name = field.name().strip_prefix("r#").unwrap_or(field.name());
        if self.json {
            json_str(self.w, name)?;
            self.w.write_char(':')
        } else if name == "message" {
            Ok(())
        } else {
            self.w.write_str(name)?;
            self.w.write_char('=')
        }
    }

    fn record(&mut self, field: &Field, value: impl FnOnce(&mut W, bool) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.w, self.json));
        }
    }
}

impl<W: Write> Visit for FieldWriter<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let message = field.name() == "message";
        self.record(field, |w, json| {
            if json {
                json_str(w, value)
            } else if message {
                w.write_str(value)
            } else {
                quoted(w, value)
            }
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, |w, _| {
            w.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, |w, _| w.write_str(Digits::new(value).as_str()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, |w, _| {
            if value < 0 {
                w.write_char('-')?;
            }
            w.write_str(Digits::new(value.unsigned_abs()).as_str())
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: those become strings.
        self.record(field, |w, json| {
            if json && !value.is_finite() {
                write!(w, "\"{value}\"")
            } else {
                write!(w, "{value}")
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, |w, json| {
            if json {
                w.write_char('"')?;
                write!(JsonEscaped(w), "{value:?}")?;
                w.write_char('"')
            } else {
                write!(w, "{value:?}")
            }
        });
    }
}

/// A text value in double quotes, escaped as `{:?}` escapes it.
fn quoted(w: &mut impl Write, s: &str) -> fmt::Result {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        w.write_char('"')?;
        w.write_str(s)?;
        w.write_char('"')
    } else {
        write!(w, "{s:?}")
    }
}

/// A JSON string.
fn json_str(w: &mut impl Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    JsonEscaped(w).write_str(s)?;
    w.write_char('"')
}

/// Escapes what passes through it for the inside of a JSON string.
struct JsonEscaped<'a, W: Write>(&'a mut W);

impl<W: Write> Write for JsonEscaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(i) = rest
            .bytes()
            .position(|b| b < 0x20 || b == b'"' || b == b'\\')
        {
            self.0.write_str(&rest[..i])?;
            match rest.as_bytes()[i] {
                b'"' => self.0.write_str("\\\"")?,
                b'\\' => self.0.write_str("\\\\")?,
                b'\n' => self.0.write_str("\\n")?,
                b'\r' => self.0.write_str("\\r")?,
                b'\t' => self.0.write_str("\\t")?,
                b => write!(self.0, "\\u{b:04x}")?,
            }
            rest = &rest[i + 1..];
        }
        self.0.write_str(rest)
    }
}

fn write_level(w: &mut impl Write, level: &Level, ansi: bool) -> fmt::Result {
    let (text, color) = match *level {
        Level::TRACE => ("TRACE", "35"),
        Level::DEBUG => ("DEBUG", "34"),
        Level::INFO => (" INFO", "32"),
        Level::WARN => (" WARN", "33"),
        Level::ERROR => ("ERROR", "31"),
    };
    if ansi {
        write!(w, "\x1b[{color}m{text}\x1b[0m")
    } else {
        w.write_str(text)
    }
}

thread_local! {
    /// The last second formatted on this thread, and its text.
    static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
}

/// RFC 3339 in UTC with microseconds: `2026-11-24T04:46:16.123456Z`.
fn write_timestamp(w: &mut impl Write, now: SystemTime) -> fmt::Result {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != secs {
            *text = date_time(secs);
            *cached = secs;
        }
        // Only ASCII digits and separators are ever stored.
        w.write_str(std::str::from_utf8(&text[..]).unwrap_or("1970-01-01T00:00:00"))
    })?;
    let mut micros = *b".000000Z";
    let mut v = since.subsec_micros();
    for d in micros[1..7].iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    w.write_str(std::str::from_utf8(&micros).unwrap_or(".000000Z"))
}

/// The decimal digits of a number, without the formatting machinery.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn new(mut v: u64) -> Self {
        let mut buf = [b'0'; 20];
        let mut start = buf.len();
        loop {
            start -= 1;
            buf[start] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        Self { buf, start }
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time, by the days-to-civil algorithm
/// (proleptic Gregorian calendar).
fn date_time(secs: u64) -> [u8; 19] {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + u64::from(month <= 2)).min(9999);
    let mut out = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, rem / 3600);
    put(14, 2, rem / 60 % 60);
    put(17, 2, rem % 60);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tracing::{info, info_span, warn};

    #[test]
    fn dates_are_rfc3339_in_utc() {
        let at = |secs: u64, micros: u32| {
            let mut s = String::new();
            write_timestamp(
                &mut s,
                UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros.into()),
            )
            .unwrap();
            s
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(1_700_000_000, 42), "2023-11-14T22:13:20.000042Z");
        // A leap day, and the last second of a leap year.
        assert_eq!(at(1_709_164_800, 999_999), "2024-02-29T00:00:00.999999Z");
        assert_eq!(at(1_735_689_599, 0), "2024-12-31T23:59:59.000000Z");
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00.000000Z");
        // The cached second is not reused for another one.
        assert_eq!(at(1_735_689_600, 1), "2025-01-01T00:00:00.000001Z");
    }

    /// The lines `f` logs, formatted as `json` says.
    fn lines(json: bool, f: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Capture::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .fmt_fields(LineFields { json })
            .event_format(LineFormat { json })
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    fn review_line() {
        let object = "payments/shop";
        info!(
            webhook = "validate",
            object = %object,
            verdict = "denied",
            dry_run = false,
            duration_us = 17u64,
            "review"
        );
    }

    #[test]
    fn text_lines_keep_tracing_subscribers_layout() {
        let out = lines(false, review_line);
        assert_eq!(out.len(), 1, "{out:?}");
        let (ts, rest) = out[0].split_once(' ').unwrap();
        assert_eq!(ts.len(), "2026-11-24T04:46:16.123456Z".len(), "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
        assert_eq!(
            rest,
            r#" INFO tlsward::telemetry::log_format::tests: review webhook="validate" object=payments/shop verdict="denied" dry_run=false duration_us=17"#
        );
    }

    #[test]
    fn text_values_that_need_it_are_escaped_and_spans_are_named() {
        let out = lines(false, || {
            let span = info_span!("reconcile", policy = "a b");
            let _in = span.enter();
            warn!(reason = "line\nbreak \"quoted\"", "refused");
        });
        assert!(
            out[0].ends_with(
                r#"WARN reconcile{policy="a b"}: tlsward::telemetry::log_format::tests: refused reason="line\nbreak \"quoted\"""#
            ),
            "{out:?}"
        );
    }

    #[test]
    fn json_lines_are_flat_objects_with_the_current_span() {
        let out = lines(true, || {
            review_line();
            let span = info_span!("reconcile", namespace = "team-a", policy = %"strict");
            let _in = span.enter();
            warn!(
                reason = "bad \"PEM\"\n\u{1}",
                count = -3i64,
                ratio = 0.5,
                zero = 0u64,
                most = u64::MAX,
                least = i64::MIN,
                "refused"
            );
        });
        let review: serde_json::Value = serde_json::from_str(&out[0]).expect(&out[0]);
        assert_eq!(review["level"], "INFO");
        assert_eq!(review["message"], "review");
        assert_eq!(review["webhook"], "validate");
        assert_eq!(review["object"], "payments/shop");
        assert_eq!(review["dry_run"], false);
        assert_eq!(review["duration_us"], 17);
        assert_eq!(review["target"], "tlsward::telemetry::log_format::tests");
        assert!(review.get("span").is_none(), "{review}");
        let ts = review["timestamp"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() == 27, "{ts}");

        let refused: serde_json::Value = serde_json::from_str(&out[1]).expect(&out[1]);
        assert_eq!(refused["level"], "WARN");
        assert_eq!(refused["reason"], "bad \"PEM\"\n\u{1}");
        assert_eq!(refused["count"], -3);
        assert_eq!(refused["ratio"], 0.5);
        assert_eq!(refused["zero"], 0);
        assert_eq!(refused["most"], u64::MAX);
        assert_eq!(refused["least"], i64::MIN);
        assert_eq!(
            refused["span"],
            serde_json::json!({"name": "reconcile", "namespace": "team-a", "policy": "strict"})
        );
    }
}
