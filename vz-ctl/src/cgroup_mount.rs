//! Mounting the cgroup hierarchies when this mount namespace has none: under `ip netns exec`
//! (which mounts a fresh sysfs over /sys) or in a namespace made without them. The kernel
//! still has the hierarchies; /proc/self/cgroup lists each one this process is in, and each
//! is mounted again at `/sys/fs/cgroup/<controllers>` (cgroup2 at /sys/fs/cgroup/unified beside
//! v1 hierarchies, or at /sys/fs/cgroup on a pure v2 host), over a tmpfs, as a booting
//! system does.

use std::path::Path;

use nix::mount::{MsFlags, mount};

/// Where the hierarchies are mounted.
const BASE: &str = "/sys/fs/cgroup";

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
