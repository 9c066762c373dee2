//! Who a verified client is, whether a policy's allow-list admits it, and
//! how its identity is passed upstream. Pure: certificate bytes in, data out.

use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

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
    /// The subject DN, RFC 4514 style.
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
            subject: cert.subject().to_string(),
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

    /// The `x-forwarded-client-cert` value (Envoy's element format). Values
    /// that contain a separator are quoted, so a crafted SAN cannot add
    /// fields or elements to what the upstream parses.
    pub fn xfcc(&self) -> String {
        let mut parts = vec![
            format!("Hash={}", self.cert_sha256),
            format!("Subject={}", quoted(&self.subject)),
        ];
        parts.extend(self.uris.iter().map(|u| format!("URI={}", xfcc_value(u))));
        parts.extend(
            self.dns_names
                .iter()
                .map(|d| format!("DNS={}", xfcc_value(d))),
        );
        parts.join(";")
    }
}

fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Bare when safe, quoted when the value holds `,` `;` `=` `"` or `\`.
fn xfcc_value(v: &str) -> String {
    if v.contains([',', ';', '=', '"', '\\']) {
        quoted(v)
    } else {
        v.to_string()
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
            i.xfcc(),
            r#"Hash=00;Subject="CN=x";URI="spiffe://a/b;DNS=admin.example,By=x""#
        );
    }

    #[test]
    fn xfcc_quotes_the_subject() {
        let mut i = id();
        i.cert_sha256 = "00".into();
        i.subject = r#"CN=a "b""#.into();
        assert_eq!(
            i.xfcc(),
            r#"Hash=00;Subject="CN=a \"b\"";URI=spiffe://foocorp.com/ns/inventory/sa/scanner;DNS=scanner.clients.foocorp.com"#
        );
    }
}
