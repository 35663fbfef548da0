//! The VE's file system view, built by its init in a fresh mount namespace: the root bind,
//! /proc, read-only /sys, a tmpfs /dev ([`dev`]), the masks over /proc ([`proc`]), and
//! pivot_root so that no host path stays reachable.
//!
//! Everything here runs in the forked child, reports failures as text (which step, which
//! path, which errno) and never panics.

mod dev;
mod proc;

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};

use crate::devices::QuotaDevice;

/// Result type of the child's setup steps: the error is the text sent to the parent.
pub(crate) type StepResult<T = ()> = std::result::Result<T, String>;

/// Builds the VE's mounts under `root` and pivots into it. Afterwards `/` is the VE's root
/// and the host's mount tree is detached. Must run in a new mount and pid namespace (proc
/// shows the caller's pid namespace, sysfs its network namespace). `pty_max` bounds the
/// VE's devpts instance; `quota_device` is made in /dev.
pub(crate) fn enter_root(
    root: &Path,
    pty_max: Option<u64>,
    quota_device: Option<&QuotaDevice>,
) -> StepResult {
    mount_flags(None::<&Path>, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)?;
    bind_root(root)?;
    let proc_dir = ensure_dir(root, "proc", 0o555)?;
    let nsx = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_flags(Some("proc"), &proc_dir, Some("proc"), nsx, None)?;
    let sys_dir = ensure_dir(root, "sys", 0o555)?;
    mount_flags(Some("sysfs"), &sys_dir, Some("sysfs"), nsx | MsFlags::MS_RDONLY, None)?;
    dev::populate(root, pty_max, quota_device)?;
    proc::mask(root)?;
    proc::restrict_proc_sys(root)?;
    pivot(root)
}

/// Binds `root` onto itself (recursively: the caller's submounts under VE_ROOT belong to the
/// VE) and remounts that bind `nodev`, so device nodes among the template's files are dead;
/// the VE's working nodes live on its own /dev tmpfs. Read-only, nosuid and noexec of the
/// caller's mount are kept.
fn bind_root(root: &Path) -> StepResult {
    let stat = statvfs(root).map_err(|e| format!("statvfs {}: {e}", root.display()))?;
    mount_flags(Some(root), root, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NODEV;
    for (fs, ms) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if stat.flags().contains(fs) {
            flags |= ms;
        }
    }
    mount_flags(None::<&Path>, root, None, flags, None)
}

/// pivot_root into `root` with the `pivot_root(".", ".")` idiom, then detaches the old root
/// that is stacked on top, so nothing of the host's tree stays reachable.
fn pivot(root: &Path) -> StepResult {
    nix::unistd::chdir(root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root {}: {e}", root.display()))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detach the host root: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))
}

/// `mount(2)` with an error text naming the file system type and target.
pub(crate) fn mount_flags<S: AsRef<Path> + ?Sized>(
    source: Option<&S>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> StepResult {
    let source = source.map(AsRef::as_ref);
    mount(source, target, fstype, flags, data).map_err(|e| {
        let what = fstype.map_or_else(
            || source.map_or_else(|| format!("{flags:?}"), |s| format!("bind {}", s.display())),
            str::to_owned,
        );
        format!("mount {what} on {}: {e}", target.display())
    })
}

/// `root/name` as a directory: made with `mode` if missing; an existing non-directory (e.g.
/// a symlink planted by the template) is refused rather than followed.
pub(crate) fn ensure_dir(root: &Path, name: &str, mode: u32) -> StepResult<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let path = root.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(path),
        Ok(_) => Err(format!("{} is not a directory", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .mode(mode)
            .create(&path)
            .map(|()| path.clone())
            .map_err(|e| format!("mkdir {}: {e}", path.display())),
        Err(e) => Err(format!("stat {}: {e}", path.display())),
    }
}
