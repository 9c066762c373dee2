//! Which request paths skip authentication. Pure.
//!
//! A path is public only by what the upstream will see: dot segments are
//! resolved, repeated slashes collapsed and escaped unreserved characters
//! decoded before matching, so `/public/../admin` and `/public/%2e%2e/admin`
//! are `/admin`. A path that an upstream could read two ways (an escaped
//! slash or a backslash) is never public.

/// One public-path rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicPath {
    /// The whole path.
    Exact(String),
    /// A prefix, on segment boundaries.
    Prefix(String),
}

/// The public paths of one policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublicPaths {
    rules: Vec<PublicPath>,
}

impl PublicPaths {
    /// The rules, normalised the way request paths are.
    pub fn new(rules: impl IntoIterator<Item = PublicPath>) -> Self {
        let rules = rules
            .into_iter()
            .filter_map(|r| match r {
                PublicPath::Exact(p) => normalize(&p).map(PublicPath::Exact),
                PublicPath::Prefix(p) => {
                    normalize(&p).map(|p| PublicPath::Prefix(p.trim_end_matches('/').to_string()))
                }
            })
            .collect();
        Self { rules }
    }

    /// Whether no path is public.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `path` (the request's path, without the query) is public.
    pub fn matches(&self, path: &str) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        let Some(path) = normalize(path) else {
            return false;
        };
        self.rules.iter().any(|r| match r {
            PublicPath::Exact(p) => *p == path,
            PublicPath::Prefix(p) => {
                p.is_empty()
                    || path
                        .strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
        })
    }
}

/// The path as an upstream resolves it, or `None` when it could be read
/// two ways (escaped `/` or `\`, a backslash, a NUL, bad escapes) or does
/// not start with `/`.
pub fn normalize(path: &str) -> Option<String> {
    if !path.starts_with('/') || path.contains('\\') {
        return None;
    }
    let decoded = decode_unreserved(path)?;
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "" | "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut joined = String::with_capacity(decoded.len());
    for seg in &out {
        joined.push('/');
        joined.push_str(seg);
    }
    if joined.is_empty() || trailing_slash {
        joined.push('/');
    }
    Some(joined)
}

/// Decodes `%XX` escapes of unreserved characters (RFC 3986 §2.3), which
/// mean the same escaped or not; keeps other escapes as they are, but
/// refuses escaped `/`, `\`, NUL and malformed escapes.
fn decode_unreserved(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            if b.is_ascii_control() {
                return None;
            }
            // Safe: the input is a str and we copy whole UTF-8 sequences.
            let ch_len = utf8_len(b);
            out.push_str(path.get(i..i + ch_len)?);
            i += ch_len;
            continue;
        }
        let hex = path.get(i + 1..i + 3)?;
        let v = u8::from_str_radix(hex, 16).ok()?;
        match v {
            b'/' | b'\\' | 0 => return None,
            c if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') => {
                out.push(c as char)
            }
            _ => {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
        }
        i += 3;
    }
    Some(out)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public() -> PublicPaths {
        PublicPaths::new([
            PublicPath::Exact("/healthz".into()),
            PublicPath::Prefix("/public/".into()),
        ])
    }

    #[test]
    fn dot_segments_and_escapes_cannot_make_a_private_path_public() {
        let p = public();
        for private in [
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/public/%2E%2E/admin",
            "/public/.%2e/admin",
            "/public%2f..%2fadmin",
            "/public/..%2fadmin",
            "/public\\..\\admin",
            "/public/%5c../admin",
            "/publicity",
            "/healthz/x",
            "/healthzz",
            "/admin",
            "//public/../admin",
            "/public/%00",
            "/public/%zz",
            "public/x",
        ] {
            assert!(!p.matches(private), "{private} must not be public");
        }
    }

    #[test]
    fn the_public_paths_are_public_however_they_are_spelled() {
        let p = public();
        for public in [
            "/healthz",
            "/public",
            "/public/",
            "/public/app.js",
            "//public//app.js",
            "/public/./app.js",
            "/x/../public/app.js",
            "/%70ublic/app.js",
            "/public/a%20b.txt",
        ] {
            assert!(p.matches(public), "{public} should be public");
        }
    }

    #[test]
    fn normalisation_matches_rfc_3986_dot_segment_removal() {
        assert_eq!(normalize("/a/b/../c").as_deref(), Some("/a/c"));
        assert_eq!(normalize("/a/./b/").as_deref(), Some("/a/b/"));
        assert_eq!(normalize("/../../a").as_deref(), Some("/a"));
        assert_eq!(normalize("/a/..").as_deref(), Some("/"));
        assert_eq!(normalize("/").as_deref(), Some("/"));
        assert_eq!(normalize("/a%3fb").as_deref(), Some("/a%3Fb"));
        assert_eq!(normalize("/ü").as_deref(), Some("/ü"));
        assert!(PublicPaths::default().is_empty());
        assert!(!PublicPaths::default().matches("/"));
    }
}
