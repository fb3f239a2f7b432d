//! Running work inside a named network namespace (`/run/netns/<name>`, as `ip netns add`
//! creates), so a scan can start from a namespace without `ip netns exec`.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

/// Runs `f` on a new thread that first enters the network namespace at `path` (e.g.
/// `/run/netns/pcl-scan-1`). Sockets created inside `f` belong to that namespace for their
/// whole life, whatever thread uses them later; threads spawned by `f` inherit it.
pub fn run_in_netns<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let ns = File::open(path)?;
    let handle = std::thread::Builder::new().name("netns".into()).spawn(move || {
        crate::sys::setns_net(ns.as_fd())?;
        Ok::<T, io::Error>(f())
    })?;
    handle.join().map_err(|_| io::Error::other("thread inside the namespace panicked"))?
}
