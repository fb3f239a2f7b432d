//! The apply itself: validate, guard, lock, snapshot, restore, roll back, read back.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use portcullis_rules::{Backend, Family, Ruleset, Table, TableName, validate};
use portcullis_syntax::{parse_rules_spec, parse_save_as, render_rule};

use crate::cache::{self, Fingerprint};
use crate::error::{ApplyError, FailureKind, Rejected, RestoreFailure, Span, blamed_token};
use crate::exec::{Counters, RestoreFlags, Target};
use crate::guard::{self, GuardReport};
use crate::journal::{Intent, Repair};
use crate::plan::{LineSource, Plan, RestoreInput, TableAction, comparable};
use crate::verify::{self, Expected};

/// How to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Rewrite only the chains that changed (`--noflush`).
    pub incremental: bool,
    /// Apply although the lock-out guard says the management path is cut.
    pub force: bool,
    /// The `SSH_CONNECTION` the command runs over, for the guard.
    pub ssh_connection: Option<String>,
    /// Read the kernel's ruleset back after applying and report drift.
    pub verify: bool,
    /// How long to wait for another portcullis apply on the same namespace.
    pub lock_wait: Duration,
    /// Read nft tables back over netlink where every rule decodes ([`crate::nft_save`]);
    /// `false` always asks `iptables-save` (`PORTCULLIS_READBACK=iptables-save`).
    pub readback_netlink: bool,
}

impl ApplyOptions {
    /// Full apply, guard on, verify on, `SSH_CONNECTION` from the environment.
    pub fn from_env() -> Self {
        Self {
            incremental: false,
            force: false,
            ssh_connection: std::env::var("SSH_CONNECTION").ok().filter(|s| !s.trim().is_empty()),
            verify: true,
            lock_wait: Duration::from_secs(30),
            readback_netlink: std::env::var("PORTCULLIS_READBACK")
                .map_or(true, |v| v != "iptables-save"),
        }
    }
}

/// Named steps and their times (`--timings`).
type Steps = Vec<(&'static str, Duration)>;

/// The kernel's ruleset before an apply, as `iptables-save -c` printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The family.
    pub family: Family,
    /// The backend that printed it.
    pub backend: Backend,
    /// The whole save text (`noflush` false), or a `--noflush` restore input that puts
    /// back exactly the chains an incremental apply changes (`noflush` true).
    pub text: String,
    /// Whether `text` is a partial `--noflush` snapshot.
    pub noflush: bool,
    /// The tables the snapshot can restore (a table of these without a block in `text`
    /// did not exist).
    pub covered: Vec<TableName>,
}

impl Snapshot {
    /// The `*table … COMMIT` block of `table`, when the table existed.
    pub fn block(&self, table: TableName) -> Option<String> {
        table_block(&self.text, table)
    }
}

/// The `*table … COMMIT` block of `table` in save text, without `#` lines.
pub(crate) fn table_block(text: &str, table: TableName) -> Option<String> {
    let header = format!("*{table}");
    let mut out = String::new();
    let mut inside = false;
    for l in text.lines() {
        if !inside {
            if l.trim_end() == header {
                inside = true;
                out.push_str(l);
                out.push('\n');
            }
            continue;
        }
        if l.starts_with('#') {
            continue;
        }
        out.push_str(l);
        out.push('\n');
        if l.trim_end() == "COMMIT" {
            return Some(out);
        }
    }
    None
}

/// A rule or chain whose state in the kernel differs from the ruleset after applying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The table.
    pub table: TableName,
    /// The chain.
    pub chain: String,
    /// What the ruleset says and the kernel does not hold (refused or rewritten), in
    /// canonical `-A` form.
    pub missing: Vec<String>,
    /// What the kernel holds and the ruleset does not say.
    pub unexpected: Vec<String>,
    /// A note for differences that are not rules (policy, order, a missing chain).
    pub note: Option<String>,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "table {} chain {}", self.table, self.chain)?;
        if let Some(n) = &self.note {
            write!(f, ": {n}")?;
        }
        for m in &self.missing {
            write!(f, "\n    expected, not in the kernel: {m}")?;
        }
        for u in &self.unexpected {
            write!(f, "\n    in the kernel instead:       {u}")?;
        }
        Ok(())
    }
}

/// An apply that has passed every check, holds the namespace's apply lock and has taken
/// its snapshot, but has not touched the kernel yet. [`Prepared::commit`] carries it out.
#[derive(Debug)]
pub struct Prepared<'a> {
    /// The target.
    pub target: Target,
    /// The ruleset to apply (borrowed: a kube-proxy-scale model is 150 MB, and copying
    /// it cost a tenth of an incremental apply).
    pub desired: &'a Ruleset,
    /// The plan.
    pub plan: Plan,
    /// The exact iptables-restore input.
    pub input: RestoreInput,
    /// The guard's reasoning.
    pub guard: GuardReport,
    /// The kernel's ruleset before the apply.
    pub snapshot: Snapshot,
    /// What is being applied, for the intent journal's messages (the CLI sets the file
    /// name).
    pub label: String,
    /// An earlier apply that had died mid-apply in this namespace and family, repaired
    /// from its journal before this one read the kernel.
    pub repaired: Option<Repair>,
    guardian: Option<PathBuf>,
    hold: bool,
    verify: bool,
    netlink: bool,
    want: Option<Ruleset>,
    record: Option<Fingerprint>,
    timings: Vec<(&'static str, Duration)>,
    _lock: Option<Flock<File>>,
}

/// The open intent journal of a committed family (see [`Prepared::commit_held`]).
/// Dropped without [`Held::release`], the journal stays: the guardian, or the next apply,
/// restores the family's old ruleset.
#[derive(Debug)]
#[must_use = "release it once every family is applied or this one reverted"]
pub struct Held(Option<Intent>);

impl Held {
    /// Closes the journal: the family's new ruleset stays (or it was reverted already).
    pub fn release(self) {
        if let Some(i) = self.0 {
            i.complete();
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The plan carried out.
    pub plan: Plan,
    /// The kernel's ruleset before the apply.
    pub snapshot: Snapshot,
    /// Differences between the ruleset and what the kernel holds after it (warnings).
    pub drift: Vec<Drift>,
    /// How long each step took, in order (steps in brackets ran beside the next one).
    pub timings: Vec<(&'static str, Duration)>,
}

/// The directory of portcullis' runtime state (apply locks, confirm backups):
/// `PORTCULLIS_STATE_DIR`, else `/run/portcullis`.
pub fn state_dir() -> PathBuf {
    std::env::var_os("PORTCULLIS_STATE_DIR")
        .map_or_else(|| PathBuf::from("/run/portcullis"), PathBuf::from)
}

/// The state key of a namespace: its name, or `default`.
pub fn state_key(netns: Option<&str>) -> String {
    netns.map_or_else(|| "default".to_owned(), |n| format!("netns-{n}"))
}

/// Removes everything portcullis keeps about a namespace in its state directory (the
/// record of the last apply, confirm files, the apply lock file): for throwaway
/// namespaces, once they are deleted. Refuses (returns false) while a confirm-or-revert
/// is pending there.
pub fn forget_namespace(netns: Option<&str>) -> bool {
    if [Family::V4, Family::V6].iter().any(|f| crate::confirm::pending(netns, *f).is_some()) {
        return false;
    }
    let _ = std::fs::remove_dir_all(crate::confirm::key_dir(netns));
    let lock = state_dir().join("locks").join(format!("{}.lock", state_key(netns)));
    let _ = std::fs::remove_file(lock);
    true
}

/// Takes the apply lock of a namespace, waiting at most `wait`.
pub(crate) fn lock_namespace(
    netns: Option<&str>,
    wait: Duration,
) -> Result<Flock<File>, ApplyError> {
    let dir = state_dir().join("locks");
    std::fs::create_dir_all(&dir).map_err(|e| ApplyError::io(&dir, e))?;
    let path = dir.join(format!("{}.lock", state_key(netns)));
    let deadline = Instant::now() + wait;
    loop {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ApplyError::io(&path, e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(l),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(ApplyError::Busy(
                    netns.map_or("the current namespace".into(), |n| format!("namespace {n}")),
                ));
            }
            Err((_, e)) => return Err(ApplyError::io(&path, e.into())),
        }
    }
}

/// Reads the kernel's whole ruleset (`iptables-save -c`).
pub fn snapshot(target: &Target) -> Result<Snapshot, ApplyError> {
    let text = target.save(None, Counters::Keep)?;
    Ok(Snapshot {
        family: target.family,
        backend: target.backend,
        text,
        noflush: false,
        covered: TableName::ALL.to_vec(),
    })
}

/// Reads only `tables`, with counters: with nft each with `iptables -t T -S -v` (which
/// reads one table; `iptables-nft-save -t` reads them all), with legacy the whole save
/// (fast there, and its `-t` would create a missing table). An nft table that does not
/// exist reads as empty, so a revert leaves it empty rather than absent.
pub fn snapshot_tables(target: &Target, tables: &[TableName]) -> Result<Snapshot, ApplyError> {
    if target.backend == Backend::Legacy {
        return snapshot(target);
    }
    let mut text = String::new();
    for t in tables {
        spec_to_restore(&target.list_table(*t)?, *t, &mut text);
    }
    Ok(Snapshot {
        family: target.family,
        backend: target.backend,
        text,
        noflush: false,
        covered: tables.to_vec(),
    })
}

/// Turns one table in `iptables -S -v` form into an `iptables-restore --counters` block,
/// line by line (`-P C P -c p b` → `:C P [p:b]`, `-N C` → `:C - [0:0]`, `-A` lines as
/// they are: iptables-restore takes `-c p b` inside a rule). Text only: the snapshot of a
/// 100,000-rule table needs no parsing (0.15 s in `parse_rules_spec`, and it is only put
/// back as it was).
fn spec_to_restore(spec: &str, table: TableName, out: &mut String) {
    out.push_str(&format!("*{table}\n"));
    let mut rules = String::new();
    for l in spec.lines() {
        let mut words = l.split_whitespace();
        match words.next() {
            Some("-P") => {
                let (Some(chain), Some(policy)) = (words.next(), words.next()) else { continue };
                let counters = match (words.next(), words.next(), words.next()) {
                    (Some("-c"), Some(p), Some(b)) => format!("[{p}:{b}]"),
                    _ => "[0:0]".to_owned(),
                };
                out.push_str(&format!(":{chain} {policy} {counters}\n"));
            }
            Some("-N") => {
                if let Some(chain) = words.next() {
                    out.push_str(&format!(":{chain} - [0:0]\n"));
                }
            }
            Some("-A") => {
                rules.push_str(l);
                rules.push('\n');
            }
            _ => {}
        }
    }
    out.push_str(&rules);
    out.push_str("COMMIT\n");
}

/// Checks, locks and plans an apply of `desired` to `target`, without touching the
/// kernel. Fails when the model finds errors or the lock-out guard refuses (unless
/// `force`).
pub fn prepare<'a>(
    desired: &'a Ruleset,
    target: &Target,
    opts: &ApplyOptions,
) -> Result<Prepared<'a>, ApplyError> {
    prepare_inner(desired, target, opts, false)
}

/// [`prepare`], with a snapshot of every table the apply changes, so that the whole apply
/// can be undone after it succeeded (confirm-or-revert, or a later family failing). A
/// plain [`prepare`] skips the snapshot of the table applied last: nothing after it can
/// fail.
pub fn prepare_reversible<'a>(
    desired: &'a Ruleset,
    target: &Target,
    opts: &ApplyOptions,
) -> Result<Prepared<'a>, ApplyError> {
    prepare_inner(desired, target, opts, true)
}

fn prepare_inner<'a>(
    desired: &'a Ruleset,
    target: &Target,
    opts: &ApplyOptions,
    keep_backup: bool,
) -> Result<Prepared<'a>, ApplyError> {
    // The model's checks and the guard run beside the reading of the kernel (both only
    // read); nothing is written before both are done. An incremental apply against the
    // record validates only what can have changed (see `validation_scope`).
    let mut timings = Vec::new();
    let (early, took) = timed(|| if opts.incremental { early_plan(desired, target) } else { None });
    let scope = early.as_ref().map(|e| validation_scope(desired, &e.plan));
    if opts.incremental {
        timings.push(("record + plan", took));
    }
    let (checked, kernel, rendered) = std::thread::scope(|s| {
        let check = s.spawn(|| timed(|| check(scope.as_ref().unwrap_or(desired), desired, opts)));
        let kernel = timed(|| read_kernel(desired, target, opts, keep_backup, early.as_ref()));
        // The restore input is rendered while the checks finish (it is thrown away if
        // they fail).
        let rendered = kernel.0.as_ref().ok().map(|k| timed(|| k.1.restore_input(desired)));
        let checked = check.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (checked, kernel, rendered)
    });
    timings.push(("[validate + guard]", checked.1));
    timings.push(("lock + snapshot + plan", kernel.1));
    let mut report = checked.0;
    let (lock, plan, snap, want, record, repaired) = kernel.0?;
    let scope_held = early.as_ref().is_some_and(|e| record.is_some() && e.plan == plan);
    if scope.is_some() && !scope_held {
        // The record changed under us, or the canary failed: validate everything.
        let (r, took) = timed(|| check(desired, desired, opts));
        timings.push(("validate + guard (whole ruleset)", took));
        report = r;
    }
    let report = report?;
    let (input, took) = rendered.unwrap_or_else(|| timed(|| plan.restore_input(desired)));
    timings.push(("[render restore input]", took));
    Ok(Prepared {
        target: target.clone(),
        desired,
        plan,
        input,
        guard: report,
        snapshot: snap,
        label: format!("a ruleset of {} rules", desired.rule_count()),
        repaired,
        guardian: None,
        hold: false,
        verify: opts.verify,
        netlink: opts.readback_netlink,
        want,
        record,
        timings,
        _lock: Some(lock),
    })
}

/// Runs `f` and says how long it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let v = f();
    (v, start.elapsed())
}

/// The model's validation and the lock-out guard.
/// The plan of an incremental apply against the record, computed before the lock is
/// taken so that validation can be limited to it; `read_kernel` confirms it.
fn early_plan(desired: &Ruleset, target: &Target) -> Option<Early> {
    let text = cache::load_text(target)?;
    let fp = cache::parse_text(&text)?;
    if !desired.tables.iter().all(|t| fp.tables.contains_key(&t.name)) {
        return None;
    }
    let plan = Plan::incremental_from(&fp, &cache::raw_want(desired), true);
    Some(Early { text, fp, plan })
}

/// The record as read before the lock, and the plan made from it.
struct Early {
    text: String,
    fp: Fingerprint,
    plan: Plan,
}

/// What an incremental apply must validate: the chains it writes and every chain they
/// can reach, whole; of every other chain only its jumps and gotos, without their
/// matches (those rules were validated when they were applied and are byte for byte the
/// same, as the record's hashes show), so that undefined chains, loops and the hooks a
/// chain is reached from are still checked over the whole table. Whatever slipped
/// through would still be refused by the kernel at commit and rolled back.
fn validation_scope(desired: &Ruleset, plan: &Plan) -> Ruleset {
    let mut out = Ruleset::new(desired.family);
    for t in &desired.tables {
        let action = plan.tables.iter().find(|(n, _)| *n == t.name).map(|(_, a)| a);
        let changed: Vec<&str> = match action {
            Some(TableAction::Patch { policies, rewrite, create, .. }) => {
                policies.iter().chain(rewrite).chain(create).map(String::as_str).collect()
            }
            Some(TableAction::Unchanged) => Vec::new(),
            _ => {
                out.tables.push(t.clone());
                continue;
            }
        };
        let by_name: HashMap<&str, &portcullis_rules::Chain> =
            t.chains.iter().map(|c| (c.name.as_str(), c)).collect();
        let mut whole: HashSet<&str> = changed.iter().copied().collect();
        let mut stack = changed;
        while let Some(name) = stack.pop() {
            let Some(c) = by_name.get(name) else { continue };
            for r in &c.rules {
                if let Some(next) = r.chain_ref(|n| by_name.contains_key(n))
                    && whole.insert(next)
                {
                    stack.push(next);
                }
            }
        }
        let mut nt = Table::new(t.name);
        for c in &t.chains {
            if whole.contains(c.name.as_str()) {
                nt.chains.push(c.clone());
                continue;
            }
            let mut k = portcullis_rules::Chain {
                name: c.name.clone(),
                policy: c.policy,
                counters: None,
                rules: Vec::new(),
                origin: c.origin,
            };
            for r in &c.rules {
                if r.chain_ref(|n| by_name.contains_key(n)).is_some() {
                    k.rules.push(portcullis_rules::Rule {
                        action: r.action.clone(),
                        origin: r.origin,
                        ..portcullis_rules::Rule::default()
                    });
                }
            }
            nt.chains.push(k);
        }
        out.tables.push(nt);
    }
    out
}

/// The model's validation of `scope` (the ruleset, or the part of it an incremental apply
/// must check) and the lock-out guard over the whole `desired`.
fn check(
    scope: &Ruleset,
    desired: &Ruleset,
    opts: &ApplyOptions,
) -> Result<GuardReport, ApplyError> {
    let errors = validate(scope);
    if !errors.is_empty() {
        return Err(ApplyError::Invalid(errors));
    }
    let paths = guard::management_paths(opts.ssh_connection.as_deref());
    let report = guard::check(desired, &paths);
    if report.refuses() && !opts.force {
        return Err(ApplyError::LockOut(format!(
            "the ruleset would cut the management path (pass --force to apply anyway)\n{report}"
        )));
    }
    Ok(report)
}

type KernelState =
    (Flock<File>, Plan, Snapshot, Option<Ruleset>, Option<Fingerprint>, Option<Repair>);

/// Takes the namespace's apply lock, snapshots the kernel and plans.
fn read_kernel(
    desired: &Ruleset,
    target: &Target,
    opts: &ApplyOptions,
    keep_backup: bool,
    early: Option<&Early>,
) -> Result<KernelState, ApplyError> {
    let lock = lock_namespace(target.netns.as_deref(), opts.lock_wait)?;
    // A journal found under the lock was left by an apply that died: repair it first.
    // One whose applier still runs belongs to an apply of several families, between two.
    if crate::journal::live_owner(target.netns.as_deref(), target.family).is_some() {
        return Err(ApplyError::Busy(target.describe()));
    }
    let repaired = crate::journal::recover(
        target.netns.as_deref(),
        target.family,
        "portcullis apply, before anything else,",
    );
    if let Some(r) = &repaired
        && let crate::journal::RepairOutcome::Failed(why) = &r.outcome
    {
        return Err(ApplyError::Journal(format!("{r}\n{why}")));
    }
    if !opts.incremental {
        let plan = Plan::full(desired);
        let mut need: Vec<TableName> = plan.tables.iter().map(|(t, _)| *t).collect();
        if !keep_backup && need.len() == 1 {
            // One table commits atomically: nothing after it can fail. With more, the
            // intent journal holds every table (a kill after the last commit, before
            // the applier saw the restore end, is repaired whole).
            need.pop();
        }
        return Ok((lock, plan, snapshot_tables(target, &need)?, None, None, repaired));
    }
    if let Some(text) = cache::load_text(target) {
        // Under the lock: the record read before it still holds, or it is read anew.
        let (fp, plan) = match early {
            Some(e) if e.text == text => (Some(e.fp.clone()), Some(e.plan.clone())),
            _ => (cache::parse_text(&text), None),
        };
        if let Some(fp) = fp {
            let covers = desired.tables.iter().all(|t| fp.tables.contains_key(&t.name));
            let mut reader = KernelReader::new(target, opts.readback_netlink);
            if covers && canary_ok(&mut reader, &fp, desired)? {
                let plan = plan.unwrap_or_else(|| {
                    Plan::incremental_from(&fp, &cache::raw_want(desired), true)
                });
                if let Some(snap) = partial_snapshot(target, &mut reader, &plan, &fp)? {
                    return Ok((lock, plan, snap, None, Some(fp), repaired));
                }
            }
        }
    }
    let snap = snapshot(target)?;
    let current =
        parse_save_as(&snap.text, target.family).map_err(|e| ApplyError::Readback(Box::new(e)))?;
    let want = comparable(desired, target.backend);
    let fp = Fingerprint::of(&comparable(&current, target.backend));
    let plan = Plan::incremental_from(&fp, &cache::canon_want(&want), false);
    Ok((lock, plan, snap, Some(want), None, repaired))
}

/// kube-proxy's canary check: the builtin chains of every table still hold what
/// portcullis last applied (a flush by another tool, or a reboot, shows here).
fn canary_ok(
    reader: &mut KernelReader<'_>,
    fp: &Fingerprint,
    desired: &Ruleset,
) -> Result<bool, ApplyError> {
    for t in &desired.tables {
        let Some(chains) = fp.tables.get(&t.name) else { return Ok(false) };
        let names: Vec<String> = t.name.builtin_chains().iter().map(|c| (*c).to_owned()).collect();
        let got = reader.chains(t.name, &names)?;
        for n in &names {
            let (Some(c), Some(rec)) = (got.chain(n), chains.get(n.as_str())) else {
                return Ok(false);
            };
            let policy = c.policy.map_or("-", |p| p.as_str());
            if rec.policy != policy || rec.canon != cache::hash_rules(&c.rules) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Some chains of `desired` in comparable form (builtins it leaves out come back empty).
fn comparable_chains(
    desired: &Ruleset,
    table: TableName,
    names: &[String],
    backend: Backend,
) -> Table {
    let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut t = Table::new(table);
    if let Some(src) = desired.table(table) {
        t.chains =
            src.chains.iter().filter(|c| wanted.contains(c.name.as_str())).cloned().collect();
    }
    let rs = comparable(&Ruleset { family: desired.family, tables: vec![t] }, backend);
    rs.tables.into_iter().next().unwrap_or_else(|| Table::new(table))
}

/// Reads chains from the kernel, in comparable form. With nft each chain with its own
/// `iptables -t T -S CHAIN` (nft fetches one chain; the reads run side by side); with
/// legacy, or for many chains, the whole `iptables-save` once per reader (legacy's `-S`
/// and `-t` fetch the whole table blob anyway, and its `-t` would create a missing table).
pub(crate) struct KernelReader<'a> {
    target: &'a Target,
    whole: Option<String>,
    /// Read nft chains over netlink (crate::nft) rather than with `iptables -S`.
    netlink: bool,
}

impl<'a> KernelReader<'a> {
    pub(crate) fn new(target: &'a Target, netlink: bool) -> Self {
        Self { target, whole: None, netlink }
    }

    /// The chains `names` of `table` that exist.
    pub(crate) fn chains(
        &mut self,
        table: TableName,
        names: &[String],
    ) -> Result<Table, ApplyError> {
        let target = self.target;
        let mut got = Table::new(table);
        let by_netlink = (self.netlink && target.backend == Backend::Nft)
            .then(|| {
                crate::nft::nft_list_chains(target.netns.as_deref(), target.family, table, names)
            })
            .and_then(Result::ok);
        let texts = by_netlink.or_else(|| {
            (target.backend == Backend::Nft && names.len() <= 64).then(|| {
                std::thread::scope(|s| {
                    let handles: Vec<_> = names
                        .iter()
                        .map(|n| s.spawn(move || target.list_chain(table, n).ok()))
                        .collect();
                    handles.into_iter().map(|h| h.join().ok().flatten()).collect()
                })
            })
        });
        if let Some(texts) = texts {
            for (n, text) in names.iter().zip(texts) {
                let Some(text) = text else { continue };
                let rs = parse_rules_spec(&text, table, target.family)
                    .map_err(|e| ApplyError::Readback(Box::new(e)))?;
                if let Some(c) = rs.table(table).and_then(|tt| tt.chain(n)) {
                    got.chains.push(c.clone());
                }
            }
        } else {
            if self.whole.is_none() {
                self.whole = Some(target.save(None, Counters::Drop)?);
            }
            // Only the chains asked for are parsed.
            let index = verify::index(self.whole.as_deref().unwrap_or(""));
            if let Some((_, chains)) = index.get(&table) {
                for n in names {
                    let Some(saved) = chains.get(n.as_str()) else { continue };
                    let rs = parse_rules_spec(&saved.spec(n), table, target.family)
                        .map_err(|e| ApplyError::Readback(Box::new(e)))?;
                    if let Some(c) = rs.table(table).and_then(|tt| tt.chain(n)) {
                        got.chains.push(c.clone());
                    }
                }
            }
        }
        let rs = comparable(&Ruleset { family: target.family, tables: vec![got] }, target.backend);
        let mut t = rs.tables.into_iter().next().unwrap_or_else(|| Table::new(table));
        // comparable() adds the builtin chains; keep only those that were read.
        let read: HashSet<&str> = names.iter().map(String::as_str).collect();
        t.chains.retain(|c| read.contains(c.name.as_str()));
        Ok(t)
    }
}

/// The `--noflush` restore input that undoes `plan`: the old content of every chain it
/// rewrites, re-creates or re-policies, and the deletion of the chains it creates.
/// `None` when a chain it reads is not what the record says: the record is stale.
fn partial_snapshot(
    target: &Target,
    reader: &mut KernelReader<'_>,
    plan: &Plan,
    record: &Fingerprint,
) -> Result<Option<Snapshot>, ApplyError> {
    let mut text = String::new();
    for (t, action) in &plan.tables {
        let TableAction::Patch { policies, rewrite, create, delete } = action else { continue };
        let mut names: Vec<String> =
            policies.iter().chain(rewrite).chain(delete).cloned().collect();
        names.sort();
        names.dedup();
        let old = reader.chains(*t, &names)?;
        let recorded = record.tables.get(t);
        for c in &old.chains {
            let rec = recorded.and_then(|r| r.get(c.name.as_str()));
            if rec.is_none_or(|r| r.canon != cache::hash_rules(&c.rules)) {
                return Ok(None);
            }
        }
        text.push_str(&format!("*{t}\n"));
        for c in &old.chains {
            match c.policy {
                Some(p) => text.push_str(&format!(":{} {} [0:0]\n", c.name, p.as_str())),
                None => text.push_str(&format!(":{} - [0:0]\n", c.name)),
            }
        }
        for c in create {
            text.push_str(&format!(":{c} - [0:0]\n"));
        }
        for c in &old.chains {
            if c.is_builtin() {
                if !rewrite.contains(&c.name.as_str().to_owned()) {
                    continue;
                }
                text.push_str(&format!("-F {}\n", c.name));
            }
            for r in &c.rules {
                text.push_str(&render_rule(c.name.as_str(), r));
                text.push('\n');
            }
        }
        for c in create {
            text.push_str(&format!("-X {c}\n"));
        }
        text.push_str("COMMIT\n");
    }
    let covered = plan.tables.iter().map(|(t, _)| *t).collect();
    Ok(Some(Snapshot {
        family: target.family,
        backend: target.backend,
        text,
        noflush: true,
        covered,
    }))
}

/// Validates, guards, snapshots and applies `desired` in one go. On failure every table
/// is as it was before.
pub fn apply(
    desired: &Ruleset,
    target: &Target,
    opts: &ApplyOptions,
) -> Result<Applied, ApplyError> {
    prepare(desired, target, opts)?.commit()
}

impl Prepared<'_> {
    /// Starts a guardian process (`exe __guardian`, see [`crate::journal`]) for the
    /// apply when its input commits more than one table: should this process die
    /// between two commits or during its rollback, the guardian restores the old
    /// ruleset at once. Without it, the next apply or `status` repairs.
    pub fn with_guardian(mut self, exe: &Path) -> Self {
        self.guardian = Some(exe.to_path_buf());
        self
    }

    /// Feeds the restore input to iptables-restore (one process). When it fails, every
    /// table it had already committed is restored from the snapshot, and the error is
    /// placed at the line of the user's file it blames. Then reads the kernel back.
    pub fn commit(self) -> Result<Applied, ApplyError> {
        let (applied, held) = self.commit_held()?;
        held.release();
        Ok(applied)
    }

    /// [`Prepared::commit`] for one family of several: the intent journal (written even
    /// for one table) stays open after success, so that should the applier die while a
    /// later family is applied, the guardian (or the next apply) restores this family
    /// too. [`Held::release`] closes it once every family is done, or once this one has
    /// been reverted. Use with [`prepare_reversible`] (the journal must hold every table).
    pub fn commit_held(mut self) -> Result<(Applied, Held), ApplyError> {
        if self.plan.is_noop() {
            let applied = Applied {
                plan: self.plan,
                snapshot: self.snapshot,
                drift: Vec::new(),
                timings: self.timings,
            };
            return Ok((applied, Held(None)));
        }
        cache::forget(&self.target);
        // More than one table commits one by one: journal the intent first.
        let tables = self.input.tables();
        let intent = if tables.len() > 1 || self.hold {
            let (intent, took) = timed(|| {
                Intent::begin(
                    &self.target,
                    &self.snapshot,
                    &tables,
                    &self.label,
                    self.guardian.as_deref(),
                )
            });
            self.timings.push(("intent journal + guardian", took));
            Some(intent?)
        } else {
            None
        };
        let keep = intent.as_ref().and_then(Intent::keep_fd);
        let flags = RestoreFlags { noflush: self.input.noflush, ..RestoreFlags::default() };
        let replaced: Vec<TableName> = self
            .plan
            .tables
            .iter()
            .filter(|(_, a)| *a == TableAction::Replace)
            .map(|(t, _)| *t)
            .collect();
        // The restore runs in the kernel and in its own process; meanwhile the canonical
        // form, the expected text and the record are computed here.
        let fast = self.record.is_some();
        let (verify_on, backend) = (self.verify, self.target.backend);
        let want_in = self.want.take();
        let desired = self.desired;
        let ((result, restore_took), (prep, prep_took)) = std::thread::scope(|s| {
            let restore =
                s.spawn(|| timed(|| self.target.restore_keeping(&self.input.text, flags, keep)));
            let prep = timed(|| {
                if fast {
                    return None;
                }
                let want = want_in.unwrap_or_else(|| comparable(desired, backend));
                let exp = if verify_on {
                    verify::expected(&want, &replaced)
                } else {
                    Expected::default()
                };
                let record = Fingerprint::record(desired, &want);
                Some((want, exp, record))
            });
            (restore.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), prep)
        });
        self.timings.push(("[canonical form, expected text, record]", prep_took));
        self.timings.push(("iptables-restore", restore_took));
        if let Err(failure) = result {
            let err = self.fail(failure, keep);
            // Rolled back completely: the journal has done its work. A failed rollback
            // leaves it for the guardian or the next apply to retry.
            if !matches!(err, ApplyError::RevertFailed { .. })
                && let Some(i) = intent
            {
                i.complete();
            }
            return Err(err);
        }
        // Every table is committed: the kernel holds the new ruleset, complete.
        let mut held = Held(intent);
        if !self.hold {
            std::mem::replace(&mut held, Held(None)).release();
        }
        let (drift, record, steps) = self.readback(&replaced, prep)?;
        self.timings.extend(steps);
        let ((), took) = timed(|| cache::store(&self.target, &record));
        self.timings.push(("record", took));
        let applied =
            Applied { plan: self.plan, snapshot: self.snapshot, drift, timings: self.timings };
        Ok((applied, held))
    }

    /// Keeps the intent journal open after a successful commit: see
    /// [`Prepared::commit_held`].
    pub fn hold_journal(mut self) -> Self {
        self.hold = true;
        self
    }

    fn fail(&self, failure: RestoreFailure, keep: Option<RawFd>) -> ApplyError {
        let line = failure.line;
        let committed = match (line, &failure.kind) {
            (_, FailureKind::LockBusy { .. } | FailureKind::Spawn(_)) => Vec::new(),
            (Some(l), _) => self.input.committed_before(l),
            // Unknown place: restore every table, which is harmless for the uncommitted.
            (None, _) => self.input.tables(),
        };
        let mut rejected = Rejected {
            table: line.and_then(|l| self.input.source(l)).map(LineSource::table),
            span: line.and_then(|l| self.locate(l, &failure)),
            failure,
            rolled_back: Vec::new(),
        };
        if committed.is_empty() {
            return ApplyError::Rejected(Box::new(rejected));
        }
        match revert_keeping(&self.target, &self.snapshot, &committed, keep) {
            Ok(()) => {
                rejected.rolled_back = committed;
                ApplyError::Rejected(Box::new(rejected))
            }
            Err(revert) => ApplyError::RevertFailed { failure: Box::new(rejected), revert },
        }
    }

    /// The place in the user's file of a failure at input line `line`.
    fn locate(&self, line: u32, failure: &RestoreFailure) -> Option<Span> {
        let src = self.input.source(line)?;
        let user_line = match src {
            LineSource::Rule(_, l) | LineSource::ChainLine(_, l) => l,
            LineSource::Header(_) => 0,
            LineSource::Commit(t) => self.commit_culprit(t, failure),
        };
        (user_line > 0).then(|| Span { line: user_line, column: 1, source_line: String::new() })
    }

    /// nft blames an undefined jump target on the COMMIT line: find the rule of that
    /// table that names it.
    fn commit_culprit(&self, table: TableName, failure: &RestoreFailure) -> u32 {
        let Some(tok) = blamed_token(&failure.kind.to_string()) else { return 0 };
        let Some(t) = self.desired.table(table) else { return 0 };
        for c in &t.chains {
            for r in &c.rules {
                let text = render_rule(c.name.as_str(), r);
                if text.split_whitespace().any(|w| w == tok) {
                    return r.origin.line;
                }
            }
        }
        0
    }

    /// Reads back what was written and returns the drift, the new record, and the time
    /// of each step (`read back (netlink)` or `read back (iptables-save)`, `compare`).
    fn readback(
        &self,
        replaced: &[TableName],
        prep: Option<(Ruleset, Expected, Fingerprint)>,
    ) -> Result<(Vec<Drift>, Fingerprint, Steps), ApplyError> {
        let mut steps = Vec::new();
        let started = Instant::now();
        let mut drift = Vec::new();
        let mut reader = KernelReader::new(&self.target, self.netlink);
        let (want, exp, mut record) = match prep {
            Some((w, e, r)) => (Some(w), e, r),
            None => (None, Expected::default(), self.record.clone().unwrap_or_default()),
        };
        if self.verify && !replaced.is_empty() {
            let (family, backend) = (self.target.family, self.target.backend);
            // With nft over IPv4, the kernel is read over netlink (crate::nft: about twice
            // as fast as iptables-nft-save); a ruleset that reader does not decode
            // exactly, or a chain of its text that does not parse, goes to the tool.
            let (kernel, took) = timed(|| {
                (self.netlink && backend == Backend::Nft)
                    .then(|| {
                        let ns = self.target.netns.as_deref();
                        crate::nft::nft_tables(ns, family, Some(replaced), Counters::Drop)
                    })
                    .and_then(Result::ok)
            });
            let (compared, compare_took) = timed(|| {
                kernel.as_ref().map(|k| {
                    let mut d = Vec::new();
                    verify::compare_index(&exp, &verify::index_kernel(k), family, backend, &mut d)
                        .map(|()| d)
                })
            });
            match compared {
                Some(Ok(d)) => {
                    drift = d;
                    steps.push(("read back (netlink)", took));
                    steps.push(("compare", compare_took));
                }
                _ => {
                    let text = match replaced {
                        [one] => self.target.save(Some(*one), Counters::Drop)?,
                        _ => self.target.save(None, Counters::Drop)?,
                    };
                    // With the netlink attempt, if there was one.
                    steps.push(("read back (iptables-save)", started.elapsed()));
                    let (r, took) =
                        timed(|| verify::compare_save(&exp, &text, family, backend, &mut drift));
                    r?;
                    steps.push(("compare", took));
                }
            }
        }
        for (t, action) in &self.plan.tables {
            let TableAction::Patch { policies, rewrite, create, delete } = action else {
                continue;
            };
            let mut names: Vec<String> =
                policies.iter().chain(rewrite).chain(create).cloned().collect();
            names.sort();
            names.dedup();
            let wanted = match &want {
                Some(w) => w.table(*t).cloned().unwrap_or_else(|| Table::new(*t)),
                None => comparable_chains(self.desired, *t, &names, self.target.backend),
            };
            if self.verify {
                let (got, took) = timed(|| reader.chains(*t, &names));
                verify::compare_chains(&wanted, &got?, &names, &mut drift);
                steps.push(("read back changed chains", took));
            }
            if want.is_none() {
                // Fast path: bring the old record up to date for the chains written.
                let raw: HashMap<String, u64> = cache::raw_want_of(self.desired, *t, &names);
                let entry = record.tables.entry(*t).or_default();
                for n in &names {
                    let Some(c) = wanted.chain(n) else { continue };
                    let print = cache::ChainPrint {
                        policy: c.policy.map_or("-", |p| p.as_str()).to_owned(),
                        canon: cache::hash_rules(&c.rules),
                        raw: raw.get(n).copied().unwrap_or(0),
                    };
                    entry.insert(n.clone(), print);
                }
                for n in delete {
                    entry.remove(n);
                }
            }
        }
        Ok((drift, record, steps))
    }
}

/// Restores `tables` from `snapshot` in one iptables-restore run (`--counters`). A table
/// that did not exist before is emptied (builtin chains, policy ACCEPT) and, with the nft
/// backend, deleted.
pub fn revert(
    target: &Target,
    snapshot: &Snapshot,
    tables: &[TableName],
) -> Result<(), RestoreFailure> {
    revert_keeping(target, snapshot, tables, None)
}

/// [`revert`], its restore holding `keep` (the guardian's pipe) too.
fn revert_keeping(
    target: &Target,
    snapshot: &Snapshot,
    tables: &[TableName],
    keep: Option<RawFd>,
) -> Result<(), RestoreFailure> {
    cache::forget(target);
    if snapshot.noflush {
        let flags = RestoreFlags { noflush: true, ..RestoreFlags::default() };
        return target.restore_keeping(&snapshot.text, flags, keep);
    }
    let mut input = String::new();
    let mut absent = Vec::new();
    for t in tables {
        if !snapshot.covered.contains(t) {
            return Err(RestoreFailure::parse(
                None,
                &format!("the snapshot does not hold table {t}: it cannot be restored"),
            ));
        }
        match snapshot.block(*t) {
            Some(b) => input.push_str(&b),
            None => {
                absent.push(*t);
                input.push_str(&format!("*{t}\n"));
                for c in t.builtin_chains() {
                    input.push_str(&format!(":{c} ACCEPT [0:0]\n"));
                }
                input.push_str("COMMIT\n");
            }
        }
    }
    target.restore_keeping(
        &input,
        RestoreFlags { counters: true, ..RestoreFlags::default() },
        keep,
    )?;
    if target.backend == Backend::Nft {
        let family = match target.family {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        };
        for t in absent {
            let mut c = target.command("nft");
            c.args(["delete", "table", family, t.as_str()]);
            c.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let _ = c.status();
        }
    }
    Ok(())
}

/// Which backend to use in the target namespace: the one that holds rules; when both do,
/// an error; when neither does, the host's `iptables -V` choice (nft when unsure).
///
/// The backend of portcullis' last successful apply there is taken at the cost of one
/// read of the *other* backend, which must hold nothing: dumping the backend that holds a
/// kube-proxy-scale ruleset costs a second (`iptables-nft-save`), the empty one
/// milliseconds. When neither holds rules this keeps the last apply's backend rather than
/// the host's default.
pub fn detect_backend(netns: Option<&str>, family: Family) -> Result<Backend, ApplyError> {
    if let Some(b) = cache::recorded_backend(netns, family)
        && !backend_holds(netns, family, other_backend(b))
    {
        return Ok(b);
    }
    match (
        backend_holds(netns, family, Backend::Nft),
        backend_holds(netns, family, Backend::Legacy),
    ) {
        (true, true) => Err(ApplyError::MixedBackends(where_(netns))),
        (true, false) => Ok(Backend::Nft),
        (false, true) => Ok(Backend::Legacy),
        (false, false) => Ok(host_default_backend(family)),
    }
}

/// Refuses `backend` when the other backend holds rules in the namespace: the two drive
/// different kernel subsystems and would both filter.
pub fn ensure_single_backend(
    netns: Option<&str>,
    family: Family,
    backend: Backend,
) -> Result<(), ApplyError> {
    if backend_holds(netns, family, other_backend(backend)) {
        return Err(ApplyError::MixedBackends(where_(netns)));
    }
    Ok(())
}

fn other_backend(b: Backend) -> Backend {
    match b {
        Backend::Nft => Backend::Legacy,
        Backend::Legacy => Backend::Nft,
    }
}

fn where_(netns: Option<&str>) -> String {
    netns.map_or("the current namespace".into(), |n| format!("namespace {n}"))
}

fn backend_holds(netns: Option<&str>, family: Family, backend: Backend) -> bool {
    let t = Target::new(netns, family, backend);
    let Ok(text) = t.save(None, Counters::Drop) else { return false };
    parse_save_as(&text, family).is_ok_and(|rs| holds_rules(&rs))
}

/// Whether a ruleset is more than empty builtin chains with policy ACCEPT.
pub fn holds_rules(rs: &Ruleset) -> bool {
    rs.tables.iter().flat_map(|t| &t.chains).any(|c| {
        !c.rules.is_empty() || !c.is_builtin() || c.policy.is_some_and(|p| p.as_str() != "ACCEPT")
    })
}

/// The backend `iptables -V` (`ip6tables -V`) names on this host.
pub fn host_default_backend(family: Family) -> Backend {
    #[allow(clippy::disallowed_methods, reason = "asks the host's iptables which backend it is")]
    let out = std::process::Command::new(family.command()).arg("-V").output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("(legacy)") => Backend::Legacy,
        _ => Backend::Nft,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prepared apply of `text`, built without the model's checks or the kernel.
    fn prepared(text: &str) -> Prepared<'static> {
        // Leaked: a test's ruleset lives as long as the test.
        let desired: &'static Ruleset =
            Box::leak(Box::new(portcullis_syntax::parse_save(text).expect("parses")));
        let plan = Plan::full(desired);
        let input = plan.restore_input(desired);
        let target = Target::new(Some("pcl-unused"), Family::V4, Backend::Nft);
        Prepared {
            snapshot: Snapshot {
                family: Family::V4,
                backend: Backend::Nft,
                text: String::new(),
                noflush: false,
                covered: Vec::new(),
            },
            target,
            desired,
            plan,
            input,
            guard: GuardReport { checks: Vec::new() },
            label: String::new(),
            repaired: None,
            guardian: None,
            hold: false,
            verify: false,
            netlink: false,
            want: None,
            record: None,
            timings: Vec::new(),
            _lock: None,
        }
    }

    #[test]
    fn spec_listing_becomes_a_restore_block_with_counters() {
        let spec = "-P INPUT DROP -c 3 4\n-P FORWARD ACCEPT -c 0 0\n-N x\n\
                    -A INPUT -p tcp -m comment --comment \"a -c 1 2\" -c 5 100 -j ACCEPT\n-A x -c 7 8\n";
        let mut out = String::new();
        spec_to_restore(spec, TableName::Filter, &mut out);
        assert_eq!(
            out,
            "*filter\n:INPUT DROP [3:4]\n:FORWARD ACCEPT [0:0]\n:x - [0:0]\n\
             -A INPUT -p tcp -m comment --comment \"a -c 1 2\" -c 5 100 -j ACCEPT\n-A x -c 7 8\nCOMMIT\n"
        );
        let rs = portcullis_syntax::parse_save(&out).expect("a restore input");
        assert_eq!(rs.rule_count(), 2);
    }

    // nft blames an undefined jump target on the COMMIT line; the applier finds the rule.
    #[test]
    fn commit_line_errors_are_mapped_to_the_rule() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -j NOSUCHCHAIN\nCOMMIT\n";
        let p = prepared(text);
        let commit = p.input.text.lines().position(|l| l == "COMMIT").expect("COMMIT") + 1;
        let stderr = format!(
            "iptables-nft-restore v1.8.9 (nf_tables): Chain 'NOSUCHCHAIN' does not exist\nError occurred at line: {commit}\n"
        );
        let failure = RestoreFailure::parse(Some(2), &stderr);
        let span = p.locate(u32::try_from(commit).expect("small"), &failure).expect("placed");
        assert_eq!(span.line, 4);
        let r = Rejected {
            failure,
            table: Some(TableName::Filter),
            span: Some(span),
            rolled_back: vec![],
        };
        let shown = r.render("rules.v4", text);
        assert!(shown.contains("--> rules.v4:4:13"), "{shown}");
        // Legacy's bare "line N failed" on COMMIT names no rule: the table is reported.
        let legacy =
            RestoreFailure::parse(Some(1), &format!("iptables-restore: line {commit} failed\n"));
        assert!(p.locate(u32::try_from(commit).expect("small"), &legacy).is_none());
    }
}
