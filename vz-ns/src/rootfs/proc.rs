//! What the VE must not reach through /proc and /sys: host-global files masked by a
//! read-only /dev/null, host-only directories hidden under an empty read-only tmpfs, and
//! /proc/sys read-only except the knobs the VE's own namespaces own.

use std::path::Path;

use nix::mount::MsFlags;

use super::{StepResult, mount_flags};

/// Files under /proc that show the host kernel's memory, keys, timers, scheduler and page
/// frames: hidden behind the VE's /dev/null.
const MASKED_FILES: [&str; 7] = [
    "proc/kcore",
    "proc/keys",
    "proc/timer_list",
    "proc/sched_debug",
    "proc/kpageflags",
    "proc/kpagecount",
    "proc/kpagecgroup",
];

/// Files under /proc that act on the host kernel when written: bound read-only onto
/// themselves, so a write fails with EROFS. (A /dev/null bind would not do: a device node
/// stays writable on a read-only mount, so the write would "succeed" into null.)
const READ_ONLY_FILES: [&str; 1] = ["proc/sysrq-trigger"];

/// Directories of host hardware (interrupts, buses, firmware) and of the host's virtual
/// block devices (loop devices name their backing files: other VEs' images), hidden under
/// an empty read-only tmpfs.
const MASKED_DIRS: [&str; 6] =
    ["proc/acpi", "proc/scsi", "proc/irq", "proc/bus", "sys/firmware", "sys/devices/virtual/block"];

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

/// Masks the host-global files and directories that exist on this kernel: masked files read
/// empty (read-only bind of the VE's /dev/null), read-only ones refuse writes, masked
/// directories are empty.
pub(super) fn mask(root: &Path) -> StepResult {
    let null = root.join("dev/null");
    let masked = MASKED_FILES.iter().map(|name| (*name, null.clone()));
    let read_only = READ_ONLY_FILES.iter().map(|name| (*name, root.join(name)));
    let ro_bind = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    for (name, source) in masked.chain(read_only) {
        let target = root.join(name);
        if exists(&target) {
            mount_flags(Some(&source), &target, None, MsFlags::MS_BIND, None)?;
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
    mount_flags(None::<&Path>, &sys, None, super::READ_ONLY_REMOUNT, None)
}
