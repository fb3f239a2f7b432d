//! The blocking entry point: pick a transport for the scan type and drive the engine.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::net::IpAddr;

use crate::engine::Progress;
use crate::engine::{ConfigError, Engine, EngineConfig, ScanReport, Target};
use crate::raw::source_for;
use crate::state::ScanType;
use crate::timing::Timing;

/// What to scan. There is deliberately no `Default`: every field is a decision.
#[derive(Debug, Clone)]
pub struct ScanConfig {
    /// Kind of scan.
    pub scan_type: ScanType,
    /// Target addresses.
    pub targets: Vec<IpAddr>,
    /// Ports to probe.
    pub ports: Vec<u16>,
    /// Timing.
    pub timing: Timing,
    /// Seed for probe order and cookies; `None` draws a random one.
    pub seed: Option<u64>,
}

/// Why a scan could not run.
#[derive(Debug)]
pub struct ScanError {
    kind: ScanErrorKind,
    source: Option<io::Error>,
}

/// The kind of a [`ScanError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScanErrorKind {
    /// The configuration was refused.
    Config(ConfigError),
    /// No route (no source address) towards a target.
    NoRoute(IpAddr),
    /// Raw sockets need root or CAP_NET_RAW.
    NoRawAccess,
    /// A socket operation failed.
    Io,
}

impl ScanError {
    /// The kind of error.
    pub fn kind(&self) -> &ScanErrorKind {
        &self.kind
    }

    fn io(e: io::Error) -> Self {
        let kind = if e.kind() == io::ErrorKind::PermissionDenied {
            ScanErrorKind::NoRawAccess
        } else {
            ScanErrorKind::Io
        };
        Self { kind, source: Some(e) }
    }
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            ScanErrorKind::Config(e) => write!(f, "{e}"),
            ScanErrorKind::NoRoute(a) => write!(f, "no route to {a}"),
            ScanErrorKind::NoRawAccess => f.write_str("raw sockets need root or CAP_NET_RAW"),
            ScanErrorKind::Io => f.write_str("socket operation failed"),
        }
    }
}

impl std::error::Error for ScanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// A fresh random seed (from the standard library's per-process random keys).
pub fn random_seed() -> u64 {
    RandomState::new().hash_one(std::process::id())
}

/// Runs the scan in the calling thread's network namespace and returns when every
/// deadline has passed. `progress` is called about every 100 ms.
pub fn scan(cfg: &ScanConfig, progress: &mut dyn FnMut(Progress)) -> Result<ScanReport, ScanError> {
    let mut targets = Vec::with_capacity(cfg.targets.len());
    for &addr in &cfg.targets {
        let src = source_for(addr)
            .map_err(|e| ScanError { kind: ScanErrorKind::NoRoute(addr), source: Some(e) })?;
        targets.push(Target { addr, src });
    }
    let engine = Engine::new(EngineConfig {
        scan_type: cfg.scan_type,
        targets,
        ports: cfg.ports.clone(),
        timing: cfg.timing,
        seed: cfg.seed.unwrap_or_else(random_seed),
    })
    .map_err(|e| ScanError { kind: ScanErrorKind::Config(e), source: None })?;
    match cfg.scan_type {
        ScanType::Connect => crate::connect::run(engine, progress),
        _ => crate::raw::run(engine, progress),
    }
    .map_err(ScanError::io)
}
