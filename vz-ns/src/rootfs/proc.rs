//! What the VE must not reach through /proc and /sys: host-global files masked by a
//! read-only /dev/null, host-only directories hidden under an empty read-only tmpfs, and
//! /proc/sys read-only except the knobs the VE's own namespaces own.

use std::path::Path;

use nix::mount::MsFlags;

use super::{StepResult, mount_flags};

/// Files under /proc that reach the host kernel (sysrq, memory, keys, timers, scheduler).
const MASKED_FILES: [&str; 5] =
    ["proc/sysrq-trigger", "proc/kcore", "proc/keys", "proc/timer_list", "proc/sched_debug"];

/// Directories of host hardware, hidden under an empty read-only tmpfs.
const MASKED_DIRS: [&str; 3] = ["proc/acpi", "proc/scsi", "sys/firmware"];

/// /proc/sys entries that belong to the VE's own net, uts and ipc namespaces: writable.
const WRITABLE_SYSCTLS: [&str; 10] = [
    "proc/sys/net",
    "proc/sys/kernel/hostname",
    "proc/sys/kernel/domainname",
    "proc/sys/kernel/shmmax",
    "proc/sys/kernel/shmall",
    "proc/sys/kernel/shmmni",
    "proc/sys/kernel/msgmax",
    "proc/sys/kernel/msgmnb",
    "proc/sys/kernel/msgmni",
    "proc/sys/kernel/sem",
];

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Masks the host-global files and directories that exist on this kernel. Writes to a masked
/// file fail (read-only bind of the VE's /dev/null), reads give nothing.
pub(super) fn mask(root: &Path) -> StepResult {
    let null = root.join("dev/null");
    let ro_bind = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    for name in MASKED_FILES {
        let target = root.join(name);
        if exists(&target) {
            mount_flags(Some(&null), &target, None, MsFlags::MS_BIND, None)?;
            mount_flags(
                None::<&Path>,
                &target,
                None,
                ro_bind | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                None,
            )?;
        }
    }
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    for name in MASKED_DIRS {
        let target = root.join(name);
        if exists(&target) {
            mount_flags(Some("tmpfs"), &target, Some("tmpfs"), flags, Some("size=0,mode=555"))?;
        }
    }
    Ok(())
}

/// Makes `root/proc/sys` a read-only bind of itself, after binding the namespaced entries
/// onto themselves so they stay writable on top of it.
pub(super) fn restrict_proc_sys(root: &Path) -> StepResult {
    let sys = root.join("proc/sys");
    mount_flags(Some(&sys), &sys, None, MsFlags::MS_BIND, None)?;
    for name in WRITABLE_SYSCTLS {
        let path = root.join(name);
        if exists(&path) {
            mount_flags(Some(&path), &path, None, MsFlags::MS_BIND, None)?;
        }
    }
    let ro = MsFlags::MS_REMOUNT
        | MsFlags::MS_BIND
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    mount_flags(None::<&Path>, &sys, None, ro, None)
}
