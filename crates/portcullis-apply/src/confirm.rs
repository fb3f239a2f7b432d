//! Confirm-or-revert: a persisted backup and a detached watchdog process.
//!
//! Before the new ruleset is committed, [`arm`] writes the snapshot of the old ruleset and
//! a pending record to the state directory (`/run/portcullis/<key>/`) and starts the
//! watchdog: the portcullis binary re-executed with a hidden subcommand, which puts itself
//! in a session of its own ([`watchdog_main`]) and blocks SIGHUP, SIGINT, SIGQUIT, SIGTERM
//! and SIGPIPE. Only then is the ruleset applied. Unless [`confirm`] removes the pending
//! record in time, the watchdog restores the backup. A hangup, a killed shell, a closed ssh
//! session or a crash of the applying process cannot stop it, and no signal handler
//! deletes the backup (the `iptables-apply` SIGHUP bug).

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{SigSet, Signal};
use portcullis_rules::{Backend, Family, TableName};

use crate::apply::{Prepared, Snapshot, lock_namespace, revert, state_dir, state_key};
use crate::error::ApplyError;
use crate::exec::Target;
use crate::persist::write_atomic;

/// The hidden subcommand of the portcullis binary that runs [`watchdog_main`].
pub const WATCHDOG_SUBCOMMAND: &str = "__watchdog";

/// A pending confirmation, as persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The namespace.
    pub netns: Option<String>,
    /// The family.
    pub family: Family,
    /// The backend.
    pub backend: Backend,
    /// The xtables lock file.
    pub lockfile: Option<PathBuf>,
    /// When the watchdog reverts, in milliseconds since the epoch.
    pub deadline_ms: u128,
    /// The session id of the applying process.
    pub sid: i32,
    /// The `SSH_CONNECTION` of the applying process.
    pub ssh: String,
    /// The tables the apply changed (the revert restores exactly these).
    pub tables: Vec<TableName>,
    /// Whether the backup is a partial `--noflush` snapshot (incremental apply).
    pub noflush: bool,
    /// The pid of the applying process (0 when not recorded).
    pub pid: u32,
}

fn fam(f: Family) -> &'static str {
    match f {
        Family::V4 => "v4",
        Family::V6 => "v6",
    }
}

/// The state directory of a namespace.
pub fn key_dir(netns: Option<&str>) -> PathBuf {
    state_dir().join(state_key(netns))
}

fn file(dir: &Path, what: &str, family: Family) -> PathBuf {
    dir.join(format!("{what}.{}", fam(family)))
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

impl Pending {
    fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "netns={}", self.netns.as_deref().unwrap_or(""));
        let _ = writeln!(s, "family={}", fam(self.family));
        let _ = writeln!(
            s,
            "backend={}",
            if self.backend == Backend::Legacy { "legacy" } else { "nft" }
        );
        let _ = writeln!(
            s,
            "lockfile={}",
            self.lockfile.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
        );
        let _ = writeln!(s, "deadline_ms={}", self.deadline_ms);
        let _ = writeln!(s, "sid={}", self.sid);
        let _ = writeln!(s, "ssh={}", self.ssh);
        let tables: Vec<&str> = self.tables.iter().map(|t| t.as_str()).collect();
        let _ = writeln!(s, "tables={}", tables.join(","));
        let _ = writeln!(s, "noflush={}", u8::from(self.noflush));
        let _ = writeln!(s, "pid={}", self.pid);
        s
    }

    fn parse(text: &str) -> Option<Self> {
        let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix('='));
        Some(Self {
            netns: get("netns").filter(|s| !s.is_empty()).map(str::to_owned),
            family: if get("family")? == "v6" { Family::V6 } else { Family::V4 },
            backend: get("backend")?.parse().ok()?,
            lockfile: get("lockfile").filter(|s| !s.is_empty()).map(PathBuf::from),
            deadline_ms: get("deadline_ms")?.parse().ok()?,
            sid: get("sid")?.parse().ok()?,
            ssh: get("ssh").unwrap_or("").to_owned(),
            tables: parse_tables(get("tables")?)?,
            noflush: get("noflush") == Some("1"),
            pid: get("pid").and_then(|p| p.parse().ok()).unwrap_or(0),
        })
    }

    fn target(&self) -> Target {
        Target::stored(self.netns.clone(), self.family, self.backend, self.lockfile.clone())
    }
}

/// A comma-separated list of table names, as the state files keep it.
pub(crate) fn parse_tables(list: &str) -> Option<Vec<TableName>> {
    list.split(',').filter(|s| !s.is_empty()).map(str::parse).collect::<Result<_, _>>().ok()
}

/// Reads the pending confirmation of a namespace and family, if any.
pub fn pending(netns: Option<&str>, family: Family) -> Option<Pending> {
    let text = std::fs::read_to_string(file(&key_dir(netns), "pending", family)).ok()?;
    Pending::parse(&text)
}

/// The watchdog that guards an apply.
#[derive(Debug)]
pub struct Armed {
    /// The watchdog's process id.
    pub pid: u32,
    /// The deadline.
    pub deadline: SystemTime,
    /// The backup file of the old ruleset.
    pub backup: PathBuf,
}

fn confirm_lock(dir: &Path) -> Result<Flock<File>, ApplyError> {
    let path = dir.join("confirm.lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| ApplyError::io(&path, e))?;
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| ApplyError::io(&path, e.into()))
}

fn current_sid() -> i32 {
    nix::unistd::getsid(None).map_or(0, nix::unistd::Pid::as_raw)
}

/// Persists the snapshot of `prepared` and starts the watchdog (`exe __watchdog …`),
/// waiting until it reports itself armed. Call before [`Prepared::commit`].
pub fn arm(prepared: &Prepared<'_>, seconds: u32, exe: &Path) -> Result<Armed, ApplyError> {
    let t = &prepared.target;
    let dir = key_dir(t.netns.as_deref());
    std::fs::create_dir_all(&dir).map_err(|e| ApplyError::io(&dir, e))?;
    let backup = file(&dir, "backup", t.family);
    write_atomic(&backup, prepared.snapshot.text.as_bytes(), 0o600)
        .map_err(|e| ApplyError::io(&backup, e))?;
    let armed_file = file(&dir, "armed", t.family);
    let _ = std::fs::remove_file(&armed_file);
    let _ = std::fs::remove_file(file(&dir, "result", t.family));
    let deadline = SystemTime::now() + Duration::from_secs(u64::from(seconds));
    let p = Pending {
        netns: t.netns.clone(),
        family: t.family,
        backend: t.backend,
        lockfile: t.lockfile.clone(),
        deadline_ms: deadline.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()),
        sid: current_sid(),
        ssh: std::env::var("SSH_CONNECTION").unwrap_or_default(),
        tables: prepared.input.tables(),
        noflush: prepared.snapshot.noflush,
        pid: std::process::id(),
    };
    let pending_file = file(&dir, "pending", t.family);
    write_atomic(&pending_file, p.to_text().as_bytes(), 0o600)
        .map_err(|e| ApplyError::io(&pending_file, e))?;
    #[allow(clippy::disallowed_methods, reason = "re-executes portcullis as the watchdog")]
    let mut c = Command::new(exe);
    c.arg(WATCHDOG_SUBCOMMAND)
        .args(["--key", &state_key(t.netns.as_deref()), "--family", fam(t.family)])
        .env("PORTCULLIS_STATE_DIR", state_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c
        .spawn()
        .map_err(|e| ApplyError::Spawn { program: exe.display().to_string(), source: e })?;
    let start = Instant::now();
    loop {
        if std::fs::read_to_string(&armed_file).is_ok_and(|s| s.trim().parse::<u32>().is_ok()) {
            return Ok(Armed { pid: child.id(), deadline, backup });
        }
        if let Ok(Some(status)) = child.try_wait() {
            let _ = std::fs::remove_file(&pending_file);
            return Err(ApplyError::Confirm(format!(
                "the watchdog exited before arming ({status})"
            )));
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = std::fs::remove_file(&pending_file);
            return Err(ApplyError::Confirm("the watchdog did not arm within 10 s".into()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Withdraws a pending confirmation without reverting (the apply failed and was rolled
/// back already).
pub fn disarm(netns: Option<&str>, family: Family) {
    let dir = key_dir(netns);
    if let Ok(_l) = confirm_lock(&dir) {
        let _ = std::fs::remove_file(file(&dir, "pending", family));
    }
}

/// The apply of process `pid` died mid-apply and its journal was restored (the old
/// ruleset is back): its pending confirmation, if any, ends as reverted, so the
/// watchdog has nothing left to do and `portcullis confirm` cannot confirm it.
pub(crate) fn withdraw_reverted(netns: Option<&str>, family: Family, pid: u32) {
    let dir = key_dir(netns);
    let Ok(_l) = confirm_lock(&dir) else { return };
    let Some(p) = pending(netns, family) else { return };
    if p.pid != pid {
        return;
    }
    let _ = write_atomic(&file(&dir, "result", family), b"reverted\n", 0o600);
    let _ = std::fs::remove_file(file(&dir, "pending", family));
}

/// How a pending apply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Confirmed: the new ruleset stays.
    Confirmed,
    /// The deadline passed: the old ruleset was restored.
    Reverted,
    /// The deadline passed and restoring failed (the message).
    RevertFailed(String),
}

/// Waits until the pending apply of `netns`/`family` is confirmed or reverted, or until
/// `limit` passes (then `None`).
pub fn wait_outcome(netns: Option<&str>, family: Family, limit: Duration) -> Option<Outcome> {
    let dir = key_dir(netns);
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(r) = std::fs::read_to_string(file(&dir, "result", family)) {
            let r = r.trim();
            return Some(if r == "confirmed" {
                Outcome::Confirmed
            } else if r == "reverted" {
                Outcome::Reverted
            } else {
                Outcome::RevertFailed(r.to_owned())
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Confirms the pending apply of `netns` (both families). Refuses when run from the same
/// session or ssh connection as the apply: confirmation must prove that a NEW connection
/// works. Returns the families confirmed.
pub fn confirm(netns: Option<&str>) -> Result<Vec<Family>, ApplyError> {
    let dir = key_dir(netns);
    if !dir.exists() {
        return Err(ApplyError::Confirm(format!("nothing to confirm in {}", where_(netns))));
    }
    let _l = confirm_lock(&dir)?;
    let mut done = Vec::new();
    let sid = current_sid();
    let ssh = std::env::var("SSH_CONNECTION").unwrap_or_default();
    for family in [Family::V4, Family::V6] {
        let Ok(text) = std::fs::read_to_string(file(&dir, "pending", family)) else { continue };
        let Some(p) = Pending::parse(&text) else { continue };
        if p.sid == sid || (!p.ssh.is_empty() && p.ssh == ssh) {
            return Err(ApplyError::Confirm(
                "refusing to confirm from the session that applied: run `portcullis confirm` over a NEW ssh connection, to prove the new ruleset lets one in".into(),
            ));
        }
        std::fs::remove_file(file(&dir, "pending", family)).map_err(|e| ApplyError::io(&dir, e))?;
        let _ = write_atomic(&file(&dir, "result", family), b"confirmed\n", 0o600);
        done.push(family);
    }
    if done.is_empty() {
        let reverted = [Family::V4, Family::V6].iter().any(|f| {
            std::fs::read_to_string(file(&dir, "result", *f)).is_ok_and(|r| r.trim() != "confirmed")
        });
        let why = if reverted { " (too late: the old ruleset was restored)" } else { "" };
        return Err(ApplyError::Confirm(format!("nothing to confirm in {}{why}", where_(netns))));
    }
    Ok(done)
}

fn where_(netns: Option<&str>) -> String {
    netns.map_or("the current namespace".into(), |n| format!("namespace {n}"))
}

/// Blocks the signals a hangup, a terminal or a polite stop send (SIGHUP, SIGINT,
/// SIGQUIT, SIGTERM, SIGPIPE, SIGTTOU, SIGTTIN): the watchdog and the guardian must
/// outlive the applier's session.
pub(crate) fn block_termination_signals() -> nix::Result<()> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTERM,
        Signal::SIGPIPE,
        Signal::SIGTTOU,
        Signal::SIGTTIN,
    ] {
        set.add(s);
    }
    set.thread_block()
}

/// The watchdog process: detaches (new session, hangup and termination signals
/// blocked), reports itself armed, then waits for the deadline of the pending apply of
/// `key`/`family`. When the pending record is still there at the deadline, restores the
/// backup.
pub fn watchdog_main(key: &str, family: Family) -> Result<Outcome, ApplyError> {
    let _ = nix::unistd::setsid();
    block_termination_signals()
        .map_err(|e| ApplyError::Confirm(format!("cannot block signals: {e}")))?;
    let dir = state_dir().join(key);
    write_atomic(
        &file(&dir, "armed", family),
        format!("{}\n", std::process::id()).as_bytes(),
        0o600,
    )
    .map_err(|e| ApplyError::io(&dir, e))?;
    loop {
        let Ok(text) = std::fs::read_to_string(file(&dir, "pending", family)) else {
            return Ok(Outcome::Confirmed);
        };
        let p = Pending::parse(&text)
            .ok_or_else(|| ApplyError::Confirm("unreadable pending record".into()))?;
        if now_ms() >= p.deadline_ms {
            return revert_pending(&dir, family);
        }
        let left = p.deadline_ms.saturating_sub(now_ms());
        std::thread::sleep(Duration::from_millis(u64::try_from(left.min(50)).unwrap_or(50)));
    }
}

fn revert_pending(dir: &Path, family: Family) -> Result<Outcome, ApplyError> {
    let _l = confirm_lock(dir)?;
    let Ok(text) = std::fs::read_to_string(file(dir, "pending", family)) else {
        return Ok(Outcome::Confirmed);
    };
    let p = Pending::parse(&text)
        .ok_or_else(|| ApplyError::Confirm("unreadable pending record".into()))?;
    let backup = file(dir, "backup", family);
    let snap_text = std::fs::read_to_string(&backup).map_err(|e| ApplyError::io(&backup, e))?;
    let covered = p.tables.clone();
    let snap =
        Snapshot { family, backend: p.backend, text: snap_text, noflush: p.noflush, covered };
    // Wait for an apply still running on the namespace (it may be the one to undo).
    let ns_lock = lock_namespace(p.netns.as_deref(), Duration::from_secs(60));
    let outcome = match revert(&p.target(), &snap, &p.tables) {
        Ok(()) => Outcome::Reverted,
        Err(e) => Outcome::RevertFailed(e.to_string()),
    };
    drop(ns_lock);
    let result = match &outcome {
        Outcome::Reverted => "reverted\n".to_owned(),
        Outcome::RevertFailed(e) => format!("revert failed: {e}\n"),
        Outcome::Confirmed => "confirmed\n".to_owned(),
    };
    let _ = write_atomic(&file(dir, "result", family), result.as_bytes(), 0o600);
    if outcome == Outcome::Reverted {
        let _ = std::fs::remove_file(file(dir, "pending", family));
    }
    Ok(outcome)
}
