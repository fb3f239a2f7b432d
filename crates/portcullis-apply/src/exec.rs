//! Running the host's iptables tools: in which namespace, with which backend and lock.

use std::io::Write as _;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use portcullis_rules::{Backend, Family, TableName};

use crate::error::{ApplyError, RestoreFailure};

/// Where and how rulesets are loaded: the network namespace, the address family, the
/// backend and the xtables lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The network namespace by name (`/run/netns/NAME`); `None` for the current one.
    pub netns: Option<String>,
    /// IPv4 (`iptables-*`) or IPv6 (`ip6tables-*`).
    pub family: Family,
    /// nft or legacy; every tool of one apply uses the same.
    pub backend: Backend,
    /// The xtables lock file (`XTABLES_LOCKFILE`); `None` keeps the tool's default.
    pub lockfile: Option<PathBuf>,
    /// Seconds to wait for the xtables lock (`-w N`, always bounded).
    pub wait_secs: u32,
}

impl Target {
    /// A target in the namespace `netns` (or the current one), with the lock file that
    /// namespace's tools share by portcullis' convention (see [`lockfile_for`]).
    pub fn new(netns: Option<&str>, family: Family, backend: Backend) -> Self {
        Self {
            netns: netns.map(str::to_owned),
            family,
            backend,
            lockfile: lockfile_for(netns),
            wait_secs: 5,
        }
    }

    /// A target as a record in the state directory keeps it (the watchdog's and the
    /// guardian's): the lock file as recorded, the default wait.
    pub(crate) fn stored(
        netns: Option<String>,
        family: Family,
        backend: Backend,
        lockfile: Option<PathBuf>,
    ) -> Self {
        Self { netns, family, backend, lockfile, wait_secs: 5 }
    }

    /// A short name for messages: `namespace NAME` or `the current namespace`.
    pub fn describe(&self) -> String {
        match &self.netns {
            Some(n) => format!("namespace {n}"),
            None => "the current namespace".to_owned(),
        }
    }

    /// The program name of one of the tools (`restore`, `save` or ``): for example
    /// `ip6tables-legacy-restore`.
    pub fn program(&self, tool: &str) -> String {
        program(self.family, self.backend, tool)
    }

    /// A command running `program` in the target namespace with the target's lock file.
    pub fn command(&self, program: &str) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                #[allow(clippy::disallowed_methods, reason = "the applier drives ip(8)")]
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => {
                #[allow(clippy::disallowed_methods, reason = "the applier drives iptables")]
                let c = Command::new(program);
                c
            }
        };
        if let Some(lock) = &self.lockfile {
            c.env("XTABLES_LOCKFILE", lock);
        }
        c
    }

    /// `iptables-save` (all tables, or one with `-t`), with counters when `counters`.
    pub fn save(&self, table: Option<TableName>, counters: Counters) -> Result<String, ApplyError> {
        let prog = self.program("save");
        let mut c = self.command(&prog);
        if counters == Counters::Keep {
            c.arg("-c");
        }
        if let Some(t) = table {
            c.args(["-t", t.as_str()]);
        }
        let out = run(c, None, &prog, None)?;
        if !out.status.success() {
            return Err(ApplyError::Tool {
                program: prog,
                status: out.status.code(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        String::from_utf8(out.stdout).map_err(|_| ApplyError::Tool {
            program: prog,
            status: Some(0),
            stderr: "output is not UTF-8".to_owned(),
        })
    }

    /// `iptables -t TABLE -S CHAIN`: one chain in `-S` form.
    pub fn list_chain(&self, table: TableName, chain: &str) -> Result<String, ApplyError> {
        self.list(table, &["-S", chain])
    }

    /// `iptables -t TABLE -S -v`: one table in `-S` form with counters. With nft this
    /// reads only that table, where `iptables-nft-save -t` reads them all.
    pub fn list_table(&self, table: TableName) -> Result<String, ApplyError> {
        self.list(table, &["-S", "-v"])
    }

    fn list(&self, table: TableName, what: &[&str]) -> Result<String, ApplyError> {
        let prog = self.program("");
        let mut c = self.command(&prog);
        c.args(["-w", &self.wait_secs.to_string(), "-t", table.as_str()]).args(what);
        let out = run(c, None, &prog, None)?;
        if !out.status.success() {
            return Err(ApplyError::Tool {
                program: prog,
                status: out.status.code(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Feeds `input` to `iptables-restore -w N` (with `--noflush` and/or `--counters` as
    /// asked). One process for the whole input, which dies with the calling thread
    /// (`PR_SET_PDEATHSIG`): a restore never outlives its applier.
    pub fn restore(&self, input: &str, flags: RestoreFlags) -> Result<(), RestoreFailure> {
        self.restore_keeping(input, flags, None)
    }

    /// [`Target::restore`], the child also holding `keep` (the write end of the apply
    /// guardian's pipe), so that the guardian sees the end of the pipe only once the
    /// applier and its restore are both gone.
    pub(crate) fn restore_keeping(
        &self,
        input: &str,
        flags: RestoreFlags,
        keep: Option<RawFd>,
    ) -> Result<(), RestoreFailure> {
        let prog = self.program("restore");
        let mut c = self.command(&prog);
        c.args(["-w", &self.wait_secs.to_string()]);
        if flags.noflush {
            c.arg("--noflush");
        }
        if flags.counters {
            c.arg("--counters");
        }
        if flags.test {
            c.arg("--test");
        }
        let out = run(c, Some(input.as_bytes()), &prog, Some(keep))
            .map_err(|e| RestoreFailure::spawn(&e))?;
        if out.status.success() {
            return Ok(());
        }
        Err(RestoreFailure::parse(out.status.code(), &String::from_utf8_lossy(&out.stderr)))
    }
}

/// Whether a save keeps the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counters {
    /// `iptables-save -c`.
    Keep,
    /// Plain `iptables-save`.
    Drop,
}

/// Flags of one `iptables-restore` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestoreFlags {
    /// `--noflush`: only the chains the input names change.
    pub noflush: bool,
    /// `--counters`: honour `[p:b]`.
    pub counters: bool,
    /// `--test`: parse only.
    pub test: bool,
}

/// `iptables-nft-restore`, `ip6tables-legacy-save`, `iptables-nft` (tool ``) …
pub fn program(family: Family, backend: Backend, tool: &str) -> String {
    let b = match backend {
        Backend::Nft => "nft",
        Backend::Legacy => "legacy",
    };
    if tool.is_empty() {
        format!("{}-{b}", family.command())
    } else {
        format!("{}-{b}-{tool}", family.command())
    }
}

/// The xtables lock file portcullis uses for a namespace: `XTABLES_LOCKFILE` when set;
/// for a named namespace `$TMPDIR/NAME.xtables.lock` (the convention of
/// `portcullis-netns`, so every tool working in that namespace contends on one lock and
/// tools in other namespaces do not); otherwise the tools' default (`/run/xtables.lock`).
pub fn lockfile_for(netns: Option<&str>) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("XTABLES_LOCKFILE") {
        return Some(PathBuf::from(p));
    }
    netns.map(|n| std::env::temp_dir().join(format!("{n}.xtables.lock")))
}

/// Ties the child `c` will start to the calling thread: `PR_SET_PDEATHSIG(SIGKILL)`, so
/// that a writer of the kernel's ruleset dies with its applier (an orphaned restore could
/// otherwise commit its remaining tables after a repair or a revert), and `keep` inherited
/// across exec (it is close-on-exec in the applier, so no other child gets it). The
/// parent may die between fork and prctl: then the child's parent is no longer the
/// applier, and the child exits before exec.
fn die_with_parent(c: &mut Command, keep: Option<RawFd>) {
    let parent = nix::unistd::getpid();
    let child_setup = move || -> std::io::Result<()> {
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
        if nix::unistd::getppid() != parent {
            return Err(nix::errno::Errno::ESRCH.into());
        }
        if let Some(fd) = keep {
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))?;
        }
        Ok(())
    };
    #[allow(unsafe_code)]
    // SAFETY: `pre_exec` runs the closure in the forked child before exec. It calls only
    // async-signal-safe functions (prctl, getppid, fcntl), allocates nothing (errors are
    // raw errno values) and takes no lock, which is what a child forked from a
    // multi-threaded process may do; it touches no memory shared with the parent.
    unsafe {
        c.pre_exec(child_setup);
    }
}

/// Runs `c` to its end with `input` on its stdin. `writer` (`Some(keep)`) marks a child
/// that writes the kernel's ruleset: it dies with the calling thread, see
/// [`die_with_parent`].
fn run(
    mut c: Command,
    input: Option<&[u8]>,
    prog: &str,
    writer: Option<Option<RawFd>>,
) -> Result<Output, ApplyError> {
    if let Some(keep) = writer {
        die_with_parent(&mut c, keep);
    }
    c.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn_err = |e: std::io::Error| ApplyError::Spawn { program: prog.to_owned(), source: e };
    let mut child = c.spawn().map_err(spawn_err)?;
    if let Some(bytes) = input {
        let mut stdin =
            child.stdin.take().ok_or_else(|| spawn_err(std::io::Error::other("no stdin pipe")))?;
        // A writer thread, so a tool that fails early and stops reading cannot block us
        // while its stderr fills up.
        return std::thread::scope(|s| {
            s.spawn(move || {
                let _ = stdin.write_all(bytes);
            });
            child.wait_with_output().map_err(spawn_err)
        });
    }
    child.wait_with_output().map_err(spawn_err)
}
