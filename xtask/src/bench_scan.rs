//! `cargo xtask bench scan`: `portcullis scan` against nmap on the issue 3 rig.
//!
//! Builds `portcullis` (release), makes two throwaway namespaces on 198.18.0.0/15 (target
//! with the issue 3 firewall and listeners, scanner), then runs each scan `--runs` times
//! back to back (default 10) with `portcullis` and with nmap, from the scanner namespace.
//! Prints per command the median, min and max wall time (fork to exit, `ip netns exec`
//! included for both tools) and how many runs gave exactly the expected states (and, for
//! TCP, the ICMP reasons of ports 110 and 113). Nothing outside the two namespaces is
//! touched or scanned. One row is not a scanner: the oracle ([`udp_oracle`]) measures the
//! floor the target's ICMP limiter sets for an exact `-sU -F`, in the same run.
//!
//! Options: `--runs N`, `--quick` (3 runs), `--no-nmap`, `--only NAME` (substring of a
//! row name), `--portcullis PATH` (use that binary instead of building one), `--rest SECS`
//! (pause between runs so the target's ICMP bucket refills: 6 s fills it), `--hold SECS`
//! (build the rig, print the scanner namespace and target address, keep them SECS seconds
//! for profiling by hand, e.g. `ip netns exec NS strace -c portcullis scan ...`, then
//! remove them; nothing is benchmarked).

use std::io::Write as _;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use portcullis_netns::{Netns, link};

/// The issue 3 rig's target firewall, shared with portcullis-scan's rig tests.
const TARGET_RULES: &str = include_str!("../../crates/portcullis-scan/test_data/rig/target.rules");

const TCP_PORTS: &str =
    "22/open/tcp//ssh///, 25/closed/tcp//smtp///, 80/open/tcp//http///, 443/closed/tcp//https///";
const ACK_PORTS: &str = "22/unfiltered/tcp//ssh///, 25/unfiltered/tcp//smtp///, 80/unfiltered/tcp//http///, 443/unfiltered/tcp//https///";
const UDP_PORTS: &str = "53/open/udp//domain///, 123/closed/udp//ntp///, 137/filtered/udp//netbios-ns///, 161/closed/udp//snmp///\tIgnored State: open|filtered (96)";
const TCP_REASONS: [&str; 2] = [
    "reason=\"port-unreach\" count=\"1\" proto=\"tcp\" ports=\"110\"",
    "reason=\"admin-prohibited\" count=\"1\" proto=\"tcp\" ports=\"113\"",
];

/// One benchmarked command and what a right answer looks like.
pub(crate) struct Row {
    pub(crate) name: &'static str,
    pub(crate) tool: Tool,
    args: Vec<&'static str>,
    ports_line: String,
    xml_needles: Vec<&'static str>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    Portcullis,
    Nmap,
    /// Not a scanner: the floor of an exact `-sU -F` run (see [`udp_oracle`]).
    Oracle,
}

pub(crate) fn rows() -> Vec<Row> {
    let tcp = |n: u32| format!("{TCP_PORTS}\tIgnored State: filtered ({n})");
    let row = |name, tool, args: &[&'static str], ports_line: String, xml: &[&'static str]| Row {
        name,
        tool,
        args: args.to_vec(),
        ports_line,
        xml_needles: xml.to_vec(),
    };
    use Tool::{Nmap, Portcullis};
    vec![
        row("portcullis -sS -F", Portcullis, &["-Pn", "-sS", "-F"], tcp(96), &TCP_REASONS),
        row("nmap -sS -F", Nmap, &["-Pn", "-sS", "-F"], tcp(96), &TCP_REASONS),
        row(
            "portcullis -sS -F --no-refill-pass",
            Portcullis,
            &["-Pn", "-sS", "-F", "--no-refill-pass"],
            tcp(96),
            &TCP_REASONS,
        ),
        row(
            "nmap -sS -F -T5 --min-rate 100000",
            Nmap,
            &["-Pn", "-sS", "-F", "-T5", "--min-rate", "100000"],
            tcp(96),
            &TCP_REASONS,
        ),
        row("portcullis -sS -p-", Portcullis, &["-Pn", "-sS", "-p-"], tcp(65531), &TCP_REASONS),
        row(
            "nmap -sS -p- -T5 --min-rate 100000",
            Nmap,
            &["-Pn", "-sS", "-p-", "-T5", "--min-rate", "100000"],
            tcp(65531),
            &TCP_REASONS,
        ),
        row("portcullis -sU -F", Portcullis, &["-Pn", "-sU", "-F"], UDP_PORTS.to_owned(), &[]),
        row("nmap -sU -F -T4", Nmap, &["-Pn", "-sU", "-F", "-T4"], UDP_PORTS.to_owned(), &[]),
        row("oracle: the three ICMP answers of -sU -F", Tool::Oracle, &[], String::new(), &[]),
        row("portcullis -sT -F", Portcullis, &["-Pn", "-sT", "-F"], tcp(96), &TCP_REASONS),
        // nmap -sT reports REJECT icmp-port-unreachable (110) as closed, by design.
        row(
            "nmap -sT -F -T4",
            Nmap,
            &["-Pn", "-sT", "-F", "-T4"],
            format!(
                "{}\tIgnored State: filtered (95)",
                TCP_PORTS.replace(
                    "80/open/tcp//http///, ",
                    "80/open/tcp//http///, 110/closed/tcp//pop3///, "
                )
            ),
            &[],
        ),
        row(
            "portcullis -sA -F",
            Portcullis,
            &["-Pn", "-sA", "-F"],
            format!("{ACK_PORTS}\tIgnored State: filtered (96)"),
            &TCP_REASONS,
        ),
        row(
            "nmap -sA -F -T4",
            Nmap,
            &["-Pn", "-sA", "-F", "-T4"],
            format!("{ACK_PORTS}\tIgnored State: filtered (96)"),
            &TCP_REASONS,
        ),
    ]
}

/// The hidden listener task: `bench scan --listen ADDR`, run inside the target namespace.
fn listen(addr: &str) -> Result<()> {
    let mut threads = Vec::new();
    for port in [22u16, 80] {
        let l = TcpListener::bind((addr, port)).with_context(|| format!("bind tcp {port}"))?;
        threads.push(std::thread::spawn(move || {
            for c in l.incoming() {
                drop(c);
            }
        }));
    }
    let u = UdpSocket::bind((addr, 53)).context("bind udp 53")?;
    let mut buf = [0u8; 2048];
    loop {
        if let Ok((n, from)) = u.recv_from(&mut buf) {
            let reply: &[u8] = if n == 0 { b"x" } else { &buf[..n] };
            let _ = u.send_to(reply, from);
        }
    }
}

/// The hidden floor task: `bench scan --udp-oracle ADDR`, run inside the scanner
/// namespace. It knows what no scanner knows, which three UDP ports of the rig answer
/// with an ICMP error (123 and 161 port-unreachable, 137 admin-prohibited), proves
/// nothing about the others, and sends one datagram to each unanswered one every 5 ms
/// until all three have answered (10 s at most). Back to back its runs show the floor
/// the target's ICMP limiter (one error per second after a burst of six) sets for an
/// exact `-sU -F`: no scanner that reports those three ports right every run can have
/// runs shorter on average.
fn udp_oracle(addr: &str) -> Result<()> {
    let mut socks = Vec::new();
    for p in [123u16, 161, 137] {
        let s = UdpSocket::bind("0.0.0.0:0").context("bind")?;
        s.connect((addr, p)).with_context(|| format!("connect udp {p}"))?;
        s.set_nonblocking(true)?;
        socks.push(s);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 64];
    let would_block = |e: &std::io::Error| e.kind() == std::io::ErrorKind::WouldBlock;
    while !socks.is_empty() {
        ensure!(Instant::now() < deadline, "no ICMP answer within 10 s");
        let mut unanswered = Vec::with_capacity(socks.len());
        for sock in socks {
            // A connected UDP socket reports the ICMP error of an earlier datagram on
            // its next call.
            let answered = match sock.recv(&mut buf) {
                Err(e) => !would_block(&e),
                Ok(_) => bail!("a datagram from a port that should answer with ICMP"),
            };
            if !answered && sock.send(b"").err().is_none_or(|e| would_block(&e)) {
                unanswered.push(sock);
            }
        }
        socks = unanswered;
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

pub(crate) struct Rig {
    listener: Child,
    /// The private copy of this binary that the rig's helpers run from.
    exe: PathBuf,
    pub(crate) scanner: Netns,
    _target: Netns,
    target_ip: String,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.listener.kill();
        let _ = self.listener.wait();
    }
}

pub(crate) fn rig(dir: &Path) -> Result<Rig> {
    let target = Netns::create("scanbt")?;
    let scanner = Netns::create("scanbs")?;
    let l = link(&target, &scanner, 0)?;
    let mut c =
        target.command("iptables-restore").stdin(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    c.stdin.take().context("stdin")?.write_all(TARGET_RULES.as_bytes())?;
    let out = c.wait_with_output()?;
    ensure!(out.status.success(), "iptables-restore: {}", String::from_utf8_lossy(&out.stderr));
    // A private copy of this binary: other `cargo xtask` runs may rebuild the original.
    let exe = dir.join("xtask-listener");
    std::fs::copy(std::env::current_exe()?, &exe).context("copy xtask for the listeners")?;
    let target_ip = l.a_v4.to_string();
    let mut listener = target
        .command(&exe.to_string_lossy())
        .args(["bench", "scan", "--listen", &target_ip])
        .stdout(Stdio::null())
        .spawn()
        .context("start listeners")?;
    std::thread::sleep(Duration::from_millis(300));
    if let Some(status) = listener.try_wait()? {
        bail!("the rig's listeners exited: {status}");
    }
    Ok(Rig { listener, exe, scanner, _target: target, target_ip })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

pub(crate) struct Outcome {
    name: &'static str,
    tool: Tool,
    pub(crate) times: Vec<f64>,
    pub(crate) right: usize,
    /// Wall time minus the scan time portcullis reports in `-oJ` (`elapsed`): process
    /// start, output and exit, `ip netns exec` included.
    lags: Vec<f64>,
}

pub(crate) fn run_row(
    rig: &Rig,
    bin: &Path,
    row: &Row,
    runs: usize,
    rest: Duration,
    dir: &Path,
) -> Result<Outcome> {
    let mut times = Vec::new();
    let mut right = 0;
    let gnmap = dir.join("out.gnmap");
    let xml = dir.join("out.xml");
    let json = dir.join("out.json");
    let mut lags = Vec::new();
    for _ in 0..runs {
        std::thread::sleep(rest);
        let _ = std::fs::remove_file(&gnmap);
        let _ = std::fs::remove_file(&xml);
        let mut cmd = match row.tool {
            Tool::Portcullis => {
                let mut c = rig.scanner.command(&bin.to_string_lossy());
                c.arg("scan").arg("-oJ").arg(&json);
                c
            }
            Tool::Nmap => {
                let mut c = rig.scanner.command("nmap");
                c.arg("-n");
                c
            }
            Tool::Oracle => {
                let mut c = rig.scanner.command(&rig.exe.to_string_lossy());
                c.args(["bench", "scan", "--udp-oracle", &rig.target_ip]).stdout(Stdio::null());
                let t0 = Instant::now();
                let out = c.output().context("running the UDP oracle")?;
                times.push(t0.elapsed().as_secs_f64());
                right += usize::from(out.status.success());
                continue;
            }
        };
        cmd.args(&row.args)
            .arg("-oG")
            .arg(&gnmap)
            .arg("-oX")
            .arg(&xml)
            .arg(&rig.target_ip)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let t0 = Instant::now();
        let out = cmd.output().with_context(|| format!("running {}", row.name))?;
        let wall = t0.elapsed().as_secs_f64();
        times.push(wall);
        if row.tool == Tool::Portcullis {
            let j = std::fs::read_to_string(&json).unwrap_or_default();
            let elapsed = j
                .split("\"elapsed\":")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .and_then(|v| v.parse::<f64>().ok());
            if let Some(e) = elapsed {
                lags.push(wall - e);
            }
        }
        ensure!(out.status.success(), "{}: {}", row.name, String::from_utf8_lossy(&out.stderr));
        let g = std::fs::read_to_string(&gnmap).unwrap_or_default();
        let x = std::fs::read_to_string(&xml).unwrap_or_default();
        let line_ok = g.lines().any(|l| l.ends_with(&format!("\tPorts: {}", row.ports_line)));
        let xml_ok = row.xml_needles.iter().all(|n| x.contains(n));
        if line_ok && xml_ok {
            right += 1;
        } else if right == 0 && times.len() == 1 {
            let got = g.lines().find(|l| l.contains("\tPorts: ")).unwrap_or("(no Ports line)");
            eprintln!("bench scan: {} differs from the expected states: {got}", row.name);
        }
    }
    Ok(Outcome { name: row.name, tool: row.tool, times, right, lags })
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut runs = 10;
    let mut nmap = true;
    let mut only: Option<String> = None;
    let mut prebuilt: Option<PathBuf> = None;
    let mut rest = Duration::ZERO;
    let mut hold: Option<Duration> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--listen" => return listen(it.next().context("--listen ADDR")?),
            "--udp-oracle" => return udp_oracle(it.next().context("--udp-oracle ADDR")?),
            "--runs" => runs = it.next().context("--runs N")?.parse()?,
            "--quick" => runs = 3,
            "--no-nmap" => nmap = false,
            "--only" => only = Some(it.next().context("--only NAME")?.clone()),
            "--portcullis" => prebuilt = Some(it.next().context("--portcullis PATH")?.into()),
            "--rest" => rest = Duration::from_secs_f64(it.next().context("--rest SECS")?.parse()?),
            "--hold" => {
                hold = Some(Duration::from_secs_f64(it.next().context("--hold SECS")?.parse()?))
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    if let Some(why) = portcullis_netns::missing_prerequisite(&["iptables-restore"]) {
        bail!("bench scan needs the namespace rig: {why}");
    }
    if let Some(hold) = hold {
        let dir = std::env::temp_dir().join(format!("pcl-bench-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let rig = rig(&dir)?;
        println!("scanner namespace {} target {}", rig.scanner.name(), rig.target_ip);
        std::io::stdout().flush()?;
        std::thread::sleep(hold);
        drop(rig);
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    nmap &= Command::new("nmap").arg("--version").output().is_ok();
    let bin = match prebuilt {
        Some(p) => p,
        None => crate::release_binary(root)?,
    };
    let dir = std::env::temp_dir().join(format!("pcl-bench-scan-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let rig = rig(&dir)?;
    let mut results = Vec::new();
    for row in rows() {
        if row.tool == Tool::Nmap && !nmap {
            continue;
        }
        if only.as_deref().is_some_and(|o| !row.name.contains(o)) {
            continue;
        }
        eprintln!("bench scan: {} x{runs}", row.name);
        results.push(run_row(&rig, &bin, &row, runs, rest, &dir)?);
    }
    drop(rig);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "| command | runs | median s | mean s | min–max s | exact runs | nmap median ÷ ours (row below) | start+exit overhead, median |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (i, r) in results.iter().enumerate() {
        let mut t = r.times.clone();
        let med = median(&mut t);
        let (lo, hi) = (t[0], t[t.len() - 1]);
        let ratio = match (r.tool, results.get(i + 1)) {
            (Tool::Portcullis, Some(n)) if n.tool == Tool::Nmap => {
                let mut nt = n.times.clone();
                format!("{:.2}", median(&mut nt) / med)
            }
            _ => String::new(),
        };
        let lag = if r.lags.is_empty() {
            String::new()
        } else {
            let mut l = r.lags.clone();
            format!("{:.0} ms", median(&mut l) * 1000.0)
        };
        let mean = t.iter().sum::<f64>() / t.len() as f64;
        println!(
            "| {} | {} | {med:.3} | {mean:.3} | {lo:.3}–{hi:.3} | {}/{} | {ratio} | {lag} |",
            r.name,
            r.times.len(),
            r.right,
            r.times.len()
        );
    }
    // Back to back, a run's time depends on how many ICMP tokens the runs before it left
    // in the target's bucket: the runs in order show that mix.
    println!();
    for r in &results {
        let runs: Vec<String> = r.times.iter().map(|t| format!("{t:.2}")).collect();
        println!("{}: {}", r.name, runs.join(" "));
    }
    Ok(())
}
