//! The VE's /dev: a small tmpfs of its own with the nodes null, zero, full, random, urandom
//! and tty bound from the host's /dev (and a node of the root file system's device for the
//! quota tools, which nothing in the VE may open), a new devpts instance at /dev/pts with
//! /dev/ptmx pointing into it, a /dev/shm tmpfs, and the usual symlinks to /proc/self/fd.
//! /dev/console is the VE's own console, a link to `pts/0`: the first pty of the VE's devpts,
//! which its init opens before anything else runs (see [`crate::init`]). A VE without a
//! console gets the host's node instead, which the device allowlist lets nobody open.

use std::path::Path;

use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use super::{StepResult, ensure_dir, mount_flags};
use crate::devices::QuotaDevice;
use crate::userns::IdMap;

/// Character devices of the minimal /dev, bound from the host's /dev.
pub(crate) const NODES: [&str; 7] = [
    "null", "zero", "full", "random", "urandom", "tty",
    // For a VE without a console of its own: the node exists because inits open it, but the
    // device allowlist grants 5:1 only `m` (see `default_device_rules`): opening it fails,
    // the VE has no host console. Without a v1 devices controller nothing would refuse the
    // open: then it is left out (see `guarded_by_device_cgroup`).
    "console",
];

/// Where a VE's own console is: the first pty of its devpts instance, opened by its init.
pub(crate) const CONSOLE_LINK: (&str, &str) = ("console", "pts/0");

const SYMLINKS: [(&str, &str); 5] = [
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// The kernel's bound for a devpts instance's `max=` (`NR_UNIX98_PTY_MAX`); larger values
/// are refused by the mount, and mean no more than this.
const DEVPTS_MAX: u64 = 1 << 20;

/// Mounts and fills `root/dev`; `pty_max` becomes devpts' `max=`; `quota_device` is made as
/// a block node only root may look at (the allowlist lets nobody open it); with `console`
/// /dev/console is the link to the VE's own console pty, else the host's guarded node.
///
/// For an unprivileged VE (`id_map`) the tmpfs belongs to the VE's root and the ptys to its
/// tty group; the nodes are binds of the host's, so only the device allowlist decides.
pub(super) fn populate(
    root: &Path,
    pty_max: Option<u64>,
    quota_device: Option<&QuotaDevice>,
    id_map: Option<&IdMap>,
    console: bool,
) -> StepResult {
    let dev = ensure_dir(root, "dev", 0o755)?;
    let host_console = !console && guarded_by_device_cgroup() && Path::new("/dev/console").exists();
    let nodes: Vec<&str> =
        NODES.into_iter().filter(|name| *name != "console" || host_console).collect();
    mount_skeleton(&dev, &nodes, quota_device, id_map, console)?;
    for name in nodes {
        mount_flags(
            Some(&Path::new("/dev").join(name)),
            &dev.join(name),
            None,
            MsFlags::MS_BIND,
            None,
        )?;
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount_devpts(&dev.join("pts"), pty_max, id_map)?;
    let shm_flags = flags | MsFlags::MS_NODEV;
    let shm_options = format!("mode=1777{}", owner_options(id_map));
    mount_flags(Some("tmpfs"), &dev.join("shm"), Some("tmpfs"), shm_flags, Some(&shm_options))
}

/// Mounts a new devpts instance for a VE at `dir`: its ptys in the VE's tty group, at most
/// `pty_max` of them.
pub(crate) fn mount_devpts(dir: &Path, pty_max: Option<u64>, id_map: Option<&IdMap>) -> StepResult {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    let tty_gid = id_map.map_or(TTY_GID, |m| m.host_gid(TTY_GID));
    let pts_options = devpts_options(pty_max, tty_gid);
    mount_flags(Some("devpts"), dir, Some("devpts"), flags, Some(&pts_options))
}

/// Mounts the tmpfs of a VE's /dev at `dev` and makes what lives on it: an empty file for
/// each of `nodes` (bound from the host's /dev by the caller), the root device's node for
/// the quota tools (a block node nobody in the VE may open), the symlinks (with `console`
/// the link of /dev/console to the VE's own console pty), and the directories devpts and
/// /dev/shm are mounted on. A restore gives CRIU such a skeleton
/// (see [`crate::mount_dev_skeleton`]) instead of the dumped tmpfs.
pub(crate) fn mount_skeleton(
    dev: &Path,
    nodes: &[&str],
    quota_device: Option<&QuotaDevice>,
    id_map: Option<&IdMap>,
    console: bool,
) -> StepResult {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    let options = format!("mode=755,size=256k,nr_inodes=512{}", owner_options(id_map));
    mount_flags(Some("tmpfs"), dev, Some("tmpfs"), flags, Some(&options))?;
    if let Some(device) = quota_device {
        let path = dev.join(&device.name);
        let number = makedev(device.major.into(), device.minor.into());
        mknod(&path, SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), number)
            .map_err(|e| format!("mknod {}: {e}", path.display()))?;
    }
    for name in nodes {
        let path = dev.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("create {}: {e}", path.display()))?;
    }
    let console_link = console.then_some(CONSOLE_LINK);
    for (name, target) in SYMLINKS.into_iter().chain(console_link) {
        let path = dev.join(name);
        std::os::unix::fs::symlink(target, &path)
            .map_err(|e| format!("symlink {}: {e}", path.display()))?;
    }
    ensure_dir(dev, "pts", 0o755)?;
    ensure_dir(dev, "shm", 0o1777)?;
    Ok(())
}

/// The tty group (devpts' `gid=`) inside a VE.
pub(crate) const TTY_GID: u32 = 5;

/// `,uid=…,gid=…` making a tmpfs the VE root's; empty for a privileged VE.
fn owner_options(id_map: Option<&IdMap>) -> String {
    id_map.map_or_else(String::new, |m| format!(",uid={},gid={}", m.host_uid(0), m.host_gid(0)))
}

/// The devpts mount options: a new instance, its ptmx usable by all, ptys owned by the tty
/// group (`tty_gid`, as the host numbers it), and `max=` when bounded.
fn devpts_options(pty_max: Option<u64>, tty_gid: u32) -> String {
    let mut opts = format!("newinstance,ptmxmode=0666,mode=0620,gid={tty_gid}");
    if let Some(max) = pty_max {
        opts.push_str(&format!(",max={}", max.min(DEVPTS_MAX)));
    }
    opts
}

/// Whether this task is under a cgroup v1 devices controller, the allowlist that makes the
/// console node harmless. On a cgroup v2 host device access is a BPF program vz does not
/// attach yet, so the host console must not be reachable by a node at all.
fn guarded_by_device_cgroup() -> bool {
    std::fs::read_to_string("/proc/self/cgroup").is_ok_and(|text| {
        text.lines().any(|line| {
            line.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == "devices"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devpts_max_follows_pty_max_within_the_kernels_bound() {
        assert_eq!(devpts_options(None, 5), "newinstance,ptmxmode=0666,mode=0620,gid=5");
        assert!(devpts_options(Some(4), 5).ends_with(",gid=5,max=4"));
        assert!(devpts_options(Some(0), 5).ends_with(",max=0"));
        assert!(devpts_options(Some(u64::MAX), 5).ends_with(",max=1048576"));
        assert!(devpts_options(None, 100_005).ends_with(",gid=100005"));
    }
}
