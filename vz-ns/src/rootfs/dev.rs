//! The VE's /dev: a small tmpfs of its own with the nodes null, zero, full, random, urandom,
//! tty and console (and the root file system's device for the quota tools, which nothing in
//! the VE may open), a new devpts instance at /dev/pts with /dev/ptmx pointing into it, a
//! /dev/shm tmpfs, and the usual symlinks to /proc/self/fd.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use super::{StepResult, ensure_dir, mount_flags};
use crate::devices::QuotaDevice;
use crate::userns::IdMap;

/// Character devices of the minimal /dev: name, major, minor, mode.
const NODES: [(&str, u64, u64, u32); 7] = [
    ("null", 1, 3, 0o666),
    ("zero", 1, 5, 0o666),
    ("full", 1, 7, 0o666),
    ("random", 1, 8, 0o666),
    ("urandom", 1, 9, 0o666),
    ("tty", 5, 0, 0o666),
    // The console node exists because inits open it, but the device allowlist grants 5:1
    // only `m` (see `default_device_rules`): opening it fails, the VE has no host console.
    // Without a v1 devices controller nothing would refuse the open: then it is left out
    // (see `guarded_by_device_cgroup`).
    ("console", 5, 1, 0o600),
];

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
/// a block node only root may look at (the allowlist lets nobody open it).
///
/// For an unprivileged VE (`id_map`) the tmpfs and its entries belong to the VE's root and
/// the ptys to its tty group; the nodes stay usable because the tmpfs is the host's (made
/// before init joins the VE's user namespace), and only the device allowlist decides.
pub(super) fn populate(
    root: &Path,
    pty_max: Option<u64>,
    quota_device: Option<&QuotaDevice>,
    id_map: Option<&IdMap>,
) -> StepResult {
    let dev = ensure_dir(root, "dev", 0o755)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    let owner = owner_options(id_map);
    mount_flags(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        flags,
        Some(&format!("mode=755,size=256k,nr_inodes=512{owner}")),
    )?;
    let console_guarded = guarded_by_device_cgroup();
    for (name, major, minor, mode) in NODES {
        if name == "console" && !console_guarded {
            continue;
        }
        let path = dev.join(name);
        match mknod(&path, SFlag::S_IFCHR, Mode::from_bits_truncate(mode), makedev(major, minor)) {
            Ok(()) => {}
            // A devices cgroup that denies even mknod of the console: leave the node out
            // rather than fail the start; opening it would fail anyway.
            Err(Errno::EPERM) if name == "console" => continue,
            Err(e) => return Err(format!("mknod {}: {e}", path.display())),
        }
        // mknod's mode is reduced by the umask; set it exactly.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    }
    if let Some(device) = quota_device {
        let path = dev.join(&device.name);
        let number = makedev(device.major.into(), device.minor.into());
        mknod(&path, SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), number)
            .map_err(|e| format!("mknod {}: {e}", path.display()))?;
    }
    for (name, target) in SYMLINKS {
        let path = dev.join(name);
        std::os::unix::fs::symlink(target, &path)
            .map_err(|e| format!("symlink {}: {e}", path.display()))?;
    }
    let pts = ensure_dir(&dev, "pts", 0o755)?;
    let tty_gid = id_map.map_or(TTY_GID, |m| m.host_gid(TTY_GID));
    let pts_options = devpts_options(pty_max, tty_gid);
    mount_flags(Some("devpts"), &pts, Some("devpts"), flags, Some(&pts_options))?;
    let shm = ensure_dir(&dev, "shm", 0o1777)?;
    let shm_flags = flags | MsFlags::MS_NODEV;
    mount_flags(Some("tmpfs"), &shm, Some("tmpfs"), shm_flags, Some(&format!("mode=1777{owner}")))?;
    if let Some(map) = id_map {
        chown_entries(&dev, map)?;
    }
    Ok(())
}

/// The tty group (devpts' `gid=`) inside a VE.
const TTY_GID: u32 = 5;

/// `,uid=…,gid=…` making a tmpfs the VE root's; empty for a privileged VE.
fn owner_options(id_map: Option<&IdMap>) -> String {
    id_map.map_or_else(String::new, |m| format!(",uid={},gid={}", m.host_uid(0), m.host_gid(0)))
}

/// Gives the VE's root the entries of its /dev (made by host root), so it can manage
/// them as a server's root would; opening a node still goes through the allowlist.
fn chown_entries(dev: &Path, map: &IdMap) -> StepResult {
    let entries = std::fs::read_dir(dev).map_err(|e| format!("read {}: {e}", dev.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("read {}: {e}", dev.display()))?.path();
        std::os::unix::fs::lchown(&path, Some(map.host_uid(0)), Some(map.host_gid(0)))
            .map_err(|e| format!("chown {}: {e}", path.display()))?;
    }
    Ok(())
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
