//! `cargo xtask bench apply`: how fast `portcullis apply` is against the tools it drives.
//!
//! Three ratios, each the median of `--rounds` runs, in fresh throwaway namespaces:
//! 1. a kube-proxy-scale ruleset (10,000 services, about 150,000 lines, nat and filter)
//!    applied into an empty namespace: `portcullis apply` against plain
//!    `iptables-restore` of the same file (goal: at most 1.15x), and the floor of any
//!    verified apply (nft): that plain restore followed by nothing but the netlink read
//!    of its result (`portcullis-apply`'s `nft_save` example);
//! 2. one service changed: `portcullis apply --incremental` against a full re-apply
//!    (goal: at least 10x faster);
//! 3. 1,000 rules: the seed article's way (one `iptables -A` process per rule) against
//!    one `portcullis apply` of the same script.
//!
//! Options: `--services N`, `--rounds N`, `--backend nft|legacy`, `--rest SECS` (pause
//! before each timed run of parts 1 and 2, default 1: the kernel frees a deleted
//! namespace's or a replaced table's 150,000 rules in the background, which would be
//! counted against the next run),
//! `--gen FILE` (write the generated ruleset and stop), `--generation N` (with `--gen`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use portcullis_netns::Netns;

use crate::kube_gen::{KubeSpec, kube_ruleset};

struct Opts {
    services: usize,
    rounds: usize,
    backend: String,
    rest: Duration,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut o = Opts {
        services: 10_000,
        rounds: 3,
        backend: "nft".to_owned(),
        rest: Duration::from_secs(1),
    };
    let mut generation = 0;
    let mut gen_to = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--services" => o.services = it.next().context("--services N")?.parse()?,
            "--rounds" => o.rounds = it.next().context("--rounds N")?.parse()?,
            "--backend" => o.backend = it.next().context("--backend nft|legacy")?.clone(),
            "--rest" => {
                o.rest = Duration::from_secs_f64(it.next().context("--rest SECS")?.parse()?);
            }
            "--generation" => generation = it.next().context("--generation N")?.parse()?,
            "--gen" => gen_to = Some(it.next().context("--gen FILE")?.clone()),
            other => bail!("unknown argument {other:?}"),
        }
    }
    if let Some(path) = gen_to {
        std::fs::write(&path, kube_ruleset(KubeSpec { services: o.services, generation }))?;
        return Ok(());
    }
    if let Some(why) = portcullis_netns::missing_prerequisite(&["iptables-nft-restore"]) {
        bail!("bench apply needs namespaces: {why}");
    }
    let bin = build_portcullis()?;
    let reader = build_reader()?;
    let dir = std::env::temp_dir().join(format!("pcl-bench-apply-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = benches(&bin, &reader, &dir, &o);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn build_portcullis() -> Result<PathBuf> {
    crate::release_binary(&crate::project_root())
}

/// The netlink reader alone (`portcullis-apply`'s `nft_save` example), for the floor.
fn build_reader() -> Result<PathBuf> {
    crate::release_build(&crate::project_root(), "portcullis-apply", Some("nft_save"))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// Runs `c` with `input` on stdin (or none), fails unless it succeeds, returns the time.
fn timed(mut c: Command, input: Option<&Path>, what: &str) -> Result<Duration> {
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    match input {
        Some(p) => c.stdin(std::fs::File::open(p)?),
        None => c.stdin(Stdio::null()),
    };
    let start = Instant::now();
    let out = c.output().with_context(|| format!("running {what}"))?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(took)
}

fn apply_cmd(
    bin: &Path,
    dir: &Path,
    file: &Path,
    ns: &Netns,
    backend: &str,
    extra: &[&str],
) -> Command {
    let mut c = Command::new(bin);
    c.arg("apply")
        .arg(file)
        .args(["--netns", ns.name(), "--force", "--backend", backend])
        .args(extra)
        .env("PORTCULLIS_STATE_DIR", dir.join("state"))
        .env("XTABLES_LOCKFILE", ns.lockfile())
        .env_remove("SSH_CONNECTION");
    c
}

fn benches(bin: &Path, reader: &Path, dir: &Path, o: &Opts) -> Result<()> {
    let b = o.backend.as_str();
    let restore = format!("iptables-{b}-restore");
    let gen0 = dir.join("kube0.rules");
    let gen1 = dir.join("kube1.rules");
    let text0 = kube_ruleset(KubeSpec { services: o.services, generation: 0 });
    std::fs::write(&gen0, &text0)?;
    std::fs::write(&gen1, kube_ruleset(KubeSpec { services: o.services, generation: 1 }))?;
    println!(
        "bench apply: {} services, {} lines, backend {b}, median of {} rounds",
        o.services,
        text0.lines().count(),
        o.rounds
    );

    // 1. Full apply into an empty namespace.
    let (mut plain, mut pcl, mut pcl_nv) = (Vec::new(), Vec::new(), Vec::new());
    let mut floor = Vec::new();
    // Each timed run comes `--rest` after the namespace of the one before is deleted:
    // the kernel frees its 110,000 rules in the background, on a core the next run would
    // otherwise share with that cleanup.
    for _ in 0..o.rounds {
        let ns = Netns::create("benchplain")?;
        let mut c = ns.command(&restore);
        c.args(["-w", "5"]);
        std::thread::sleep(o.rest);
        plain.push(timed(c, Some(&gen0), "iptables-restore")?);
        drop(ns);
        // The floor of a verified apply: the same plain restore, then nothing but the
        // kernel read the read-back needs (no parse, no validation, no comparison).
        if b == "nft" {
            let ns = Netns::create("benchfloor")?;
            let mut c = ns.command(&restore);
            c.args(["-w", "5"]);
            std::thread::sleep(o.rest);
            let mut r = Command::new(reader);
            r.arg(ns.name());
            floor.push(timed(c, Some(&gen0), "iptables-restore")? + timed(r, None, "nft_save")?);
            drop(ns);
        }
        let ns = Netns::create("benchfull")?;
        std::thread::sleep(o.rest);
        pcl.push(timed(apply_cmd(bin, dir, &gen0, &ns, b, &[]), None, "portcullis apply")?);
        drop(ns);
        let ns = Netns::create("benchnover")?;
        std::thread::sleep(o.rest);
        pcl_nv.push(timed(
            apply_cmd(bin, dir, &gen0, &ns, b, &["--no-verify"]),
            None,
            "portcullis apply --no-verify",
        )?);
    }
    let (plain, pcl, pcl_nv) = (median(plain), median(pcl), median(pcl_nv));
    let mut check = Command::new(bin);
    check.arg("check").arg(&gen0);
    let check_t = timed(check, None, "portcullis check")?;
    println!("1. full apply into an empty namespace");
    println!("   plain {restore}:           {}", secs(plain));
    println!(
        "   portcullis apply:                  {}  ratio {:.2}x (goal <= 1.15x)",
        secs(pcl),
        ratio(pcl, plain)
    );
    println!(
        "   portcullis apply --no-verify:      {}  ratio {:.2}x",
        secs(pcl_nv),
        ratio(pcl_nv, plain)
    );
    println!("   of which parse + validate (check): {}", secs(check_t));
    if !floor.is_empty() {
        let floor = median(floor);
        println!(
            "   floor: plain restore + netlink read alone: {}  ratio {:.2}x",
            secs(floor),
            ratio(floor, plain)
        );
    }

    // 2. One service changed: incremental against a full re-apply (both portcullis), in
    // one namespace that holds the whole ruleset; every run flips service 0. Plain
    // iptables-restore re-applies in a namespace of its own (it would change the rules
    // behind portcullis' record).
    let ns = Netns::create("benchinc")?;
    timed(apply_cmd(bin, dir, &gen0, &ns, b, &[]), None, "initial apply")?;
    let plain_ns = Netns::create("benchre")?;
    let mut c = plain_ns.command(&restore);
    c.args(["-w", "5"]);
    timed(c, Some(&gen0), "initial plain apply")?;
    let (mut inc, mut full, mut plain_re) = (Vec::new(), Vec::new(), Vec::new());
    let mut current = 0;
    for _ in 0..o.rounds {
        let next = if current == 0 { &gen1 } else { &gen0 };
        std::thread::sleep(o.rest);
        inc.push(timed(
            apply_cmd(bin, dir, next, &ns, b, &["--incremental"]),
            None,
            "apply --incremental",
        )?);
        let mut c = plain_ns.command(&restore);
        c.args(["-w", "5"]);
        std::thread::sleep(o.rest);
        plain_re.push(timed(c, Some(next), "plain re-apply")?);
        current ^= 1;
        let next = if current == 0 { &gen1 } else { &gen0 };
        std::thread::sleep(o.rest);
        full.push(timed(apply_cmd(bin, dir, next, &ns, b, &[]), None, "full re-apply")?);
        let mut c = plain_ns.command(&restore);
        c.args(["-w", "5"]);
        timed(c, Some(next), "plain re-apply")?;
        current ^= 1;
    }
    drop(ns);
    drop(plain_ns);
    let (inc, full, plain_re) = (median(inc), median(full), median(plain_re));
    println!("2. one service changed, re-applied");
    println!("   portcullis apply (full):           {}", secs(full));
    println!("   plain {restore} (full):    {}", secs(plain_re));
    println!(
        "   portcullis apply --incremental:    {}  {:.1}x faster than the full apply (goal >= 10x), {:.1}x than plain",
        secs(inc),
        ratio(full, inc),
        ratio(plain_re, inc)
    );

    // 3. The seed's way: one iptables process per rule, 1,000 rules.
    let script = dir.join("seed1000.sh");
    let mut s = String::from("iptables -w 5 -P INPUT DROP\n");
    for i in 0..999 {
        s.push_str(&format!("iptables -w 5 -A INPUT -p tcp --dport {} -j ACCEPT\n", 1000 + i));
    }
    std::fs::write(&script, s)?;
    let (mut seed, mut one) = (Vec::new(), Vec::new());
    for _ in 0..o.rounds {
        let ns = Netns::create("benchseed")?;
        let mut c = ns.command("sh");
        c.arg(&script);
        seed.push(timed(c, None, "the seed's script")?);
        drop(ns);
        let ns = Netns::create("benchone")?;
        one.push(timed(
            apply_cmd(bin, dir, &script, &ns, "nft", &[]),
            None,
            "portcullis apply of the script",
        )?);
    }
    let (seed, one) = (median(seed), median(one));
    println!("3. 1,000 rules (the host's iptables, nft)");
    println!("   one iptables -A process per rule:  {}", secs(seed));
    println!(
        "   one portcullis apply:              {}  {:.1}x faster",
        secs(one),
        ratio(seed, one)
    );
    Ok(())
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}
