//! `cargo xtask bench apply`: speed of `portcullis apply` against plain iptables-restore.

use anyhow::{Context, Result, bail};

use crate::kube_gen::{KubeSpec, kube_ruleset};

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut services = 10_000;
    let mut generation = 0;
    let mut gen_to = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--services" => services = it.next().context("--services N")?.parse()?,
            "--generation" => generation = it.next().context("--generation N")?.parse()?,
            "--gen" => gen_to = Some(it.next().context("--gen FILE")?.clone()),
            other => bail!("unknown argument {other:?}"),
        }
    }
    let text = kube_ruleset(KubeSpec { services, generation });
    if let Some(path) = gen_to {
        std::fs::write(&path, text)?;
        return Ok(());
    }
    Ok(())
}
