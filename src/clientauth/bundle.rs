//! The pure bundle builder: PEM sources in, a validated CA bundle out.
