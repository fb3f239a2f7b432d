//! The intent journal of a multi-table apply, and the guardian process that repairs it.
//!
//! The kernel commits an `iptables-restore` input table by table, so an applier killed
//! between two commits (or during its rollback) leaves tables of two rulesets in force.
//! Before the first commit of an input with more than one table, `Intent::begin`
//! durably writes `<state>/<key>/journal.v4|v6` (temporary file, fsync, rename, fsync of
//! the directory): the snapshot of every table the apply writes, the applier's pid, its
//! start time, the boot id, the namespace's identity and what is being applied. It is
//! removed once the restore succeeded or a rollback completed (`Intent::complete`).
//!
//! A journal that is still there when nobody holds the namespace's apply lock belongs to
//! an applier that died mid-apply. Two things repair it, whichever comes first:
//!
//! - the **guardian**: `portcullis __guardian`, started by `Intent::begin` in a process
//!   group of its own, that blocks the termination signals and holds the read end of a
//!   pipe whose write end only the applier (close-on-exec) and its restore child hold. The
//!   end of the pipe with the journal still there means the applier died: the guardian
//!   takes the apply lock, restores the journaled snapshot ([`guardian_main`]), writes
//!   `repaired.v4|v6` and says so on the applier's stderr;
//! - the next `portcullis apply` or `status` in that namespace ([`recover`]), under the
//!   apply lock, before anything else.

use std::fmt::{self, Write as _};
use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_rules::{Backend, Family, TableName};

use crate::apply::{Snapshot, lock_namespace, revert, state_dir, state_key};
use crate::confirm::{self, parse_tables};
use crate::error::ApplyError;
use crate::exec::Target;

/// The hidden subcommand of the portcullis binary that runs [`guardian_main`].
pub const GUARDIAN_SUBCOMMAND: &str = "__guardian";

const MAGIC: &str = "portcullis-journal 1";
const SNAPSHOT_FOLLOWS: &str = "--- snapshot";

fn fam(f: Family) -> &'static str {
    match f {
        Family::V4 => "v4",
        Family::V6 => "v6",
    }
}

/// The journal file of a namespace and family.
pub fn journal_path(netns: Option<&str>, family: Family) -> PathBuf {
    confirm::key_dir(netns).join(format!("journal.{}", fam(family)))
}

fn repaired_path(netns: Option<&str>, family: Family) -> PathBuf {
    confirm::key_dir(netns).join(format!("repaired.{}", fam(family)))
}

/// The start time of process `pid` (clock ticks since boot, `/proc/PID/stat` field 22):
/// with the pid, it names one process even after the pid is reused.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `pid` that started at `start` still runs (a zombie does not).
fn running(pid: u32, start: u64) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let Some((_, rest)) = stat.rsplit_once(')') else { return false };
    let state = rest.trim_start().chars().next();
    !matches!(state, Some('Z' | 'X')) && process_start(pid) == Some(start)
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The identity of a network namespace (the inode of its nsfs file): a namespace deleted
/// and created again under the same name is another one.
fn netns_id(netns: Option<&str>) -> String {
    use std::os::unix::fs::MetadataExt as _;
    let path = match netns {
        Some(n) => PathBuf::from("/run/netns").join(n),
        None => PathBuf::from("/proc/self/ns/net"),
    };
    fs::metadata(path).map(|m| format!("{}:{}", m.dev(), m.ino())).unwrap_or_default()
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// `YYYY-MM-DD HH:MM:SS UTC` of milliseconds since the epoch.
fn utc(ms: u128) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = portcullis_rules::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// An intent journal as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The applier's pid.
    pub pid: u32,
    /// The applier's start time (see [`process_start`]).
    pub start: u64,
    /// The boot the journal was written in.
    pub boot_id: String,
    /// The identity of the namespace (see `netns_id`).
    pub netns_id: String,
    /// When the apply began, in milliseconds since the epoch.
    pub started_ms: u128,
    /// The namespace.
    pub netns: Option<String>,
    /// The family.
    pub family: Family,
    /// The backend.
    pub backend: Backend,
    /// The xtables lock file.
    pub lockfile: Option<PathBuf>,
    /// The tables the apply writes (the repair restores exactly these).
    pub tables: Vec<TableName>,
    /// Whether the snapshot is a partial `--noflush` input (incremental apply).
    pub noflush: bool,
    /// What was being applied (for messages).
    pub what: String,
    /// The old content of `tables`.
    pub snapshot: String,
}

impl Record {
    /// The journal of an apply of `what` to `target` by this process, about to write
    /// `tables`, whose old content `snapshot` holds.
    pub fn new(target: &Target, snapshot: &Snapshot, tables: &[TableName], what: &str) -> Self {
        let pid = std::process::id();
        Self {
            pid,
            start: process_start(pid).unwrap_or(0),
            boot_id: boot_id(),
            netns_id: netns_id(target.netns.as_deref()),
            started_ms: now_ms(),
            netns: target.netns.clone(),
            family: target.family,
            backend: target.backend,
            lockfile: target.lockfile.clone(),
            tables: tables.to_vec(),
            noflush: snapshot.noflush,
            what: what.to_owned(),
            snapshot: snapshot.text.clone(),
        }
    }

    fn to_text(&self) -> String {
        let mut s = String::with_capacity(self.snapshot.len() + 512);
        let _ = writeln!(s, "{MAGIC}");
        let _ = writeln!(s, "pid={}", self.pid);
        let _ = writeln!(s, "start={}", self.start);
        let _ = writeln!(s, "boot_id={}", self.boot_id);
        let _ = writeln!(s, "netns_id={}", self.netns_id);
        let _ = writeln!(s, "started_ms={}", self.started_ms);
        let _ = writeln!(s, "netns={}", self.netns.as_deref().unwrap_or(""));
        let _ = writeln!(s, "family={}", fam(self.family));
        let backend = if self.backend == Backend::Legacy { "legacy" } else { "nft" };
        let _ = writeln!(s, "backend={backend}");
        let lock = self.lockfile.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        let _ = writeln!(s, "lockfile={lock}");
        let tables: Vec<&str> = self.tables.iter().map(|t| t.as_str()).collect();
        let _ = writeln!(s, "tables={}", tables.join(","));
        let _ = writeln!(s, "noflush={}", u8::from(self.noflush));
        let _ = writeln!(s, "what={}", self.what.replace('\n', " "));
        let _ = writeln!(s, "{SNAPSHOT_FOLLOWS}");
        s.push_str(&self.snapshot);
        s
    }

    fn parse(text: &str) -> Option<Self> {
        let (head, snapshot) = text.split_once(&format!("\n{SNAPSHOT_FOLLOWS}\n"))?;
        let mut lines = head.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let fields: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once('=')).collect();
        let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        Some(Self {
            pid: get("pid")?.parse().ok()?,
            start: get("start")?.parse().ok()?,
            boot_id: get("boot_id")?.to_owned(),
            netns_id: get("netns_id")?.to_owned(),
            started_ms: get("started_ms")?.parse().ok()?,
            netns: get("netns").filter(|s| !s.is_empty()).map(str::to_owned),
            family: if get("family")? == "v6" { Family::V6 } else { Family::V4 },
            backend: get("backend")?.parse().ok()?,
            lockfile: get("lockfile").filter(|s| !s.is_empty()).map(PathBuf::from),
            tables: parse_tables(get("tables")?)?,
            noflush: get("noflush") == Some("1"),
            what: get("what").unwrap_or("").to_owned(),
            snapshot: snapshot.to_owned(),
        })
    }

    fn target(&self) -> Target {
        Target::stored(self.netns.clone(), self.family, self.backend, self.lockfile.clone())
    }

    fn place(&self) -> String {
        self.netns.as_ref().map_or("the current namespace".into(), |n| format!("namespace {n}"))
    }
}

/// Reads the journal of a namespace and family, if there is one. A journal that cannot be
/// parsed (cut short: it is written to a temporary file and renamed, so only by hand)
/// reads as `None`.
pub fn read(netns: Option<&str>, family: Family) -> Option<Record> {
    Record::parse(&fs::read_to_string(journal_path(netns, family)).ok()?)
}

/// Writes the journal `r` durably (see the module): what an applier does before its first
/// commit. Returns the journal's path.
pub fn write(r: &Record) -> Result<PathBuf, ApplyError> {
    let path = journal_path(r.netns.as_deref(), r.family);
    write_durable(&path, r.to_text().as_bytes()).map_err(|e| ApplyError::io(&path, e))?;
    Ok(path)
}

/// Writes `data` to `path` durably: a temporary file beside it, fsynced, renamed over
/// it, and the directory fsynced.
fn write_durable(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    if let Err(e) = f.write_all(data).and_then(|()| f.sync_all()) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    drop(f);
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// How a repair of a journal ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairOutcome {
    /// The journaled snapshot was restored: the old ruleset is in force.
    Restored,
    /// The journal was from another boot or another namespace of the same name: the
    /// kernel's ruleset it describes is gone, so it was dropped without restoring.
    Discarded(String),
    /// Restoring the snapshot failed (the journal stays for the next try).
    Failed(String),
}

/// What a repair of an interrupted apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// The journal that was repaired.
    pub record: Record,
    /// Who repaired it (`the guardian`, `portcullis apply`, `portcullis status`).
    pub by: String,
    /// Whether the applier was still running (it gave up and left the journal) or dead.
    pub applier_alive: bool,
    /// The outcome.
    pub outcome: RepairOutcome,
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.record;
        let tables: Vec<&str> = r.tables.iter().map(|t| t.as_str()).collect();
        let how = if self.applier_alive { "stopped" } else { "died" };
        write!(
            f,
            "the apply of {} to {} ({:?}, pid {}, started {}) {how} before it completed",
            if r.what.is_empty() { "a ruleset" } else { &r.what },
            r.place(),
            r.family,
            r.pid,
            utc(r.started_ms),
        )?;
        match &self.outcome {
            RepairOutcome::Restored => write!(
                f,
                "; {} restored the table(s) {} from its journal: the old ruleset is in force, complete",
                self.by,
                tables.join(", ")
            ),
            RepairOutcome::Discarded(why) => {
                write!(f, "; {} dropped its journal without restoring: {why}", self.by)
            }
            RepairOutcome::Failed(why) => write!(
                f,
                "; {} could not restore the table(s) {} from its journal ({why}): the ruleset may be a mix; the journal {} is kept",
                self.by,
                tables.join(", "),
                journal_path(r.netns.as_deref(), r.family).display()
            ),
        }
    }
}

/// Restores the journal `r` (the caller holds the namespace's apply lock), removes it and
/// records the outcome in `repaired.v4|v6`. When the interrupted apply was a
/// confirm-or-revert one, its pending confirmation is withdrawn as reverted.
fn repair(r: Record, by: &str) -> Repair {
    // A killed applier closes its files (the pipe's end) a moment before it turns into
    // a zombie: give it that moment before calling it alive.
    let applier_alive = (0..40).all(|_| {
        let alive = running(r.pid, r.start);
        if alive {
            std::thread::sleep(Duration::from_millis(5));
        }
        alive
    });
    let netns = r.netns.clone();
    let outcome = if r.boot_id != boot_id() {
        RepairOutcome::Discarded("it was written before the last reboot".into())
    } else if r.netns_id != netns_id(netns.as_deref()) {
        RepairOutcome::Discarded("the namespace was deleted and created again since".into())
    } else {
        let snap = Snapshot {
            family: r.family,
            backend: r.backend,
            text: r.snapshot.clone(),
            noflush: r.noflush,
            covered: r.tables.clone(),
        };
        match revert(&r.target(), &snap, &r.tables) {
            Ok(()) => RepairOutcome::Restored,
            Err(e) => RepairOutcome::Failed(e.to_string()),
        }
    };
    if !matches!(outcome, RepairOutcome::Failed(_)) {
        let _ = fs::remove_file(journal_path(netns.as_deref(), r.family));
        if outcome == RepairOutcome::Restored {
            confirm::withdraw_reverted(netns.as_deref(), r.family, r.pid);
        }
    }
    let repair = Repair { record: r, by: by.to_owned(), applier_alive, outcome };
    let line = format!("{} {repair}\n", now_ms());
    let _ = write_durable(&repaired_path(netns.as_deref(), repair.record.family), line.as_bytes());
    repair
}

/// Repairs the journal left in `netns`/`family` by an apply that did not complete, if
/// there is one. The caller holds the namespace's apply lock (every applier writes and
/// removes its journal under it, so a journal found under it is left over, unless
/// [`live_owner`] says its applier still runs).
pub fn recover(netns: Option<&str>, family: Family, by: &str) -> Option<Repair> {
    read(netns, family).map(|r| repair(r, by))
}

/// The pid of another process that still runs and owns the journal of `netns`/`family`:
/// an apply of several families keeps the journal of a family it committed open while it
/// applies the next (without the apply lock in between). Its journal is not left over.
pub fn live_owner(netns: Option<&str>, family: Family) -> Option<u32> {
    let r = read(netns, family)?;
    (r.pid != std::process::id() && running(r.pid, r.start)).then_some(r.pid)
}

/// [`recover`] for `portcullis status`: takes the apply lock itself, waiting at most
/// `wait`. `Err(Busy)` while an apply runs.
pub fn recover_locked(
    netns: Option<&str>,
    family: Family,
    by: &str,
    wait: Duration,
) -> Result<Option<Repair>, ApplyError> {
    if !journal_path(netns, family).exists() {
        return Ok(None);
    }
    let _lock = lock_namespace(netns, wait)?;
    if live_owner(netns, family).is_some() {
        return Err(ApplyError::Busy(
            netns.map_or("the current namespace".into(), |n| format!("namespace {n}")),
        ));
    }
    Ok(recover(netns, family, by))
}

/// The last repair recorded in `netns`/`family`: when (ms since the epoch) and what it
/// said.
pub fn last_repair(netns: Option<&str>, family: Family) -> Option<(u128, String)> {
    let text = fs::read_to_string(repaired_path(netns, family)).ok()?;
    let (ms, msg) = text.trim().split_once(' ')?;
    Some((ms.parse().ok()?, msg.to_owned()))
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a time in milliseconds since the epoch.
pub fn format_utc(ms: u128) -> String {
    utc(ms)
}

/// The journal of one apply in progress: written by `Intent::begin`, removed by
/// [`Intent::complete`]. Dropped without `complete` (an error the applier could not
/// roll back, a panic) it stays for the guardian or the next apply.
#[derive(Debug)]
pub(crate) struct Intent {
    path: PathBuf,
    keep: Option<std::io::PipeWriter>,
    guardian: Option<Child>,
}

impl Intent {
    /// Durably journals the apply of `what` to `target` (the tables `tables`, whose old
    /// content `snapshot` holds) and, with `guardian` (the portcullis binary), starts
    /// the guardian.
    pub(crate) fn begin(
        target: &Target,
        snapshot: &Snapshot,
        tables: &[TableName],
        what: &str,
        guardian: Option<&Path>,
    ) -> Result<Self, ApplyError> {
        let record = Record::new(target, snapshot, tables, what);
        let path = write(&record)?;
        let mut intent = Self { path, keep: None, guardian: None };
        if let Some(exe) = guardian {
            // Nothing is committed yet: without its guardian the apply does not start,
            // and leaves no journal behind.
            let (child, keep) = spawn_guardian(exe, target, &record).inspect_err(|_| {
                let _ = fs::remove_file(&intent.path);
            })?;
            intent.guardian = Some(child);
            intent.keep = Some(keep);
        }
        Ok(intent)
    }

    /// The write end of the guardian's pipe, for the restore child to hold too.
    pub(crate) fn keep_fd(&self) -> Option<RawFd> {
        self.keep.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// The apply completed (or was rolled back completely): removes the journal, then
    /// closes the pipe, so the guardian finds nothing to do and exits; reaps it.
    pub(crate) fn complete(mut self) {
        let _ = fs::remove_file(&self.path);
        drop(self.keep.take());
        if let Some(mut g) = self.guardian.take() {
            let _ = g.wait();
        }
    }
}

impl Drop for Intent {
    fn drop(&mut self) {
        // Not completed: the journal stays, and closing the pipe wakes the guardian,
        // which repairs once this applier has released the apply lock.
        drop(self.keep.take());
    }
}

/// Starts `exe __guardian …` in a process group of its own (a kill of the applier's
/// group does not reach it), stdin the read end of a new pipe, stderr the applier's.
fn spawn_guardian(
    exe: &Path,
    target: &Target,
    r: &Record,
) -> Result<(Child, std::io::PipeWriter), ApplyError> {
    let spawn_err = |e| ApplyError::Spawn { program: exe.display().to_string(), source: e };
    // Both ends close-on-exec: only the guardian (as its stdin) and, explicitly, the
    // restore child get an end.
    let (read, write) = std::io::pipe().map_err(spawn_err)?;
    #[allow(clippy::disallowed_methods, reason = "re-executes portcullis as the guardian")]
    let mut c = Command::new(exe);
    c.arg(GUARDIAN_SUBCOMMAND)
        .args(["--key", &state_key(target.netns.as_deref()), "--family", fam(target.family)])
        .args(["--pid", &r.pid.to_string(), "--start", &r.start.to_string()])
        .env("PORTCULLIS_STATE_DIR", state_dir())
        .stdin(Stdio::from(read))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0);
    let child = c.spawn().map_err(spawn_err)?;
    Ok((child, write))
}

/// The guardian process: blocks the termination signals, waits for the end of its
/// stdin (the applier and its restore are gone, or the applier finished), and when the
/// journal of that applier (`pid`, `start`) is still there, takes the apply lock and
/// restores it. `None` when there was nothing to repair.
pub fn guardian_main(key: &str, family: Family, pid: u32, start: u64) -> Option<Repair> {
    let _ = confirm::block_termination_signals();
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 64];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let path = state_dir().join(key).join(format!("journal.{}", fam(family)));
    let mine = |r: &Record| r.pid == pid && r.start == start;
    let r = Record::parse(&fs::read_to_string(&path).ok()?)?;
    if !mine(&r) {
        return None;
    }
    // The applier may still hold the lock (it gave up on its rollback and is exiting);
    // the next apply may take it first and repair the journal itself.
    let netns = r.netns.clone();
    let _lock = loop {
        match lock_namespace(netns.as_deref(), Duration::from_secs(3600)) {
            Ok(l) => break l,
            Err(ApplyError::Busy(_)) => {}
            Err(_) => return None,
        }
    };
    let r = Record::parse(&fs::read_to_string(&path).ok()?)?;
    if !mine(&r) {
        return None;
    }
    Some(repair(r, "the guardian"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_rejects_foreign_text() {
        let r = Record {
            pid: 42,
            start: 1234,
            boot_id: "b".into(),
            netns_id: "4:5".into(),
            started_ms: 1_764_000_000_000,
            netns: Some("pcl-x".into()),
            family: Family::V6,
            backend: Backend::Legacy,
            lockfile: Some(PathBuf::from("/tmp/l")),
            tables: vec![TableName::Nat, TableName::Filter],
            noflush: true,
            what: "rules.v6 (2 tables, 3 rules)".into(),
            snapshot: "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n".into(),
        };
        assert_eq!(Record::parse(&r.to_text()), Some(r.clone()));
        assert_eq!(Record::parse("*filter\nCOMMIT\n"), None);
        let cut = r.to_text().replace(SNAPSHOT_FOLLOWS, "");
        assert_eq!(Record::parse(&cut), None, "a journal without its snapshot is not one");
    }

    #[test]
    fn utc_is_the_civil_date() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_764_131_696_000), "2025-11-26 04:34:56 UTC");
    }

    #[test]
    fn start_time_names_this_process() {
        let me = std::process::id();
        assert!(process_start(me).is_some_and(|s| s > 0));
        assert_eq!(process_start(me), process_start(me));
        assert_eq!(process_start(u32::MAX), None);
    }
}
