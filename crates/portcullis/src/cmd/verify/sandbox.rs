//! The sandbox of `portcullis verify`: a target and a scanner namespace joined by a veth
//! pair, the listener process inside the target, and the teardown that runs however the
//! command ends (return, error, panic or Ctrl-C).
//!
//! Teardown has two paths. Normally the [`Sandbox`] drops: it kills the listener and the
//! [`Netns`] guards delete both namespaces. On SIGINT/SIGTERM/SIGHUP a dedicated thread
//! (the signals are blocked in every other thread, so only it receives them) takes the
//! same registry of live namespaces and listener pids, removes them and exits with 130.
//! Creation holds the registry's lock, so a signal never sees a half-registered sandbox.

use std::io::{BufRead as _, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use portcullis_netns::{Link, Netns, link};

/// Live namespaces and listener pids, for the signal thread.
static LIVE: Mutex<Registry> = Mutex::new(Registry { names: Vec::new(), pids: Vec::new() });
static SIGNALS: Once = Once::new();

struct Registry {
    names: Vec<String>,
    pids: Vec<u32>,
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[allow(clippy::disallowed_methods, reason = "teardown on a signal drives ip(8) and kill(1)")]
fn teardown_by_name(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).status();
    let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{name}.xtables.lock")));
    portcullis_apply::forget_namespace(Some(name));
}

/// Removes the `pcl-` namespaces whose creating process is gone (crashed or `--keep`
/// runs: the pid is the name's second field, `pcl-<purpose>-<pid>-<n>`), with whatever
/// still runs inside. Namespaces of live processes (a verify or a test rig running right
/// now) and `pcl-` names without a pid are left alone. Returns the names removed.
#[allow(clippy::disallowed_methods, reason = "lists namespaces with ip(8)")]
pub(crate) fn cleanup_leftovers() -> Result<Vec<String>> {
    let out = Command::new("ip").args(["netns", "list"]).output().context("run ip netns list")?;
    let mut removed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(rest) = name.strip_prefix(portcullis_netns::PREFIX) else { continue };
        let pid = rest.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        // A name without a pid is not one of ours (portcullis-netns always puts it in).
        let dead = pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists());
        if dead {
            teardown_by_name(name);
            removed.push(name.to_owned());
        }
    }
    Ok(removed)
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and so in every thread it starts
/// from now on) and starts the thread that tears the sandbox down when one arrives.
/// Call it before any other thread starts. Children get a clean mask from std.
pub(crate) fn handle_signals() {
    use nix::sys::signal::{SigSet, Signal};
    SIGNALS.call_once(|| {
        let mut set = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            set.add(s);
        }
        if set.thread_block().is_err() {
            return;
        }
        let _ = std::thread::Builder::new().name("signals".into()).spawn(move || {
            let Ok(sig) = set.wait() else { return };
            let reg = registry();
            for pid in &reg.pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(i32::try_from(*pid).unwrap_or(i32::MAX)),
                    Signal::SIGKILL,
                );
            }
            for name in &reg.names {
                teardown_by_name(name);
            }
            eprintln!("portcullis verify: {sig}: sandbox removed");
            std::process::exit(130);
        });
    });
}

/// The running listener process.
#[derive(Debug)]
pub(crate) struct Listener {
    child: Child,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pid = self.child.id();
        registry().pids.retain(|p| *p != pid);
    }
}

/// Target and scanner namespaces, linked; dropping it removes everything.
#[derive(Debug)]
pub(crate) struct Sandbox {
    // Field order is drop order: the listener dies before its namespace goes.
    listener: Option<Listener>,
    pub(crate) target: Netns,
    pub(crate) scanner: Netns,
    pub(crate) link: Link,
    /// The scanner's source addresses (the link's, or `--src`), IPv4 and IPv6.
    pub(crate) src_v4: IpAddr,
    pub(crate) src_v6: IpAddr,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.listener.take();
        let mut reg = registry();
        reg.names.retain(|n| n != self.target.name() && n != self.scanner.name());
        // What the applier keeps about the target (its record, its lock file) goes with it.
        portcullis_apply::forget_namespace(Some(self.target.name()));
        // The Netns guards delete the namespaces after this.
    }
}

impl Sandbox {
    /// Creates both namespaces and the link; `src` becomes the scanner's source address.
    pub(crate) fn create(src: Option<IpAddr>) -> Result<Self> {
        let (target, scanner) = {
            let mut reg = registry();
            let target = Netns::create("vt").context("create the target namespace")?;
            reg.names.push(target.name().to_owned());
            let scanner = Netns::create("vs").context("create the scanner namespace")?;
            reg.names.push(scanner.name().to_owned());
            (target, scanner)
        };
        let link = link(&target, &scanner, 0).context("link the sandbox namespaces")?;
        let mut sb = Self {
            listener: None,
            src_v4: link.b_v4.into(),
            src_v6: link.b_v6.into(),
            target,
            scanner,
            link,
        };
        if let Some(src) = src {
            sb.set_source(src)?;
        }
        Ok(sb)
    }

    /// Gives the scanner `src` and routes the target's answers back to it.
    fn set_source(&mut self, src: IpAddr) -> Result<()> {
        let (dst, len, nodad): (IpAddr, u8, &[&str]) = match src {
            IpAddr::V4(_) => (self.link.a_v4.into(), 32, &[]),
            IpAddr::V6(_) => (self.link.a_v6.into(), 128, &["nodad"]),
        };
        if src == dst {
            bail!("--src {src}: that is the target's own address");
        }
        let own = [self.link.b_v4.into(), self.link.b_v6.into()];
        if !own.contains(&src) {
            let mut args = vec!["addr", "add"];
            let cidr = format!("{src}/{len}");
            args.extend([cidr.as_str(), "dev", "pcl0"]);
            args.extend(nodad);
            self.scanner.run("ip", &args).context("give the scanner the --src address")?;
            let host = format!("{dst}/{len}");
            let s = src.to_string();
            self.scanner
                .run("ip", &["route", "replace", &host, "dev", "pcl0", "src", &s])
                .context("make --src the scanner's source")?;
            let back = format!("{src}/{len}");
            self.target
                .run("ip", &["route", "replace", &back, "dev", "pcl0"])
                .context("route the target's answers to --src")?;
        }
        match src {
            IpAddr::V4(_) => self.src_v4 = src,
            IpAddr::V6(_) => self.src_v6 = src,
        }
        Ok(())
    }

    /// Fixes the IPv6 neighbour entries on both sides, so an ip6tables ruleset that
    /// drops neighbour discovery still lets the scan reach what it means to test (as a
    /// real LAN with a warm neighbour cache would).
    pub(crate) fn pin_neighbours(&self) -> Result<()> {
        let mac = |ns: &Netns| -> Result<String> {
            let out =
                ns.run("ip", &["-o", "link", "show", "pcl0"]).context("read the veth address")?;
            out.split_whitespace()
                .skip_while(|w| *w != "link/ether")
                .nth(1)
                .map(str::to_owned)
                .context("the veth has no MAC address")
        };
        let (tmac, smac) = (mac(&self.target)?, mac(&self.scanner)?);
        let pin = |ns: &Netns, addr: IpAddr, lladdr: &str| -> Result<()> {
            let a = addr.to_string();
            ns.run(
                "ip",
                &["neigh", "replace", &a, "lladdr", lladdr, "dev", "pcl0", "nud", "permanent"],
            )
            .context("pin a neighbour entry")?;
            Ok(())
        };
        pin(&self.scanner, self.link.a_v6.into(), &tmac)?;
        pin(&self.target, self.link.b_v6.into(), &smac)?;
        if self.src_v6 != IpAddr::from(self.link.b_v6) {
            pin(&self.target, self.src_v6, &smac)?;
        }
        Ok(())
    }

    /// The target's address of a family.
    pub(crate) fn target_addr(&self, v6: bool) -> IpAddr {
        if v6 { self.link.a_v6.into() } else { self.link.a_v4.into() }
    }

    /// The scanner's source address of a family.
    pub(crate) fn source(&self, v6: bool) -> IpAddr {
        if v6 { self.src_v6 } else { self.src_v4 }
    }

    /// `/run/netns/NAME` of the scanner, for `run_in_netns`.
    pub(crate) fn scanner_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(self.scanner.name())
    }

    /// `/run/netns/NAME` of the target.
    pub(crate) fn target_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(self.target.name())
    }

    /// Starts `portcullis __listen` in the target and waits until its sockets are bound.
    pub(crate) fn listen(&mut self, tcp: &[u16], udp: &[u16], deadline: Duration) -> Result<()> {
        if tcp.is_empty() && udp.is_empty() {
            return Ok(());
        }
        let exe = std::env::current_exe().context("locate the portcullis binary")?;
        let join = |v: &[u16]| v.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        let mut cmd = self.target.command(exe.to_str().context("binary path is not UTF-8")?);
        cmd.arg("__listen").arg("--deadline").arg(deadline.as_secs().to_string());
        if !tcp.is_empty() {
            cmd.arg("--tcp").arg(join(tcp));
        }
        if !udp.is_empty() {
            cmd.arg("--udp").arg(join(udp));
        }
        let mut child = {
            let mut reg = registry();
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("start the listener")?;
            reg.pids.push(child.id());
            child
        };
        let stdout = child.stdout.take().context("listener stdout")?;
        self.listener = Some(Listener { child });
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).context("wait for the listener")?;
        if line.trim() != "ready" {
            let mut err = String::new();
            if let Some(l) = self.listener.as_mut()
                && let Some(mut e) = l.child.stderr.take()
            {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            bail!("the listener did not start: {}", err.trim());
        }
        Ok(())
    }

    /// Leaves everything up; returns the names of the target and scanner namespaces.
    pub(crate) fn keep(mut self) -> (String, String) {
        if let Some(mut l) = self.listener.take() {
            // Detach: the process lives on until its deadline or the namespace goes.
            let pid = l.child.id();
            registry().pids.retain(|p| *p != pid);
            l.child.stdout.take();
            std::mem::forget(l);
        }
        {
            let mut reg = registry();
            reg.names.retain(|n| n != self.target.name() && n != self.scanner.name());
        }
        // Forget the guards: the namespaces outlive the process.
        let this = std::mem::ManuallyDrop::new(self);
        (this.target.name().to_owned(), this.scanner.name().to_owned())
    }
}
