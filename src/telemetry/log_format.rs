//! The two log line layouts, written by hand.
//!
//! They keep the layouts of tracing-subscriber's `Full` text format and of
//! its flattened JSON format at a fraction of its cost per line
//! (`cargo bench --bench log_format`): values that need no escaping are
//! copied as they are, and the date is formatted once a second. They also
//! promise two things tracing-subscriber's formatters do not:
//!
//! - **One event is one line.** Line breaks and other [unsafe
//!   characters](unsafe_char) are escaped wherever they appear: in values
//!   (`%display`, `?debug` and errors too), keys, the message, span names
//!   and the target.
//! - **A JSON line has no duplicate key** (see [`LineFormat`]).
//!
//! `generated_tests` holds them to that with generated events.

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as text or as one flattened JSON object per line.
///
/// Text: `TIMESTAMP LEVEL span{key=value}:span: target: message key=value`.
/// The message (the event's first field, when it is named `message`) is
/// written as it is, with `\` and unsafe characters escaped. String values
/// are always quoted; other values (numbers, `%display`, `?debug`, errors)
/// are written bare unless they contain a space, `"`, `\`, `=`, `{`, `}` or
/// an unsafe character, and are quoted then. Keys and span names are
/// quoted by the same rule (span names also when they contain `:`). Inside
/// quotes, `"`, `\` and unsafe characters are escaped as Rust escapes them:
/// `\"`, `\\`, `\n`, `\u{1b}`.
///
/// JSON: `{"timestamp":..,"level":..,FIELDS,"target":..,"span":{"name":..,FIELDS}}`,
/// with `span` the innermost span, if any. Strings are escaped as RFC 8259
/// requires, and unsafe characters as `\uXXXX` too. Floats are written with
/// an exponent when very large or small (`1e300`). NaN and infinities are
/// the strings `"NaN"`, `"inf"` and `"-inf"`; 128-bit integers are strings,
/// since most JSON readers round integers past 64 bits. A field is written
/// under its name (`r#type` as `type`) unless the object already has that
/// key: its own `timestamp`, `level`, `target` and `span` (`name` in a span
/// object), or an earlier field's. Then it is written as `fields.NAME`,
/// with `fields.` repeated while that is taken too. This is logrus's rule;
/// tracing-subscriber writes the key twice, and readers keep one of the
/// two values.
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

/// The keys a JSON line writes itself.
const LINE_KEYS: &[&str] = &["timestamp", "level", "target", "span"];
/// The key a JSON span object writes itself.
const SPAN_KEYS: &[&str] = &["name"];
/// What a JSON key that is taken gets in front of it.
const RENAMED: &str = "fields.";

impl<'w> FormatFields<'w> for LineFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        // Formatted apart: quoting a value rewrites it in place.
        let mut text = String::new();
        let mut v = FieldWriter::new(&mut text, self.json, true, SPAN_KEYS);
        fields.record(&mut v);
        v.result?;
        writer.write_str(&text)
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let earlier = current.fields.len();
        let mut v = FieldWriter::new(&mut current.fields, self.json, earlier == 0, SPAN_KEYS);
        // The keys the span has already are taken too.
        v.earlier = earlier;
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
            w.push_str("{\"timestamp\":\"");
            write_timestamp(w, SystemTime::now())?;
            w.push_str("\",\"level\":\"");
            w.push_str(meta.level().as_str());
            w.push('"');
            let mut v = FieldWriter::new(w, true, false, LINE_KEYS);
            event.record(&mut v);
            v.result?;
            w.push_str(",\"target\":");
            json_str(w, meta.target())?;
            if let Some(span) = ctx.lookup_current() {
                w.push_str(",\"span\":{\"name\":");
                json_str(w, span.name())?;
                if let Some(f) = span.extensions().get::<FormattedFields<N>>()
                    && !f.fields.is_empty()
                {
                    w.push(',');
                    w.push_str(&f.fields);
                }
                w.push('}');
            }
            w.push_str("}\n");
            return Ok(());
        }
        write_timestamp(w, SystemTime::now())?;
        w.push(' ');
        write_level(w, meta.level(), ansi)?;
        w.push(' ');
        if let Some(scope) = ctx.event_scope() {
            let mut any = false;
            for span in scope.from_root() {
                any = true;
                text_name(w, span.name(), &SPAN_NAME_QUOTED)?;
                if let Some(f) = span.extensions().get::<FormattedFields<N>>()
                    && !f.fields.is_empty()
                {
                    w.push('{');
                    w.push_str(&f.fields);
                    w.push('}');
                }
                w.push(':');
            }
            if any {
                w.push(' ');
            }
        }
        // Written by code, not by clients, but escaped all the same.
        text_escaped(w, meta.target(), &MESSAGE_ESCAPED)?;
        w.push_str(": ");
        let mut v = FieldWriter::new(w, false, true, LINE_KEYS);
        v.message_due = true;
        event.record(&mut v);
        v.result?;
        w.push('\n');
        Ok(())
    }
}

/// A JSON key: `RENAMED` `prefixes` times, then the field's name.
#[derive(Clone, Copy)]
struct Key {
    prefixes: u32,
    name: &'static str,
}

impl Key {
    /// Whether this key is `RENAMED` `prefixes` times, then `name`.
    fn is(self, mut prefixes: u32, mut name: &str) -> bool {
        let common = self.prefixes.min(prefixes);
        let (mut mine, mut own) = (self.prefixes - common, self.name);
        prefixes -= common;
        // One side has no prefixes left: the other's must be in its name.
        while mine > 0 {
            let Some(rest) = name.strip_prefix(RENAMED) else {
                return false;
            };
            name = rest;
            mine -= 1;
        }
        while prefixes > 0 {
            let Some(rest) = own.strip_prefix(RENAMED) else {
                return false;
            };
            own = rest;
            prefixes -= 1;
        }
        own == name
    }
}

/// Writes `key=value` (text) or `"key":value` (JSON) pairs, separated by a
/// space or a comma.
struct FieldWriter<'a> {
    w: &'a mut String,
    json: bool,
    /// No separator is due before the next pair.
    first: bool,
    /// Text: the next field is the event's first, the message if it is
    /// named `message`.
    message_due: bool,
    /// JSON: the keys the object writes itself.
    reserved: &'static [&'static str],
    /// JSON: how much of `w` holds the object's earlier keys (a span's,
    /// when more of its fields are recorded).
    earlier: usize,
    /// JSON: the keys written so far; past `KEPT`, in `more_keys`.
    keys: [Key; KEPT],
    key_count: usize,
    more_keys: Vec<Key>,
    result: fmt::Result,
}

/// Keys kept without allocating: more than most events have fields.
const KEPT: usize = 8;

/// How a text value is written.
enum Role {
    /// As it is, escaped.
    Message,
    /// Bare if it can be, else quoted.
    Value,
}

impl<'a> FieldWriter<'a> {
    fn new(w: &'a mut String, json: bool, first: bool, reserved: &'static [&'static str]) -> Self {
        Self {
            w,
            json,
            first,
            message_due: false,
            reserved,
            earlier: 0,
            keys: [Key {
                prefixes: 0,
                name: "",
            }; KEPT],
            key_count: 0,
            more_keys: Vec::new(),
            result: Ok(()),
        }
    }

    /// Whether the object has `key` already.
    fn taken(&self, key: Key) -> bool {
        self.reserved.iter().any(|r| key.is(0, r))
            || self.keys[..self.key_count.min(KEPT)]
                .iter()
                .chain(&self.more_keys)
                .any(|k| key.is(k.prefixes, k.name))
            || (self.earlier > 0 && {
                // Rare (a span recorded more fields): compare escaped.
                let mut mine = String::new();
                let _ = write_json_key(&mut mine, key);
                json_keys(&self.w[..self.earlier]).any(|k| k == mine)
            })
    }

    /// The key `name` is written under; see [`LineFormat`].
    fn json_key(&mut self, name: &'static str) -> Key {
        let mut key = Key { prefixes: 0, name };
        while self.taken(key) {
            key.prefixes += 1;
        }
        if self.key_count < KEPT {
            self.keys[self.key_count] = key;
        } else {
            self.more_keys.push(key);
        }
        self.key_count += 1;
        key
    }

    /// Writes the separator and the key; the caller writes the value.
    fn key(&mut self, field: &Field) -> Result<Role, fmt::Error> {
        let message = std::mem::take(&mut self.message_due) && field.name() == "message";
        if !std::mem::take(&mut self.first) {
            self.w.push(if self.json { ',' } else { ' ' });
        }
        // `r#type` is the field `type`.
        let name = field.name().strip_prefix("r#").unwrap_or(field.name());
        if self.json {
            let key = self.json_key(name);
            write_json_key(self.w, key)?;
            self.w.push(':');
        } else if message {
            return Ok(Role::Message);
        } else {
            text_name(self.w, name, &VALUE_QUOTED)?;
            self.w.push('=');
        }
        Ok(Role::Value)
    }

    fn record(
        &mut self,
        field: &Field,
        value: impl FnOnce(&mut String, bool, Role) -> fmt::Result,
    ) {
        if self.result.is_ok() {
            self.result = self
                .key(field)
                .and_then(|role| value(self.w, self.json, role));
        }
    }
}

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, |w, json, role| match (json, role) {
            (true, _) => json_str(w, value),
            (false, Role::Message) => text_escaped(w, value, &MESSAGE_ESCAPED),
            (false, Role::Value) => text_quoted(w, value),
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, |w, _, _| {
            w.push_str(if value { "true" } else { "false" });
            Ok(())
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, |w, _, _| {
            w.push_str(Digits::new(value).as_str());
            Ok(())
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, |w, _, _| {
            if value < 0 {
                w.push('-');
            }
            w.push_str(Digits::new(value.unsigned_abs()).as_str());
            Ok(())
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: those become strings. A finite value
        // is written as Debug writes it, with an exponent when it is very
        // large or small (`1.7976931348623157e308`): Display writes all 309
        // digits of f64::MAX, which is JSON, but which serde_json (without
        // its float_roundtrip feature) rounds past the largest double and
        // refuses as out of range.
        self.record(field, |w, json, _| match (json, value.is_finite()) {
            (true, false) => write!(w, "\"{value}\""),
            (true, true) => write!(w, "{value:?}"),
            (false, _) => write!(w, "{value}"),
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, |w, json, role| {
            if json {
                w.push('"');
                write!(JsonEscaped(w), "{value:?}")?;
                w.push('"');
                return Ok(());
            }
            // Written first, then escaped or quoted if it needs it: most
            // values do not.
            let start = w.len();
            write!(w, "{value:?}")?;
            match role {
                Role::Message => {
                    if find(&w[start..], &MESSAGE_ESCAPED).is_some() {
                        let raw = w.split_off(start);
                        text_escaped(w, &raw, &MESSAGE_ESCAPED)?;
                    }
                }
                Role::Value => {
                    // What needs escaping needs quotes too: one scan if neither.
                    if let Some(i) = find(&w[start..], &VALUE_QUOTED) {
                        if find(&w[start + i..], &QUOTED_ESCAPED).is_some() {
                            let raw = w.split_off(start);
                            text_quoted(w, &raw)?;
                        } else {
                            w.insert(start, '"');
                            w.push('"');
                        }
                    }
                }
            }
            Ok(())
        });
    }
}

/// Whether a character is escaped in every text and JSON line: it ends a
/// line (C0 and C1 controls, U+2028 and U+2029), or changes how a terminal
/// or a viewer shows the rest of it (ESC, DEL, the bidirectional controls
/// of CVE-2021-42574).
pub fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// ASCII characters to find, besides the unsafe ones.
type AsciiSet = [bool; 128];

const fn ascii_set(extra: &[u8]) -> AsciiSet {
    let mut set = [false; 128];
    let mut i = 0;
    while i < 0x20 {
        set[i] = true;
        i += 1;
    }
    set[0x7f] = true;
    let mut j = 0;
    while j < extra.len() {
        set[extra[j] as usize] = true;
        j += 1;
    }
    set
}

/// Escaped in a message and a target.
const MESSAGE_ESCAPED: AsciiSet = ascii_set(b"\\");
/// Escaped in a quoted text value and in a JSON string.
const QUOTED_ESCAPED: AsciiSet = ascii_set(b"\"\\");
/// Quote a text value or key that contains one of these.
const VALUE_QUOTED: AsciiSet = ascii_set(b" \"\\={}");
/// Quote a span name that contains one of these.
const SPAN_NAME_QUOTED: AsciiSet = ascii_set(b" \"\\={}:");

/// The byte offset of the first character of `s` that `set` marks or that
/// is unsafe. Non-ASCII characters are decoded only after the lead bytes
/// of the unsafe ones (C1 controls, U+061C, U+200E..U+2069).
fn find(s: &str, set: &AsciiSet) -> Option<usize> {
    s.bytes().enumerate().find_map(|(i, b)| {
        let hit = match b {
            0..=0x7f => set[usize::from(b)],
            0xc2 | 0xd8 | 0xe2 => s[i..].chars().next().is_some_and(unsafe_char),
            _ => false,
        };
        hit.then_some(i)
    })
}

/// Writes `s` with the characters `set` marks, and the unsafe ones,
/// escaped as Rust escapes them.
fn text_escaped(w: &mut String, s: &str, set: &AsciiSet) -> fmt::Result {
    let mut rest = s;
    while let Some(i) = find(rest, set) {
        w.push_str(&rest[..i]);
        let Some(c) = rest[i..].chars().next() else {
            break;
        };
        match c {
            '\n' => w.push_str("\\n"),
            '\r' => w.push_str("\\r"),
            '\t' => w.push_str("\\t"),
            '\0' => w.push_str("\\0"),
            '"' | '\\' => {
                w.push('\\');
                w.push(c);
            }
            c => write!(w, "\\u{{{:x}}}", u32::from(c))?,
        }
        rest = &rest[i + c.len_utf8()..];
    }
    w.push_str(rest);
    Ok(())
}

/// A text value in double quotes.
fn text_quoted(w: &mut String, s: &str) -> fmt::Result {
    w.push('"');
    text_escaped(w, s, &QUOTED_ESCAPED)?;
    w.push('"');
    Ok(())
}

/// A key or span name: bare unless empty or `quoted` marks a character.
fn text_name(w: &mut String, s: &str, quoted: &AsciiSet) -> fmt::Result {
    if s.is_empty() || find(s, quoted).is_some() {
        text_quoted(w, s)
    } else {
        w.push_str(s);
        Ok(())
    }
}

/// A JSON string.
fn json_str(w: &mut String, s: &str) -> fmt::Result {
    w.push('"');
    JsonEscaped(w).write_str(s)?;
    w.push('"');
    Ok(())
}

/// A JSON object key, in quotes.
fn write_json_key(w: &mut String, key: Key) -> fmt::Result {
    w.push('"');
    for _ in 0..key.prefixes {
        w.push_str(RENAMED);
    }
    JsonEscaped(w).write_str(key.name)?;
    w.push('"');
    Ok(())
}

/// The keys of a JSON object's members, `"k":v,"k":v`, as written (in
/// quotes, escaped). The values are strings or bare scalars.
fn json_keys(members: &str) -> impl Iterator<Item = &str> {
    /// The length of the JSON string at the start of `s`, quotes included.
    fn string_len(s: &str) -> usize {
        let b = s.as_bytes();
        let mut i = 1;
        while i < b.len() && b[i] != b'"' {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        (i + 1).min(b.len())
    }
    let mut rest = members;
    std::iter::from_fn(move || {
        if !rest.starts_with('"') {
            return None;
        }
        let key = &rest[..string_len(rest)];
        let value = rest[key.len()..].strip_prefix(':').unwrap_or("");
        let end = if value.starts_with('"') {
            string_len(value)
        } else {
            value.find(',').unwrap_or(value.len())
        };
        rest = value[end..].strip_prefix(',').unwrap_or("");
        Some(key)
    })
}

/// Escapes what passes through it for the inside of a JSON string.
struct JsonEscaped<'a>(&'a mut String);

impl Write for JsonEscaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(i) = find(rest, &QUOTED_ESCAPED) {
            self.0.push_str(&rest[..i]);
            let Some(c) = rest[i..].chars().next() else {
                break;
            };
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                '\n' => self.0.push_str("\\n"),
                '\r' => self.0.push_str("\\r"),
                '\t' => self.0.push_str("\\t"),
                // Every unsafe character is in the Basic Multilingual Plane.
                c => write!(self.0, "\\u{:04x}", u32::from(c))?,
            }
            rest = &rest[i + c.len_utf8()..];
        }
        self.0.push_str(rest);
        Ok(())
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
mod generated_tests;
#[cfg(test)]
mod line_check;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Captured;
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
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .fmt_fields(LineFields { json })
            .event_format(LineFormat { json })
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = out.text();
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
    fn a_json_key_already_taken_is_written_as_fields_name() {
        let out = lines(true, || {
            let span = info_span!("reconcile", name = "shop", policy = "strict");
            let _in = span.enter();
            warn!(
                level = 3u64,
                target = "upstream",
                reason = "SourceNotFound",
                message = %"secret corp-ca not found",
                "policy not ready"
            );
        });
        assert_eq!(out.len(), 1, "{out:?}");
        let pairs: Vec<&str> = out[0].split(',').skip(2).collect();
        assert_eq!(
            pairs,
            [
                r#""message":"policy not ready""#,
                r#""fields.level":3"#,
                r#""fields.target":"upstream""#,
                r#""reason":"SourceNotFound""#,
                r#""fields.message":"secret corp-ca not found""#,
                r#""target":"tlsward::telemetry::log_format::tests""#,
                r#""span":{"name":"reconcile""#,
                r#""fields.name":"shop""#,
                r#""policy":"strict"}}"#,
            ],
            "{}",
            out[0]
        );
    }

    #[test]
    fn text_values_break_no_line_and_are_quoted_when_they_have_spaces() {
        let out = lines(false, || {
            let peer = "10.0.0.7:51234";
            let client = "CN=evil\n2026-01-01T00:00:00Z  INFO forged";
            warn!(
                %peer,
                client = %client,
                error = %"connection reset\r\nby peer",
                empty = %"",
                message = %"second",
                "refused\n\u{1b}[31m"
            );
        });
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            out[0].ends_with(
                r#"tlsward::telemetry::log_format::tests: refused\n\u{1b}[31m peer=10.0.0.7:51234 client="CN=evil\n2026-01-01T00:00:00Z  INFO forged" error="connection reset\r\nby peer" empty= message=second"#
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

    /// Found by the `log_format` fuzz target: f64::MAX written with all its
    /// 309 digits is a JSON number serde_json refuses as out of range, so
    /// the whole line was unreadable to a Rust log reader.
    #[test]
    fn json_floats_at_the_ends_of_the_range_read_back() {
        for v in [f64::MAX, f64::MIN, 5e-324, 1e300, 0.1, -0.0, 100.0] {
            let out = lines(true, || info!(v, "f"));
            let line: serde_json::Value = serde_json::from_str(&out[0]).expect(&out[0]);
            assert_eq!(line["v"].as_f64(), Some(v), "{}", out[0]);
        }
    }
}
