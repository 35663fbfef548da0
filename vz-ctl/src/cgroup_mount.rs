//! The host's cgroup mounts, where vz changes them:
//!
//! * mounting the hierarchies when this mount namespace has none: under `ip netns exec`
//!   (which mounts a fresh sysfs over /sys) or in a namespace made without them. The kernel
//!   still has the hierarchies; /proc/self/cgroup lists each one this process is in, and each
//!   is mounted again at `/sys/fs/cgroup/<controllers>` (cgroup2 at /sys/fs/cgroup/unified
//!   beside v1 hierarchies, or at /sys/fs/cgroup on a pure v2 host), over a tmpfs, as a
//!   booting system does;
//! * cgroup2's `favordynmods`, which `vzctl start` turns on once per boot
//!   ([`favor_dynamic_changes`]).

use std::path::Path;

use nix::mount::{MsFlags, mount};

use crate::config::GlobalConfig;

/// Where the hierarchies are mounted.
const BASE: &str = "/sys/fs/cgroup";

/// vz.conf: whether `vzctl start` turns on cgroup2's `favordynmods` (`yes`, the default, or
/// `no` to leave the host's cgroup mount as it is).
pub(crate) const FAVOR_DYNMODS_KEY: &str = "CGROUP_FAVORDYNMODS";

/// The cgroup2 super option.
const FAVORDYNMODS: &str = "favordynmods";

/// Turns on cgroup2's `favordynmods` unless vz.conf says `CGROUP_FAVORDYNMODS=no` or it is
/// on already; returns whether this call turned it on.
///
/// Every move of a process into a cgroup (a VE's init, each `vzctl exec`) takes the kernel's
/// global cgroup migration lock for writing. Without the option, the first such move after
/// an idle spell waits for an RCU grace period: 11–15 ms on this host, measured by writing a
/// pid to a v1 `cgroup.procs` every 0.5 s; 0.4–0.6 ms with it. The option keeps the lock's
/// readers (every fork and exit on the host) on their slower shared path instead; the kernel
/// has one such lock, so the option of the cgroup2 mount acts for v1 hierarchies too. It is
/// the kernel's `CONFIG_CGROUP_FAVOR_DYNMODS` / `cgroup_favordynmods=` boot setting, taken at
/// run time. It stays on until the next boot or the next mount of cgroup2 without it (any
/// such mount in the host's cgroup namespace sets the options of the one cgroup2 file
/// system: CRIU's at every dump and restore, see [`favor_again`]), so every start checks.
///
/// The remount passes the mount's own flags and every super option it has (a cgroup2
/// remount resets the options it is not given, `nsdelegate` among them). A host without a
/// cgroup2 mount is left alone. Its options are those of this command's read of the mount
/// table, if it made one (a command reads it at most once; [`favor_again`] reads afresh).
///
/// # Errors
/// A sentence naming the mount and the failure.
pub(crate) fn favor_dynamic_changes(global: &GlobalConfig) -> Result<bool, String> {
    if !wanted(global) {
        return Ok(false);
    }
    favor(crate::cgroup::cgroup2_mount_of_this_command()?)
}

/// Whether vz.conf lets vz turn `favordynmods` on.
fn wanted(global: &GlobalConfig) -> bool {
    global
        .get(FAVOR_DYNMODS_KEY)
        .is_none_or(|v| crate::config::parse_yes_no(FAVOR_DYNMODS_KEY, v).ok() != Some(false))
}

/// Remounts `cgroup2` with `favordynmods` unless it has it; whether it did.
fn favor(cgroup2: Option<crate::cgroup::CgroupMount>) -> Result<bool, String> {
    let Some(cgroup2) = cgroup2 else { return Ok(false) };
    let Some((flags, data)) =
        remount_with_favordynmods(&cgroup2.mount_options, &cgroup2.super_options)
    else {
        return Ok(false);
    };
    tracing::info!("remounting cgroup2 at {} with {data}", cgroup2.point.display());
    mount(None::<&str>, &cgroup2.point, None::<&str>, flags, Some(data.as_str())).map_err(|e| {
        format!("remount cgroup2 at {} with {FAVORDYNMODS}: {e}", cgroup2.point.display())
    })?;
    Ok(true)
}

/// [`favor_dynamic_changes`] after CRIU ran: CRIU mounts cgroup2 for its cgroup yard without
/// the option, and a cgroup2 mount in the host's cgroup namespace sets the file system's
/// options to its own, turning `favordynmods` off for the whole host. A failure is logged.
pub(crate) fn favor_again(global: &GlobalConfig) {
    if !wanted(global) {
        return;
    }
    if let Err(e) = crate::cgroup::cgroup2_mount_now().and_then(favor) {
        tracing::warn!("cgroup moves stay slow after idle spells: {e}");
    }
}

/// The flags and data of a remount that adds `favordynmods` to a cgroup2 mount with these
/// mount and super options, or `None` when it has it already.
fn remount_with_favordynmods(
    mount_options: &str,
    super_options: &str,
) -> Option<(MsFlags, String)> {
    let supers: Vec<&str> = super_options.split(',').filter(|o| !o.is_empty()).collect();
    if supers.contains(&FAVORDYNMODS) {
        return None;
    }
    let mut flags = MsFlags::MS_REMOUNT;
    for option in mount_options.split(',') {
        flags |= match option {
            "ro" => MsFlags::MS_RDONLY,
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "relatime" => MsFlags::MS_RELATIME,
            _ => MsFlags::empty(),
        };
    }
    let mut data: Vec<&str> = supers.into_iter().filter(|o| !matches!(*o, "rw" | "ro")).collect();
    data.push(FAVORDYNMODS);
    Some((flags, data.join(",")))
}

/// Mounts every hierarchy /proc/self/cgroup lists at /sys/fs/cgroup.
///
/// # Errors
/// A sentence saying what could not be read or mounted.
///
/// # Privileges
/// CAP_SYS_ADMIN in the mount namespace's owning user namespace.
pub(crate) fn mount_own_hierarchies() -> Result<(), String> {
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("read /proc/self/cgroup: {e}"))?;
    let mut v1: Vec<String> = Vec::new();
    let mut v2 = false;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers)) = (parts.next(), parts.next()) else { continue };
        match (id, controllers) {
            ("0", "") => v2 = true,
            (_, "") => {}
            (_, list) => v1.push(list.to_owned()),
        }
    }
    if v1.is_empty() && !v2 {
        return Err("/proc/self/cgroup lists no hierarchy".to_owned());
    }
    let base = Path::new(BASE);
    std::fs::create_dir_all(base).map_err(|e| format!("create {BASE}: {e}"))?;
    if v1.is_empty() {
        tracing::info!("mounting cgroup2 at {BASE}");
        return do_mount("cgroup2", base, "cgroup2", None);
    }
    do_mount("tmpfs", base, "tmpfs", Some("mode=755"))?;
    for controllers in &v1 {
        let name = controllers.strip_prefix("name=").unwrap_or(controllers);
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let options = if controllers.starts_with("name=") {
            format!("none,{controllers}")
        } else {
            controllers.clone()
        };
        tracing::info!("mounting the cgroup hierarchy {controllers} at {}", dir.display());
        do_mount("cgroup", &dir, "cgroup", Some(&options))?;
    }
    if v2 {
        let dir = base.join(crate::cgroup::UNIFIED);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        do_mount("cgroup2", &dir, "cgroup2", None)?;
    }
    Ok(())
}

fn do_mount(source: &str, target: &Path, fstype: &str, data: Option<&str>) -> Result<(), String> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some(source), target, Some(fstype), flags, data)
        .map_err(|e| format!("mount {fstype} at {}: {e}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remount_keeps_the_mount_flags_and_every_super_option() {
        let (flags, data) = remount_with_favordynmods(
            "rw,nosuid,nodev,noexec,relatime",
            "rw,nsdelegate,memory_recursiveprot",
        )
        .expect("a remount");
        assert_eq!(data, "nsdelegate,memory_recursiveprot,favordynmods");
        assert_eq!(
            flags,
            MsFlags::MS_REMOUNT
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_RELATIME
        );
        let (flags, data) = remount_with_favordynmods("ro,relatime", "ro").expect("a remount");
        assert_eq!(data, "favordynmods");
        assert!(flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn a_mount_with_favordynmods_is_left_alone() {
        assert!(remount_with_favordynmods("rw,relatime", "rw,favordynmods,nsdelegate").is_none());
    }
}
