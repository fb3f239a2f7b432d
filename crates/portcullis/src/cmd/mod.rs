//! One module per subcommand; each exposes `Args` (clap) and `run(Args)`.

use std::io::Write as _;

pub(crate) mod apply;
pub(crate) mod check;
pub(crate) mod convert;
pub(crate) mod demo;
pub(crate) mod diff;
pub(crate) mod eval_common;
pub(crate) mod fmt;
pub(crate) mod init;
pub(crate) mod input;
pub(crate) mod lint;
pub(crate) mod list;
pub(crate) mod listen;
pub(crate) mod mapped;
pub(crate) mod ports;
pub(crate) mod scan;
pub(crate) mod trace;
pub(crate) mod verify;

/// Writes `text` to standard output in one go (a closed pipe surfaces as BrokenPipe).
pub(crate) fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}
