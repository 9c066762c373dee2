//! Hash maps for the lookups made on every admission review and every
//! proxied request.
//!
//! foldhash rather than SipHash: the keys are short (host names, object
//! names, endpoint addresses), and SipHash was a measured share of each
//! lookup (callgrind: about 1,400 of the 3,300 instructions `validate`
//! spent on one review). It is seeded per process, so keys chosen to
//! collide cannot be prepared in advance.

/// `std::collections::HashMap` with foldhash.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// `std::collections::HashSet` with foldhash.
pub(crate) type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
