//! The fault matrix of `portcullis apply` and `portcullis save` (issue 8): real iptables
//! (nft and legacy) in throwaway namespaces, one fault at a time, and afterwards the
//! namespace's ruleset (canonical `iptables-save`, compared table by table) must be exactly
//! the old or the new one, never a mix, with a message that says which.
//!
//! Faults: a bad rule in the last of four tables; a rule the kernel refuses; SIGKILL at 14
//! points per backend (before the snapshot, before and after each table commit, during
//! the read-back, before and during the rollback, and of the applier alone, whose restore
//! must die with it), each with and without `--confirm`, plus a restore that would
//! outlive the confirm deadline, and a kill of the guardian too (then `status` or the next
//! apply repairs); SIGHUP to the session of `apply --confirm`; the xtables lock held longer than the wait
//! (legacy); 2 and 10 concurrent applies; a full disk and a read-only directory for `save`.
//!
//! Exact kill points without timing: the namespace's iptables tools are replaced, for the
//! faulted run only, by a script earlier on `PATH` (`ip netns exec` runs what `PATH`
//! finds). It counts the invocations, and at the chosen one SIGKILLs its parent (the
//! portcullis process: `ip netns exec` execs, it does not fork). A restore it is told to
//! interrupt is fed to the real tool one table block at a time (the kernel commits per
//! table anyway), and the kill lands after exactly K tables: what a kill of the whole
//! process group (systemd stopping a unit, a cgroup OOM kill) does to a running restore.
//!
//! Every kill row asserts the final state with no command run by hand: the guardian's
//! repair (the old ruleset, its message on the applier's stderr), the watchdog's, or a
//! complete ruleset nothing needed to repair. "Right after" is what the injector read at
//! the kill, before anything could repair.
//!
//! The table of outcomes is written to `$CARGO_TARGET_TMPDIR/reliability.md`, and to
//! `docs/reliability.md` when `PCL_WRITE_RELIABILITY=1` (`cargo xtask reliability`).
#![allow(clippy::print_stderr, reason = "tests print what they waited for")]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use portcullis_netns::{Netns, can_run_or_skip};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// The port of the old ruleset, the new one, and the first of the concurrent ones.
const OLD_PORT: u32 = 40001;
const NEW_PORT: u32 = 40002;
const RACE_PORT: u32 = 42000;

/// A rule the model refuses before anything runs.
const BAD_MODEL: &str = "-A INPUT -p tcp -m tcp --dport 70000 -j ACCEPT\n";
/// What the applier says after rolling the committed tables back.
const ROLLED_BACK: &str =
    "nothing changed: the table(s) raw, mangle, nat already committed were restored";
/// A rule iptables-restore refuses while parsing (no such match module).
const BAD_PARSE: &str = "-A INPUT -m nosuchmod --foo 1 -j ACCEPT\n";
/// A rule the kernel refuses at COMMIT (no `xt_ipvs` in the kernel).
const BAD_KERNEL: &str = "-A INPUT -m ipvs --ipvs -j DROP\n";

/// Four tables, each different per `port`; filter holds the most rules, so the applier
/// commits it last (raw, mangle and nat before it).
fn ruleset(port: u32, extra_filter: &str) -> String {
    format!(
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A PREROUTING -p tcp -m tcp --dport {port} -j ACCEPT\nCOMMIT\n\
         *mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
         :OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         -A PREROUTING -p tcp -m tcp --dport {port} -j MARK --set-xmark 0x1/0xffffffff\nCOMMIT\n\
         *nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :POSTROUTING ACCEPT [0:0]\n\
         -A PREROUTING -p tcp -m tcp --dport {port} -j REDIRECT --to-ports 8080\nCOMMIT\n\
         *filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :svc{port} - [0:0]\n\
         -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -j svc{port}\n\
         -A svc{port} -p tcp -m tcp --dport {port} -j ACCEPT\n\
         -A svc{port} -p udp -m udp --dport {port} -j DROP\n{extra_filter}COMMIT\n"
    )
}

/// Stands in for `iptables-B`, `iptables-B-save` and `iptables-B-restore`.
/// `PCL_FAULT`: `read:N` kills at the Nth read (save or list), `readback` at the first
/// read after a restore, `restore:N:K` after K tables of the Nth restore.
const INJECTOR: &str = r#"#!/bin/bash
tool=${0##*/}
real=/usr/sbin/$tool
b=$PCL_FAULT_BACKEND
case $tool in
  "iptables-$b"|"iptables-$b-save"|"iptables-$b-restore"|"ip6tables-$b-restore") ;;
  *) exec "$real" "$@" ;;
esac
d=$PCL_FAULT_DIR
# Once only: the confirm watchdog inherits this PATH, and must run the real tools.
[ -s "$d/fired" ] && exec "$real" "$@"
bump() { local n; n=$(( $(cat "$d/$1" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$d/$1"; echo "$n"; }
# The kernel's state at the kill, before any repair can start (the guardian waits for
# this script too: it holds the guardian's pipe).
snap() {
  "/usr/sbin/iptables-$b-save" > "$d/right-after" 2>/dev/null
  "/usr/sbin/ip6tables-$b-save" > "$d/right-after6" 2>/dev/null
  date +%s%3N > "$d/kill-ms"
}
# cgroup: the applier's guardian dies too (found by its command line, killed by pid).
guardian() {
  local p cmd
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null) || continue
    case $cmd in *"__guardian "*"--pid $PPID "*) kill -9 "${p#/proc/}" && echo "${p#/proc/}" >> "$d/guardian-killed" ;; esac
  done
}
die() { snap; echo "$1" >> "$d/fired"; kill -9 "$PPID"; exit 137; }
if [ "${tool%-restore}" = "$tool" ]; then
  n=$(bump reads)
  [ "$PCL_FAULT" = "read:$n" ] && die "read $n ($tool $*)"
  [ "$PCL_FAULT" = readback ] && [ -s "$d/restores" ] && die "read-back ($tool $*)"
  exec "$real" "$@"
fi
n=$(bump restores)
IFS=: read -r kind nth after <<<"$PCL_FAULT"
case $kind in restore | orphan | orphan-late | cgroup) ;; *) exec "$real" "$@" ;; esac
[ "$nth" = "$n" ] || exec "$real" "$@"
rm -f "$d"/block.*
awk -v d="$d" '/^\*/ { n++ } n > 0 { print > (d "/block." n) }'
count=$(ls "$d"/block.* 2>/dev/null | wc -l)
done=""
# orphan: only the applier dies (`kill -9 PID`); this restore would go on to its end,
# but it was started with PR_SET_PDEATHSIG(SIGKILL): it dies with the applier, and
# orphan-done is never written. orphan-late: one that would still run when the confirm
# watchdog has reverted: it would go on once the watchdog's result file
# ($PCL_FAULT_RESULT) exists. cgroup: the applier, this restore and the guardian die.
[ "$kind" = orphan ] || [ "$kind" = orphan-late ] && trap 'echo "$done" > "$d/orphan-done"' EXIT
for ((j = 1; j <= count; j++)); do
  if [ "$((j - 1))" = "$after" ]; then
    [ "$kind" = cgroup ] && guardian
    if [ "$kind" = orphan ] || [ "$kind" = orphan-late ]; then
      snap
      echo $$ > "$d/orphan.pid"
      echo "restore $n: applier killed after${done:- no table}" >> "$d/fired"
      kill -9 "$PPID"
      if [ "$kind" = orphan-late ]; then
        for ((w = 0; w < 600; w++)); do [ -e "$PCL_FAULT_RESULT" ] && break; sleep 0.05; done
      fi
    else
      die "restore $n after ${done:- no table}"
    fi
  fi
  "$real" "$@" < "$d/block.$j" || exit $?
  done="$done $(head -n1 "$d/block.$j" | tr -d '*')"
done
case $kind in restore | cgroup) die "restore $n after$done" ;; esac
"#;

/// One row of `docs/reliability.md`.
#[derive(Debug, Clone)]
struct Row {
    fault: String,
    backend: String,
    right_after: String,
    outcome: String,
    message: String,
    /// Milliseconds from the kill to the end of the guardian's repair, when it repaired.
    window_ms: Option<u128>,
}

/// A canonical ruleset: table name → its block (chain lines sorted, counters dropped,
/// rules in order within each chain).
type Tables = BTreeMap<String, String>;

fn canonical(save: &str) -> Tables {
    let mut blocks: Vec<(String, Vec<String>)> = Vec::new();
    for l in save.lines() {
        if l.starts_with('#') || l.trim().is_empty() || l == "COMMIT" {
            continue;
        }
        if let Some(t) = l.strip_prefix('*') {
            blocks.push((t.to_owned(), Vec::new()));
            continue;
        }
        let Some((_, lines)) = blocks.last_mut() else { continue };
        let l = if l.starts_with(':') { l.rsplit_once(" [").map_or(l, |(a, _)| a) } else { l };
        lines.push(l.to_owned());
    }
    let chain_of = |l: &str| l.split_whitespace().nth(1).unwrap_or("").to_owned();
    blocks
        .into_iter()
        .map(|(t, mut lines)| {
            lines.sort_by(|a, b| {
                let (ka, kb) = (a.starts_with(':'), b.starts_with(':'));
                kb.cmp(&ka)
                    .then_with(|| if ka && kb { a.cmp(b) } else { chain_of(a).cmp(&chain_of(b)) })
            });
            (t, lines.join("\n"))
        })
        .collect()
}

fn text_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The lines of the output that say what happened (errors, notes, outcomes).
fn message(stderr: &str) -> String {
    let keep = |l: &str| {
        let t = l.trim_start().trim_start_matches("= ");
        t.starts_with("error")
            || t.starts_with("note")
            || t.starts_with("nothing applied")
            || t.starts_with("not confirmed")
            || t.starts_with("applied ")
            || t.starts_with("saved ")
    };
    let lines: Vec<&str> = stderr.lines().filter(|l| keep(l)).map(str::trim).collect();
    lines.join(" / ")
}

struct Rig {
    ns: Netns,
    backend: &'static str,
    dir: tempfile::TempDir,
    old: Tables,
    new: Tables,
    race: Tables,
    runs: std::cell::Cell<u32>,
}

impl Rig {
    fn new(backend: &'static str, purpose: &str) -> Self {
        let ns = Netns::create(purpose).expect("namespace");
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write");
        };
        write("old.rules", &ruleset(OLD_PORT, ""));
        write("new.rules", &ruleset(NEW_PORT, ""));
        write("bad-model.rules", &ruleset(NEW_PORT, BAD_MODEL));
        write("bad-parse.rules", &ruleset(NEW_PORT, BAD_PARSE));
        write("bad-kernel.rules", &ruleset(NEW_PORT, BAD_KERNEL));
        write("race.rules", &ruleset(RACE_PORT, ""));
        let wrap = dir.path().join("wrap");
        std::fs::create_dir(&wrap).expect("wrap dir");
        let injector = wrap.join("injector");
        std::fs::write(&injector, INJECTOR).expect("injector");
        std::fs::set_permissions(&injector, std::fs::Permissions::from_mode(0o755)).expect("mode");
        for b in ["nft", "legacy"] {
            for suffix in ["", "-save", "-restore"] {
                std::os::unix::fs::symlink(&injector, wrap.join(format!("iptables-{b}{suffix}")))
                    .expect("symlink");
            }
            std::os::unix::fs::symlink(&injector, wrap.join(format!("ip6tables-{b}-restore")))
                .expect("symlink");
        }
        let mut rig = Self {
            ns,
            backend,
            dir,
            old: Tables::new(),
            new: Tables::new(),
            race: Tables::new(),
            runs: std::cell::Cell::new(0),
        };
        rig.apply_ok("race.rules");
        rig.race = rig.tables();
        rig.apply_ok("new.rules");
        rig.new = rig.tables();
        rig.apply_ok("old.rules");
        rig.old = rig.tables();
        assert_eq!(rig.old.len(), 4, "four tables: {:?}", rig.old);
        assert_ne!(rig.old, rig.new);
        for t in ["raw", "mangle", "nat", "filter"] {
            assert_ne!(rig.old.get(t), rig.new.get(t), "table {t} differs between old and new");
        }
        rig
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    /// The confirm state directory of the rig's namespace.
    fn key_dir(&self) -> PathBuf {
        self.state_dir().join(format!("netns-{}", self.ns.name()))
    }

    /// What the confirm watchdog wrote when it finished (waits for it, bounded).
    fn watchdog_result(&self) -> String {
        let result = self.key_dir().join("result.v4");
        let start = Instant::now();
        while !result.exists() && start.elapsed() < Duration::from_secs(90) {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::read_to_string(&result).unwrap_or_default().trim().to_owned()
    }

    fn env(&self, c: &mut Command) {
        c.current_dir(self.dir.path())
            .env("PORTCULLIS_STATE_DIR", self.state_dir())
            .env_remove("SSH_CONNECTION")
            .env_remove("XTABLES_LOCKFILE")
            .stdin(Stdio::null());
    }

    /// `portcullis ARGS --netns NS --backend B`.
    fn portcullis(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).args(["--netns", self.ns.name(), "--backend", self.backend]);
        self.env(&mut c);
        c
    }

    fn apply_ok(&self, file: &str) {
        let out = self.portcullis(&["apply", file]).output().expect("runs");
        assert!(out.status.success(), "apply {file}: {}", text_of(&out));
    }

    fn tables(&self) -> Tables {
        let save = format!("iptables-{}-save", self.backend);
        canonical(&self.ns.run(&save, &[]).expect("iptables-save"))
    }

    /// `old`, `new`, or which table holds what.
    fn classify(&self, now: &Tables) -> String {
        if *now == self.old {
            return "old".into();
        }
        if *now == self.new {
            return "new".into();
        }
        let parts: Vec<String> = ["raw", "mangle", "nat", "filter"]
            .iter()
            .map(|t| {
                let got = now.get(*t);
                let what = if got == self.old.get(*t) {
                    "old"
                } else if got == self.new.get(*t) {
                    "new"
                } else {
                    "other"
                };
                format!("{t} {what}")
            })
            .collect();
        format!("MIX ({})", parts.join(", "))
    }

    fn row(&self, fault: &str, right_after: &str, outcome: &str, message: &str) -> Row {
        Row {
            fault: fault.to_owned(),
            backend: self.backend.to_owned(),
            right_after: right_after.to_owned(),
            outcome: outcome.to_owned(),
            message: message.to_owned(),
            window_ms: None,
        }
    }

    /// The state the injector read at the kill, before any repair could start.
    fn right_after(&self, fault_dir: &Path, fault: &str) -> String {
        let text = std::fs::read_to_string(fault_dir.join("right-after"))
            .unwrap_or_else(|e| panic!("{fault}: the injector read the state at the kill: {e}"));
        self.classify(&canonical(&text))
    }

    /// The guardian's last repair in the rig's namespace: (when, in ms since the epoch).
    fn repaired_at(&self) -> Option<u128> {
        let text = std::fs::read_to_string(self.key_dir().join("repaired.v4")).ok()?;
        text.split_whitespace().next()?.parse().ok()
    }

    fn journal_open(&self) -> bool {
        self.key_dir().join("journal.v4").exists()
    }

    /// `portcullis status --netns NS` (stdout).
    fn status(&self) -> String {
        let mut c = Command::new(BIN);
        c.args(["status", "--netns", self.ns.name()]);
        self.env(&mut c);
        let out = c.output().expect("status runs");
        assert!(out.status.success(), "status: {}", text_of(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stable wording of a repair message: no namespace name, pid or time.
    fn stable(&self, msg: &str) -> String {
        let mut m = msg.replace(self.ns.name(), "NS");
        while let Some(at) = m.find(", pid ") {
            let Some(end) = m[at..].find(')') else { break };
            m.replace_range(at..at + end, "");
        }
        m
    }

    /// Applies `file`, which the model, iptables-restore or the kernel refuses in the last
    /// table; the message must say `says`.
    fn refused(&self, fault: &str, file: &str, says: &str) -> Row {
        self.apply_ok("old.rules");
        let out = self.portcullis(&["apply", file]).output().expect("runs");
        let err = text_of(&out);
        assert_eq!(out.status.code(), Some(1), "{fault}: {err}");
        let now = self.classify(&self.tables());
        assert_eq!(now, "old", "{fault}: {err}");
        assert!(err.contains(says), "{fault}: {err}");
        assert!(err.contains(&format!("{file}:")), "{fault}: the message names the file: {err}");
        self.row(fault, &now, &now, &message(&err))
    }

    /// A new directory for the injector's counters and marks.
    fn fault_dir(&self) -> PathBuf {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let dir = self.path(&format!("fault-{n}"));
        std::fs::create_dir(&dir).expect("fault dir");
        dir
    }

    /// `portcullis ARGS` with the fault injector first on `PATH`, set to `spec`.
    fn faulted(&self, args: &[&str], spec: &str, fault_dir: &Path) -> Command {
        let path = format!(
            "{}:{}",
            self.path("wrap").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = self.portcullis(args);
        c.env("PATH", path)
            .env("PCL_FAULT", spec)
            .env("PCL_FAULT_DIR", fault_dir)
            .env("PCL_FAULT_BACKEND", self.backend)
            .env("PCL_FAULT_RESULT", self.key_dir().join("result.v4"));
        if spec == "readback" {
            // The injector fires on a tool; the nft read-back goes over netlink unless
            // told otherwise. The journal is closed before either kind of read-back.
            c.env("PORTCULLIS_READBACK", "iptables-save");
        }
        c
    }

    /// SIGKILL of `portcullis apply FILE` at `spec` (see [`INJECTOR`]).
    fn killed(&self, point: &str, spec: &str, file: &str, confirm: bool) -> Row {
        self.killed_with(point, spec, file, confirm, &[])
    }

    /// [`Rig::killed`] with more arguments to `portcullis apply` (`--incremental`).
    fn killed_with(
        &self,
        point: &str,
        spec: &str,
        file: &str,
        confirm: bool,
        extra: &[&str],
    ) -> Row {
        self.apply_ok("old.rules");
        // A result left by an earlier run would read as this run's (arm removes it too).
        for f in ["result.v4", "repaired.v4"] {
            let _ = std::fs::remove_file(self.key_dir().join(f));
        }
        let fault_dir = self.fault_dir();
        let mut args = vec!["apply", file];
        args.extend(extra);
        if confirm {
            args.extend(["--confirm", "2"]);
        }
        // `output()` returns once the applier and its guardian (which writes to the
        // applier's stderr) are both done.
        let out = self.faulted(&args, spec, &fault_dir).output().expect("runs");
        let err = text_of(&out);
        let fired = std::fs::read_to_string(fault_dir.join("fired")).unwrap_or_default();
        let how = if confirm { " (`--confirm 2`)" } else { "" };
        let fault = format!("SIGKILL {point}{how}");
        assert!(!fired.is_empty(), "{fault}: the fault never fired: {err}");
        assert_eq!(out.status.signal(), Some(9), "{fault}: {err}");
        let right_after = self.right_after(&fault_dir, &fault);
        let mut msg = String::from("killed by signal 9");
        if spec.starts_with("orphan") {
            msg.push_str(&orphan_died(&fault_dir, &fault));
        }
        let guardian = guardian_said(&err).map(|g| self.stable(&g));
        let repaired = self.repaired_at();
        assert_eq!(
            guardian.is_some(),
            repaired.is_some(),
            "{fault}: the guardian says what it did: {err}"
        );
        assert!(!self.journal_open(), "{fault}: no journal is left open");
        if let Some(g) = &guardian {
            assert!(
                g.contains("died before it completed")
                    && g.contains("the old ruleset is in force, complete"),
                "{fault}: the guardian's message says what happened and which ruleset is in force: {g}"
            );
        }
        let armed =
            confirm && ["pending.v4", "result.v4"].iter().any(|f| self.key_dir().join(f).exists());
        match &guardian {
            Some(g) => msg.push_str(&format!("; the guardian, on the applier's stderr: `{g}`")),
            None => msg.push_str("; no intent journal was open: the guardian had nothing to do"),
        }
        if armed {
            // The watchdog was armed: the guardian withdrew its pending confirmation as
            // reverted, or it restores the backup at the deadline.
            let said = self.watchdog_result();
            assert_eq!(said, "reverted", "{fault}: the watchdog's result");
            if guardian.is_none() {
                msg.push_str(
                    "; the watchdog restored the backup at the deadline (result.v4: `reverted`)",
                );
            } else {
                msg.push_str(
                    "; its pending confirmation ended as reverted (result.v4: `reverted`)",
                );
            }
        }
        let now = self.classify(&self.tables());
        if guardian.is_some() || armed {
            assert_eq!(now, "old", "{fault}: after the repair: {err}");
        } else {
            assert_eq!(now, right_after, "{fault}: nothing changed after the kill: {err}");
        }
        assert!(now == "old" || now == "new", "{fault}: {now}: {err}");
        let mut row = self.row(&fault, &right_after, &now, &msg);
        row.window_ms = repaired.and_then(|at| {
            let kill: u128 =
                std::fs::read_to_string(fault_dir.join("kill-ms")).ok()?.trim().parse().ok()?;
            Some(at.saturating_sub(kill))
        });
        row
    }

    /// The applier, its restore and its guardian all SIGKILLed after 2 table commits (what
    /// a kill of the whole cgroup does), then `then` (`status`, or `apply new.rules`)
    /// finds the journal and repairs it before anything else.
    fn cgroup_killed(&self, then: &str) -> Row {
        self.apply_ok("old.rules");
        let _ = std::fs::remove_file(self.key_dir().join("repaired.v4"));
        let fault_dir = self.fault_dir();
        let out =
            self.faulted(&["apply", "new.rules"], "cgroup:1:2", &fault_dir).output().expect("runs");
        let err = text_of(&out);
        let fault = format!(
            "SIGKILL of the applier, its restore and its guardian after 2 table commits (a cgroup kill), then `portcullis {then}`"
        );
        assert_eq!(out.status.signal(), Some(9), "{fault}: {err}");
        assert!(
            fault_dir.join("guardian-killed").exists(),
            "{fault}: the guardian was killed: {err}"
        );
        let right_after = self.right_after(&fault_dir, &fault);
        assert!(right_after.starts_with("MIX"), "{fault}: {right_after}");
        assert_eq!(self.classify(&self.tables()), right_after, "{fault}: nothing repaired it yet");
        assert!(self.journal_open(), "{fault}: the journal is there");
        let (said, want) = if then == "status" {
            let out = self.status();
            let line = out
                .lines()
                .find(|l| l.contains("repaired:"))
                .unwrap_or_else(|| panic!("{fault}: {out}"));
            (line.trim().to_owned(), "old")
        } else {
            let out = self.portcullis(&["apply", "new.rules"]).output().expect("runs");
            let err = text_of(&out);
            assert!(out.status.success(), "{fault}: {err}");
            let line = err
                .lines()
                .find(|l| l.starts_with("note: the apply of"))
                .unwrap_or_else(|| panic!("{fault}: {err}"));
            (line.to_owned(), "new")
        };
        assert!(
            said.contains("died before it completed")
                && said.contains("restored the table(s) raw, mangle, nat, filter"),
            "{fault}: {said}"
        );
        assert!(!self.journal_open(), "{fault}: the journal is gone");
        let now = self.classify(&self.tables());
        assert_eq!(now, want, "{fault}");
        let msg = format!(
            "killed by signal 9, no repair until `portcullis {then}`, which says: `{}`",
            self.stable(&said)
        );
        self.row(&fault, &right_after, &now, &msg)
    }

    /// A script of both families, killed after the IPv4 apply completed and one table of
    /// the IPv6 one was committed: the IPv4 journal stayed open until every family was
    /// applied, so both guardians restore their family and the namespace is old in both.
    fn two_families(&self) -> Row {
        let script = |port: u32| {
            let mut s = String::new();
            for cmd in ["iptables", "ip6tables"] {
                s.push_str(&format!(
                    "{cmd} -t raw -A PREROUTING -p tcp --dport {port} -j ACCEPT\n\
                     {cmd} -A INPUT -p tcp --dport 22 -j ACCEPT\n\
                     {cmd} -A INPUT -p tcp --dport {port} -j ACCEPT\n"
                ));
            }
            s
        };
        std::fs::write(self.path("both-old.sh"), script(OLD_PORT)).expect("write");
        std::fs::write(self.path("both-new.sh"), script(NEW_PORT)).expect("write");
        let v6 = || {
            let save = format!("ip6tables-{}-save", self.backend);
            canonical(&self.ns.run(&save, &[]).expect("ip6tables-save"))
        };
        self.apply_ok("both-new.sh");
        let (new4, new6) = (self.tables(), v6());
        self.apply_ok("both-old.sh");
        let (old4, old6) = (self.tables(), v6());
        assert!(old4 != new4 && old6 != new6);
        let _ = std::fs::remove_file(self.key_dir().join("repaired.v4"));
        let fault_dir = self.fault_dir();
        let out = self
            .faulted(&["apply", "both-new.sh"], "restore:2:1", &fault_dir)
            .output()
            .expect("runs");
        let err = text_of(&out);
        let fault = "SIGKILL of a two-family script after its IPv4 apply and 1 IPv6 table commit";
        assert_eq!(out.status.signal(), Some(9), "{fault}: {err}");
        let which = |now: &Tables, old: &Tables, new: &Tables| {
            if now == old {
                "old"
            } else if now == new {
                "new"
            } else {
                "MIX"
            }
        };
        let read = |f: &str| {
            canonical(&std::fs::read_to_string(fault_dir.join(f)).expect("the state at the kill"))
        };
        let right_after = format!(
            "IPv4 {}, IPv6 {}",
            which(&read("right-after"), &old4, &new4),
            which(&read("right-after6"), &old6, &new6)
        );
        assert_eq!(right_after, "IPv4 new, IPv6 MIX", "{fault}: {err}");
        let said: Vec<String> = err
            .lines()
            .filter(|l| l.starts_with("portcullis[") && l.contains("]: "))
            .map(|l| self.stable(l.split_once("]: ").map_or(l, |(_, m)| m)))
            .collect();
        assert_eq!(said.len(), 2, "{fault}: a guardian per family: {err}");
        assert!(said.iter().any(|m| m.contains("(V4)")) && said.iter().any(|m| m.contains("(V6)")));
        let now = format!(
            "IPv4 {}, IPv6 {}",
            which(&self.tables(), &old4, &new4),
            which(&v6(), &old6, &new6)
        );
        assert_eq!(now, "IPv4 old, IPv6 old", "{fault}: {err}");
        let msg = format!("killed by signal 9; the guardians: `{}`", said.join("` and `"));
        let mut row = self.row(fault, &right_after, "old", &msg);
        row.window_ms = self.repaired_at().and_then(|at| {
            let kill: u128 =
                std::fs::read_to_string(fault_dir.join("kill-ms")).ok()?.trim().parse().ok()?;
            Some(at.saturating_sub(kill))
        });
        row
    }

    /// The applier killed alone under `--confirm 2` with a restore that would outlive
    /// the deadline: before `PR_SET_PDEATHSIG` the watchdog reverted, then the orphaned
    /// restore committed the rest. Now the restore dies with the applier.
    fn orphan_outlives_deadline(&self) -> Row {
        self.apply_ok("old.rules");
        let _ = std::fs::remove_file(self.key_dir().join("repaired.v4"));
        let fault_dir = self.fault_dir();
        let out = self
            .faulted(&["apply", "new.rules", "--confirm", "2"], "orphan-late:1:1", &fault_dir)
            .output()
            .expect("runs");
        let err = text_of(&out);
        let fault = "SIGKILL of the applier alone (`--confirm 2`), its restore meant to outlive the deadline";
        assert_eq!(out.status.signal(), Some(9), "{err}");
        let right_after = self.right_after(&fault_dir, fault);
        let died = orphan_died(&fault_dir, fault);
        let said = self.watchdog_result();
        assert_eq!(said, "reverted", "{fault}: {err}");
        // Past the deadline: the watchdog has ended, and nothing committed after it.
        let armed: u32 = std::fs::read_to_string(self.key_dir().join("armed.v4"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .expect("the watchdog's pid");
        wait_gone(armed, fault);
        assert!(!fault_dir.join("orphan-done").exists(), "{fault}: the restore never went on");
        let now = self.classify(&self.tables());
        assert_eq!(now, "old", "{fault}: {err}");
        let guardian = guardian_said(&err)
            .map_or_else(|| "no guardian message".to_owned(), |g| self.stable(&g));
        let msg = format!(
            "killed by signal 9{died}; the guardian: `{guardian}`; result.v4 `{said}`; still old after the watchdog ended"
        );
        let mut row = self.row(fault, &right_after, &now, &msg);
        row.window_ms = self.repaired_at().and_then(|at| {
            let kill: u128 =
                std::fs::read_to_string(fault_dir.join("kill-ms")).ok()?.trim().parse().ok()?;
            Some(at.saturating_sub(kill))
        });
        row
    }

    /// SIGHUP to the session of `apply --confirm` once the new ruleset is in force.
    fn hangup(&self) -> Row {
        self.apply_ok("old.rules");
        // `env --default-signal=HUP`: a test run under `nohup` (or any runner that ignores
        // SIGHUP) would hand the ignored signal down to the applier, which then rightly
        // outlives the hangup. 10 s: the new ruleset stays long enough for the test to see
        // it (two reads of the kernel) and send the hangup, even on a loaded machine.
        let mut c = Command::new("env");
        c.args(["--default-signal=HUP", "setsid"]);
        c.arg(BIN).args(["apply", "new.rules", "--confirm", "10"]);
        c.args(["--netns", self.ns.name(), "--backend", self.backend]);
        self.env(&mut c);
        let mut child =
            c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("setsid runs");
        let start = Instant::now();
        while self.classify(&self.tables()) != "new" && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let right_after = self.classify(&self.tables());
        assert_eq!(right_after, "new", "SIGHUP: the new ruleset never came");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        killpg(pid, Signal::SIGHUP).expect("SIGHUP to the session's group");
        let out = child.wait().expect("waits");
        assert_eq!(out.signal(), Some(Signal::SIGHUP as i32), "the applier died of the hangup");
        let said = self.watchdog_result();
        let now = self.classify(&self.tables());
        assert_eq!(now, "old", "SIGHUP: the watchdog restores the old ruleset");
        assert_eq!(said, "reverted");
        let msg = format!(
            "the applier dies of the hangup; the watchdog (own session, SIGHUP blocked) restored the backup at the deadline (result.v4: `{}`)",
            said
        );
        self.row("SIGHUP to the session during `apply --confirm 10`", &right_after, &now, &msg)
    }

    /// The xtables lock held by another process (`flock`) past the tools' `-w 5`.
    fn lock_held(&self) -> Row {
        self.apply_ok("old.rules");
        let marker = self.path("lock-held");
        // `-o`: flock itself holds the lock (the shell does not inherit it); its own
        // process group, so the whole holder is ended by its group id.
        let mut holder = Command::new("flock")
            .args(["-o", "-x"])
            .arg(self.ns.lockfile())
            .arg("-c")
            .arg(format!("touch {} && exec sleep 120", marker.display()))
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("flock runs");
        let start = Instant::now();
        while !marker.exists() && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(marker.exists(), "flock took the lock");
        let out = self.portcullis(&["apply", "new.rules"]).output().expect("runs");
        // The apply gave up while the holder still held the lock: the wait is bounded.
        let still_held = holder.try_wait().expect("try_wait").is_none();
        let group = Pid::from_raw(i32::try_from(holder.id()).expect("pid"));
        let _ = killpg(group, Signal::SIGKILL);
        let _ = holder.wait();
        let err = text_of(&out);
        assert!(still_held, "the holder was still holding when apply returned");
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("xtables lock"), "the message names the lock: {err}");
        let now = self.classify(&self.tables());
        assert_eq!(now, "old", "{err}");
        self.row(
            "xtables lock held by `flock` (120 s) past the wait (`-w 5`)",
            &now,
            &now,
            &message(&err),
        )
    }

    /// `n` applies of different rulesets at once.
    fn concurrent(&self, n: u32) -> Row {
        self.apply_ok("old.rules");
        let race = |i: u32| -> Tables {
            self.race
                .iter()
                .map(|(t, b)| {
                    (t.clone(), b.replace(&RACE_PORT.to_string(), &(RACE_PORT + i).to_string()))
                })
                .collect()
        };
        let mut children = Vec::new();
        for i in 1..=n {
            let name = format!("race-{i}.rules");
            std::fs::write(self.path(&name), ruleset(RACE_PORT + i, "")).expect("write");
            let child = self
                .portcullis(&["apply", &name])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            children.push(child);
        }
        let mut ok = 0;
        for c in children {
            let out = c.wait_with_output().expect("waits");
            assert!(out.status.success(), "a concurrent apply failed: {}", text_of(&out));
            ok += 1;
        }
        let now = self.tables();
        let winners: Vec<u32> = (1..=n).filter(|i| race(*i) == now).collect();
        assert_eq!(winners.len(), 1, "exactly one of the {n} rulesets is in force, whole");
        let msg = format!(
            "all {ok} exit 0, one after another under the namespace's apply lock; ruleset {} of {n} is in force, complete",
            winners[0]
        );
        self.row(
            &format!("{n} concurrent applies of different rulesets"),
            "new (one of them)",
            "new",
            &msg,
        )
    }

    /// `portcullis save -o` into a small tmpfs (full, or remounted read-only), in a
    /// private mount namespace so the mount goes away with the process.
    fn save_fault(&self, mode: &str) -> Row {
        self.apply_ok("new.rules");
        let mnt = self.path(&format!("mnt-{mode}"));
        std::fs::create_dir(&mnt).expect("mount point");
        let script = r#"set -u
d=$1; bin=$2; ns=$3; b=$4; mode=$5
mount -t tmpfs -o size=64k pcl-fault "$d" || exit 90
printf 'the old saved file\n' > "$d/rules.v4"
if [ "$mode" = full ]; then
  dd if=/dev/zero of="$d/filler" bs=4k 2>/dev/null
else
  mount -o remount,ro "$d" || exit 91
fi
"$bin" save -o "$d/rules.v4" --netns "$ns" --backend "$b"
echo "exit=$?"
echo "content=$(cat "$d/rules.v4")"
echo "files=$(ls -A "$d" | tr '\n' ' ')"
"#;
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c", script, "sh"]).arg(&mnt).args([
            BIN,
            self.ns.name(),
            self.backend,
            mode,
        ]);
        self.env(&mut c);
        let out = c.output().expect("unshare runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = text_of(&out);
        let get = |k: &str| {
            stdout.lines().find_map(|l| l.strip_prefix(k)).unwrap_or("<missing>").to_owned()
        };
        assert!(out.status.success(), "{mode}: the rig failed: {stdout} {err}");
        assert_eq!(get("exit="), "1", "{mode}: save fails: {err}");
        assert_eq!(get("content="), "the old saved file", "{mode}: the old file is intact");
        let want_files = if mode == "full" { "filler rules.v4 " } else { "rules.v4 " };
        assert_eq!(get("files="), want_files, "{mode}: nothing else left behind");
        let why = if mode == "full" { "No space left on device" } else { "Read-only file system" };
        assert!(err.contains(why), "{mode}: the message says why: {err}");
        assert!(err.contains("rules.v4"), "{mode}: the message names the file: {err}");
        let fault = if mode == "full" {
            "disk full while saving (`save -o` into a full 64 KiB tmpfs)"
        } else {
            "read-only target for save (tmpfs remounted read-only)"
        };
        assert!(std::fs::read_dir(&mnt).expect("mount point").next().is_none(), "unmounted");
        let msg = message(&err).replace(&self.dir.path().display().to_string(), "DIR");
        self.row(fault, "old file intact", "old", &msg)
    }
}

/// Whether process `pid` has ended (gone, or a zombie).
fn ended(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Waits (bounded) until process `pid` has ended.
fn wait_gone(pid: u32, what: &str) {
    let start = Instant::now();
    while !ended(pid) && start.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ended(pid), "{what}: process {pid} ended");
}

/// The injector's restore, left running when the applier was killed alone, died with it
/// (`PR_SET_PDEATHSIG`) and committed nothing more.
fn orphan_died(fault_dir: &Path, fault: &str) -> String {
    let pid: u32 = std::fs::read_to_string(fault_dir.join("orphan.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("{fault}: the restore wrote its pid"));
    wait_gone(pid, fault);
    assert!(
        !fault_dir.join("orphan-done").exists(),
        "{fault}: the restore died with its applier (its EXIT trap never ran)"
    );
    "; its restore died with it (PR_SET_PDEATHSIG), committing no further table".to_owned()
}

/// What the guardian printed on the applier's stderr, if it repaired.
fn guardian_said(stderr: &str) -> Option<String> {
    let l = stderr.lines().find(|l| l.starts_with("portcullis[") && l.contains("]: "))?;
    Some(l.split_once("]: ")?.1.to_owned())
}

/// The kill points of one backend: (where, injector spec, file).
const KILL_POINTS: &[(&str, &str, &str)] = &[
    ("before the snapshot (first read of the kernel)", "read:1", "new.rules"),
    ("before the first table commit", "restore:1:0", "new.rules"),
    ("after 1 table commit", "restore:1:1", "new.rules"),
    ("after 2 table commits", "restore:1:2", "new.rules"),
    ("after 3 table commits", "restore:1:3", "new.rules"),
    ("after the 4th (last) table commit", "restore:1:4", "new.rules"),
    ("during the read-back (through iptables-save)", "readback", "new.rules"),
    ("of the applier alone, after 1 table commit", "orphan:1:1", "new.rules"),
    (
        "of the applier alone, after 1 table commit (filter refused)",
        "orphan:1:1",
        "bad-kernel.rules",
    ),
    ("before the rollback (filter refused)", "restore:2:0", "bad-kernel.rules"),
    ("during the rollback, after 1 table", "restore:2:1", "bad-kernel.rules"),
    ("during the rollback, after 2 tables", "restore:2:2", "bad-kernel.rules"),
    ("after the rollback's 3 tables", "restore:2:3", "bad-kernel.rules"),
    ("of the applier alone during the rollback, after 1 table", "orphan:2:1", "bad-kernel.rules"),
];

fn backend_rows(backend: &'static str) -> Vec<Row> {
    let rig = Rig::new(backend, &format!("fm{backend}"));
    let mut rows = vec![
        rig.refused(
            "invalid rule in the last of four tables (the model refuses `--dport 70000`)",
            "bad-model.rules",
            "nothing applied: the ruleset is invalid",
        ),
        rig.refused(
            "bad rule in the last of four tables (iptables-restore refuses `-m nosuchmod`)",
            "bad-parse.rules",
            ROLLED_BACK,
        ),
        rig.refused(
            "kernel-rejected rule in the last table (`-m ipvs`: no xt_ipvs)",
            "bad-kernel.rules",
            ROLLED_BACK,
        ),
    ];
    for confirm in [false, true] {
        for (point, spec, file) in KILL_POINTS {
            rows.push(rig.killed(point, spec, file, confirm));
        }
    }
    // An incremental apply (against the record of old.rules: every table patched with
    // `--noflush`) is journaled with its partial snapshot, which the guardian restores.
    rows.push(rig.killed_with(
        "after 2 table commits of an incremental apply (`--incremental`)",
        "restore:1:2",
        "new.rules",
        false,
        &["--incremental"],
    ));
    // Legacy too: observed, iptables-legacy-restore does not hold the xtables lock between
    // tables (a `flock -n` succeeds while it waits for its next table).
    rows.push(rig.orphan_outlives_deadline());
    rows.push(rig.cgroup_killed("status"));
    rows.push(rig.cgroup_killed("apply new.rules"));
    rows.push(rig.two_families());
    rows.push(rig.hangup());
    if backend == "legacy" {
        rows.push(rig.lock_held());
    }
    rows.push(rig.concurrent(2));
    rows.push(rig.concurrent(10));
    if backend == "nft" {
        rows.push(rig.save_fault("full"));
        rows.push(rig.save_fault("readonly"));
    }
    rows
}

fn render(rows: &[Row]) -> String {
    let mut s = String::from(
        "# Reliability: the fault matrix of `portcullis apply` and `save`\n\n\
         Generated by `crates/portcullis/tests/fault_matrix.rs` (`cargo xtask reliability`, or\n\
         `PCL_WRITE_RELIABILITY=1 cargo test -p portcullis --test fault_matrix`) from a real run:\n\
         real iptables 1.8.9, nft and legacy backends, in throwaway network namespaces. Old and\n\
         new rulesets have four tables (raw, mangle, nat, filter; filter is committed last) that\n\
         all differ; the state is the namespace's canonical `iptables-save` compared table by\n\
         table with the canonical old and new ones. SIGKILL points are exact, not timed: the\n\
         namespace's iptables tools are replaced for that run by a script that kills its parent\n\
         (portcullis) at the chosen invocation, and feeds an interrupted restore to the real\n\
         tool one table at a time, so the kill lands after exactly K table commits (what a kill\n\
         of the whole process group does, e.g. systemd stopping the unit); \"of the applier\n\
         alone\" kills only portcullis (`kill -9 PID`): its restore would run on, but it was\n\
         started with `PR_SET_PDEATHSIG` and dies with it; \"a cgroup kill\" kills the\n\
         guardian too. The read-back rows run with `PORTCULLIS_READBACK=iptables-save`: the\n\
         script fires on a tool run, and an nft read-back otherwise reads over netlink (both\n\
         kinds start after the intent journal is closed).\n\n\
         \"Right after\" is the state at the moment of the kill, read by the script before it\n\
         kills (nothing can repair before: the guardian waits until the applier and its restore\n\
         are gone). \"Final\" is the state once the applier's command has returned (the\n\
         guardian shares its stderr, so that is after the guardian's repair) and, with\n\
         `--confirm`, once the watchdog has given its result, with no command run by hand; the\n\
         message column says what restored it (the test asserts it).\n\n",
    );
    let mixed: Vec<&Row> = rows.iter().filter(|r| r.right_after.contains("MIX")).collect();
    let final_mix = rows.iter().filter(|r| r.outcome != "old" && r.outcome != "new").count();
    let guardian = rows.iter().filter(|r| r.window_ms.is_some()).count();
    let by_next = rows.iter().filter(|r| r.message.contains("no repair until")).count();
    let watchdog = rows.iter().filter(|r| r.message.contains("the watchdog restored")).count();
    let mut windows: Vec<u128> = rows.iter().filter_map(|r| r.window_ms).collect();
    windows.sort_unstable();
    let _ = writeln!(
        s,
        "{} rows; every final state is old or new (asserted), {final_mix} final mixes, no \
         ruleset re-applied by hand. {} left a mix of tables at the moment of the fault; the \
         guardian repaired {guardian} kills on its own, the next `portcullis status` or apply \
         the {by_next} whose guardian was killed too; {watchdog} ended in the old ruleset \
         through the confirm \
         watchdog alone.\n",
        rows.len(),
        mixed.len(),
    );
    if let (Some(lo), Some(hi)) = (windows.first(), windows.last()) {
        let mid = windows[windows.len() / 2];
        let _ = writeln!(
            s,
            "**A transient mix remains, and how long it lasts.** The kernel commits per table, so \
             a kill between two commits leaves a mix until the guardian has restored the \
             journaled snapshot: from the kill to the end of the repair {lo}–{hi} ms in this run \
             (median {mid} ms, {} repairs; the guardian waits for the pipe's end, takes the apply \
             lock, and runs one iptables-restore of the old tables). With the guardian killed \
             too, the mix lasts until the next `portcullis apply` or `portcullis status` in that \
             namespace, which repairs it before anything else and says so.\n",
            windows.len()
        );
    }
    s.push_str(
        "**Fixed: a killed apply left a mix that nothing reported.** Before, a plain \
         `portcullis apply` killed between two table commits, or during its rollback, left \
         tables of two rulesets in force and no message (30 MIX rows, each repaired only by \
         re-applying by hand). Now an apply of more than one table first writes an intent \
         journal (the old content of every table it writes, its pid and start time, durably) \
         and starts a guardian process in its own process group that holds one end of a pipe \
         only the applier and its restore hold; when the pipe ends with the journal still \
         there, the guardian takes the apply lock and restores the journal: the final state \
         is the old ruleset, and the guardian says so on the applier's stderr and in \
         `repaired.v4`. The journal is removed once the restore has committed every table \
         (a kill during the read-back keeps the new ruleset) or once a rollback completed. A \
         kill after the last table's commit but before the applier saw its restore end is \
         repaired to the old ruleset too: the apply had not completed. A script of both \
         families keeps each family's journal open until the last family is applied, so a \
         kill during the IPv6 apply restores IPv4 too (row \"a two-family script\").\n\n\
         **Fixed: an orphaned restore committing after the watchdog's revert.** Every \
         iptables-restore portcullis starts now has `PR_SET_PDEATHSIG(SIGKILL)`: killed alone, \
         the applier takes its restore with it (the rows \"of the applier alone\" assert the \
         restore ended without running its EXIT trap), and the guardian, whose pipe the \
         restore also holds, repairs only once it is gone. Before, in `its restore outliving \
         the deadline`, the watchdog reverted and the orphan then committed the rest.\n\n",
    );
    s.push_str(
        "| Fault | Backend | Right after | Final | What the user sees / what restores it |\n\
         |---|---|---|---|---|\n",
    );
    for r in rows {
        let msg = r.message.replace('|', "\\|").replace('\n', " ");
        let _ = writeln!(
            s,
            "| {} | {} | {} | **{}** | {} |",
            r.fault, r.backend, r.right_after, r.outcome, msg
        );
    }
    s
}

#[test]
fn fault_matrix() {
    if !can_run_or_skip(
        "fault_matrix",
        &["iptables-nft", "iptables-legacy", "setsid", "flock", "unshare", "awk"],
    ) {
        return;
    }
    let rows: Vec<Row> = std::thread::scope(|s| {
        let nft = s.spawn(|| backend_rows("nft"));
        let legacy = s.spawn(|| backend_rows("legacy"));
        let mut rows = nft.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        rows.extend(legacy.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        rows
    });
    for r in &rows {
        assert!(r.outcome == "old" || r.outcome == "new", "{r:?}");
    }
    let text = render(&rows);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability.md");
    std::fs::write(&out, &text).expect("write the table");
    eprintln!("fault matrix: {} rows, written to {}", rows.len(), out.display());
    if std::env::var_os("PCL_WRITE_RELIABILITY").is_some_and(|v| v == "1") {
        let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reliability.md");
        std::fs::write(&doc, &text).expect("write docs/reliability.md");
    }
}
