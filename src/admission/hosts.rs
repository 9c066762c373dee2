//! Host names as Ingresses use them: normalisation, syntax, wildcard coverage.

/// Why a host or Secret name is unusable, phrased to follow the field name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameProblem {
    /// Contains non-ASCII letters; carries the punycode form of the name as
    /// typed when that is a valid DNS name.
    NotAscii(Option<String>),
    /// Not a DNS-1123 name.
    Syntax,
}

/// Lower-cases and strips one trailing dot: DNS names compare without case,
/// and `example.com.` is the same name as `example.com`.
/// Borrows when the name is already normal, as it nearly always is.
pub fn normalize(host: &str) -> std::borrow::Cow<'_, str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        host.to_ascii_lowercase().into()
    } else {
        host.into()
    }
}

/// Checks an Ingress host (rules or TLS): a DNS name, optionally starting
/// with `*.`, in ASCII.
pub fn check_host(host: &str) -> Result<(), NameProblem> {
    // Most hosts are already lowercase DNS names: one pass accepts them.
    if is_dns1123_subdomain(host.strip_prefix("*.").unwrap_or(host)) {
        return Ok(());
    }
    if !host.is_ascii() {
        return Err(NameProblem::NotAscii(punycode_host(host)));
    }
    let name = normalize(host);
    let body = name.strip_prefix("*.").unwrap_or(&name);
    if is_dns1123_subdomain(body) {
        Ok(())
    } else {
        Err(NameProblem::Syntax)
    }
}

/// The ASCII form of a host as typed: lower-cased, split into labels (at
/// `.` and the full stops IDNA treats as dots), and each non-ASCII label
/// punycode-encoded behind `xn--` (RFC 3492). Full IDNA (UTS 46) would also
/// normalise to NFC and map look-alike characters first; that needs the
/// Unicode tables, which a hint in a denial message does not justify, so
/// the hint says it encodes the name as typed. `None` when the result is not
/// a valid DNS name either.
fn punycode_host(host: &str) -> Option<String> {
    let lower = host.to_lowercase();
    let mut out = String::with_capacity(lower.len() + 8);
    for (i, label) in lower
        .split(['.', '\u{3002}', '\u{ff0e}', '\u{ff61}'])
        .enumerate()
    {
        if i > 0 {
            out.push('.');
        }
        if label.is_ascii() {
            out.push_str(label);
        } else {
            out.push_str("xn--");
            out.push_str(&punycode(label)?);
        }
    }
    let name = normalize(&out);
    is_dns1123_subdomain(name.strip_prefix("*.").unwrap_or(&name)).then_some(out)
}

/// RFC 3492's bootstring encoding of one label with punycode's parameters
/// (section 5), without the `xn--` prefix; `None` on arithmetic overflow.
fn punycode(label: &str) -> Option<String> {
    const BASE: u32 = 36;
    const T_MIN: u32 = 1;
    const T_MAX: u32 = 26;
    const SKEW: u32 = 38;
    const DAMP: u32 = 700;
    fn digit(d: u32) -> char {
        // 0..=25 are a..z, 26..=35 are 0..=9.
        char::from(if d < 26 {
            b'a' + d as u8
        } else {
            b'0' + (d - 26) as u8
        })
    }
    fn adapt(delta: u32, points: u32, first: bool) -> u32 {
        let mut delta = if first { delta / DAMP } else { delta / 2 };
        delta += delta / points;
        let mut k = 0;
        while delta > ((BASE - T_MIN) * T_MAX) / 2 {
            delta /= BASE - T_MIN;
            k += BASE;
        }
        k + (BASE - T_MIN + 1) * delta / (delta + SKEW)
    }

    let code_points = || label.chars().map(u32::from);
    // The basic (ASCII) code points first, in order, then a delimiter.
    let mut out: String = label.chars().filter(char::is_ascii).collect();
    let basic = u32::try_from(out.len()).ok()?;
    if basic > 0 {
        out.push('-');
    }
    let total = u32::try_from(code_points().count()).ok()?;
    let (mut n, mut delta, mut bias, mut handled) = (0x80, 0u32, 72, basic);
    // Each round inserts every occurrence of the next-smallest code point
    // not yet handled, as a variable-length number of base-36 digits.
    while handled < total {
        let m = code_points().filter(|&c| c >= n).min()?;
        delta = delta.checked_add((m - n).checked_mul(handled + 1)?)?;
        n = m;
        for c in code_points() {
            if c < n {
                delta = delta.checked_add(1)?;
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = k.saturating_sub(bias).clamp(T_MIN, T_MAX);
                    if q < t {
                        break;
                    }
                    out.push(digit(t + (q - t) % (BASE - t)));
                    q = (q - t) / (BASE - t);
                    k += BASE;
                }
                out.push(digit(q));
                bias = adapt(delta, handled + 1, handled == basic);
                delta = 0;
                handled += 1;
            }
        }
        delta = delta.checked_add(1)?;
        n += 1;
    }
    Some(out)
}

/// Kubernetes' DNS-1123 subdomain: what Secret names must be. Like the API
/// server's check, labels are not limited to 63 characters; the whole is.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    // One pass: a label starts after a dot (or at the start), so a dot or
    // dash may not follow a dot, and a dot may not follow a dash.
    let mut prev = b'.';
    for &c in s.as_bytes() {
        match c {
            b'a'..=b'z' | b'0'..=b'9' => {}
            b'-' if prev != b'.' => {}
            b'.' if prev != b'.' && prev != b'-' => {}
            _ => return false,
        }
        prev = c;
    }
    prev != b'-' && prev != b'.'
}

/// The wildcard that would cover `host` (`a.example.com` -> `*.example.com`).
/// A wildcard covers exactly one label, so `example.com` (one dot) yields
/// `*.com`, which no sane TLS entry lists, and a wildcard host yields none.
pub fn covering_wildcard(host: &str) -> Option<String> {
    if host.starts_with("*.") {
        return None;
    }
    let (_, rest) = host.split_once('.')?;
    Some(format!("*.{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_covers_exactly_one_label() {
        assert_eq!(
            covering_wildcard("a.example.com").as_deref(),
            Some("*.example.com")
        );
        assert_eq!(
            covering_wildcard("a.b.example.com").as_deref(),
            Some("*.b.example.com")
        );
        assert_eq!(covering_wildcard("*.example.com"), None);
        assert_eq!(covering_wildcard("localhost"), None);
    }

    #[test]
    fn one_pass_dns1123_agrees_with_the_label_by_label_rule() {
        let by_labels = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|l| {
                    !l.is_empty()
                        && l.bytes()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        };
        // Every string of up to 5 bytes over an alphabet with each class.
        let alphabet = ["a", "0", "-", ".", "A", "_"];
        let mut names = vec![String::new()];
        let mut longest = vec![String::new()];
        for _ in 0..5 {
            longest = longest
                .iter()
                .flat_map(|n| alphabet.iter().map(move |c| format!("{n}{c}")))
                .collect();
            names.extend(longest.iter().cloned());
        }
        assert!(names.len() > 9000);
        for n in &names {
            assert_eq!(is_dns1123_subdomain(n), by_labels(n), "{n:?}");
        }
    }

    #[test]
    fn punycode_matches_rfc_3492_samples() {
        // Section 7.1 of RFC 3492: (A) Arabic, (B) Chinese, (L) mixed case
        // with digits, (R) Japanese, (S) all basic code points.
        for (label, encoded) in [
            (
                "\u{644}\u{64a}\u{647}\u{645}\u{627}\u{628}\u{62a}\u{643}\u{644}\u{645}\u{648}\u{634}\u{639}\u{631}\u{628}\u{64a}\u{61f}",
                "egbpdaj6bu4bxfgehfvwxn",
            ),
            (
                "\u{4ed6}\u{4eec}\u{4e3a}\u{4ec0}\u{4e48}\u{4e0d}\u{8bf4}\u{4e2d}\u{6587}",
                "ihqwcrb4cv8a8dqg056pqjye",
            ),
            (
                "3\u{5e74}B\u{7d44}\u{91d1}\u{516b}\u{5148}\u{751f}",
                "3B-ww4c5e180e575a65lsy2b",
            ),
            (
                "\u{305d}\u{306e}\u{30b9}\u{30d4}\u{30fc}\u{30c9}\u{3067}",
                "d9juau41awczczp",
            ),
            ("-> $1.00 <-", "-> $1.00 <--"),
            ("bücher", "bcher-kva"),
            ("ü", "tda"),
            ("\u{1f600}", "e28h"),
        ] {
            assert_eq!(punycode(label).as_deref(), Some(encoded), "{label:?}");
        }
    }

    #[test]
    fn punycode_host_encodes_each_non_ascii_label_as_typed() {
        let p = |h| punycode_host(h);
        assert_eq!(
            p("bücher.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
        // Lower-cased first, as IDNA does.
        assert_eq!(
            p("BÜCHER.Example").as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(p("*.münchen.de.").as_deref(), Some("*.xn--mnchen-3ya.de."));
        // Ideographic full stops separate labels.
        assert_eq!(
            p("\u{4e2d}\u{6587}\u{3002}example").as_deref(),
            Some("xn--fiq228c.example")
        );
        // Not NFC: `u` and a combining diaeresis encode as typed, not as `ü`.
        assert_eq!(
            p("bu\u{308}cher.example").as_deref(),
            Some("xn--bucher-xyd.example")
        );
        // Encoded, but still not a DNS name: no hint.
        assert_eq!(p("bü cher.example"), None);
        assert_eq!(p("bücher..example"), None);
        assert_eq!(p("bücher_x.example"), None);
    }

    #[test]
    fn syntax() {
        assert!(check_host("a.example.com").is_ok());
        assert!(check_host("*.example.com").is_ok());
        assert!(check_host("A.Example.COM.").is_ok());
        assert!(check_host("xn--bcher-kva.example").is_ok());
        assert_eq!(check_host("a..example.com"), Err(NameProblem::Syntax));
        assert_eq!(check_host("-a.example.com"), Err(NameProblem::Syntax));
        assert_eq!(check_host("a.*.example.com"), Err(NameProblem::Syntax));
        assert_eq!(
            check_host("bücher.example"),
            Err(NameProblem::NotAscii(Some("xn--bcher-kva.example".into())))
        );
    }

    #[test]
    fn secret_names() {
        assert!(is_dns1123_subdomain("shop-tls"));
        assert!(is_dns1123_subdomain("shop.tls.v2"));
        assert!(!is_dns1123_subdomain("Shop-tls"));
        assert!(!is_dns1123_subdomain("shop_tls"));
        assert!(!is_dns1123_subdomain(""));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
    }
}
