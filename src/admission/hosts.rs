//! Host names as Ingresses use them: normalisation, syntax, wildcard coverage.

/// Why a host or Secret name is unusable, phrased to follow the field name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameProblem {
    /// Contains non-ASCII letters; carries the IDNA (punycode) form if there is one.
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
        return Err(NameProblem::NotAscii(
            idna::domain_to_ascii(host).ok().filter(|a| a != host),
        ));
    }
    let name = normalize(host);
    let body = name.strip_prefix("*.").unwrap_or(&name);
    if is_dns1123_subdomain(body) {
        Ok(())
    } else {
        Err(NameProblem::Syntax)
    }
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
