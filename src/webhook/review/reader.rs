//! A hand-written reader for the AdmissionReviews the API server sends.
//!
//! Why: under load, decoding a review with serde's derived visitors cost
//! the webhook far more than merely scanning the same body, enough on its
//! own to keep the throughput target out of reach (the measurements are in
//! docs/benchmarks.md). This reader walks the body once with a little code
//! and borrows every string it keeps.
//!
//! Most of a review is short strings, so it first marks every quote,
//! backslash and control byte of the body 16 bytes at a time, and each
//! string's end is then a bit scan rather than a fresh search; values
//! nothing reads are skipped by one loop, not by recursion.
//!
//! It is deliberately narrow. It gives up ([`GiveUp`]) on anything a decoder
//! could read in more than one way or that needs a careful error message:
//! an escape inside a string it keeps or a key, a duplicate field, a value
//! of an unexpected type, deep nesting, invalid JSON. The caller then runs
//! the serde decoders, so every body is still answered exactly as before;
//! `tests::agrees_with_serde_on_generated_reviews` holds the two to the
//! same answers.

use std::borrow::Cow;
use std::cell::Cell;

use super::{API_VERSION, GroupVersionKind, KIND, Parsed};
use crate::admission::IngressObject;
use crate::admission::object::{Metadata, Pairs, Rule, Spec, Str, Tls, is_read_annotation};

/// Gives up: the serde decoders take over.
#[derive(Debug)]
pub(super) struct GiveUp;

type R<T> = Result<T, GiveUp>;

/// Deeper than this, give up; serde_json's own limit is 128.
const MAX_DEPTH: u32 = 100;

#[derive(Clone, Copy)]
struct Reader<'a, 's> {
    text: &'a str,
    at: usize,
    depth: u32,
    /// Bit `i % 64` of word `i / 64` is set when byte `i` is a quote, a
    /// backslash or a control character: where a string may end. Found for
    /// the whole text at once, 16 bytes an instruction, so that finding the
    /// end of each of a review's hundreds of short strings is a bit scan.
    special: &'s [u64],
}

impl<'a> Reader<'a, '_> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte that is not JSON whitespace, not consumed.
    #[inline(always)]
    fn peek(&mut self) -> R<u8> {
        // Bodies from the API server are compact: test for that first.
        match self.bytes().get(self.at) {
            Some(&c) if c > b' ' => Ok(c),
            _ => self.peek_past_whitespace(),
        }
    }

    #[cold]
    fn peek_past_whitespace(&mut self) -> R<u8> {
        let b = self.bytes();
        while let Some(&c) = b.get(self.at) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                return Ok(c);
            }
            self.at += 1;
        }
        Err(GiveUp)
    }

    #[inline(always)]
    fn eat(&mut self, c: u8) -> R<()> {
        if self.peek()? == c {
            self.at += 1;
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// Consumes `null` if it comes next.
    #[inline(always)]
    fn null(&mut self) -> R<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn literal(&mut self, word: &[u8]) -> R<()> {
        if self.bytes()[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// The position of the first `"`, `\\` or control character at or after
    /// `at`.
    #[inline(always)]
    fn special_byte(&self, at: usize) -> R<usize> {
        let mut word = at / 64;
        let mut bits = *self.special.get(word).ok_or(GiveUp)? & (!0 << (at % 64));
        while bits == 0 {
            word += 1;
            bits = *self.special.get(word).ok_or(GiveUp)?;
        }
        Ok(word * 64 + bits.trailing_zeros() as usize)
    }

    /// A string without escapes, borrowed.
    #[inline(always)]
    fn string(&mut self) -> R<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        self.at = self.special_byte(self.at)?;
        // Escapes and control characters in kept strings and keys are left
        // to serde.
        if self.bytes()[self.at] != b'"' {
            return Err(GiveUp);
        }
        let s = &self.text[start..self.at];
        self.at += 1;
        Ok(s)
    }

    #[inline(always)]
    fn str(&mut self) -> R<Str<'a>> {
        Ok(Str::from(self.string()?))
    }

    /// A string that may be `null`.
    #[inline(always)]
    fn opt_str(&mut self) -> R<Option<Str<'a>>> {
        if self.null()? {
            Ok(None)
        } else {
            self.str().map(Some)
        }
    }

    /// Skips a string, checking it as serde_json does when it ignores one.
    #[inline(always)]
    fn skip_string(&mut self) -> R<()> {
        self.eat(b'"')?;
        let b = self.bytes();
        loop {
            self.at = self.special_byte(self.at)?;
            match b[self.at] {
                b'"' => {
                    self.at += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.at += 1;
                    match *b.get(self.at).ok_or(GiveUp)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                        b'u' => {
                            let hex = b.get(self.at + 1..self.at + 5).ok_or(GiveUp)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(GiveUp);
                            }
                            self.at += 5;
                        }
                        _ => return Err(GiveUp),
                    }
                }
                // A control character.
                _ => return Err(GiveUp),
            }
        }
    }

    /// Skips a number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn skip_number(&mut self) -> R<()> {
        let b = self.bytes();
        let digits = |at: &mut usize| {
            let start = *at;
            while b.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at - start
        };
        let mut at = self.at;
        if b.get(at) == Some(&b'-') {
            at += 1;
        }
        match b.get(at) {
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => {
                digits(&mut at);
            }
            _ => return Err(GiveUp),
        }
        if b.get(at) == Some(&b'.') {
            at += 1;
            if digits(&mut at) == 0 {
                return Err(GiveUp);
            }
        }
        if matches!(b.get(at), Some(b'e' | b'E')) {
            at += 1;
            if matches!(b.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            if digits(&mut at) == 0 {
                return Err(GiveUp);
            }
        }
        self.at = at;
        Ok(())
    }

    /// Skips any value, checking it as serde_json does when it ignores one.
    /// One loop over an explicit stack rather than recursion: most of a
    /// review's bytes are in values nothing reads (`managedFields`,
    /// `userInfo`, `status`), so this loop is most of the reader's time.
    fn skip(&mut self) -> R<()> {
        // On a local copy the position can live in a register.
        let mut r = Reader { ..*self };
        let skipped = r.skip_in_place();
        self.at = r.at;
        skipped
    }

    #[inline(always)]
    fn skip_in_place(&mut self) -> R<()> {
        // One bit a level, innermost lowest: set for an object, clear for an
        // array. MAX_DEPTH < 128 levels fit.
        let mut open: u128 = 0;
        let mut depth = 0;
        let room = MAX_DEPTH.saturating_sub(self.depth);
        'value: loop {
            match self.peek()? {
                b'"' => self.skip_string()?,
                c @ (b'{' | b'[') => {
                    self.at += 1;
                    let object = c == b'{';
                    if self.peek()? == if object { b'}' } else { b']' } {
                        self.at += 1;
                    } else {
                        depth += 1;
                        if depth > room {
                            return Err(GiveUp);
                        }
                        open = (open << 1) | u128::from(object);
                        if object {
                            self.skip_key()?;
                        }
                        continue 'value;
                    }
                }
                b'n' => self.literal(b"null")?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                _ => self.skip_number()?,
            }
            // A value ended: close what it ended, up to the next one.
            while depth > 0 {
                let object = open & 1 == 1;
                match self.peek()? {
                    b',' => {
                        self.at += 1;
                        if object {
                            self.skip_key()?;
                        }
                        continue 'value;
                    }
                    b'}' if object => {}
                    b']' if !object => {}
                    _ => return Err(GiveUp),
                }
                self.at += 1;
                depth -= 1;
                open >>= 1;
            }
            return Ok(());
        }
    }

    /// A key of a skipped object, and its colon.
    #[inline(always)]
    fn skip_key(&mut self) -> R<()> {
        self.skip_string()?;
        self.eat(b':')
    }

    /// Walks an object; `field` must consume each value.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> R<()>) -> R<()> {
        self.sequence(b'{', b'}', |r| {
            let key = r.string()?;
            r.eat(b':')?;
            field(r, key)
        })
    }

    /// Walks an array; `item` must consume each element.
    fn array(&mut self, item: impl FnMut(&mut Self) -> R<()>) -> R<()> {
        self.sequence(b'[', b']', item)
    }

    /// `open`, then `each` separated by commas, then `close`.
    fn sequence(&mut self, open: u8, close: u8, mut each: impl FnMut(&mut Self) -> R<()>) -> R<()> {
        self.eat(open)?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        if self.peek()? == close {
            self.at += 1;
        } else {
            loop {
                each(self)?;
                match self.peek()? {
                    b',' => self.at += 1,
                    c if c == close => {
                        self.at += 1;
                        break;
                    }
                    _ => return Err(GiveUp),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// `null` (None) or an array of `item`s.
    fn opt_array<T>(&mut self, mut item: impl FnMut(&mut Self) -> R<T>) -> R<Option<Vec<T>>> {
        if self.null()? {
            return Ok(None);
        }
        let mut out = Vec::new();
        self.array(|r| {
            out.push(item(r)?);
            Ok(())
        })?;
        Ok(Some(out))
    }

    /// `null` (None) or a map of strings, keeping the keys `keep` accepts;
    /// other values are skipped whatever their type, as serde's decoder
    /// skips them.
    fn opt_pairs(&mut self, keep: fn(&str) -> bool) -> R<Option<Pairs<'a>>> {
        if self.null()? {
            return Ok(None);
        }
        let mut out = Vec::new();
        self.object(|r, key| {
            if keep(key) {
                out.push((Str::from(key), r.str()?));
                Ok(())
            } else {
                r.skip()
            }
        })?;
        Ok(Some(Pairs(out)))
    }

    /// For `present` fields: whether the value is anything but `null`.
    fn present(&mut self) -> R<bool> {
        if self.null()? {
            Ok(false)
        } else {
            self.skip().map(|()| true)
        }
    }
}

/// [`Reader::special`] for `text`.
#[cfg(test)]
fn special_bytes(text: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    special_bytes_into(text, &mut out);
    out
}

/// [`special_bytes`] into a reused buffer.
fn special_bytes_into(text: &[u8], out: &mut Vec<u64>) {
    let (blocks, rest) = text.as_chunks::<64>();
    out.clear();
    out.reserve(blocks.len() + 1);
    out.extend(blocks.iter().map(block_bits));
    if !rest.is_empty() {
        // Spaces are not special: the padding never ends a string.
        let mut last = [b' '; 64];
        last[..rest.len()].copy_from_slice(rest);
        out.push(block_bits(&last));
    }
}

thread_local! {
    /// [`Reader::special`]'s buffer, kept between reviews on each thread.
    static SPECIAL: Cell<Vec<u64>> = const { Cell::new(Vec::new()) };
}

/// Buffers above this many words (bodies over 64 KiB) are not kept.
const KEEP_SPECIAL_WORDS: usize = 1024;

fn block_bits(block: &[u8; 64]) -> u64 {
    let (parts, _) = block.as_chunks::<16>();
    parts.iter().enumerate().fold(0, |bits, (i, part)| {
        bits | u64::from(special_bits(part)) << (16 * i)
    })
}

/// Bit `i` is set when `chunk[i]` is `"`, `\\` or below 0x20.
#[inline(always)]
fn special_bits(chunk: &[u8; 16]) -> u16 {
    #[cfg(target_arch = "x86_64")]
    {
        special_bits_sse2(chunk)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        special_bits_bytewise(chunk)
    }
}

/// [`special_bits`] sixteen bytes at a time.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[inline(always)]
fn special_bits_sse2(chunk: &[u8; 16]) -> u16 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of every x86_64 CPU, so these intrinsics are always
    // available, and the unaligned load reads exactly the 16 bytes `chunk`
    // borrows.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Unsigned c <= 0x1f exactly when min(c, 0x1f) == c.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u16
    }
}

/// [`special_bits`] one byte at a time: the portable form. On x86_64 only
/// the tests call it, against the SSE2 form.
#[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
fn special_bits_bytewise(chunk: &[u8; 16]) -> u16 {
    chunk.iter().enumerate().fold(0, |bits, (i, &c)| {
        bits | u16::from(c == b'"' || c == b'\\' || c < 0x20) << i
    })
}

/// Sets a field once; a second occurrence gives up, as serde's derived
/// decoders refuse duplicate fields.
fn once<T>(slot: &mut Option<T>, value: T) -> R<()> {
    if slot.is_some() {
        return Err(GiveUp);
    }
    *slot = Some(value);
    Ok(())
}

fn ingress<'a>(r: &mut Reader<'a, '_>) -> R<IngressObject<'a>> {
    let (mut api_version, mut kind, mut metadata, mut spec) = (None, None, None, None);
    r.object(|r, key| match key {
        "apiVersion" => once(&mut api_version, r.opt_str()?),
        "kind" => once(&mut kind, r.opt_str()?),
        "metadata" => once(&mut metadata, self::metadata(r)?),
        "spec" => once(&mut spec, opt_spec(r)?),
        _ => r.skip(),
    })?;
    Ok(IngressObject {
        api_version: api_version.flatten(),
        kind: kind.flatten(),
        metadata: metadata.unwrap_or_default(),
        spec: spec.flatten(),
    })
}

fn metadata<'a>(r: &mut Reader<'a, '_>) -> R<Metadata<'a>> {
    let (mut name, mut namespace, mut labels, mut annotations, mut deletion) =
        (None, None, None, None, None);
    r.object(|r, key| match key {
        "name" => once(&mut name, r.opt_str()?),
        "namespace" => once(&mut namespace, r.opt_str()?),
        "labels" => once(&mut labels, r.opt_pairs(|_| true)?),
        "annotations" => once(&mut annotations, r.opt_pairs(is_read_annotation)?),
        "deletionTimestamp" => once(&mut deletion, r.present()?),
        _ => r.skip(),
    })?;
    Ok(Metadata {
        name: name.flatten(),
        namespace: namespace.flatten(),
        labels: labels.flatten(),
        annotations: annotations.flatten(),
        deletion_timestamp: deletion.unwrap_or(false),
    })
}

fn opt_spec<'a>(r: &mut Reader<'a, '_>) -> R<Option<Spec<'a>>> {
    if r.null()? {
        return Ok(None);
    }
    let (mut class, mut default_backend, mut tls, mut rules) = (None, None, None, None);
    r.object(|r, key| match key {
        "ingressClassName" => once(&mut class, r.opt_str()?),
        "defaultBackend" => once(&mut default_backend, r.present()?),
        "tls" => once(&mut tls, r.opt_array(tls_entry)?),
        "rules" => once(&mut rules, r.opt_array(rule)?),
        _ => r.skip(),
    })?;
    Ok(Some(Spec {
        ingress_class_name: class.flatten(),
        default_backend: default_backend.unwrap_or(false),
        tls: tls.flatten(),
        rules: rules.flatten(),
    }))
}

fn tls_entry<'a>(r: &mut Reader<'a, '_>) -> R<Tls<'a>> {
    let (mut hosts, mut secret_name) = (None, None);
    r.object(|r, key| match key {
        "hosts" => once(&mut hosts, r.opt_array(Reader::str)?),
        "secretName" => once(&mut secret_name, r.opt_str()?),
        _ => r.skip(),
    })?;
    Ok(Tls {
        hosts: hosts.flatten(),
        secret_name: secret_name.flatten(),
    })
}

fn rule<'a>(r: &mut Reader<'a, '_>) -> R<Rule<'a>> {
    let mut host = None;
    r.object(|r, key| match key {
        "host" => once(&mut host, r.opt_str()?),
        _ => r.skip(),
    })?;
    Ok(Rule {
        host: host.flatten(),
    })
}

/// `null` (None) or an Ingress.
fn opt_ingress<'a>(r: &mut Reader<'a, '_>) -> R<Option<IngressObject<'a>>> {
    if r.null()? {
        Ok(None)
    } else {
        ingress(r).map(Some)
    }
}

fn gvk<'a>(r: &mut Reader<'a, '_>) -> R<GroupVersionKind<'a>> {
    let (mut group, mut version, mut kind) = (None, None, None);
    r.object(|r, key| match key {
        "group" => once(&mut group, r.string()?),
        "version" => once(&mut version, r.string()?),
        "kind" => once(&mut kind, r.string()?),
        _ => r.skip(),
    })?;
    Ok(GroupVersionKind {
        group: Cow::Borrowed(group.unwrap_or_default()),
        version: Cow::Borrowed(version.unwrap_or_default()),
        kind: Cow::Borrowed(kind.unwrap_or_default()),
    })
}

fn request<'a>(r: &mut Reader<'a, '_>) -> R<Parsed<'a>> {
    let (mut uid, mut kind, mut name, mut namespace, mut operation) =
        (None, None, None, None, None);
    let (mut object, mut old, mut dry_run) = (None, None, None);
    r.object(|r, key| match key {
        "uid" => once(&mut uid, r.string()?),
        "kind" => once(&mut kind, gvk(r)?),
        "name" => once(&mut name, r.string()?),
        "namespace" => once(&mut namespace, r.opt_str()?),
        "operation" => once(&mut operation, r.string()?),
        "object" => once(&mut object, opt_ingress(r)?),
        "oldObject" => once(&mut old, opt_ingress(r)?),
        "dryRun" => once(
            &mut dry_run,
            match r.peek()? {
                b't' => r.literal(b"true").map(|()| true)?,
                _ => r.literal(b"false").map(|()| false)?,
            },
        ),
        _ => r.skip(),
    })?;
    Ok(Parsed {
        uid: Cow::Borrowed(uid.ok_or(GiveUp)?),
        kind: kind.ok_or(GiveUp)?,
        name: Cow::Borrowed(name.unwrap_or_default()),
        namespace: namespace.flatten().map(|s| s.0),
        operation: Cow::Borrowed(operation.ok_or(GiveUp)?),
        dry_run: dry_run.unwrap_or(false),
        object: Ok(object.flatten()),
        old: old.flatten(),
    })
}

/// Reads a well-formed `admission.k8s.io/v1` AdmissionReview of Ingresses,
/// or gives up.
pub(super) fn review(text: &str) -> R<Parsed<'_>> {
    let mut special = SPECIAL.take();
    special_bytes_into(text.as_bytes(), &mut special);
    let parsed = read(text, &special);
    if special.capacity() <= KEEP_SPECIAL_WORDS {
        SPECIAL.set(special);
    }
    parsed
}

fn read<'a>(text: &'a str, special: &[u64]) -> R<Parsed<'a>> {
    let mut r = Reader {
        text,
        at: 0,
        depth: 0,
        special,
    };
    let (mut api_version, mut kind, mut request) = (None, None, None);
    r.object(|r, key| match key {
        "apiVersion" => once(&mut api_version, r.string()?),
        "kind" => once(&mut kind, r.string()?),
        "request" => once(
            &mut request,
            if r.null()? {
                None
            } else {
                Some(self::request(r)?)
            },
        ),
        _ => r.skip(),
    })?;
    // Nothing but whitespace may follow.
    if r.peek().is_ok() {
        return Err(GiveUp);
    }
    let parsed = request.flatten().ok_or(GiveUp)?;
    let ingress_v1 =
        |o: &Option<IngressObject>| o.as_ref().is_none_or(IngressObject::is_ingress_v1);
    if api_version != Some(API_VERSION)
        || kind != Some(KIND)
        || !matches!(&parsed.object, Ok(o) if ingress_v1(o))
        || !ingress_v1(&parsed.old)
    {
        return Err(GiveUp);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::super::parse_with_serde;
    use super::*;
    use serde_json::json;

    /// What a decode yields, in a comparable form.
    fn view(p: &Parsed) -> String {
        format!(
            "{:?}",
            (
                [&p.uid, &p.kind.group, &p.kind.version, &p.kind.kind],
                (&p.name, &p.namespace, &p.operation, p.dry_run),
                (&p.object, &p.old),
            )
        )
    }

    fn kubectl_review() -> serde_json::Value {
        let gvk = json!({"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"});
        json!({
            "kind": "AdmissionReview",
            "apiVersion": "admission.k8s.io/v1",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": gvk, "requestKind": gvk,
                "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
                "name": "shop", "namespace": "payments", "operation": "UPDATE",
                "userInfo": {"username": "alice", "groups": ["system:authenticated"], "extra": {}},
                "object": {
                    "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "metadata": {
                        "name": "shop", "namespace": "payments", "generation": 2,
                        "labels": {"app": "shop"},
                        "annotations": {
                            "cert-manager.io/cluster-issuer": "letsencrypt",
                            "kubectl.kubernetes.io/last-applied-configuration": "{\"a\":\"<b>&\"}\n"
                        },
                        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:tls": {}}}, "time": "2025-06-02T09:14:07Z"}]
                    },
                    "spec": {
                        "ingressClassName": "nginx",
                        "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
                        "tls": [{"hosts": ["shop.example.com", "*.shop.example.com"], "secretName": "shop-tls"}],
                        "rules": [{"host": "shop.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix"}]}}, {}]
                    },
                    "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1", "ports": [{"port": 443, "error": null}]}]}}
                },
                "oldObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "shop", "deletionTimestamp": "2025-06-02T09:14:07Z"}, "spec": null},
                "dryRun": true,
                "options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl", "x": [1.5e3, -0, 0.25, true, false, null]}
            }
        })
    }

    #[test]
    fn reads_what_the_api_server_sends_as_serde_does() {
        for pretty in [false, true] {
            let v = kubectl_review();
            let text = if pretty {
                serde_json::to_string_pretty(&v).unwrap()
            } else {
                v.to_string()
            };
            let fast = review(&text).expect("a kubectl review is read by the reader");
            let slow = parse_with_serde(&text).expect("serde decodes it");
            assert_eq!(view(&fast), view(&slow));
            let object = fast.object.as_ref().unwrap().as_ref().unwrap();
            assert_eq!(object.metadata.annotations.as_ref().unwrap().0.len(), 1);
            assert!(object.spec.as_ref().unwrap().default_backend);
            assert!(fast.old.as_ref().unwrap().metadata.deletion_timestamp);
            assert!(fast.dry_run);
        }
    }

    #[test]
    fn gives_up_where_serde_must_decide() {
        let body = kubectl_review().to_string();
        let cases = [
            // An escape in a kept string: serde unescapes it.
            body.replace("\"shop-tls\"", "\"shop\\u002dtls\""),
            // Deeper than the reader goes (serde skips any depth).
            body.replace("\"x\":[", &format!("\"x\":{}[", "[".repeat(200)))
                .replace("null]}", &format!("null]{}}}", "]".repeat(200))),
            // A duplicate field: serde refuses the body.
            body.replace("\"dryRun\":true", "\"dryRun\":true,\"dryRun\":false"),
            // A wrong type: serde explains it.
            body.replace("\"dryRun\":true", "\"dryRun\":\"yes\""),
            // Not JSON after the review.
            format!("{body} x"),
            // A number JSON does not allow.
            body.replace("\"generation\":2", "\"generation\":02"),
            // Broken syntax inside values nothing reads: serde checks them.
            body.replace("null]}", "null}}"),
            body.replace("\"extra\":{}", "\"extra\":{]"),
            body.replace("\"extra\":{}", "\"extra\":{\"a\"}"),
            body.replace("\"extra\":{}", "\"extra\":{\"a\":1,}"),
            body.replace("\"extra\":{}", "\"extra\":{1:2}"),
            body.replace("\"extra\":{}", "\"extra\":[1 2]"),
            body.replace("\"extra\":{}", "\"extra\":[,]"),
            body.replace("\"extra\":{}", "\"extra\":\"a\\qb\""),
            // Another kind of object.
            body.replacen(
                "\"kind\":\"Ingress\",\"metadata\"",
                "\"kind\":\"Service\",\"metadata\"",
                1,
            ),
        ];
        for (i, case) in cases.iter().enumerate() {
            assert_ne!(case, &body, "case {i} changed nothing");
            assert!(review(case).is_err(), "case {i}: {case}");
        }
        // serde reads the first two; the others it refuses or sends on to
        // the slow path's explanation.
        assert!(parse_with_serde(&cases[0]).is_some());
        assert!(parse_with_serde(&cases[1]).is_some());
        for (i, c) in cases.iter().enumerate().skip(2) {
            assert!(parse_with_serde(c).is_none(), "case {i}: serde read {c}");
        }
    }

    /// A JSON tree serialized with choices serde_json never makes:
    /// duplicate keys, escapes, odd whitespace, and (rarely) errors.
    enum Node {
        Null,
        Bool(bool),
        Num(&'static str),
        Str(String),
        Arr(Vec<Node>),
        Obj(Vec<(String, Node)>),
    }

    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn one_in(&mut self, n: u64) -> bool {
            self.next().is_multiple_of(n)
        }
        fn pct(&mut self, p: u64) -> bool {
            self.next() % 100 < p
        }
        fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
            xs[(self.next() % xs.len() as u64) as usize]
        }

        fn text(&mut self) -> String {
            let alphabet = [
                "a", "z", "0", "9", ".", "-", "/", "*", "\"", "\\", "\n", "é", "\u{2028}", "<",
            ];
            (0..self.next() % 12)
                .map(|_| self.pick(&alphabet))
                .collect()
        }

        fn junk(&mut self, depth: u32) -> Node {
            match self.next() % if depth > 3 { 4 } else { 6 } {
                0 => Node::Null,
                1 => Node::Bool(self.pct(50)),
                2 => Node::Num(self.pick(&["0", "-1", "12.5", "1e9", "-0.0E-2", "7"])),
                3 => Node::Str(self.text()),
                4 => Node::Arr((0..self.next() % 4).map(|_| self.junk(depth + 1)).collect()),
                _ => Node::Obj(
                    (0..self.next() % 4)
                        .map(|_| (self.text(), self.junk(depth + 1)))
                        .collect(),
                ),
            }
        }

        /// A field that is usually `good`, sometimes missing, null, of
        /// another type or repeated.
        fn field(
            &mut self,
            out: &mut Vec<(String, Node)>,
            key: &str,
            good: impl Fn(&mut Self) -> Node,
        ) {
            match self.next() % 400 {
                0..=3 => {}
                4..=5 => out.push((key.into(), Node::Null)),
                6 => out.push((key.into(), self.junk(3))),
                7 => {
                    out.push((key.into(), good(self)));
                    out.push((key.into(), good(self)));
                }
                _ => out.push((key.into(), good(self))),
            }
        }

        fn name(&mut self) -> Node {
            if self.pct(99) {
                Node::Str(
                    self.pick(&[
                        "shop",
                        "a.example.com",
                        "*.example.com",
                        "shop-tls",
                        "payments",
                        "CREATE",
                    ])
                    .to_string(),
                )
            } else {
                Node::Str(self.text())
            }
        }

        fn strings(&mut self) -> Node {
            Node::Arr((0..self.next() % 3).map(|_| self.name()).collect())
        }

        fn pairs(&mut self) -> Node {
            let keys = [
                "app",
                "cert-manager.io/cluster-issuer",
                "tlsward.io/client-auth-policy",
                "kubernetes.io/tls-acme",
                "other/x",
            ];
            Node::Obj(
                (0..self.next() % 4)
                    .map(|_| {
                        let k = self.pick(&keys).to_string();
                        let v = if self.pct(85) {
                            self.name()
                        } else {
                            self.junk(3)
                        };
                        (k, v)
                    })
                    .collect(),
            )
        }

        fn shuffled(&mut self, mut fields: Vec<(String, Node)>) -> Node {
            if self.pct(30) {
                let key = if self.pct(95) {
                    self.pick(&["generation", "f:spec", "extra", "uid"])
                        .to_string()
                } else {
                    self.text()
                };
                fields.push((key, self.junk(1)));
            }
            for i in (1..fields.len()).rev() {
                let j = (self.next() % (i as u64 + 1)) as usize;
                fields.swap(i, j);
            }
            Node::Obj(fields)
        }

        fn ingress(&mut self) -> Node {
            let mut f = Vec::new();
            self.field(&mut f, "apiVersion", |g| {
                Node::Str(
                    if g.pct(97) {
                        "networking.k8s.io/v1"
                    } else {
                        "v1"
                    }
                    .into(),
                )
            });
            self.field(&mut f, "kind", |g| {
                Node::Str(if g.pct(97) { "Ingress" } else { "Service" }.into())
            });
            self.field(&mut f, "metadata", |g| {
                let mut m = Vec::new();
                g.field(&mut m, "name", Gen::name);
                g.field(&mut m, "namespace", Gen::name);
                g.field(&mut m, "labels", Gen::pairs);
                g.field(&mut m, "annotations", Gen::pairs);
                g.field(&mut m, "deletionTimestamp", |g| g.junk(2));
                g.field(&mut m, "managedFields", |g| g.junk(1));
                g.shuffled(m)
            });
            self.field(&mut f, "spec", |g| {
                let mut s = Vec::new();
                g.field(&mut s, "ingressClassName", Gen::name);
                g.field(&mut s, "defaultBackend", |g| g.junk(2));
                g.field(&mut s, "tls", |g| {
                    Node::Arr(
                        (0..g.next() % 3)
                            .map(|_| {
                                let mut t = Vec::new();
                                g.field(&mut t, "hosts", Gen::strings);
                                g.field(&mut t, "secretName", Gen::name);
                                g.shuffled(t)
                            })
                            .collect(),
                    )
                });
                g.field(&mut s, "rules", |g| {
                    Node::Arr(
                        (0..g.next() % 3)
                            .map(|_| {
                                let mut r = Vec::new();
                                g.field(&mut r, "host", Gen::name);
                                g.field(&mut r, "http", |g| g.junk(2));
                                g.shuffled(r)
                            })
                            .collect(),
                    )
                });
                g.shuffled(s)
            });
            self.field(&mut f, "status", |g| g.junk(1));
            self.shuffled(f)
        }

        fn review(&mut self) -> Node {
            let mut top = Vec::new();
            self.field(&mut top, "apiVersion", |g| {
                Node::Str(
                    if g.pct(99) {
                        API_VERSION
                    } else {
                        "admission.k8s.io/v1beta1"
                    }
                    .into(),
                )
            });
            self.field(&mut top, "kind", |g| {
                Node::Str(if g.pct(99) { KIND } else { "Review" }.into())
            });
            self.field(&mut top, "request", |g| {
                let mut r = Vec::new();
                g.field(&mut r, "uid", Gen::name);
                g.field(&mut r, "kind", |g| {
                    let mut k = Vec::new();
                    g.field(&mut k, "group", |_| Node::Str("networking.k8s.io".into()));
                    g.field(&mut k, "version", |_| Node::Str("v1".into()));
                    g.field(&mut k, "kind", |_| Node::Str("Ingress".into()));
                    g.shuffled(k)
                });
                g.field(&mut r, "name", Gen::name);
                g.field(&mut r, "namespace", Gen::name);
                g.field(&mut r, "operation", Gen::name);
                g.field(&mut r, "object", Gen::ingress);
                g.field(&mut r, "oldObject", Gen::ingress);
                g.field(&mut r, "dryRun", |g| Node::Bool(g.pct(50)));
                g.field(&mut r, "userInfo", |g| g.junk(1));
                g.shuffled(r)
            });
            self.shuffled(top)
        }

        fn write(&mut self, n: &Node, out: &mut String) {
            if self.pct(3) {
                out.push_str(self.pick(&[" ", "\n\t", "\r\n  "]));
            }
            // Rarely, something that is not JSON.
            if self.one_in(1500) {
                out.push_str(self.pick(&["\u{1}", "\\x", "01", "1.", "-", ",", "nul", "\u{feff}"]));
            }
            match n {
                Node::Null => out.push_str("null"),
                Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Node::Num(s) => out.push_str(s),
                Node::Str(s) => self.write_str(s, out),
                Node::Arr(items) => {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        self.write(item, out);
                    }
                    out.push(']');
                }
                Node::Obj(fields) => {
                    out.push('{');
                    for (i, (k, v)) in fields.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        self.write_str(k, out);
                        out.push(':');
                        self.write(v, out);
                    }
                    out.push('}');
                }
            }
        }

        fn write_str(&mut self, s: &str, out: &mut String) {
            out.push('"');
            let escape_first = self.one_in(500);
            for (i, c) in s.chars().enumerate() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str(if self.pct(50) { "\\n" } else { "\\u000a" }),
                    '/' if self.one_in(200) => out.push_str("\\/"),
                    c if i == 0 && escape_first => {
                        let mut units = [0u16; 2];
                        for u in c.encode_utf16(&mut units) {
                            out.push_str(&format!("\\u{u:04X}"));
                        }
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
    }

    #[test]
    fn finds_the_first_quote_backslash_or_control_byte() {
        let naive = |b: &[u8], at: usize| {
            (at..b.len()).find(|&i| b[i] == b'"' || b[i] == b'\\' || b[i] < 0x20)
        };
        let mut g = Gen(7);
        let bytes = [
            b'a', b'"', b'\\', 0x1f, 0x20, 0x21, 0x7f, 0x80, 0xc3, 0xff, 0x5c, 0x22, 0,
        ];
        for _ in 0..20_000 {
            // Lengths across several 64-byte blocks and a partial last one.
            let len = (g.next() % 200) as usize;
            let b: Vec<u8> = (0..len)
                .map(|_| if g.pct(95) { b'x' } else { g.pick(&bytes) })
                .collect();
            let at = (g.next() % (len as u64 + 1)) as usize;
            let special = special_bytes(&b);
            let r = Reader {
                text: "",
                at: 0,
                depth: 0,
                special: &special,
            };
            assert_eq!(r.special_byte(at).ok(), naive(&b, at), "{b:?} from {at}");
        }
    }

    /// What the scanners must find, written apart from both of them.
    fn is_special(c: u8) -> bool {
        matches!(c, b'"' | b'\\' | 0x00..=0x1f)
    }

    fn expected_bits(chunk: &[u8; 16]) -> u16 {
        let mut bits = 0;
        for (i, &c) in chunk.iter().enumerate() {
            if is_special(c) {
                bits |= 1 << i;
            }
        }
        bits
    }

    type ChunkScanner = fn(&[u8; 16]) -> u16;

    /// Each 16-byte scanner this target compiles, by name.
    const CHUNK_SCANNERS: &[(&str, ChunkScanner)] = &[
        ("bytewise", special_bits_bytewise),
        #[cfg(target_arch = "x86_64")]
        ("sse2", special_bits_sse2),
    ];

    #[test]
    fn chunk_scanners_flag_exactly_quotes_backslashes_and_control_bytes() {
        // Every byte value in every lane, among neighbours of each kind
        // (0x80 and 0xff would pass for control bytes under a signed compare).
        for neighbour in [b'a', b' ', b'"', 0x00, 0x80, 0xff] {
            for lane in 0..16 {
                for byte in 0..=u8::MAX {
                    let mut chunk = [neighbour; 16];
                    chunk[lane] = byte;
                    for (name, scan) in CHUNK_SCANNERS {
                        assert_eq!(
                            scan(&chunk),
                            expected_bits(&chunk),
                            "{name}: byte {byte:#04x} in lane {lane} among {neighbour:#04x}"
                        );
                    }
                }
            }
        }
    }

    /// A seed for each run, printed on failure; `READER_SEED=<n>` replays it.
    fn run_seed() -> u64 {
        std::env::var("READER_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                now.map_or(1, |d| d.as_nanos() as u64)
            })
    }

    #[test]
    fn scanners_agree_with_the_definition_on_generated_text() {
        let seed = run_seed();
        // xorshift never leaves 0.
        let mut g = Gen(seed | 1);
        let pieces = [
            "a", "Z", "0", " ", "~", "\"", "\\", "\n", "\t", "\r", "\u{0}", "\u{1f}", "\u{7f}",
            "é", "中", "\u{2028}", "😀", "ÿ",
        ];
        for round in 0..24 {
            let mut text = String::new();
            while text.len() < 16 + 80 {
                // Mostly plain text, as in a review, with every kind mixed in.
                text.push_str(if g.pct(70) { "x" } else { g.pick(&pieces) });
            }
            let text = text.as_bytes();
            let replay = format!("seed {seed} round {round} (READER_SEED={seed} replays it)");
            // Every alignment, every length up to 80: whole, partial and
            // empty 64-byte blocks, and chunks starting at every address.
            for start in 0..16 {
                for len in 0..=80 {
                    let b = &text[start..start + len];
                    for (i, chunk) in b.windows(16).enumerate() {
                        let chunk: &[u8; 16] = chunk.try_into().expect("16 bytes");
                        for (name, scan) in CHUNK_SCANNERS {
                            assert_eq!(
                                scan(chunk),
                                expected_bits(chunk),
                                "{replay}: {name} on {chunk:?}, byte {} of the text",
                                start + i
                            );
                        }
                    }
                    let mut words = vec![0u64; len.div_ceil(64)];
                    for (i, &c) in b.iter().enumerate() {
                        words[i / 64] |= u64::from(is_special(c)) << (i % 64);
                    }
                    let special = special_bytes(b);
                    assert_eq!(special, words, "{replay}: special_bytes({b:?})");
                    let r = Reader {
                        text: "",
                        at: 0,
                        depth: 0,
                        special: &special,
                    };
                    for at in 0..=len {
                        let naive = (at..len).find(|&i| is_special(b[i]));
                        assert_eq!(
                            r.special_byte(at).ok(),
                            naive,
                            "{replay}: first special byte of {b:?} from {at}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn agrees_with_serde_on_generated_reviews() {
        let mut g = Gen(0x9E37_79B9_7F4A_7C15);
        let (mut read, mut refused_by_serde) = (0, 0);
        for i in 0..4000 {
            let tree = g.review();
            let mut text = String::new();
            g.write(&tree, &mut text);
            let serde = parse_with_serde(&text);
            if serde.is_none() {
                refused_by_serde += 1;
            }
            if let Ok(fast) = review(&text) {
                read += 1;
                let serde = serde.unwrap_or_else(|| {
                    panic!("review {i}: read by the reader, refused by serde: {text}")
                });
                assert_eq!(view(&fast), view(&serde), "review {i}: {text}");
            }
        }
        // Both sides of the comparison were exercised.
        assert!(read > 400, "the reader read only {read} of 4000");
        assert!(
            refused_by_serde > 400,
            "serde refused only {refused_by_serde} of 4000"
        );
    }
}
