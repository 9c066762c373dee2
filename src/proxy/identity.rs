//! Who a verified client is, whether a policy's allow-list admits it, and
//! how its identity is passed upstream. Pure: certificate bytes in, data out.

use sha2::{Digest, Sha256};
use x509_parser::asn1_rs::{Any, BmpString, Class, Tag};
use x509_parser::extensions::GeneralName;
use x509_parser::objects::{oid_registry, oid2abbrev};
use x509_parser::prelude::{AttributeTypeAndValue, FromDer, X509Certificate, X509Name};

use crate::clientauth::AllowedClients;

/// What the proxy knows of a client after a verified handshake.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate (DER), for RFC 9440's `Client-Cert`.
    pub der: Vec<u8>,
    /// The rest of the chain the client sent (DER), for `Client-Cert-Chain`.
    pub chain: Vec<Vec<u8>>,
    /// Hex SHA-256 of the certificate (XFCC `Hash`).
    pub cert_sha256: String,
    /// Hex SHA-256 of the SubjectPublicKeyInfo (for key pinning).
    pub spki_sha256: String,
    /// The subject DN in RFC 4514 form: escaped, so two different names
    /// never read the same.
    pub subject: String,
    /// The subject common name(s).
    pub common_names: Vec<String>,
    /// DNS subjectAltNames.
    pub dns_names: Vec<String>,
    /// URI subjectAltNames.
    pub uris: Vec<String>,
    /// Email (rfc822Name) subjectAltNames, for identity joins with tokens.
    pub emails: Vec<String>,
    /// SHA-256 of the certificate, for RFC 8705 token binding and sessions.
    pub cert_digest: [u8; 32],
}

impl ClientIdentity {
    /// Reads the identity from a DER certificate; `None` if it does not parse
    /// (cannot happen after rustls verified it).
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let digest: [u8; 32] = Sha256::digest(der).into();
        let mut id = ClientIdentity {
            der: der.to_vec(),
            cert_sha256: hex(&digest),
            cert_digest: digest,
            spki_sha256: hex(&Sha256::digest(cert.public_key().raw)),
            subject: rfc4514(cert.subject()),
            ..Default::default()
        };
        id.common_names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_string))
            .collect();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => id.dns_names.push(d.to_string()),
                    GeneralName::URI(u) => id.uris.push(u.to_string()),
                    GeneralName::RFC822Name(e) => id.emails.push(e.to_string()),
                    _ => {}
                }
            }
        }
        Some(id)
    }

    /// A short description for logs and 403 bodies: the first SAN, else CN.
    pub fn display_name(&self) -> String {
        self.uris
            .first()
            .or(self.dns_names.first())
            .or(self.common_names.first())
            .cloned()
            .unwrap_or_else(|| self.subject.clone())
    }

    /// The `x-forwarded-client-cert` value, in Envoy's element format:
    /// `Hash=..;Subject="..";URI=..;DNS=..`, a value in double quotes when
    /// it holds `,` `;` or `=`. The subject is RFC 4514-escaped, so it never
    /// holds a bare `"`. A SAN that holds a quote, a backslash, a space, a
    /// control or non-ASCII byte cannot be a valid URI or DNS name, and
    /// cannot be written so that every upstream parser reads it back the
    /// same: it is refused rather than dropped or mangled.
    pub fn xfcc(&self) -> Result<String, Uncarriable> {
        let mut out = format!("Hash={};Subject=\"{}\"", self.cert_sha256, self.subject);
        for (field, values) in [("URI", &self.uris), ("DNS", &self.dns_names)] {
            for (index, v) in values.iter().enumerate() {
                if !v
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
                {
                    return Err(Uncarriable { field, index });
                }
                out.push(';');
                out.push_str(field);
                out.push('=');
                if v.contains([',', ';', '=']) {
                    out.push('"');
                    out.push_str(v);
                    out.push('"');
                } else {
                    out.push_str(v);
                }
            }
        }
        Ok(out)
    }
}

/// A certificate field the proxy cannot pass upstream unambiguously.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the client certificate's {field} subjectAltName #{index} holds a space, quote, backslash, \
     control or non-ASCII character, which a valid {field} never does; it cannot be passed \
     upstream in x-forwarded-client-cert"
)]
pub struct Uncarriable {
    /// `URI` or `DNS`.
    pub field: &'static str,
    /// Which SAN of that kind (0-based).
    pub index: usize,
}

/// `name` in RFC 4514 form: RDNs last first, separated by `,`; the values
/// of a multi-valued RDN by `+`; special characters escaped with `\`, and
/// control and non-ASCII bytes as `\XX` so the result is a valid header
/// value. Values that are not strings are `#` and their DER in hex.
pub fn rfc4514(name: &X509Name) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            attribute_type(atv, &mut out);
            out.push('=');
            match attribute_string(atv.attr_value()) {
                Some(v) => escape_value(&v, &mut out),
                None => {
                    out.push('#');
                    out.push_str(&hex(&der_of(atv.attr_value())));
                }
            }
        }
    }
    out
}

/// The short name (`CN`, `O`, ...) when it is a valid descriptor, else the
/// dotted OID.
fn attribute_type(atv: &AttributeTypeAndValue, out: &mut String) {
    match oid2abbrev(atv.attr_type(), oid_registry()) {
        Ok(a)
            if a.starts_with(|c: char| c.is_ascii_alphabetic())
                && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            out.push_str(a)
        }
        _ => out.push_str(&atv.attr_type().to_id_string()),
    }
}

fn attribute_string(v: &Any) -> Option<String> {
    match v.tag() {
        Tag::NumericString
        | Tag::PrintableString
        | Tag::Utf8String
        | Tag::Ia5String
        | Tag::VisibleString
        | Tag::TeletexString => std::str::from_utf8(v.data).ok().map(str::to_string),
        Tag::BmpString => BmpString::try_from(v.clone()).ok().map(|s| s.string()),
        _ => None,
    }
}

/// RFC 4514 section 2.4, plus hex escapes for every byte that is not
/// printable ASCII.
fn escape_value(v: &str, out: &mut String) {
    let last = v.len().saturating_sub(1);
    for (i, c) in v.char_indices() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '#' if i == 0 => out.push_str("\\#"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
        }
    }
}

/// The DER of an attribute value: its header (tag, length) and content.
fn der_of(v: &Any) -> Vec<u8> {
    let class = match v.class() {
        Class::Universal => 0,
        Class::Application => 0x40,
        Class::ContextSpecific => 0x80,
        Class::Private => 0xc0,
    };
    let constructed = if v.header.is_constructed() { 0x20 } else { 0 };
    // Attribute values in names use universal tags below 31: one byte.
    der_tlv(class | constructed | (v.tag().0 as u8 & 0x1f), v.data)
}

/// One DER element: tag, definite length, content.
pub(crate) fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Readers for what [`ClientIdentity::xfcc`] and [`rfc4514`] write, as an
/// upstream reads them. The property tests and the fuzz target use them
/// to check that every value reads back to what the certificate holds.
pub mod read_back {
    /// The `key=value` pairs of one XFCC element, quoted values without
    /// their quotes; `None` when the text is not well formed.
    pub fn xfcc_pairs(element: &str) -> Option<Vec<(&str, &str)>> {
        let mut pairs = Vec::new();
        let mut rest = element;
        loop {
            let (key, after) = rest.split_once('=')?;
            let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
                // `\` escapes the next byte, so `\"` does not end the value.
                let bytes = quoted.as_bytes();
                let mut i = 0;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                let value = quoted.get(..i)?;
                (value, quoted.get(i + 1..)?)
            } else {
                let end = after.find([';', ',']).unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            pairs.push((key, value));
            match tail.as_bytes().first() {
                None => return Some(pairs),
                Some(b';') => rest = &tail[1..],
                _ => return None,
            }
        }
    }

    /// One attribute of an RDN: its type as written and its value's bytes.
    pub type Attribute = (String, Vec<u8>);

    /// The RDNs of an RFC 4514 string, in the order written, each a list of
    /// attributes; `None` when the text is not well formed.
    pub fn rfc4514(dn: &str) -> Option<Vec<Vec<Attribute>>> {
        let mut rdns = vec![Vec::new()];
        let b = dn.as_bytes();
        let mut i = 0;
        if b.is_empty() {
            return Some(Vec::new());
        }
        loop {
            let eq = i + dn[i..].find('=')?;
            let ty = dn[i..eq].to_string();
            i = eq + 1;
            let mut value = Vec::new();
            if b.get(i) == Some(&b'#') {
                i += 1;
                while i + 1 < b.len() && b[i].is_ascii_hexdigit() && b[i + 1].is_ascii_hexdigit() {
                    value.push(u8::from_str_radix(&dn[i..i + 2], 16).ok()?);
                    i += 2;
                }
            } else {
                while i < b.len() && !matches!(b[i], b',' | b'+') {
                    if b[i] == b'\\' {
                        let next = *b.get(i + 1)?;
                        if next.is_ascii_hexdigit()
                            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
                        {
                            value.push(u8::from_str_radix(dn.get(i + 1..i + 3)?, 16).ok()?);
                            i += 3;
                        } else {
                            value.push(next);
                            i += 2;
                        }
                    } else {
                        value.push(b[i]);
                        i += 1;
                    }
                }
            }
            rdns.last_mut()?.push((ty, value));
            match b.get(i) {
                None => return Some(rdns),
                Some(b'+') => {}
                Some(_) => rdns.push(Vec::new()),
            }
            i += 1;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `*` matches exactly one non-empty part between separators.
fn glob_parts(pattern: &str, value: &str, sep: char) -> bool {
    let p: Vec<&str> = pattern.split(sep).collect();
    let v: Vec<&str> = value.split(sep).collect();
    p.len() == v.len()
        && p.iter()
            .zip(&v)
            .all(|(p, v)| *p == "*" && !v.is_empty() || p == v)
}

/// Whether the allow-list admits the client. An empty list admits anyone
/// with a verified chain.
pub fn allowed(list: &AllowedClients, id: &ClientIdentity) -> bool {
    let empty = list.dns_names.is_empty()
        && list.uris.is_empty()
        && list.common_names.is_empty()
        && list.spki_sha256.is_empty();
    empty
        || list.dns_names.iter().any(|p| {
            id.dns_names
                .iter()
                .any(|d| glob_parts(&p.to_ascii_lowercase(), &d.to_ascii_lowercase(), '.'))
        })
        || list
            .uris
            .iter()
            .any(|p| id.uris.iter().any(|u| glob_parts(p, u, '/')))
        || list
            .common_names
            .iter()
            .any(|c| id.common_names.contains(c))
        || list
            .spki_sha256
            .iter()
            .any(|pin| pin.0.eq_ignore_ascii_case(&id.spki_sha256))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clientauth::Sha256Hex;

    fn id() -> ClientIdentity {
        ClientIdentity {
            dns_names: vec!["scanner.clients.foocorp.com".into()],
            uris: vec!["spiffe://foocorp.com/ns/inventory/sa/scanner".into()],
            common_names: vec!["inventory-scanner".into()],
            spki_sha256: "ab".repeat(32),
            ..Default::default()
        }
    }

    #[test]
    fn allow_list_table() {
        let cases: &[(AllowedClients, bool)] = &[
            (AllowedClients::default(), true),
            (
                AllowedClients {
                    dns_names: vec!["*.clients.foocorp.com".into()],
                    ..Default::default()
                },
                true,
            ),
            (
                AllowedClients {
                    dns_names: vec!["*.foocorp.com".into()],
                    ..Default::default()
                },
                false,
            ),
            (
                AllowedClients {
                    dns_names: vec!["SCANNER.clients.foocorp.com".into()],
                    ..Default::default()
                },
                true,
            ),
            (
                AllowedClients {
                    uris: vec!["spiffe://foocorp.com/ns/*/sa/scanner".into()],
                    ..Default::default()
                },
                true,
            ),
            (
                AllowedClients {
                    uris: vec!["spiffe://foocorp.com/ns/*/sa/*".into()],
                    ..Default::default()
                },
                true,
            ),
            (
                AllowedClients {
                    uris: vec!["spiffe://foocorp.com/ns/*".into()],
                    ..Default::default()
                },
                false,
            ),
            (
                AllowedClients {
                    uris: vec!["spiffe://foocorp.com/ns/billing/sa/scanner".into()],
                    ..Default::default()
                },
                false,
            ),
            (
                AllowedClients {
                    common_names: vec!["inventory-scanner".into()],
                    ..Default::default()
                },
                true,
            ),
            (
                AllowedClients {
                    common_names: vec!["inventory".into()],
                    ..Default::default()
                },
                false,
            ),
            (
                AllowedClients {
                    spki_sha256: vec![Sha256Hex("AB".repeat(32))],
                    ..Default::default()
                },
                true,
            ),
            (
                AllowedClients {
                    spki_sha256: vec![Sha256Hex("cd".repeat(32))],
                    ..Default::default()
                },
                false,
            ),
        ];
        for (list, want) in cases {
            assert_eq!(allowed(list, &id()), *want, "{list:?}");
        }
    }

    #[test]
    fn xfcc_quotes_values_with_separators() {
        let mut i = id();
        i.cert_sha256 = "00".into();
        i.subject = "CN=x".into();
        i.dns_names = vec![];
        i.uris = vec!["spiffe://a/b;DNS=admin.example,By=x".into()];
        assert_eq!(
            i.xfcc().unwrap(),
            r#"Hash=00;Subject="CN=x";URI="spiffe://a/b;DNS=admin.example,By=x""#
        );
    }

    fn cert_with(subject: rcgen::DistinguishedName, uris: &[&str]) -> ClientIdentity {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = subject;
        params.subject_alt_names = uris
            .iter()
            .map(|u| rcgen::SanType::URI((*u).try_into().unwrap()))
            .collect();
        let cert = params.self_signed(&key).unwrap();
        ClientIdentity::from_der(cert.der()).unwrap()
    }

    fn dn(entries: &[(rcgen::DnType, &str)]) -> rcgen::DistinguishedName {
        let mut dn = rcgen::DistinguishedName::new();
        for (t, v) in entries {
            dn.push(t.clone(), *v);
        }
        dn
    }

    /// One CN `evil, CN=admin` and two CNs `evil` and `admin` once printed
    /// the same subject; an upstream matching on `CN=admin` took either.
    #[test]
    fn a_comma_in_a_value_is_not_a_second_attribute() {
        use rcgen::DnType::{CommonName, CustomDnType, OrganizationName};
        let one = cert_with(
            dn(&[(OrganizationName, "Foo"), (CommonName, "evil, CN=admin")]),
            &[],
        );
        let two = cert_with(
            dn(&[
                (OrganizationName, "Foo"),
                (CommonName, "evil"),
                (CustomDnType(vec![2, 5, 4, 3]), "admin"),
            ]),
            &[],
        );
        assert_eq!(one.subject, r"CN=evil\, CN=admin,O=Foo");
        assert_eq!(two.subject, "CN=admin,CN=evil,O=Foo");
        let (a, b) = (one.xfcc().unwrap(), two.xfcc().unwrap());
        assert_ne!(a, b);
        let subject = |x: &str| {
            let pairs = read_back::xfcc_pairs(x).unwrap();
            let s = pairs
                .iter()
                .find(|(k, _)| *k == "Subject")
                .unwrap()
                .1
                .to_string();
            read_back::rfc4514(&s).unwrap()
        };
        let cn = |v: &str| ("CN".to_string(), v.as_bytes().to_vec());
        let o = ("O".to_string(), b"Foo".to_vec());
        assert_eq!(
            subject(&a),
            vec![vec![cn("evil, CN=admin")], vec![o.clone()]]
        );
        assert_eq!(
            subject(&b),
            vec![vec![cn("admin")], vec![cn("evil")], vec![o]]
        );
    }

    #[test]
    fn control_and_special_characters_in_the_subject_are_escaped() {
        use rcgen::DnType::CommonName;
        let raw = " #a\"b+c;<d>\\e\r\nf\tg\0h é ";
        let i = cert_with(dn(&[(CommonName, raw)]), &[]);
        assert_eq!(
            i.subject,
            r#"CN=\ #a\"b\+c\;\<d\>\\e\0D\0Af\09g\00h \C3\A9\ "#
        );
        let xfcc = i.xfcc().unwrap();
        assert!(HeaderValue::from_str(&xfcc).is_ok(), "{xfcc}");
        let pairs = read_back::xfcc_pairs(&xfcc).unwrap();
        assert_eq!(
            read_back::rfc4514(pairs[1].1).unwrap(),
            vec![vec![("CN".to_string(), raw.as_bytes().to_vec())]]
        );
    }

    /// A newline in a URI SAN cannot be written into a header; once, the
    /// header was dropped and the request went on without it.
    #[test]
    fn a_san_that_cannot_be_carried_is_an_error_naming_it() {
        use rcgen::DnType::CommonName;
        let mut i = cert_with(dn(&[(CommonName, "c")]), &["spiffe://ok/a"]);
        i.uris.push("spiffe://x/a\r\nX-Injected: 1".into());
        assert_eq!(
            i.xfcc(),
            Err(Uncarriable {
                field: "URI",
                index: 1
            })
        );
        i.uris.truncate(1);
        i.dns_names = vec!["a b.example".into()];
        assert_eq!(
            i.xfcc(),
            Err(Uncarriable {
                field: "DNS",
                index: 0
            })
        );
        i.dns_names = vec!["a.example".into()];
        assert!(i.xfcc().is_ok());
    }

    use hyper::header::HeaderValue;

    /// Client certificates with any subject (several attribute types, any
    /// characters, two CNs) and any URI and DNS SANs: the XFCC header the
    /// proxy writes reads back, with `read_back`, to exactly the
    /// certificate's fields, or names the SAN it cannot carry. The `xfcc`
    /// fuzz target checks the same (`crate::fuzzing::xfcc_reads_back`).
    #[test]
    fn xfcc_reads_back_to_the_certificate_for_any_names() {
        use proptest::prelude::*;

        let text = || {
            let c = prop_oneof![
                4 => prop::char::range('a', 'z'),
                3 => prop::sample::select(vec![
                    ',', ';', '=', '"', '\\', ' ', '+', '<', '#', ':', '/', '\n', '\u{0}', 'é',
                    '\u{2028}',
                ]),
                1 => any::<char>(),
            ];
            prop::collection::vec(c, 0..10).prop_map(String::from_iter)
        };
        let subject = prop::collection::vec((0..6usize, text()), 0..5);
        let sans = prop::collection::vec(text(), 0..3);
        crate::testing::check_property(
            "xfcc_reads_back_to_the_certificate_for_any_names",
            200,
            (subject, sans.clone(), sans),
            |(subject, uris, dns)| {
                crate::fuzzing::xfcc_reads_back(&subject, &uris, &dns).map_err(TestCaseError::fail)
            },
        );
    }
}
