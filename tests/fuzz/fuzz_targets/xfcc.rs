//! The `x-forwarded-client-cert` header the proxy writes for a client
//! certificate, end to end: a certificate made (rcgen) with subject
//! attributes of several types holding any characters (two CNs, an OID
//! without a short name) and any URI and DNS SANs, read by the proxy
//! (`ClientIdentity::from_der`, the subject in RFC 4514 form) and written
//! (`ClientIdentity::xfcc`). The header must be a valid header value, and
//! an upstream reading it (`identity::read_back`: XFCC pairs, then the
//! RFC 4514 subject) must get exactly the certificate's hash, attributes,
//! URIs and DNS names back, nothing added, nothing changed; or, when a SAN
//! holds what no valid URI or DNS name does, `xfcc()` must refuse naming
//! that SAN. The check is `tlsward::fuzzing::xfcc_reads_back`, which the
//! property test `xfcc_reads_back_to_the_certificate_for_any_names` runs
//! too.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Case {
    /// Attribute type (index) and value.
    subject: Vec<(u8, String)>,
    uris: Vec<String>,
    dns_names: Vec<String>,
}

fuzz_target!(|case: Case| {
    let subject: Vec<(usize, String)> = case
        .subject
        .into_iter()
        .map(|(t, v)| (usize::from(t), v))
        .collect();
    if let Err(why) = tlsward::fuzzing::xfcc_reads_back(&subject, &case.uris, &case.dns_names) {
        panic!(
            "{why}\nsubject {subject:?} uris {:?} dns {:?}",
            case.uris, case.dns_names
        );
    }
});
