//! CRIU's cache of what the kernel can do (`/run/criu.kdat`) on a host whose /run is not a
//! tmpfs.
//!
//! Every CRIU run probes the kernel first (netlink, ptrace, userfaultfd, nftables, pagemap
//! …: 25–30 ms here, measured in CRIU's own log before its first action), unless it can load
//! `/run/criu.kdat`. CRIU writes that file only when /run is a tmpfs (so that a reboot into
//! another kernel drops it) and, when it loads it, checks only its size and two magic
//! numbers (criu/kerndat.c). On a host whose /run is a disk file system every dump and
//! every restore pays the probe, inside the frozen window of a migration.
//!
//! There vz keeps the cache in a tmpfs of its own making: `/dev/shm/vz-criu/` (root's, mode
//! 0700, refused otherwise), one file per CRIU binary (device, inode, size and mtime in its
//! name: a CRIU upgrade gets a new one), made by that CRIU itself (`criu check` in a private
//! mount namespace whose /run is a fresh tmpfs, the file copied out), and
//! `/run/criu.kdat` a symbolic link to it. A reboot empties /dev/shm: the link then dangles,
//! CRIU probes as before (and may remove the link), and the next [`warm`] makes both again.
//! A `/run/criu.kdat` that is not vz's link (a file CRIU made, someone else's) is left alone.
//! Where /run is a tmpfs, CRIU's own cache is made (`criu check`) when it is missing, so that
//! the first dump after a boot does not probe in the frozen time either.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::statfs::{TMPFS_MAGIC, statfs};

use crate::rpc::Criu;

/// CRIU's cache file (KDAT_RUNDIR is /run in every build).
const CACHE_LINK: &str = "/run/criu.kdat";

/// vz's directory for the cache files.
const CACHE_DIR: &str = "/dev/shm/vz-criu";

/// What [`warm`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KdatCache {
    /// /run is a tmpfs: CRIU keeps its cache itself.
    CriuOwn,
    /// `/run/criu.kdat` is vz's link to the cache of this CRIU binary.
    Linked(PathBuf),
    /// No cache (why); CRIU probes the kernel at every start.
    None(String),
}

/// Makes sure CRIU finds its kernel cache (see the module doc); cheap once done (a few
/// `stat`s), about 40 ms the first time after a boot or a CRIU upgrade. Never fails: a
/// cache that cannot be made only leaves CRIU probing, as without it.
pub fn warm(criu: &Criu) -> KdatCache {
    let state = warm_at(criu, Path::new(CACHE_LINK), Path::new(CACHE_DIR));
    if let KdatCache::None(why) = &state {
        tracing::debug!(%why, "no CRIU kernel cache");
    }
    state
}

fn is_tmpfs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == TMPFS_MAGIC)
}

fn warm_at(criu: &Criu, link: &Path, dir: &Path) -> KdatCache {
    if link.parent().is_some_and(is_tmpfs) {
        if !link.exists() {
            // CRIU's own cache made now (any request of CRIU's writes it there).
            let _ = Command::new(criu.path())
                .arg("check")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        return KdatCache::CriuOwn;
    }
    match std::fs::symlink_metadata(link) {
        Ok(m) if !m.file_type().is_symlink() => {
            return KdatCache::None(format!("{} is not vz's", link.display()));
        }
        _ => {}
    }
    let cache = match cache_file(criu, dir) {
        Ok(cache) => cache,
        Err(why) => return KdatCache::None(why),
    };
    if std::fs::read_link(link).is_ok_and(|target| target == cache) {
        return KdatCache::Linked(cache);
    }
    // A link made beside it and renamed over: readers see the old link or the new one.
    let mut tmp = link.as_os_str().to_owned();
    tmp.push(format!(".vz-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let linked =
        std::os::unix::fs::symlink(&cache, &tmp).and_then(|()| std::fs::rename(&tmp, link));
    match linked {
        Ok(()) => KdatCache::Linked(cache),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            KdatCache::None(format!("link {}: {e}", link.display()))
        }
    }
}

/// The cache file of this CRIU binary in `dir` (a tmpfs directory of root's alone), made by
/// CRIU when missing.
fn cache_file(criu: &Criu, dir: &Path) -> Result<PathBuf, String> {
    if !dir.parent().is_some_and(is_tmpfs) {
        return Err(format!("{} is not on a tmpfs", dir.display()));
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("mkdir {}: {e}", dir.display())),
    }
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !m.file_type().is_dir() || m.uid() != 0 || m.mode() & 0o077 != 0 {
        return Err(format!("{} is not a directory of root's alone", dir.display()));
    }
    let bin =
        std::fs::metadata(criu.path()).map_err(|e| format!("{}: {e}", criu.path().display()))?;
    let cache =
        dir.join(format!("criu.kdat.{}-{}-{}-{}", bin.dev(), bin.ino(), bin.size(), bin.mtime()));
    if std::fs::metadata(&cache).is_ok_and(|m| m.len() > 0) {
        return Ok(cache);
    }
    // CRIU writes its cache where /run is a tmpfs: a private mount namespace with a fresh one.
    let script = "mount -t tmpfs -o size=1m,mode=0700 vz-criu-kdat /run && \
                  \"$0\" check >/dev/null 2>&1; exec cat /run/criu.kdat";
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c", script])
        .arg(criu.path())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("run unshare: {e}"))?;
    if out.stdout.is_empty() {
        return Err(format!("CRIU made no cache ({})", out.status));
    }
    let mut tmp = cache.clone().into_os_string();
    tmp.push(format!(".{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, &out.stdout).and_then(|()| std::fs::rename(&tmp, &cache)).map_err(
        |e| {
            let _ = std::fs::remove_file(&tmp);
            format!("write {}: {e}", cache.display())
        },
    )?;
    Ok(cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_vz_s_link_is_left_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let link = dir.path().join("criu.kdat");
        std::fs::write(&link, b"someone's").expect("write");
        if is_tmpfs(dir.path()) {
            return; // (the temp dir is a tmpfs: CRIU's own case, tested below)
        }
        let state = warm_at(&Criu::default(), &link, &dir.path().join("cache"));
        assert!(matches!(state, KdatCache::None(_)), "{state:?}");
        assert_eq!(std::fs::read(&link).expect("read"), b"someone's");
    }

    #[test]
    fn a_tmpfs_run_is_criu_s_own() {
        // (A CRIU that does not exist: nothing is made.)
        let criu = Criu::at("/nonexistent/criu");
        let state = warm_at(&criu, Path::new("/dev/shm/vz-test-criu.kdat"), Path::new("/x"));
        assert_eq!(state, KdatCache::CriuOwn);
    }
}
