//! Hash maps for the lookups made on every admission review and every
//! proxied request.
//!
//! foldhash rather than SipHash: the keys are short (host names, object
//! names, endpoint addresses), and SipHash's setup is then a large share
//! of each lookup (measured in docs/benchmarks.md). It is seeded per
//! process, so keys chosen to collide cannot be prepared in advance.

/// `std::collections::HashMap` with foldhash.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// `std::collections::HashSet` with foldhash.
pub(crate) type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
