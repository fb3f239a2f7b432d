//! Throwaway Linux network namespaces for portcullis: the sandbox `portcullis verify`
//! builds, and the rigs of the test suites.
//!
//! Every namespace is named `pcl-<purpose>-<unique>`, gets its own `XTABLES_LOCKFILE`
//! (the xtables lock is global across namespaces), and is deleted when its [`Netns`]
//! guard drops, also when a test panics. Links between namespaces are veth pairs created
//! directly inside them, so the default namespace is never touched; addresses come from
//! the benchmarking ranges 198.18.0.0/15 and 2001:2::/48 (RFC 2544, RFC 5180).
//!
//! The crate drives `ip` from iproute2 as a child process; it needs root (CAP_SYS_ADMIN
//! and CAP_NET_ADMIN).
//!
//! ```no_run
//! use portcullis_netns::{Netns, link};
//! let target = Netns::create("demo")?;
//! let scanner = Netns::create("demo")?;
//! let l = link(&target, &scanner, 0)?;
//! let out = target.command("iptables").arg("-S").output()?;
//! assert!(out.status.success());
//! println!("target {} at {}", target.name(), l.a_v4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The prefix of every namespace portcullis creates.
pub const PREFIX: &str = "pcl-";

/// An error from `ip` or from the environment.
#[derive(Debug)]
pub struct NetnsError {
    /// What was being done.
    pub action: String,
    /// What went wrong (the command's stderr, or the OS error).
    pub detail: String,
}

impl fmt::Display for NetnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.action, self.detail.trim())
    }
}

impl std::error::Error for NetnsError {}

fn run_ip(args: &[&str], action: &str) -> Result<Output, NetnsError> {
    #[allow(clippy::disallowed_methods, reason = "this crate's purpose is to drive ip(8)")]
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().map_err(|e| {
        NetnsError { action: action.to_owned(), detail: format!("cannot run ip: {e}") }
    })?;
    if !out.status.success() {
        return Err(NetnsError {
            action: action.to_owned(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out)
}

/// A network namespace that exists until this guard drops.
#[derive(Debug)]
pub struct Netns {
    name: String,
    lockfile: PathBuf,
    keep: bool,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// Creates `pcl-<purpose>-<pid>-<n>` with loopback up. `purpose` should be short
    /// (letters and digits); the name is cut to fit the kernel's limits.
    pub fn create(purpose: &str) -> Result<Self, NetnsError> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let purpose: String =
            purpose.chars().filter(char::is_ascii_alphanumeric).take(12).collect();
        let name = format!("{PREFIX}{purpose}-{}-{n}", std::process::id());
        run_ip(&["netns", "add", &name], "create namespace")?;
        let lockfile = std::env::temp_dir().join(format!("{name}.xtables.lock"));
        let ns = Self { name, lockfile, keep: false };
        run_ip(&["-n", &ns.name, "link", "set", "lo", "up"], "bring loopback up")?;
        Ok(ns)
    }

    /// The namespace's name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The xtables lock file that commands in this namespace use.
    pub fn lockfile(&self) -> &Path {
        &self.lockfile
    }

    /// A command that runs `program` inside the namespace, with this namespace's
    /// `XTABLES_LOCKFILE`.
    pub fn command(&self, program: &str) -> Command {
        #[allow(clippy::disallowed_methods, reason = "this crate's purpose is to drive ip(8)")]
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]).env("XTABLES_LOCKFILE", &self.lockfile);
        c
    }

    /// Runs `program args…` inside the namespace and returns its stdout; fails when it
    /// exits non-zero.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String, NetnsError> {
        let action = format!("{program} {} in {}", args.join(" "), self.name);
        let out = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| NetnsError { action: action.clone(), detail: e.to_string() })?;
        if !out.status.success() {
            return Err(NetnsError {
                action,
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Leaves the namespace in place when the guard drops (for `--keep`).
    pub fn keep(mut self) -> String {
        self.keep = true;
        self.name.clone()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // Kill what still runs inside, then delete the namespace.
        #[allow(clippy::disallowed_methods, reason = "this crate's purpose is to drive ip(8)")]
        let pids = Command::new("ip").args(["netns", "pids", &self.name]).output();
        if let Ok(out) = pids {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                #[allow(clippy::disallowed_methods, reason = "killing our own children")]
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = run_ip(&["netns", "del", &self.name], "delete namespace");
        let _ = std::fs::remove_file(&self.lockfile);
    }
}

/// The addresses of a veth link between two namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The first namespace's IPv4 address (`198.18.N.2`).
    pub a_v4: Ipv4Addr,
    /// The second namespace's IPv4 address (`198.18.N.1`).
    pub b_v4: Ipv4Addr,
    /// The first namespace's IPv6 address (`2001:2:0:N::2`).
    pub a_v6: Ipv6Addr,
    /// The second namespace's IPv6 address (`2001:2:0:N::1`).
    pub b_v6: Ipv6Addr,
    /// The interface name on both sides.
    pub ifname: &'static str,
}

/// Joins `a` and `b` with a veth pair named `pcl0` on both sides, on subnet `n`
/// (`198.18.n.0/24`, `2001:2:0:n::/64`). `a` gets `.2`/`::2`, `b` gets `.1`/`::1`.
pub fn link(a: &Netns, b: &Netns, n: u8) -> Result<Link, NetnsError> {
    let ifname = "pcl0";
    run_ip(
        &[
            "-n",
            a.name(),
            "link",
            "add",
            ifname,
            "type",
            "veth",
            "peer",
            "name",
            ifname,
            "netns",
            b.name(),
        ],
        "create veth pair",
    )?;
    let l = Link {
        a_v4: Ipv4Addr::new(198, 18, n, 2),
        b_v4: Ipv4Addr::new(198, 18, n, 1),
        a_v6: Ipv6Addr::new(0x2001, 2, 0, u16::from(n), 0, 0, 0, 2),
        b_v6: Ipv6Addr::new(0x2001, 2, 0, u16::from(n), 0, 0, 0, 1),
        ifname,
    };
    for (ns, v4, v6) in [(a, l.a_v4, l.a_v6), (b, l.b_v4, l.b_v6)] {
        run_ip(
            &["-n", ns.name(), "addr", "add", &format!("{v4}/24"), "dev", ifname],
            "add IPv4 address",
        )?;
        run_ip(
            &["-n", ns.name(), "addr", "add", &format!("{v6}/64"), "dev", ifname, "nodad"],
            "add IPv6 address",
        )?;
        run_ip(&["-n", ns.name(), "link", "set", ifname, "up"], "bring veth up")?;
    }
    Ok(l)
}

/// Deletes every namespace whose name starts with `pcl-` and returns their names: the
/// leftovers of crashed runs.
pub fn cleanup_all() -> Result<Vec<String>, NetnsError> {
    let out = run_ip(&["netns", "list"], "list namespaces")?;
    let mut removed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.starts_with(PREFIX) {
            let ns = Netns {
                name: name.to_owned(),
                lockfile: std::env::temp_dir().join(format!("{name}.xtables.lock")),
                keep: false,
            };
            drop(ns);
            removed.push(name.to_owned());
        }
    }
    Ok(removed)
}

/// Why the environment cannot run namespace tests, or `None` when it can: root, `ip`,
/// and every program in `programs` on PATH.
pub fn missing_prerequisite(programs: &[&str]) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("");
    if euid != "0" {
        return Some("not root".to_owned());
    }
    for p in std::iter::once(&"ip").chain(programs) {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(p).is_file()));
        if !found {
            return Some(format!("`{p}` not found"));
        }
    }
    None
}

/// For tests that need namespaces: returns `true` when they can run. Otherwise prints
/// why the test is skipped and returns `false`, except under CI (`CI` set), where a
/// missing prerequisite is a failure.
pub fn can_run_or_skip(test: &str, programs: &[&str]) -> bool {
    match missing_prerequisite(programs) {
        None => true,
        Some(why) if std::env::var_os("CI").is_some() => {
            panic!("{test}: cannot run under CI: {why}")
        }
        Some(why) => {
            #[allow(clippy::print_stderr, reason = "a test's skip notice")]
            {
                eprintln!("skipping {test}: {why}");
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_come_and_go() {
        if !can_run_or_skip("namespaces_come_and_go", &["ping"]) {
            return;
        }
        let name;
        {
            let a = Netns::create("nstest").expect("create a");
            let b = Netns::create("nstest").expect("create b");
            name = a.name().to_owned();
            assert!(name.starts_with("pcl-nstest-"));
            let l = link(&a, &b, 7).expect("link");
            let out = a
                .command("ping")
                .args(["-c1", "-W2", &l.b_v4.to_string()])
                .output()
                .expect("ping runs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        }
        let list = run_ip(&["netns", "list"], "list").expect("list");
        assert!(!String::from_utf8_lossy(&list.stdout).contains(&name), "{name} left behind");
    }
}
