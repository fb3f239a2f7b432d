//! The rig target's expected scan results (docs/scanning.md §4.2), shared by the rig
//! tests and the in-memory hostile-reply tests.

/// A `-sS -F` scan of the rig's target, as `testing::summary` prints it.
pub(crate) const SYN: &str = "\
22/tcp open syn-ack
25/tcp closed reset
80/tcp open syn-ack
110/tcp filtered port-unreach
113/tcp filtered admin-prohibited
443/tcp closed reset
94 filtered no-response
";

/// A `-sU -F` scan of the rig's target.
pub(crate) const UDP: &str = "\
53/udp open udp-response
123/udp closed port-unreach
137/udp filtered admin-prohibited
161/udp closed port-unreach
96 open|filtered no-response
";
