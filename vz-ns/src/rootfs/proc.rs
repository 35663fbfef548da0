//! What the VE must not reach through /proc and /sys: host-global files masked by a
//! read-only /dev/null, host-only directories hidden under one empty read-only tmpfs, and —
//! for a VE without a user namespace of its own — /proc/sys read-only except the knobs the
//! VE's own namespaces own.
//!
//! In a VE with its own user namespace the kernel itself refuses the VE's root what a mount
//! would add: a /proc file owned by host root (an id the VE cannot map) whose mode grants
//! others nothing cannot be opened for that access (no CAP_DAC_OVERRIDE over an unmapped
//! owner), and a sysctl is writable only where the table's owner is the VE's namespace
//! (net, ipc, uts, user: `set_ownership`/`permissions` of their tables); every other one is
//! checked as "others" against host root's mode 0644 or stricter. Those masks and the 11
//! /proc/sys mounts are left out there: each mount costs kernel memory per VE, and the
//! escape tests check the kernel's refusal.

use std::os::unix::fs::MetadataExt;
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
/// directories are empty: one read-only tmpfs, mounted on the first and bound onto the
/// others (one superblock instead of one each: every superblock costs a shrinker, and every
/// memory cgroup on the host then a slot for it).
///
/// With `own_userns` a file the kernel already refuses the VE's root is left unmasked
/// ([`kernel_refuses`]).
pub(super) fn mask(root: &Path, own_userns: bool) -> StepResult {
    let null = root.join("dev/null");
    let masked = MASKED_FILES.iter().map(|name| (*name, null.clone(), Access::Read));
    let read_only = READ_ONLY_FILES.iter().map(|name| (*name, root.join(name), Access::Write));
    let ro_bind = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    for (name, source, access) in masked.chain(read_only) {
        let target = root.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&target) else { continue };
        if own_userns && kernel_refuses(&meta, access) {
            continue;
        }
        mount_flags(Some(&source), &target, None, MsFlags::MS_BIND, None)?;
        mount_flags(
            None::<&Path>,
            &target,
            None,
            ro_bind | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            None,
        )?;
    }
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mut first: Option<std::path::PathBuf> = None;
    for name in MASKED_DIRS {
        let target = root.join(name);
        if !exists(&target) {
            continue;
        }
        match &first {
            None => {
                mount_flags(Some("tmpfs"), &target, Some("tmpfs"), flags, Some("size=0,mode=555"))?;
                first = Some(target);
            }
            Some(source) => {
                // A bind keeps the source mount's flags but not its read-only state on
                // every kernel: made read-only (and nosuid, nodev, noexec) again.
                mount_flags(Some(source), &target, None, MsFlags::MS_BIND, None)?;
                mount_flags(None::<&Path>, &target, None, super::READ_ONLY_REMOUNT, None)?;
            }
        }
    }
    Ok(())
}

/// What a mask over a file keeps from the VE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Reading it (and so writing: a /dev/null bind).
    Read,
    /// Writing it.
    Write,
}

/// Whether the kernel refuses `access` to a file of `meta` to root of a VE with its own user
/// namespace: the file belongs to host root (uid and gid 0, which no VE's map contains, so
/// the VE's capabilities do not override its mode) and its mode grants others neither
/// reading nor writing (a read mask) or no writing (a read-only mask).
fn kernel_refuses(meta: &std::fs::Metadata, access: Access) -> bool {
    let others = meta.mode() & 0o007;
    let denied = match access {
        Access::Read => others & 0o006 == 0,
        Access::Write => others & 0o002 == 0,
    };
    meta.uid() == 0 && meta.gid() == 0 && denied
}

/// Makes `root/proc/sys` a read-only bind of itself, after binding the namespaced entries
/// onto themselves so they stay writable on top of it. For a VE without a user namespace of
/// its own, whose root the kernel's sysctl checks take for host root; a VE with one is left
/// to the kernel (see the module's text).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_root_files_closed_to_others_are_left_to_the_kernel() {
        let dir = std::env::temp_dir().join(format!("vz-proc-mask-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, "").unwrap();
        let with_mode = |mode: u32| {
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap();
            std::fs::symlink_metadata(&file).unwrap()
        };
        let root_owned = nix::unistd::geteuid().is_root() && nix::unistd::getegid().as_raw() == 0;
        // kcore, kpageflags: 0400; sysrq-trigger: 0200; timer_list, keys: 0444.
        assert_eq!(kernel_refuses(&with_mode(0o400), Access::Read), root_owned);
        assert_eq!(kernel_refuses(&with_mode(0o200), Access::Write), root_owned);
        assert_eq!(kernel_refuses(&with_mode(0o644), Access::Write), root_owned);
        assert!(!kernel_refuses(&with_mode(0o444), Access::Read));
        assert!(!kernel_refuses(&with_mode(0o402), Access::Read));
        assert!(!kernel_refuses(&with_mode(0o666), Access::Write));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
