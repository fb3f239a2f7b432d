//! Load iptables rulesets into the kernel safely.
//!
//! `portcullis-apply` applies a [`portcullis_rules::Ruleset`] through the host's own
//! `iptables-restore`/`ip6tables-restore` (one process per apply, never one per rule, always
//! a bounded `-w`), with the nft or the legacy backend ([`detect_backend`]; never both), in
//! the current network namespace or any other by name (the tools run inside it through
//! `ip netns exec`; the applying process never changes namespace, and only a short-lived
//! thread enters it to open the netlink socket of the nft read-back, [`nft_save`]).
//!
//! - [`prepare`] validates the ruleset with the model, runs the lock-out [`guard`], takes
//!   the namespace's apply lock, snapshots every table (`iptables-save -c`) and builds the
//!   [`Plan`] and the exact [`RestoreInput`]. Nothing in the kernel has changed yet.
//! - [`Prepared::commit`] runs iptables-restore. The kernel commits per table, so when a
//!   later table fails, every table already committed is restored from the snapshot: the
//!   whole file applies or nothing does. The failure is parsed ([`RestoreFailure`], every
//!   message shape of both backends) and placed at the line of the user's file
//!   ([`Rejected::render`]). Then the kernel is read back and compared in canonical form;
//!   differences are [`Drift`] warnings. With nft over IPv4 the read-back goes over
//!   netlink ([`nft_save`]: exactly `iptables-nft-save`'s text, or the tool itself where
//!   the decoder does not know a rule's form).
//! - An apply that commits more than one table first writes an intent [`journal`] (the
//!   old content of every table it writes, durably) and, with
//!   [`Prepared::with_guardian`], starts a detached guardian process: should the applier
//!   die between two commits or during its rollback, the guardian restores the old
//!   ruleset at once; without it the next apply (or `portcullis status`) does. Every
//!   iptables-restore dies with its applier (`PR_SET_PDEATHSIG`), so none commits after a
//!   repair or a revert.
//! - Incremental mode ([`Plan::incremental`]) rewrites only the chains that changed, with
//!   `--noflush` (kube-proxy's pattern).
//! - [`confirm::arm`] persists the old ruleset and starts a detached watchdog process that
//!   restores it unless [`confirm::confirm`] runs, from a new session, in time.
//! - [`persist::save`] writes the live ruleset atomically to the distribution's path.
//!
//! ```no_run
//! use portcullis_apply::{ApplyOptions, Target, apply, detect_backend};
//! use portcullis_rules::Family;
//!
//! let text = "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n";
//! let ruleset = portcullis_syntax::parse_save(text)?;
//! let backend = detect_backend(Some("pcl-demo"), Family::V4)?;
//! let target = Target::new(Some("pcl-demo"), Family::V4, backend);
//! let applied = apply(&ruleset, &target, &ApplyOptions::from_env())?;
//! assert!(applied.drift.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod apply;
mod cache;
pub mod confirm;
mod error;
mod exec;
pub mod guard;
pub mod journal;
mod nft;
pub mod persist;
mod plan;
mod verify;

pub use crate::{
    apply::{
        Applied, ApplyOptions, Drift, Held, Prepared, Snapshot, apply, detect_backend,
        ensure_single_backend, forget_namespace, holds_rules, host_default_backend, prepare,
        prepare_reversible, revert, snapshot, snapshot_tables, state_dir, state_key,
    },
    error::{ApplyError, FailureKind, Rejected, RestoreFailure, Span},
    exec::{Counters, RestoreFlags, Target, lockfile_for, program},
    nft::{NftReadError, nft_list_chains, nft_save},
    plan::{LineSource, Mode, Plan, RestoreInput, TableAction, comparable},
};
