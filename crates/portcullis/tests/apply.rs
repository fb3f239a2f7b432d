//! `portcullis apply`, `confirm` and `save` end to end, with real iptables in throwaway
//! namespaces (issue 5, acceptance 3, 4 and 6): confirm-or-revert survives a killed
//! applier and a hangup, the lock-out guard refuses with its reasoning, and an
//! interrupted save never leaves a partial file.
#![allow(clippy::print_stderr, reason = "tests print what they waited for")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use portcullis_netns::{Netns, can_run_or_skip};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

const OLD: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 1111 -j ACCEPT\nCOMMIT\n";
const NEW: &str = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 2222 -j ACCEPT\nCOMMIT\n";

struct Rig {
    ns: Netns,
    dir: tempfile::TempDir,
}

impl Rig {
    fn new(purpose: &str) -> Self {
        let ns = Netns::create(purpose).expect("namespace");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("old.rules"), OLD).expect("write");
        std::fs::write(dir.path().join("new.rules"), NEW).expect("write");
        let rig = Self { ns, dir };
        let out =
            rig.portcullis(&["apply", "old.rules", "--backend", "nft"]).output().expect("runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        rig
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `portcullis ARGS --netns NS`, in the rig's directory with its own state directory.
    fn portcullis(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).args(["--netns", self.ns.name()]);
        self.env(&mut c);
        c
    }

    fn env(&self, c: &mut Command) {
        c.current_dir(self.dir.path())
            .env("PORTCULLIS_STATE_DIR", self.path("state"))
            .env_remove("SSH_CONNECTION")
            .stdin(Stdio::null());
    }

    /// The same, started by setsid(1): its own session, like a login shell's.
    fn in_new_session(&self, args: &[&str]) -> Child {
        let mut c = Command::new("setsid");
        c.arg(BIN).args(args).args(["--netns", self.ns.name()]);
        self.env(&mut c);
        c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("setsid runs")
    }

    /// The port rules of the filter table now in force.
    fn state(&self) -> String {
        let text = self.ns.run("iptables-nft-save", &["-t", "filter"]).expect("save");
        text.lines()
            .filter(|l| l.starts_with('-') || l.starts_with(':'))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait_for(&self, what: &str, want: &str, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.state() == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        eprintln!("{what}: still\n{}", self.state());
        false
    }
}

fn text_of(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn expected(rules: &str) -> String {
    rules
        .lines()
        .filter(|l| l.starts_with('-') || l.starts_with(':'))
        .collect::<Vec<_>>()
        .join("\n")
}

// Acceptance 3: `--confirm 2`, never confirmed (a confirmation from the applying session
// is refused): the old ruleset is back.
#[test]
fn unconfirmed_apply_reverts() {
    if !can_run_or_skip("unconfirmed_apply_reverts", &["iptables-nft", "setsid"]) {
        return;
    }
    let rig = Rig::new("cfmnever");
    let (old, new) = (expected(OLD), expected(NEW));
    assert_eq!(rig.state(), old);
    // Confirm as soon as the apply is pending, from the same session: refused.
    let pending = rig.path("state").join(format!("netns-{}", rig.ns.name())).join("pending.v4");
    let script = format!(
        "{BIN} apply new.rules --netns {ns} --confirm 2 & while [ ! -e {p} ]; do sleep 0.02; done; {BIN} confirm --netns {ns}; echo confirm-rc=$?; wait",
        ns = rig.ns.name(),
        p = pending.display()
    );
    let mut c = Command::new("setsid");
    c.args(["sh", "-c", &script]);
    rig.env(&mut c);
    let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("sh runs");
    assert!(rig.wait_for("the new ruleset", &new, Duration::from_secs(5)));
    // Deadline 2 s after the apply, plus the 3 s of the acceptance criterion.
    assert!(rig.wait_for("the old ruleset back", &old, Duration::from_secs(6)), "not reverted");
    let out = child.wait_with_output().expect("sh ends");
    let text = text_of(&out);
    assert!(text.contains("refusing to confirm from the session that applied"), "{text}");
    assert!(text.contains("confirm-rc=1"), "{text}");
    assert!(text.contains("not confirmed in time: the old V4 ruleset was restored"), "{text}");
    assert!(!out.status.success() || text.contains("restored"), "{text}");
}

/// Whether process `pid` runs (a zombie waiting for its reaper does not).
fn alive(pid: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rfind(')').and_then(|i| stat[i + 2..].chars().next());
    state.is_some_and(|c| c != 'Z')
}

// Confirm-or-revert of an incremental apply: the partial (--noflush) backup brings the
// old chains and policies back.
#[test]
fn unconfirmed_incremental_apply_reverts() {
    if !can_run_or_skip("unconfirmed_incremental_apply_reverts", &["iptables-nft", "setsid"]) {
        return;
    }
    let rig = Rig::new("cfminc");
    let (old, new) = (expected(OLD), expected(NEW));
    let child = rig.in_new_session(&["apply", "new.rules", "--incremental", "--confirm", "2"]);
    assert!(rig.wait_for("the new ruleset", &new, Duration::from_secs(5)));
    assert!(rig.wait_for("the old ruleset back", &old, Duration::from_secs(8)), "not reverted");
    let out = child.wait_with_output().expect("apply ends");
    let text = text_of(&out);
    assert!(text.contains("incremental apply"), "{text}");
    assert!(text.contains("not confirmed in time"), "{text}");
}

fn session_of(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(3)?.parse().ok()
}

// Acceptance 3: SIGKILL the applying process and SIGHUP its session: the old ruleset
// comes back all the same.
#[test]
fn killed_applier_and_hangup_still_revert() {
    if !can_run_or_skip("killed_applier_and_hangup_still_revert", &["iptables-nft", "setsid"]) {
        return;
    }
    let rig = Rig::new("cfmkill");
    let (old, new) = (expected(OLD), expected(NEW));
    let mut child = rig.in_new_session(&["apply", "new.rules", "--confirm", "5"]);
    assert!(rig.wait_for("the new ruleset", &new, Duration::from_secs(5)));
    let applier = child.id();
    let armed = rig.path("state").join(format!("netns-{}", rig.ns.name())).join("armed.v4");
    let watchdog: u32 =
        std::fs::read_to_string(&armed).expect("armed").trim().parse().expect("pid");
    assert_ne!(
        session_of(watchdog),
        session_of(applier),
        "the watchdog shares the applier's session"
    );
    let pid = Pid::from_raw(i32::try_from(applier).expect("pid"));
    kill(pid, Signal::SIGKILL).expect("kill -9");
    let _ = killpg(pid, Signal::SIGHUP);
    let _ = child.wait();
    assert!(rig.wait_for("the old ruleset back", &old, Duration::from_secs(12)), "not reverted");
}

// Acceptance 3: apply, then confirm from another session: the new ruleset stays.
#[test]
fn confirmed_apply_stays() {
    if !can_run_or_skip("confirmed_apply_stays", &["iptables-nft", "setsid"]) {
        return;
    }
    let rig = Rig::new("cfmok");
    let new = expected(NEW);
    let child = rig.in_new_session(&["apply", "new.rules", "--confirm", "20"]);
    assert!(rig.wait_for("the new ruleset", &new, Duration::from_secs(5)));
    let armed = rig.path("state").join(format!("netns-{}", rig.ns.name())).join("armed.v4");
    let watchdog = std::fs::read_to_string(&armed).expect("armed").trim().to_owned();
    let out = rig.portcullis(&["confirm"]).output().expect("confirm runs");
    assert!(out.status.success(), "{}", text_of(&out));
    let out = child.wait_with_output().expect("apply ends");
    assert!(out.status.success(), "{}", text_of(&out));
    assert!(text_of(&out).contains("confirmed: the new V4 ruleset stays"), "{}", text_of(&out));
    // The watchdog ends without reverting.
    let start = Instant::now();
    while alive(&watchdog) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(&watchdog), "the watchdog is still running");
    assert_eq!(rig.state(), new);
    let again = rig.portcullis(&["confirm"]).output().expect("confirm runs");
    assert!(!again.status.success(), "nothing is pending any more");
}

// Acceptance 4: the seed's baseline without its ssh rule, over ssh, is refused with the
// reasoning; with --force it applies.
#[test]
fn lockout_guard_refuses_then_force_applies() {
    if !can_run_or_skip("lockout_guard_refuses_then_force_applies", &["iptables-nft"]) {
        return;
    }
    let rig = Rig::new("guard");
    let seed = "iptables -P INPUT DROP\niptables -P FORWARD DROP\niptables -P OUTPUT ACCEPT\niptables -F\n";
    std::fs::write(rig.path("seed.sh"), seed).expect("write");
    let before = rig.state();
    let ssh = "198.18.0.1 50022 198.18.0.2 22";
    let out =
        rig.portcullis(&["apply", "seed.sh"]).env("SSH_CONNECTION", ssh).output().expect("runs");
    let text = text_of(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("refusing to apply"), "{text}");
    assert!(text.contains("from 198.18.0.1 to port 22"), "{text}");
    assert!(text.contains("CUT: dropped by the policy DROP of INPUT"), "{text}");
    assert!(text.contains("--force"), "{text}");
    assert_eq!(rig.state(), before, "refused, yet the kernel changed");
    // ssh on another port: a ruleset that keeps only 22 open cuts it.
    let out = rig
        .portcullis(&["apply", "new.rules"])
        .env("SSH_CONNECTION", "198.18.0.1 50022 198.18.0.2 2200")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "{}", text_of(&out));
    assert!(text_of(&out).contains("port 2200"), "{}", text_of(&out));
    let out = rig
        .portcullis(&["apply", "seed.sh", "--force"])
        .env("SSH_CONNECTION", ssh)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", text_of(&out));
    assert!(rig.state().contains(":INPUT DROP"), "{}", rig.state());
}

fn big_ruleset(rules: usize) -> String {
    let mut s = String::from(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:BULK - [0:0]\n",
    );
    for i in 0..rules {
        s.push_str(&format!(
            "-A BULK -s 198.18.{}.{}/32 -p tcp -m tcp --dport {} -m comment --comment \"bulk rule {i} padding the saved file so that writing it takes a while\" -j ACCEPT\n",
            (i / 250) % 256,
            i % 250 + 1,
            1 + i % 60000
        ));
    }
    s.push_str("COMMIT\n");
    s
}

fn temp_of(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!(".rules.v4.portcullis-{pid}.tmp"))
}

// Acceptance 6: a save killed in the middle of writing leaves the old file intact.
#[test]
fn interrupted_save_keeps_the_old_file() {
    if !can_run_or_skip("interrupted_save_keeps_the_old_file", &["iptables-nft-restore"]) {
        return;
    }
    let rig = Rig::new("save");
    let mut c = rig.ns.command("iptables-nft-restore");
    c.stdin(Stdio::piped());
    let mut child = c.spawn().expect("restore");
    std::io::Write::write_all(
        &mut child.stdin.take().expect("stdin"),
        big_ruleset(40_000).as_bytes(),
    )
    .expect("write");
    assert!(child.wait().expect("restore ends").success());
    let out_dir = rig.path("etc");
    std::fs::create_dir_all(&out_dir).expect("dir");
    let target = out_dir.join("rules.v4");
    std::fs::write(&target, OLD).expect("old file");
    let mut interrupted = 0;
    for _ in 0..40 {
        let old = std::fs::read(&target).expect("read");
        let mut save = rig
            .portcullis(&["save", "-o", target.to_str().expect("utf-8"), "--backend", "nft"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("save runs");
        let tmp = temp_of(&out_dir, save.id());
        let start = Instant::now();
        let mut seen = false;
        while start.elapsed() < Duration::from_secs(20) {
            if tmp.exists() {
                seen = true;
                break;
            }
            if save.try_wait().expect("try_wait").is_some() {
                break;
            }
        }
        if seen {
            let _ = save.kill();
        }
        let _ = save.wait();
        let now = std::fs::read(&target).expect("read");
        if seen && tmp.exists() {
            // Killed with the temporary file still there: before the rename.
            interrupted += 1;
            assert_eq!(now, old, "an interrupted save changed the file");
            assert!(std::fs::metadata(&tmp).expect("tmp").len() > 0 || now == old);
        } else {
            let text = String::from_utf8_lossy(&now);
            assert!(
                now == old
                    || text.trim_end().ends_with(|c: char| c.is_ascii_digit())
                        && text.contains("\nCOMMIT\n"),
                "a partial file:\n{}",
                &text[text.len().saturating_sub(300)..]
            );
        }
        if interrupted >= 3 {
            break;
        }
    }
    assert!(interrupted > 0, "no save was interrupted in the middle");
    // A save that runs to its end replaces the file, keeps the old one, and removes the
    // leftovers of the killed ones.
    let before = std::fs::read(&target).expect("read");
    let out = rig
        .portcullis(&["save", "-o", target.to_str().expect("utf-8"), "--backend", "nft"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", text_of(&out));
    assert_eq!(std::fs::read(target.with_extension("v4.bak")).expect("backup"), before);
    let left: Vec<_> = std::fs::read_dir(&out_dir)
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "leftover temporary files: {left:?}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&target).expect("meta").permissions().mode() & 0o777, 0o640);
    // restore-backup brings the previous file back.
    let out = Command::new(BIN)
        .args(["restore-backup", "-o", target.to_str().expect("utf-8")])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", text_of(&out));
    assert_eq!(std::fs::read(&target).expect("read"), before);
}
