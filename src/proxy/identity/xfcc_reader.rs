//! An `x-forwarded-client-cert` reader, written from Envoy's description of
//! the header and apart from the writer it checks: elements are separated
//! by `,`, an element's key=value pairs by `;`; a value that holds `,`, `;`
//! or `=` is in double quotes, inside which `\"` is a quote and `\\` a
//! backslash. It is strict where the writer must be: a quote or backslash
//! in a bare value, an unclosed quote, text after a closing quote, or a
//! pair without `=` is an error.
//!
//! Shared by the identity property test and the `xfcc` fuzz target
//! (`tests/fuzz`, which includes this file by path), so it uses nothing of
//! the crate.

/// One element: its pairs, in order, values unquoted.
pub type Element = Vec<(String, String)>;

/// Reads a whole header value.
pub fn parse(header: &str) -> Result<Vec<Element>, String> {
    let mut elements = vec![Vec::new()];
    let mut chars = header.chars().peekable();
    loop {
        let mut key = String::new();
        loop {
            match chars.next() {
                Some('=') => break,
                Some(c @ (',' | ';' | '"' | '\\')) => {
                    return Err(format!("{c:?} in the key {key:?}"));
                }
                Some(c) => key.push(c),
                None => return Err(format!("the pair {key:?} has no '='")),
            }
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err("a backslash ends the header".into()),
                    },
                    Some(c) => value.push(c),
                    None => return Err(format!("unclosed quote after {value:?}")),
                }
            }
            if !matches!(chars.peek(), None | Some(',' | ';')) {
                return Err(format!("text after the quoted value {value:?}"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                match c {
                    ',' | ';' => break,
                    '"' | '\\' | '=' => {
                        return Err(format!("{c:?} in the bare value {value:?}"));
                    }
                    c => value.push(c),
                }
                chars.next();
            }
        }
        elements.last_mut().expect("never empty").push((key, value));
        match chars.next() {
            None => return Ok(elements),
            Some(';') => {}
            Some(',') => elements.push(Vec::new()),
            Some(c) => unreachable!("stopped at {c:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_envoys_examples() {
        // The examples of Envoy's documentation of the header.
        let one = r#"By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com"#;
        let got = parse(one).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0][2],
            (
                "Subject".to_string(),
                "/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client".to_string()
            )
        );
        let two = r#"By=http://frontend.lyft.com;Hash=468e;URI=http://testclient.lyft.com,By=http://backend.lyft.com;Hash=9ba6;URI=http://frontend.lyft.com"#;
        let got = parse(two).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1][0].1, "http://backend.lyft.com");
        assert_eq!(
            parse(r#"Subject="a \"b\" \\c""#).unwrap()[0][0].1,
            r#"a "b" \c"#
        );
    }

    #[test]
    fn refuses_what_a_writer_must_not_write() {
        for bad in [
            "Hash",
            r#"URI=a"b"#,
            r#"Subject="open"#,
            r#"Subject="a"b"#,
            "URI=a=b",
            r#"Subject="\"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    /// The writer (`ClientIdentity::xfcc`) read back, for identities with
    /// any subject, URIs and DNS names: exactly one element with exactly
    /// their fields. The `xfcc` fuzz target checks the same.
    #[test]
    fn xfcc_reads_back_to_the_same_fields() {
        use crate::proxy::identity::ClientIdentity;
        use proptest::prelude::*;

        let text = || {
            let c = prop_oneof![
                4 => prop::char::range('a', 'z'),
                3 => prop::sample::select(vec![
                    ',', ';', '=', '"', '\\', ' ', ':', '/', '\n', '\u{0}', 'é', '\u{2028}'
                ]),
                1 => any::<char>(),
            ];
            prop::collection::vec(c, 0..12).prop_map(String::from_iter)
        };
        let strings = prop::collection::vec(text(), 0..3);
        crate::testing::check_property(
            "xfcc_reads_back_to_the_same_fields",
            512,
            (any::<[u8; 32]>(), text(), strings.clone(), strings),
            |(hash, subject, uris, dns_names)| {
                let id = ClientIdentity {
                    cert_sha256: hash.iter().map(|b| format!("{b:02x}")).collect(),
                    subject,
                    uris,
                    dns_names,
                    ..Default::default()
                };
                let header = id.xfcc();
                let got = parse(&header).map_err(|why| {
                    TestCaseError::fail(format!("{header:?} does not read back: {why}"))
                })?;
                let mut want = vec![
                    ("Hash".to_string(), id.cert_sha256.clone()),
                    ("Subject".to_string(), id.subject.clone()),
                ];
                want.extend(id.uris.iter().map(|u| ("URI".to_string(), u.clone())));
                want.extend(id.dns_names.iter().map(|d| ("DNS".to_string(), d.clone())));
                prop_assert_eq!(got, vec![want], "{:?}", header);
                Ok(())
            },
        );
    }
}
