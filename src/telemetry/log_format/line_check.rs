//! The checks of the log line layouts, apart from how events are made:
//! events built from data (any field name, at run time) are played through
//! a subscriber, and each line is checked against the event it shows. Every
//! event is one line; a JSON line parses, has no duplicate key and carries
//! exactly the event's fields; a text line has no control character and its
//! fields read back.
//!
//! Shared by `generated_tests` (proptest) and the `log_format` fuzz target
//! (`tests/fuzz`, which includes this file by path), so it uses nothing of
//! the crate: only `tracing`, `serde` and `serde_json`.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::sync::{Mutex, OnceLock, PoisonError};

use tracing::callsite::{Callsite, Identifier};
use tracing::field::{FieldSet, Value};
use tracing::metadata::Kind;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Span};

/// Fails the check with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

/// Fails the check unless both sides are equal.
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($why:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(format!("{:?} != {:?}: {}", left, right, format!($($why)+)));
        }
    }};
}

/// A value of each kind a field can record.
#[derive(Clone, Debug)]
pub enum Val {
    Str(String),
    /// Recorded as `%value`.
    Display(String),
    /// Recorded as `?value`, by a `Debug` that writes the text as it is.
    Debug(String),
    Error(String),
    I64(i64),
    U64(u64),
    I128(i128),
    U128(u128),
    F64(f64),
    Bool(bool),
}

pub struct RawDebug(String);

impl fmt::Debug for RawDebug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug)]
pub struct GenError(String);

impl fmt::Display for GenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for GenError {}

impl Val {
    /// The value as tracing records it.
    fn value(&self) -> Box<dyn Value + '_> {
        match self {
            Val::Str(s) => Box::new(s.as_str()),
            Val::Display(s) => Box::new(tracing::field::display(s.as_str())),
            Val::Debug(s) => Box::new(tracing::field::debug(RawDebug(s.clone()))),
            Val::Error(s) => Box::new(Box::new(GenError(s.clone())) as Box<dyn Error + 'static>),
            Val::I64(v) => Box::new(*v),
            Val::U64(v) => Box::new(*v),
            Val::I128(v) => Box::new(*v),
            Val::U128(v) => Box::new(*v),
            Val::F64(v) => Box::new(*v),
            Val::Bool(v) => Box::new(*v),
        }
    }
}

/// A field name as it is written: `r#type` is `type`.
pub fn written_name(name: &str) -> &str {
    name.strip_prefix("r#").unwrap_or(name)
}

#[derive(Clone, Debug)]
pub struct GenEvent {
    pub level: Level,
    pub target: &'static str,
    /// In the order recorded; a message comes first, as `info!` puts it.
    pub fields: Vec<(String, Val)>,
}

#[derive(Clone, Debug)]
pub struct GenSpan {
    pub name: String,
    /// The bool: recorded after the span is created (`Span::record`).
    pub fields: Vec<(String, Val, bool)>,
}

#[derive(Clone, Debug)]
pub enum Node {
    Event(GenEvent),
    Span(GenSpan, Vec<Node>),
}

/// A callsite made at run time, for field names no macro could take.
struct Site(OnceLock<Metadata<'static>>);

impl Callsite for Site {
    fn set_interest(&self, _: Interest) {}
    fn metadata(&self) -> &Metadata<'_> {
        self.0.get().expect("set when made")
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// What makes two callsites the same: name, target, level, field names and
/// whether it is a span.
type SiteKey = (String, &'static str, Level, Vec<String>, bool);

/// The callsite for these names, made (and leaked) the first time they are
/// seen: a fuzzer replays the same few thousand shapes millions of times,
/// and must not leak on each.
fn metadata(
    name: &str,
    target: &'static str,
    level: Level,
    fields: &[&str],
    kind: Kind,
) -> &'static Metadata<'static> {
    static SITES: Mutex<BTreeMap<SiteKey, &'static Metadata<'static>>> =
        Mutex::new(BTreeMap::new());
    let key: SiteKey = (
        name.to_owned(),
        target,
        level,
        fields.iter().map(|f| f.to_string()).collect(),
        kind.is_span(),
    );
    let mut sites = SITES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(meta) = sites.get(&key) {
        return meta;
    }
    let site: &'static Site = Box::leak(Box::new(Site(OnceLock::new())));
    let names: Vec<&'static str> = fields.iter().map(|f| leak(f)).collect();
    let names: &'static [&'static str] = Box::leak(names.into_boxed_slice());
    let meta = Metadata::new(
        leak(name),
        target,
        level,
        None,
        None,
        None,
        FieldSet::new(names, Identifier(site)),
        kind,
    );
    assert!(site.0.set(meta).is_ok());
    let meta = site.0.get().expect("set just now");
    sites.insert(key, meta);
    meta
}

/// What one event should show: its own fields and the spans it is in,
/// each with its fields in the order they were recorded.
pub struct Expected<'a> {
    event: &'a GenEvent,
    spans: Vec<(&'a str, Vec<(&'a str, &'a Val)>)>,
}

pub fn play<'a>(
    nodes: &'a [Node],
    stack: &mut Vec<(&'a str, Vec<(&'a str, &'a Val)>)>,
    out: &mut Vec<Expected<'a>>,
) {
    for node in nodes {
        match node {
            Node::Event(e) => {
                let names: Vec<&str> = e.fields.iter().map(|(n, _)| n.as_str()).collect();
                let meta = metadata("event", e.target, e.level, &names, Kind::EVENT);
                let values: Vec<Box<dyn Value + '_>> =
                    e.fields.iter().map(|(_, v)| v.value()).collect();
                let refs: Vec<Option<&dyn Value>> =
                    values.iter().map(|v| Some(&**v as &dyn Value)).collect();
                // `value_set_all` is what tracing's macros call (hidden from
                // its docs); no macro takes names made at run time.
                tracing::Event::dispatch(meta, &meta.fields().value_set_all(&refs));
                out.push(Expected {
                    event: e,
                    spans: stack.clone(),
                });
            }
            Node::Span(s, children) => {
                let names: Vec<&str> = s.fields.iter().map(|(n, _, _)| n.as_str()).collect();
                let meta = metadata(
                    &s.name,
                    "tlsward::generated",
                    Level::INFO,
                    &names,
                    Kind::SPAN,
                );
                let values: Vec<Box<dyn Value + '_>> =
                    s.fields.iter().map(|(_, v, _)| v.value()).collect();
                let refs: Vec<Option<&dyn Value>> = s
                    .fields
                    .iter()
                    .zip(&values)
                    .map(|((_, _, later), v)| (!later).then_some(&**v as &dyn Value))
                    .collect();
                let span = Span::new(meta, &meta.fields().value_set_all(&refs));
                let mut recorded: Vec<(&str, &Val)> = s
                    .fields
                    .iter()
                    .filter(|(_, _, later)| !later)
                    .map(|(n, v, _)| (n.as_str(), v))
                    .collect();
                for ((field, (n, v, later)), value) in
                    meta.fields().iter().zip(&s.fields).zip(&values)
                {
                    if *later {
                        span.record(&field, &**value);
                        recorded.push((n.as_str(), v));
                    }
                }
                stack.push((s.name.as_str(), recorded));
                span.in_scope(|| play(children, stack, out));
                stack.pop();
            }
        }
    }
}

/// Characters that must never appear raw in a line: they end it, or
/// change how a terminal or viewer shows the rest of it.
pub fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Splits the output into lines, one an event, with no unsafe character.
pub fn lines(out: &str, events: usize) -> Result<Vec<&str>, String> {
    ensure!(
        out.is_empty() || out.ends_with('\n'),
        "unterminated: {out:?}"
    );
    let lines: Vec<&str> = out.split_terminator('\n').collect();
    ensure_eq!(lines.len(), events, "{:?}", out);
    for l in &lines {
        ensure!(
            !l.chars().any(unsafe_char),
            "raw control character in {:?}",
            l
        );
    }
    Ok(lines)
}

// ----- JSON -----

/// A JSON value, read by a parser that refuses duplicate keys (serde_json's
/// own `Value` keeps the last silently).
#[derive(Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64, String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
                Ok(Json::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Number(v as f64, v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
                Ok(Json::Number(v as f64, v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
                Ok(Json::Number(v, String::new()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::String(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = a.next_element()? {
                    out.push(v);
                }
                Ok(Json::Array(out))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut out: Vec<(String, Json)> = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, Json>()? {
                    if out.iter().any(|(seen, _)| *seen == k) {
                        return Err(serde::de::Error::custom(format!("duplicate key {k:?}")));
                    }
                    out.push((k, v));
                }
                Ok(Json::Object(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// The key each field is written under in a JSON object whose own keys are
/// `reserved`: its name, or while that is taken, `fields.` before it.
pub fn json_keys<'a>(reserved: &[&str], names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut taken: Vec<String> = reserved.iter().map(|k| k.to_string()).collect();
    let mut out = Vec::new();
    for name in names {
        let mut key = written_name(name).to_owned();
        while taken.contains(&key) {
            key = format!("fields.{key}");
        }
        taken.push(key.clone());
        out.push(key);
    }
    out
}

/// Whether a JSON value shows `val`.
pub fn json_shows(j: &Json, val: &Val) -> bool {
    let num = |j: &Json, digits: String| matches!(j, Json::Number(_, d) if *d == digits);
    match val {
        Val::Str(s) | Val::Display(s) | Val::Debug(s) | Val::Error(s) => {
            *j == Json::String(s.clone())
        }
        Val::I64(v) => num(j, v.to_string()),
        Val::U64(v) => num(j, v.to_string()),
        // Wider than a JSON number is read exactly: as a string.
        Val::I128(v) => *j == Json::String(v.to_string()),
        Val::U128(v) => *j == Json::String(v.to_string()),
        Val::F64(v) if v.is_nan() => *j == Json::String("NaN".into()),
        Val::F64(v) if v.is_infinite() => *j == Json::String(v.to_string()),
        // serde_json's default float reader may round the last bit.
        Val::F64(v) => {
            matches!(j, Json::Number(n, _) if *n == *v || n - v.abs() <= v.abs() * 4.0 * f64::EPSILON)
        }
        Val::Bool(v) => *j == Json::Bool(*v),
    }
}

pub fn check_json(line: &str, exp: &Expected<'_>) -> Result<(), String> {
    let parsed: Json = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
    let Json::Object(obj) = parsed else {
        return Err(format!("not an object: {line}"));
    };
    let get = |k: &str| obj.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    match get("timestamp") {
        Some(Json::String(ts)) => ensure!(ts.len() == 27 && ts.ends_with('Z'), "{}", line),
        _ => ensure!(false, "no timestamp: {}", line),
    }
    ensure_eq!(
        get("level"),
        Some(&Json::String(exp.event.level.as_str().into())),
        "{}",
        line
    );
    ensure_eq!(
        get("target"),
        Some(&Json::String(exp.event.target.into())),
        "{}",
        line
    );

    let mut want: Vec<&str> = vec!["timestamp", "level", "target"];
    let keys = json_keys(
        &["timestamp", "level", "target", "span"],
        exp.event.fields.iter().map(|(n, _)| n.as_str()),
    );
    for (key, (_, val)) in keys.iter().zip(&exp.event.fields) {
        want.push(key);
        let got = get(key);
        ensure!(
            got.is_some_and(|j| json_shows(j, val)),
            "{} should be {:?}: {}",
            key,
            val,
            line
        );
    }
    // The innermost span, with its name and fields.
    if let Some((name, fields)) = exp.spans.last() {
        want.push("span");
        let Some(Json::Object(span)) = get("span") else {
            return Err(format!("no span: {line}"));
        };
        let keys = json_keys(&["name"], fields.iter().map(|(n, _)| *n));
        let mut span_want = vec!["name".to_string()];
        ensure_eq!(
            &span[0],
            &("name".to_string(), Json::String(name.to_string())),
            "{}",
            line
        );
        for (key, (_, val)) in keys.iter().zip(fields) {
            span_want.push(key.clone());
            let got = span.iter().find(|(k, _)| k == key).map(|(_, v)| v);
            ensure!(
                got.is_some_and(|j| json_shows(j, val)),
                "span {} should be {:?}: {}",
                key,
                val,
                line
            );
        }
        let mut span_have: Vec<&String> = span.iter().map(|(k, _)| k).collect();
        span_have.sort();
        span_want.sort();
        ensure_eq!(span_have, span_want.iter().collect::<Vec<_>>(), "{}", line);
    }
    let mut have: Vec<&str> = obj.iter().map(|(k, _)| k.as_str()).collect();
    have.sort_unstable();
    want.sort_unstable();
    ensure_eq!(have, want, "{}", line);
    Ok(())
}

// ----- text -----

/// A text token: its text after unescaping, and whether it was quoted.
#[derive(Debug, PartialEq)]
pub struct Tok {
    text: String,
    quoted: bool,
}

/// Undoes the text escapes (`\n`, `\"`, `\u{1b}`, ...).
pub fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('0') => out.push('\0'),
            Some(c @ ('\\' | '"' | '\'')) => out.push(c),
            Some('u') => {
                let rest = chars.as_str();
                let end = rest
                    .find('}')
                    .ok_or_else(|| format!("bad escape in {s:?}"))?;
                let hex = rest[..end]
                    .strip_prefix('{')
                    .ok_or_else(|| format!("bad escape in {s:?}"))?;
                let c = u32::from_str_radix(hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("bad escape in {s:?}"))?;
                out.push(c);
                chars = rest[end + 1..].chars();
            }
            other => {
                return Err(format!("bad escape {other:?} in {s:?}"));
            }
        }
    }
    Ok(out)
}

/// Whether the `"` at byte `i` is escaped (an odd run of `\` before it).
pub fn escaped_at(s: &str, i: usize) -> bool {
    s.as_bytes()[..i]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count()
        % 2
        == 1
}

/// A quoted token starting at byte 0 of `s`; returns it and the rest.
pub fn quoted_forward(s: &str) -> Result<(Tok, &str), String> {
    let mut i = 1;
    loop {
        let j = s[i..]
            .find('"')
            .ok_or_else(|| format!("unclosed quote: {s:?}"))?
            + i;
        if !escaped_at(s, j) {
            let text = unescape(&s[1..j])?;
            return Ok((Tok { text, quoted: true }, &s[j + 1..]));
        }
        i = j + 1;
    }
}

/// A token (quoted, or bare up to one of `ends`) at the start of `s`.
pub fn token_forward<'s>(s: &'s str, ends: &[char]) -> Result<(Tok, &'s str), String> {
    if s.starts_with('"') {
        return quoted_forward(s);
    }
    let end = s.find(ends).unwrap_or(s.len());
    let text = s[..end].to_owned();
    ensure!(
        !text.contains(['"', '\\']),
        "bare token with a quote or backslash: {:?}",
        s
    );
    Ok((
        Tok {
            text,
            quoted: false,
        },
        &s[end..],
    ))
}

/// A token (quoted, or bare back to one of `starts`) ending at the end of
/// `s`; returns the text before it and the token.
pub fn token_backward<'s>(s: &'s str, starts: &[char]) -> Result<(&'s str, Tok), String> {
    if s.ends_with('"') && !escaped_at(s, s.len() - 1) {
        let mut j = s.len() - 1;
        loop {
            let i = s[..j]
                .rfind('"')
                .ok_or_else(|| format!("unopened quote: {s:?}"))?;
            if !escaped_at(s, i) {
                let text = unescape(&s[i + 1..s.len() - 1])?;
                return Ok((&s[..i], Tok { text, quoted: true }));
            }
            j = i;
        }
    }
    let start = s.rfind(starts).map_or(0, |i| i + 1);
    let text = s[start..].to_owned();
    ensure!(
        !text.contains(['"', '\\']),
        "bare token with a quote or backslash: {:?}",
        s
    );
    Ok((
        &s[..start],
        Tok {
            text,
            quoted: false,
        },
    ))
}

/// A value as a message shows it: as it is, unquoted.
pub fn plain(val: &Val) -> String {
    match val {
        Val::Str(s) | Val::Display(s) | Val::Debug(s) | Val::Error(s) => s.clone(),
        Val::I64(v) => v.to_string(),
        Val::U64(v) => v.to_string(),
        Val::I128(v) => v.to_string(),
        Val::U128(v) => v.to_string(),
        Val::F64(v) => v.to_string(),
        Val::Bool(v) => v.to_string(),
    }
}

/// Whether a text token shows `val`.
pub fn text_shows(tok: &Tok, val: &Val) -> bool {
    let bare = |s: String| !tok.quoted && tok.text == s;
    match val {
        // Strings are always quoted, as tracing-subscriber quotes them.
        Val::Str(s) => tok.quoted && tok.text == *s,
        Val::Display(s) | Val::Debug(s) | Val::Error(s) => tok.text == *s,
        Val::I64(v) => bare(v.to_string()),
        Val::U64(v) => bare(v.to_string()),
        Val::I128(v) => bare(v.to_string()),
        Val::U128(v) => bare(v.to_string()),
        Val::F64(v) => bare(v.to_string()),
        Val::Bool(v) => bare(v.to_string()),
    }
}

pub fn check_text(line: &str, exp: &Expected<'_>) -> Result<(), String> {
    let (ts, rest) = line.split_once(' ').ok_or_else(|| line.to_owned())?;
    ensure!(ts.len() == 27 && ts.ends_with('Z'), "{}", line);
    let level = format!("{:>5} ", exp.event.level.as_str());
    let mut rest = rest
        .strip_prefix(level.as_str())
        .ok_or_else(|| format!("level: {line}"))?;
    // `name{key=value ...}:` for each span, outermost first.
    for (name, fields) in &exp.spans {
        let (tok, r) = token_forward(rest, &['{', ':'])?;
        ensure_eq!(&tok.text, name, "{}", line);
        rest = r;
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            let mut got = Vec::new();
            loop {
                let (key, r) = token_forward(rest, &['='])?;
                let r = r
                    .strip_prefix('=')
                    .ok_or_else(|| format!("no '=': {line}"))?;
                let (value, r) = token_forward(r, &[' ', '}'])?;
                got.push((key, value));
                match r.as_bytes().first() {
                    Some(b' ') => rest = &r[1..],
                    Some(b'}') => {
                        rest = &r[1..];
                        break;
                    }
                    _ => return Err(format!("span fields: {line}")),
                }
            }
            ensure_eq!(got.len(), fields.len(), "{}", line);
            for ((key, value), (name, val)) in got.iter().zip(fields) {
                ensure_eq!(&key.text, written_name(name), "{}", line);
                ensure!(
                    text_shows(value, val),
                    "span {} should be {:?}: {}",
                    name,
                    val,
                    line
                );
            }
        } else {
            ensure!(fields.is_empty(), "span fields missing: {}", line);
        }
        rest = rest
            .strip_prefix(':')
            .ok_or_else(|| format!("span end: {line}"))?;
    }
    if !exp.spans.is_empty() {
        rest = rest.strip_prefix(' ').ok_or_else(|| line.to_owned())?;
    }
    let mut section = rest
        .strip_prefix(exp.event.target)
        .and_then(|r| r.strip_prefix(": "))
        .ok_or_else(|| format!("target: {line}"))?;

    // The message (a first field named `message`), then `key=value` pairs,
    // read from the end: the message is free text.
    let fields = &exp.event.fields;
    let (message, pairs) = match fields.first() {
        Some((n, v)) if n == "message" => (Some(v), &fields[1..]),
        _ => (None, &fields[..]),
    };
    for (i, (name, val)) in pairs.iter().enumerate().rev() {
        let (before, value) = token_backward(section, &['='])?;
        ensure!(
            text_shows(&value, val),
            "{} should be {:?}: {}",
            name,
            val,
            line
        );
        let before = before
            .strip_suffix('=')
            .ok_or_else(|| format!("no '=': {line}"))?;
        let (before, key) = token_backward(before, &[' '])?;
        ensure_eq!(&key.text, written_name(name), "{}", line);
        section = match before.strip_suffix(' ') {
            Some(b) => b,
            None => {
                ensure!(
                    i == 0 && message.is_none() && before.is_empty(),
                    "no separator: {}",
                    line
                );
                before
            }
        };
    }
    match message {
        Some(m) => ensure_eq!(unescape(section)?, plain(m), "{}", line),
        None => ensure_eq!(section, "", "{}", line),
    }
    Ok(())
}
