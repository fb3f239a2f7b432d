//! Port scanner with nmap's port states (work in progress, see issue 3).
#![deny(missing_docs)]
