//! One module per subcommand; each exposes `Args` (clap) and `run(Args)`.

pub(crate) mod check;
pub(crate) mod fmt;
