//! Persistence: the live ruleset written atomically to the distribution's path.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use portcullis_rules::Family;
use portcullis_syntax::parse_save_as;

use crate::error::ApplyError;
use crate::exec::{Counters, Target};

/// Where this distribution keeps the rules its boot scripts load, for `family`:
/// `/etc/iptables/rules.v4`/`rules.v6` on Debian-like systems (netfilter-persistent),
/// `/etc/sysconfig/iptables`/`ip6tables` on RHEL-like ones (iptables-services). `None` when
/// neither is recognised.
pub fn distro_path(family: Family) -> Option<PathBuf> {
    let debian = Path::new("/etc/debian_version").exists() || Path::new("/etc/iptables").is_dir();
    let rhel = Path::new("/etc/redhat-release").exists() || Path::new("/etc/sysconfig").is_dir();
    let (v4, v6) = if debian {
        ("/etc/iptables/rules.v4", "/etc/iptables/rules.v6")
    } else if rhel {
        ("/etc/sysconfig/iptables", "/etc/sysconfig/ip6tables")
    } else {
        return None;
    };
    Some(PathBuf::from(if family == Family::V4 { v4 } else { v6 }))
}

/// The backup kept of `path`: `path` with `.bak` appended.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".bak");
    PathBuf::from(s)
}

/// Writes `data` to `path` so that a reader (or a crash at any moment) sees either the old
/// file or the whole new one: a temporary file in the same directory, written and fsynced,
/// given `mode`, then renamed over `path`, then the directory fsynced. The previous file,
/// when there was one, becomes `path.bak` (by a hard link renamed into place, so the
/// backup is never partial either). Leftover temporary files of killed writers are
/// removed.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("no file name"))?
        .to_string_lossy()
        .into_owned();
    fs::create_dir_all(dir)?;
    remove_stale_temps(dir, &name);
    let tmp = dir.join(format!(".{name}.portcullis-{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
    let result = (|| {
        f.write_all(data)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    drop(f);
    if path.exists() {
        let bak = backup_path(path);
        let bak_tmp = dir.join(format!(".{name}.portcullis-{}.bak.tmp", std::process::id()));
        let _ = fs::remove_file(&bak_tmp);
        fs::hard_link(path, &bak_tmp)?;
        fs::rename(&bak_tmp, &bak)?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Removes `.NAME.portcullis-PID.tmp` files whose writer no longer runs.
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.portcullis-");
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = f.strip_prefix(&prefix) else { continue };
        let pid = rest.split('.').next().unwrap_or("");
        let alive = !pid.is_empty() && Path::new("/proc").join(pid).exists();
        if !alive || pid == std::process::id().to_string() {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Saves the live ruleset of `target` to `path` atomically (mode 0640), keeping the
/// previous file as `path.bak`. Refuses while a confirm-or-revert is pending: the rules
/// in force may be about to be reverted. Returns the number of rules saved.
pub fn save(target: &Target, path: &Path) -> Result<usize, ApplyError> {
    if crate::confirm::pending(target.netns.as_deref(), target.family).is_some() {
        return Err(ApplyError::Confirm(format!(
            "a confirm-or-revert is pending in {}: confirm it first (`portcullis confirm`)",
            target.describe()
        )));
    }
    let text = target.save(None, Counters::Drop)?;
    let rs = parse_save_as(&text, target.family).map_err(|e| ApplyError::Readback(Box::new(e)))?;
    write_atomic(path, text.as_bytes(), 0o640).map_err(|e| ApplyError::io(path, e))?;
    Ok(rs.rule_count())
}

/// Puts the backup of `path` back (atomically); the file it replaces becomes the new
/// backup, so running it twice undoes it.
pub fn restore_backup(path: &Path) -> Result<(), ApplyError> {
    let bak = backup_path(path);
    let data = fs::read(&bak).map_err(|e| ApplyError::io(&bak, e))?;
    let mode = fs::metadata(&bak).map_or(0o640, |m| m.permissions().mode() & 0o777);
    write_atomic(path, &data, mode).map_err(|e| ApplyError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_keeps_backup_and_mode() {
        let dir = std::env::temp_dir().join(format!("pcl-persist-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let p = dir.join("rules.v4");
        write_atomic(&p, b"one\n", 0o640).expect("first write");
        write_atomic(&p, b"two\n", 0o640).expect("second write");
        assert_eq!(fs::read(&p).expect("read"), b"two\n");
        assert_eq!(fs::read(backup_path(&p)).expect("bak"), b"one\n");
        assert_eq!(fs::metadata(&p).expect("meta").permissions().mode() & 0o777, 0o640);
        restore_backup(&p).expect("restore");
        assert_eq!(fs::read(&p).expect("read"), b"one\n");
        assert_eq!(fs::read(backup_path(&p)).expect("bak"), b"two\n");
        // A stale temporary file of a dead writer goes away.
        let stale = dir.join(".rules.v4.portcullis-999999999.tmp");
        fs::write(&stale, b"partial").expect("stale");
        write_atomic(&p, b"three\n", 0o640).expect("third write");
        assert!(!stale.exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
