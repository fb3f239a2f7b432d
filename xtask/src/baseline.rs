//! `cargo xtask baseline`: real iptables output for every fixture ruleset, committed as
//! test data (issue 2 acceptance 4 and 5, issue 4 acceptance 1).
//!
//! For each `crates/portcullis-syntax/test_data/baseline/NNNN_name.rules` (IPv6 when the
//! name ends in `_v6`) and each backend (nft, legacy), a throwaway namespace is created,
//! the fixture is loaded with `{ip,ip6}tables-<backend>-restore -c`, and the task writes
//! into `NNNN_name/<cmd>-<version>-<backend>/`:
//! - `save.txt`, `save-c.txt`: `iptables-save` and `iptables-save -c`, `#` lines removed;
//! - `S.<table>.txt`: `iptables -t <table> -S` for every table the save printed;
//! - `L.<table>[.CHAIN[.N]][.n][.v][.x][.line-numbers].txt`: `iptables -t <table> -L …`
//!   exactly as printed (bytes, trailing spaces included), for filter and nat, every flag
//!   combination, one chain and one rule; for the other tables `-L`, `-L -v -x` and
//!   `-L -n -v -x --line-numbers`;
//! - `meta.txt`: the binary, its version, the backend and the command behind every file.
//!
//! `NNNN_name.sh` is a script of iptables commands (the seed article's): it runs with
//! `iptables` bound to the backend's binary, and `iptables-save` is captured.
//!
//! Name resolution is pinned so the captures do not depend on this machine: `ip netns
//! exec` bind-mounts `/etc/netns/<ns>/{hosts,networks,resolv.conf,nsswitch.conf}`, which
//! the task creates (empty, and `files` only for nsswitch) and removes, so `-L` without `-n` prints numeric addresses and only
//! `/etc/services` and `/etc/protocols` names. The namespace has loopback only, so no
//! lookup ever leaves it.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use portcullis_netns::Netns;

/// The flag combinations captured for every listed table (issue 4): each entry is the
/// list of flags after `-L`.
pub(crate) const FLAG_SETS: &[&[&str]] = &[
    &[],
    &["-n"],
    &["-v"],
    &["-x"],
    &["-n", "-v"],
    &["-v", "-x"],
    &["-n", "-v", "-x"],
    &["--line-numbers"],
    &["-n", "--line-numbers"],
    &["-v", "--line-numbers"],
    &["-n", "-v", "--line-numbers"],
    &["-v", "-x", "--line-numbers"],
    &["-n", "-v", "-x", "--line-numbers"],
];

/// The directory holding fixtures and captures.
pub(crate) fn baseline_dir(root: &Path) -> PathBuf {
    root.join("crates/portcullis-syntax/test_data/baseline")
}

/// `/etc/netns/<ns>/` with empty resolver files, removed on drop.
struct PinnedResolver {
    dir: PathBuf,
}

impl PinnedResolver {
    fn new(ns: &Netns) -> Result<Self> {
        let dir = Path::new("/etc/netns").join(ns.name());
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        for f in ["hosts", "networks", "resolv.conf"] {
            fs::write(dir.join(f), "").with_context(|| format!("write {}/{f}", dir.display()))?;
        }
        // Files only: no DNS query, so no loopback traffic moves the counters between
        // two captures.
        let nss = "passwd: files\ngroup: files\nhosts: files\nnetworks: files\nservices: files\nprotocols: files\n";
        fs::write(dir.join("nsswitch.conf"), nss)
            .with_context(|| format!("write {}/nsswitch.conf", dir.display()))?;
        Ok(Self { dir })
    }
}

impl Drop for PinnedResolver {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A namespace for one backend, with the resolver pinned.
struct Rig {
    // Field order matters: the resolver files go before the namespace.
    _resolver: PinnedResolver,
    ns: Netns,
}

impl Rig {
    fn new() -> Result<Self> {
        let ns = Netns::create("baseline").context("create namespace")?;
        let resolver = PinnedResolver::new(&ns)?;
        Ok(Self { _resolver: resolver, ns })
    }

    /// Runs `program args` inside, feeding `stdin`; returns stdout bytes.
    fn run(&self, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>> {
        let mut cmd = self.ns.command(program);
        cmd.args(args)
            .env("LC_ALL", "C")
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("run {program}"))?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().context("stdin")?;
            pipe.write_all(input)?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "{program} {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out.stdout)
    }
}

/// Removes `#` lines (timestamps, warnings) from save output.
fn strip_comments(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for line in text.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b"#") {
            out.extend_from_slice(line);
        }
    }
    out
}

/// The `*table` names in save output, in order.
fn tables_of(save: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(save)
        .lines()
        .filter_map(|l| l.strip_prefix('*'))
        .map(str::to_owned)
        .collect()
}

/// The chains of `table` in save output, with their rule counts.
fn chains_of(save: &[u8], table: &str) -> Vec<(String, usize)> {
    let text = String::from_utf8_lossy(save);
    let mut inside = false;
    let mut chains: Vec<(String, usize)> = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            inside = t == table;
        } else if !inside {
        } else if let Some(c) = line.strip_prefix(':') {
            chains.push((c.split(' ').next().unwrap_or("").to_owned(), 0));
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let chain = rest.split(' ').next().unwrap_or("");
            if let Some(c) = chains.iter_mut().find(|(n, _)| n == chain) {
                c.1 += 1;
            }
        }
    }
    chains
}

/// The file name of a listing capture: `L.<table>[.CHAIN[.N]].<flags>.txt`.
pub(crate) fn listing_file(
    table: &str,
    chain: Option<&str>,
    rule: Option<usize>,
    flags: &[&str],
) -> String {
    let mut name = format!("L.{table}");
    if let Some(c) = chain {
        let _ = write!(name, ".{c}");
    }
    if let Some(n) = rule {
        let _ = write!(name, ".{n}");
    }
    for f in flags {
        let _ = write!(name, ".{}", f.trim_start_matches('-'));
    }
    name.push_str(".txt");
    name
}

struct Capture<'a> {
    rig: &'a Rig,
    bin: String,
    dir: PathBuf,
    meta: String,
}

impl Capture<'_> {
    fn write(&mut self, file: &str, program: &str, args: &[&str], bytes: &[u8]) -> Result<()> {
        fs::write(self.dir.join(file), bytes)?;
        let _ = writeln!(self.meta, "{file}: {program} {}", args.join(" "));
        Ok(())
    }

    fn list(
        &mut self,
        table: &str,
        chain: Option<&str>,
        rule: Option<usize>,
        flags: &[&str],
    ) -> Result<()> {
        let mut args = vec!["-t", table, "-L"];
        let rule_s = rule.map(|n| n.to_string());
        if let Some(c) = chain {
            args.push(c);
        }
        if let Some(n) = &rule_s {
            args.push(n);
        }
        args.extend_from_slice(flags);
        let out = self.rig.run(&self.bin, &args, None)?;
        let file = listing_file(table, chain, rule, flags);
        let bin = self.bin.clone();
        self.write(&file, &bin, &args, &out)
    }
}

fn version_of(rig: &Rig, bin: &str) -> Result<String> {
    let out = String::from_utf8(rig.run(bin, &["--version"], None)?)?;
    // "iptables v1.8.9 (nf_tables)" / "iptables v1.8.9 (legacy)"
    let v = out.split_whitespace().find_map(|w| w.strip_prefix('v')).context("no version")?;
    Ok(v.to_owned())
}

fn capture_rules(fixture: &Path, out_root: &Path, backend: &str) -> Result<()> {
    let stem = fixture.file_stem().and_then(|s| s.to_str()).context("fixture name")?;
    let cmd = if stem.ends_with("_v6") { "ip6tables" } else { "iptables" };
    let rig = Rig::new()?;
    let bin = format!("{cmd}-{backend}");
    let version = version_of(&rig, &bin)?;
    let dir = out_root.join(stem).join(format!("{cmd}-{version}-{backend}"));
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    let input = fs::read(fixture)?;
    // Restore with -c only when the fixture carries counters: -c makes them mandatory on
    // builtin chain lines, and people write `:INPUT DROP` without them.
    let with_counters = input.split(|&b| b == b'\n').any(|l| l.starts_with(b"["));
    let restore_args: &[&str] = if with_counters { &["-c"] } else { &[] };
    rig.run(&format!("{bin}-restore"), restore_args, Some(&input))
        .with_context(|| format!("load {}", fixture.display()))?;
    let mut cap = Capture {
        rig: &rig,
        bin: bin.clone(),
        dir,
        meta: format!(
            "binary: {bin}\nversion: {version}\nbackend: {backend}\nfixture: {stem}.rules (loaded with {bin}-restore {})\n",
            restore_args.join(" ")
        ),
    };
    let save_bin = format!("{bin}-save");
    let save = strip_comments(&rig.run(&save_bin, &[], None)?);
    cap.write("save.txt", &save_bin, &[], &save)?;
    let save_c = strip_comments(&rig.run(&save_bin, &["-c"], None)?);
    cap.write("save-c.txt", &save_bin, &["-c"], &save_c)?;
    for table in tables_of(&save) {
        let args = ["-t", table.as_str(), "-S"];
        let out = rig.run(&bin, &args, None)?;
        cap.write(&format!("S.{table}.txt"), &bin, &args, &out)?;
        if table != "filter" && table != "nat" {
            // The other tables: the three layouts the rendering must match byte for byte.
            for flags in [&[][..], &["-v", "-x"], &["-n", "-v", "-x", "--line-numbers"]] {
                cap.list(&table, None, None, flags)?;
            }
            continue;
        }
        for flags in FLAG_SETS {
            cap.list(&table, None, None, flags)?;
        }
        // One chain, and one rule of it: the first builtin chain with rules.
        let chains = chains_of(&save, &table);
        if let Some((chain, n)) = chains.iter().find(|(_, n)| *n > 0) {
            for flags in [&[][..], &["-n", "-v"], &["-v", "-x", "--line-numbers"]] {
                cap.list(&table, Some(chain), None, flags)?;
            }
            for flags in [&["-n"][..], &["-v", "-x"], &[]] {
                cap.list(&table, Some(chain), Some(1), flags)?;
                if *n > 1 {
                    cap.list(&table, Some(chain), Some(*n), flags)?;
                }
            }
        }
    }
    fs::write(cap.dir.join("meta.txt"), &cap.meta)?;
    println!("captured {stem} with {bin} {version}");
    Ok(())
}

fn capture_script(script: &Path, out_root: &Path, backend: &str) -> Result<()> {
    let stem = script.file_stem().and_then(|s| s.to_str()).context("script name")?;
    let rig = Rig::new()?;
    let bin = format!("iptables-{backend}");
    let version = version_of(&rig, &bin)?;
    let dir = out_root.join(stem).join(format!("iptables-{version}-{backend}"));
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    let body = fs::read_to_string(script)?;
    let wrapped = format!(
        "set -e\niptables() {{ iptables-{backend} \"$@\"; }}\nip6tables() {{ ip6tables-{backend} \"$@\"; }}\n{body}"
    );
    rig.run("sh", &["-c", &wrapped], None).with_context(|| format!("run {}", script.display()))?;
    let save_bin = format!("{bin}-save");
    let save = strip_comments(&rig.run(&save_bin, &[], None)?);
    fs::write(dir.join("save.txt"), &save)?;
    fs::write(
        dir.join("meta.txt"),
        format!(
            "binary: {bin}\nversion: {version}\nbackend: {backend}\nscript: {stem}.sh (run by sh with iptables bound to {bin})\nsave.txt: {save_bin}\n"
        ),
    )?;
    println!("captured {stem} with {bin} {version}");
    Ok(())
}

/// Runs the task: `cargo xtask baseline [FIXTURE-PREFIX…]`.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    if let Some(why) = portcullis_netns::missing_prerequisite(&["iptables-nft", "iptables-legacy"])
    {
        bail!("baseline needs root and iptables: {why}");
    }
    let dir = baseline_dir(root);
    let mut fixtures: Vec<PathBuf> = fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("rules" | "sh")))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            args.is_empty() || args.iter().any(|a| name.starts_with(a.as_str()))
        })
        .collect();
    fixtures.sort();
    if fixtures.is_empty() {
        bail!("no fixtures in {}", dir.display());
    }
    for f in &fixtures {
        for backend in ["nft", "legacy"] {
            if f.extension().is_some_and(|e| e == "sh") {
                capture_script(f, &dir, backend)?;
            } else {
                capture_rules(f, &dir, backend)?;
            }
        }
    }
    Ok(())
}
