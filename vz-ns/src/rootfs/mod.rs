//! The VE's file system view, built by its init in a fresh mount namespace: the root bind,
//! /proc, read-only /sys, a tmpfs /dev ([`dev`]), the masks over /proc ([`proc`]), and
//! pivot_root so that no host path stays reachable.
//!
//! Everything here runs in the forked child, reports failures as text (which step, which
//! path, which errno) and never panics.

mod dev;
mod dev_state;
mod proc;
mod procview;

pub use dev_state::{restore_dev_tree, save_dev_tree};

pub(crate) use dev::{NODES as DEV_NODES, TTY_GID, mount_devpts, mount_skeleton};
pub use procview::ProcView;

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};

use crate::devices::QuotaDevice;
use crate::userns::IdMap;

/// The remount that makes a bind mount read-only (and nosuid, nodev, noexec).
pub(crate) const READ_ONLY_REMOUNT: MsFlags = MsFlags::MS_REMOUNT
    .union(MsFlags::MS_BIND)
    .union(MsFlags::MS_RDONLY)
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Result type of the child's setup steps: the error is the text sent to the parent.
pub(crate) type StepResult<T = ()> = std::result::Result<T, String>;

/// What the VE's root is made of.
pub(crate) struct RootView<'a> {
    /// VE_ROOT, as mounted in the host's mount namespace.
    pub(crate) root: &'a Path,
    /// For an unprivileged VE, the idmapped detached copy of `root`'s tree to attach there.
    pub(crate) tree: Option<OwnedFd>,
    /// For an unprivileged VE, the detached proc mount its pid 1 made, to attach at /proc.
    pub(crate) proc: Option<OwnedFd>,
    /// For an unprivileged VE, its id map (the owner of its /dev, its tty group).
    pub(crate) id_map: Option<&'a IdMap>,
    /// The bound of the VE's devpts instance.
    pub(crate) pty_max: Option<u64>,
    /// The root file system's device, made in /dev for the quota tools.
    pub(crate) quota_device: Option<&'a QuotaDevice>,
    /// A tmpfs on /run, /run/lock and /tmp (systemd's expectation).
    pub(crate) run_tmpfs: bool,
    /// lxcfs files bound over the VE's /proc and /sys files ([`ProcView`]).
    pub(crate) proc_view: Option<&'a ProcView>,
    /// /dev/console is the VE's own console pty (a link to `pts/0`).
    pub(crate) console: bool,
}

/// Builds the VE's mounts under `view.root` and pivots into it. Afterwards `/` is the VE's
/// root and the host's mount tree is detached. Must run in a new mount namespace and the
/// VE's net namespace (sysfs shows it), in the VE's pid namespace unless `view.proc` brings
/// a proc mount of it, with host root's privileges.
pub(crate) fn enter_root(view: RootView<'_>) -> StepResult {
    let root = view.root;
    mount_flags(None::<&Path>, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)?;
    // Made on the host's view of the root: host root cannot create files through an
    // idmapped mount (its uid has no mapping there).
    let proc_dir = ensure_dir(root, "proc", 0o555)?;
    let sys_dir = ensure_dir(root, "sys", 0o555)?;
    ensure_dir(root, "dev", 0o755)?;
    let run_dirs = if view.run_tmpfs {
        Some((ensure_dir(root, "run", 0o755)?, ensure_dir(root, "tmp", 0o1777)?))
    } else {
        None
    };
    match &view.tree {
        Some(tree) => crate::sys::attach_tree(tree.as_fd(), root)
            .map_err(|e| format!("attach the idmapped root at {}: {e}", root.display()))?,
        None => bind_root(root)?,
    }
    drop(view.tree);
    let nsx = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match view.proc {
        Some(proc) => crate::sys::attach_tree(proc.as_fd(), &proc_dir)
            .map_err(|e| format!("attach the VE's proc at {}: {e}", proc_dir.display()))?,
        None => mount_flags(Some("proc"), &proc_dir, Some("proc"), nsx, None)?,
    }
    mount_flags(Some("sysfs"), &sys_dir, Some("sysfs"), nsx | MsFlags::MS_RDONLY, None)?;
    dev::populate(root, view.pty_max, view.quota_device, view.id_map, view.console)?;
    if let Some((run, tmp)) = run_dirs {
        mount_run_tmpfs(&run, &tmp, view.id_map)?;
    }
    if let Some(proc_view) = view.proc_view {
        procview::bind(root, proc_view)?;
    }
    let own_userns = view.id_map.is_some();
    proc::mask(root, own_userns)?;
    if !own_userns {
        proc::restrict_proc_sys(root)?;
    }
    pivot(root)
}

/// tmpfs on /run (with /run/lock) and /tmp, the VE root's, `nosuid,nodev`.
fn mount_run_tmpfs(run: &Path, tmp: &Path, id_map: Option<&IdMap>) -> StepResult {
    let owner = id_map
        .map_or_else(String::new, |m| format!(",uid={},gid={}", m.host_uid(0), m.host_gid(0)));
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount_flags(Some("tmpfs"), run, Some("tmpfs"), flags, Some(&format!("mode=755{owner}")))?;
    let lock = ensure_dir(run, "lock", 0o1777)?;
    if let Some(map) = id_map {
        std::os::unix::fs::chown(&lock, Some(map.host_uid(0)), Some(map.host_gid(0)))
            .map_err(|e| format!("chown {}: {e}", lock.display()))?;
    }
    mount_flags(Some("tmpfs"), &lock, Some("tmpfs"), flags, Some(&format!("mode=1777{owner}")))?;
    mount_flags(Some("tmpfs"), tmp, Some("tmpfs"), flags, Some(&format!("mode=1777{owner}")))
}

/// Binds `root` onto itself (recursively: the caller's submounts under VE_ROOT belong to the
/// VE) and remounts that bind `nodev`, so device nodes among the template's files are dead;
/// the VE's working nodes live on its own /dev tmpfs. Read-only and noexec of the caller's
/// mount are kept; nosuid is not (the host mounts every private area nosuid for its own
/// users' sake, and set-uid programs work in the VE).
fn bind_root(root: &Path) -> StepResult {
    let stat = statvfs(root).map_err(|e| format!("statvfs {}: {e}", root.display()))?;
    mount_flags(Some(root), root, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NODEV;
    for (fs, ms) in
        [(FsFlags::ST_RDONLY, MsFlags::MS_RDONLY), (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC)]
    {
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
