//! `portcullis apply`, `confirm`, `save`, `restore-backup` and the hidden watchdog: the
//! command-line face of `portcullis-apply`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use portcullis_apply::confirm::{self, Outcome};
use portcullis_apply::journal::{self, RepairOutcome};
use portcullis_apply::{
    Applied, ApplyError, ApplyOptions, Held, Target, detect_backend, ensure_single_backend,
    persist, revert,
};
use portcullis_rules::{Backend, Family};

use super::input::{InputArgs, Loaded, load};

/// Apply a ruleset to the kernel, atomically, with a lock-out guard and optional
/// confirm-or-revert.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    input: InputArgs,
    /// The network namespace to apply to (`ip netns` name); default the current one.
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// Print the plan and the exact iptables-restore input; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Revert to the old ruleset unless `portcullis confirm` runs, from a new connection,
    /// within SECS seconds.
    #[arg(long, value_name = "SECS")]
    confirm: Option<u32>,
    /// Rewrite only the chains that changed (`--noflush`).
    #[arg(long)]
    incremental: bool,
    /// Apply even when the lock-out guard says the management path would be cut.
    #[arg(long)]
    force: bool,
    /// The iptables backend (default: the one that holds rules in the namespace, else the
    /// host's `iptables`).
    #[arg(long, value_name = "nft|legacy")]
    backend: Option<Backend>,
    /// Do not read the ruleset back after applying.
    #[arg(long)]
    no_verify: bool,
    /// Print how long each step took.
    #[arg(long)]
    timings: bool,
}

fn backend_for(netns: Option<&str>, family: Family, flag: Option<Backend>) -> Result<Backend> {
    match flag {
        Some(b) => {
            ensure_single_backend(netns, family, b)?;
            Ok(b)
        }
        None => Ok(detect_backend(netns, family)?),
    }
}

fn print_error(err: &ApplyError, name: &str, text: &str) {
    match err {
        ApplyError::Rejected(r) => eprint!("{}", r.render(name, text)),
        ApplyError::RevertFailed { failure, revert } => {
            eprint!("{}", failure.render(name, text));
            eprintln!("error: restoring the snapshot failed too: {revert}");
        }
        ApplyError::Invalid(errors) => {
            for e in errors {
                let line = e.location.line.map_or(String::new(), |l| format!(":{l}"));
                eprintln!("error: {}\n --> {name}{line} ({})", e.kind, e.location);
            }
            eprintln!("nothing applied: the ruleset is invalid");
        }
        other => eprintln!("error: {other}"),
    }
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    // No transparent huge pages for this process: the allocator asks for them
    // (madvise), and with the kernel's `defrag=madvise` each huge page fault may compact
    // memory first; parsing a kube-proxy-scale file then spent 0.3-0.5 s in the kernel,
    // varying run to run, against ~0.1 s with small pages.
    let _ = nix::sys::prctl::set_thp_disable(true);
    let Some(loaded) = load(&args.input)? else {
        return Ok(ExitCode::from(1));
    };
    if args.timings {
        eprintln!("timing: read + parse {}: {:.3}s", loaded.name, started.elapsed().as_secs_f64());
    }
    let code = apply_loaded(&args, &loaded);
    // A kube-proxy-scale model is millions of small allocations and the process is about
    // to exit: leave them to the exit instead of freeing them one by one.
    std::mem::forget(loaded);
    if args.timings {
        eprintln!("timing: all steps: {:.3}s", started.elapsed().as_secs_f64());
    }
    code
}

fn apply_loaded(args: &Args, loaded: &Loaded) -> Result<ExitCode> {
    let netns = args.netns.as_deref();
    let mut opts = ApplyOptions::from_env();
    opts.incremental = args.incremental;
    opts.force = args.force;
    opts.verify = !args.no_verify;
    // A confirm-or-revert, or a second family that may fail, needs the whole old state.
    let reversible = args.confirm.is_some() || loaded.rulesets.len() > 1;
    // With several families, each one's intent journal stays open until all are applied:
    // killed while applying the second, the first is restored too.
    let multi = loaded.rulesets.len() > 1;
    let mut done: Vec<(Target, Applied, Held)> = Vec::new();
    let mut armed = Vec::new();
    for rs in &loaded.rulesets {
        let t = std::time::Instant::now();
        let backend = backend_for(netns, rs.family, args.backend)?;
        if args.timings {
            eprintln!("timing: backend check: {:.3}s", t.elapsed().as_secs_f64());
        }
        let target = Target::new(netns, rs.family, backend);
        let prepared = if reversible {
            portcullis_apply::prepare_reversible(rs, &target, &opts)
        } else {
            portcullis_apply::prepare(rs, &target, &opts)
        };
        let prepared = match prepared {
            Ok(p) if args.dry_run => p,
            Ok(p) => {
                let exe = std::env::current_exe()
                    .context("cannot find the portcullis binary for the guardian")?;
                let mut p = p.with_guardian(&exe);
                if multi {
                    p = p.hold_journal();
                }
                p.label = format!("{} ({} rules)", loaded.name, rs.rule_count());
                p
            }
            Err(e) => {
                print_error(&e, &loaded.name, &loaded.text);
                undo(done);
                return Ok(ExitCode::from(1));
            }
        };
        if let Some(r) = &prepared.repaired {
            eprintln!("note: {r}");
        }
        eprint!("{}", prepared.guard);
        if args.dry_run {
            print!("{}", prepared.plan);
            println!(
                "# iptables-restore input ({}{}):",
                target.program("restore"),
                if prepared.input.noflush { " --noflush" } else { "" }
            );
            super::write_stdout(&prepared.input.text)?;
            continue;
        }
        if let Some(secs) = args.confirm {
            let exe = std::env::current_exe()
                .context("cannot find the portcullis binary for the watchdog")?;
            armed.push((rs.family, confirm::arm(&prepared, secs, &exe)?));
        }
        match prepared.commit_held() {
            Ok((applied, held)) => {
                eprint!("{}", applied.plan);
                for d in &applied.drift {
                    eprintln!("warning: the kernel differs from the ruleset: {d}");
                }
                if args.timings {
                    for (step, took) in &applied.timings {
                        eprintln!("timing: {step}: {:.3}s", took.as_secs_f64());
                    }
                }
                done.push((target, applied, held));
            }
            Err(e) => {
                print_error(&e, &loaded.name, &loaded.text);
                for (f, _) in &armed {
                    confirm::disarm(netns, *f);
                }
                undo(done);
                return Ok(ExitCode::from(1));
            }
        }
    }
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let rules: usize = loaded.rulesets.iter().map(portcullis_rules::Ruleset::rule_count).sum();
    let mut families = Vec::new();
    for (t, _, held) in done {
        // Every family is applied: their journals close.
        held.release();
        families.push(t);
    }
    for t in &families {
        eprintln!(
            "applied {rules} rules to {} ({:?}, {})",
            t.describe(),
            t.family,
            t.program("restore")
        );
    }
    let Some(secs) = args.confirm else {
        return Ok(ExitCode::SUCCESS);
    };
    let how = netns.map_or(String::new(), |n| format!(" --netns {n}"));
    eprintln!(
        "confirm within {secs}s from a NEW connection with `portcullis confirm{how}`, or the old ruleset comes back (watchdog pid {})",
        armed.iter().map(|(_, a)| a.pid.to_string()).collect::<Vec<_>>().join(", ")
    );
    let mut code = ExitCode::SUCCESS;
    for (family, _) in &armed {
        match confirm::wait_outcome(netns, *family, Duration::from_secs(u64::from(secs) + 120)) {
            Some(Outcome::Confirmed) => eprintln!("confirmed: the new {family:?} ruleset stays"),
            Some(Outcome::Reverted) => {
                eprintln!("not confirmed in time: the old {family:?} ruleset was restored");
                code = ExitCode::from(1);
            }
            Some(Outcome::RevertFailed(e)) => {
                eprintln!(
                    "error: not confirmed, and restoring the old {family:?} ruleset failed: {e}"
                );
                code = ExitCode::from(1);
            }
            None => {
                eprintln!("error: the watchdog did not report; check the firewall");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

/// A later family failed: put the families already applied back as they were. A family
/// whose revert fails keeps its journal open, for its guardian to try again.
fn undo(done: Vec<(Target, Applied, Held)>) {
    for (t, a, held) in done {
        let tables: Vec<_> = a.plan.tables.iter().map(|(t, _)| *t).collect();
        match revert(&t, &a.snapshot, &tables) {
            Ok(()) => {
                held.release();
                eprintln!("note: {:?} ruleset restored as it was", t.family);
            }
            Err(e) => {
                drop(held);
                eprintln!("error: restoring the {:?} ruleset failed: {e}", t.family);
            }
        }
    }
}

/// The detached guardian of a multi-table apply (internal).
#[derive(Debug, clap::Args)]
pub(crate) struct GuardianArgs {
    #[arg(long)]
    key: String,
    #[arg(long)]
    family: String,
    #[arg(long)]
    pid: u32,
    #[arg(long)]
    start: u64,
}

pub(crate) fn run_guardian(args: GuardianArgs) -> Result<ExitCode> {
    let family = if args.family == "v6" { Family::V6 } else { Family::V4 };
    let Some(repair) = journal::guardian_main(&args.key, family, args.pid, args.start) else {
        return Ok(ExitCode::SUCCESS);
    };
    // The applier's stderr: its terminal, or the journal of the unit that ran it.
    eprintln!("portcullis[{}]: {repair}", std::process::id());
    Ok(match repair.outcome {
        RepairOutcome::Failed(_) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

/// Show what portcullis knows of a namespace: an apply that died mid-apply (repaired on
/// the spot), the last repair, a pending confirmation, the record of the last apply.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// The network namespace; default the current one.
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
}

pub(crate) fn run_status(args: StatusArgs) -> Result<ExitCode> {
    let netns = args.netns.as_deref();
    let place = netns.map_or("the current namespace".to_owned(), |n| format!("namespace {n}"));
    let mut code = ExitCode::SUCCESS;
    println!("{place}:");
    for family in [Family::V4, Family::V6] {
        match journal::recover_locked(netns, family, "portcullis status", Duration::from_secs(2)) {
            Ok(Some(r)) => {
                println!("  {family:?}: repaired: {r}");
                if matches!(r.outcome, RepairOutcome::Failed(_)) {
                    code = ExitCode::from(1);
                }
            }
            Ok(None) => println!("  {family:?}: no apply interrupted (no intent journal)"),
            Err(ApplyError::Busy(_)) => {
                let who = journal::read(netns, family)
                    .map_or(String::new(), |r| format!(" (pid {}: {})", r.pid, r.what));
                println!("  {family:?}: an apply is in progress{who}");
            }
            Err(e) => {
                println!("  {family:?}: error: {e}");
                code = ExitCode::from(1);
            }
        }
        if let Some((ms, msg)) = journal::last_repair(netns, family) {
            println!("  {family:?}: last repair at {}: {msg}", journal::format_utc(ms));
        }
        if let Some(p) = confirm::pending(netns, family) {
            println!(
                "  {family:?}: confirm-or-revert pending: the old ruleset comes back at {} unless `portcullis confirm` runs",
                journal::format_utc(p.deadline_ms)
            );
        }
    }
    Ok(code)
}

/// Confirm a pending `apply --confirm` (run it over a new connection).
#[derive(Debug, clap::Args)]
pub(crate) struct ConfirmArgs {
    /// The network namespace the apply went to; default the current one.
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
}

pub(crate) fn run_confirm(args: ConfirmArgs) -> Result<ExitCode> {
    match confirm::confirm(args.netns.as_deref()) {
        Ok(families) => {
            for f in families {
                eprintln!("confirmed: the new {f:?} ruleset stays");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Save the live ruleset to the distribution's path (or -o PATH), atomically.
#[derive(Debug, clap::Args)]
pub(crate) struct SaveArgs {
    /// The network namespace to save; default the current one.
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// Write here instead of the distribution's path (one family: IPv4 unless -6).
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// With -o: save the IPv6 ruleset.
    #[arg(short = '6', long)]
    ipv6: bool,
    /// The iptables backend (default: detected).
    #[arg(long, value_name = "nft|legacy")]
    backend: Option<Backend>,
}

fn families(output: Option<&PathBuf>, ipv6: bool) -> Result<Vec<(Family, PathBuf)>> {
    if let Some(p) = output {
        return Ok(vec![(if ipv6 { Family::V6 } else { Family::V4 }, p.clone())]);
    }
    let mut v = Vec::new();
    for f in [Family::V4, Family::V6] {
        match persist::distro_path(f) {
            Some(p) => v.push((f, p)),
            None => bail!("unknown distribution: pass -o PATH"),
        }
    }
    Ok(v)
}

pub(crate) fn run_save(args: SaveArgs) -> Result<ExitCode> {
    let netns = args.netns.as_deref();
    for (family, path) in families(args.output.as_ref(), args.ipv6)? {
        let backend = backend_for(netns, family, args.backend)?;
        let target = Target::new(netns, family, backend);
        match persist::save(&target, &path) {
            Ok(n) => eprintln!(
                "saved {n} {family:?} rules of {} to {}",
                target.describe(),
                path.display()
            ),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Put the backup kept by the last `portcullis save` back in place.
#[derive(Debug, clap::Args)]
pub(crate) struct RestoreBackupArgs {
    /// The saved file (default: the distribution's paths, both families).
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
}

pub(crate) fn run_restore_backup(args: RestoreBackupArgs) -> Result<ExitCode> {
    let mut restored = 0;
    for (_, path) in families(args.output.as_ref(), false)? {
        if args.output.is_none() && !persist::backup_path(&path).exists() {
            continue;
        }
        match persist::restore_backup(&path) {
            Ok(()) => {
                restored += 1;
                eprintln!(
                    "restored {} from {}",
                    path.display(),
                    persist::backup_path(&path).display()
                );
            }
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    if restored == 0 {
        eprintln!("error: no backup to restore");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The detached watchdog of `apply --confirm` (internal).
#[derive(Debug, clap::Args)]
pub(crate) struct WatchdogArgs {
    #[arg(long)]
    key: String,
    #[arg(long)]
    family: String,
}

pub(crate) fn run_watchdog(args: WatchdogArgs) -> Result<ExitCode> {
    let family = if args.family == "v6" { Family::V6 } else { Family::V4 };
    Ok(match confirm::watchdog_main(&args.key, family)? {
        Outcome::Confirmed | Outcome::Reverted => ExitCode::SUCCESS,
        Outcome::RevertFailed(_) => ExitCode::from(1),
    })
}
