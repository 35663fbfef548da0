//! What `DEVICES`, `DEVNODES`, `FEATURES`, `IOLIMIT`, `IOPSLIMIT`, `IOPRIO`, `NODEMASK` and
//! `NETDEV` do to the kernel: at start ([`at_start`], one call from `start.rs` once the VE's
//! init exists and before it runs) and on a running VE for `vzctl set` ([`apply_live`]).
//!
//! - devices: the VE cgroup's allowlist (v1 `devices.allow`/`devices.deny` entries, v2 the
//!   BPF device program, rebuilt whole) and, for `DEVNODES` and the `fuse`/`ppp` features, a
//!   node in the VE's /dev owned by the VE's root (vz-ns's `make_dev_nodes`);
//! - I/O: throttling (`blkio.throttle.*` / `io.max`) and weight of the VE's disk, the block
//!   device its root is on (the loop device of its image);
//! - NUMA: `cpuset.mems`;
//! - network devices: moved into the VE's network namespace and back (rtnetlink).
//!
//! Capabilities (`CAPABILITY`) are the bounding set vz-ns gives the VE's init and every
//! process entered into it (`scripts::capabilities`); `NETFILTER=disabled` is a seccomp rule
//! of the same processes (`scripts::seccomp`): no nf_tables/conntrack netlink socket and no
//! legacy table `setsockopt`. The other levels (stateless, stateful, full) cannot be told
//! apart on a stock kernel, where a VE's network namespace has all of netfilter: they give
//! the VE its full netfilter.

use std::path::PathBuf;

use vz_ns::{DevNode, DeviceRule};

use super::set_params::ParamChanges;
use crate::cgroup::{IoLimits, VeCgroup};
use crate::error::{CtlError, Result};
use crate::output::warn;
use crate::ve::Ve;

/// Kernel modules a feature asks the host for: with them loaded, a VE holding NET_ADMIN in
/// its own namespaces makes such devices itself.
const FEATURE_MODULES: [(&str, &str); 4] =
    [("bridge", "bridge"), ("ipgre", "ip_gre"), ("sit", "sit"), ("ipip", "ipip")];

/// Device nodes a feature gives the VE (`fuse`: /dev/fuse, `ppp`: /dev/ppp), read-write.
const FEATURE_NODES: [(&str, &str); 2] = [("fuse", "fuse"), ("ppp", "ppp")];

/// `IOPRIO` 0–7 → io.weight (1–10000, the kernel's default 100 at OpenVZ's default 4).
const IOPRIO_WEIGHTS: [u32; 8] = [12, 25, 50, 75, 100, 200, 400, 800];

/// The VE's own device rules and nodes from its config.
#[derive(Debug, Default)]
struct VeDevices {
    /// Allowlist entries (`DEVICES`, `DEVNODES`, features).
    rules: Vec<DeviceRule>,
    /// Nodes to have in the VE's /dev.
    nodes: Vec<DevNode>,
    /// Nodes (names below /dev) not to have (`DEVNODES` with `none`).
    gone: Vec<String>,
}

fn devices_error(e: impl std::fmt::Display) -> CtlError {
    CtlError::Param { code: 86, message: format!("Unable to set devices: {e}") }
}

/// Reads `DEVICES`, `DEVNODES` and the device features of a config.
///
/// A device named by both `DEVNODES` and `DEVICES` gets the access `DEVICES` gives it (its
/// rule comes last, and the last rule for a device wins, see [`last_wins`]).
fn ve_devices<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<VeDevices> {
    let mut out = VeDevices::default();
    let mut device_rules: Vec<DeviceRule> = Vec::new();
    for entry in get("DEVICES").unwrap_or_default().split_whitespace() {
        device_rules.push(entry.parse().map_err(devices_error)?);
    }
    let mut nodes: Vec<(String, String)> = Vec::new();
    for entry in get("DEVNODES").unwrap_or_default().split_whitespace() {
        let (name, perms) = entry.rsplit_once(':').ok_or_else(|| devices_error(entry))?;
        nodes.push((name.to_owned(), perms.to_owned()));
    }
    for (feature, node) in FEATURE_NODES {
        if feature_on(&get, feature) && !nodes.iter().any(|(n, _)| n == node) {
            if std::path::Path::new("/dev").join(node).exists() {
                nodes.push((node.to_owned(), "rw".to_owned()));
            } else {
                warn(format!("Warning: feature {feature}: the host has no /dev/{node}"));
            }
        }
    }
    for (name, perms) in nodes {
        let node = DevNode::from_host(&name).map_err(devices_error)?;
        let access = if perms == "none" { "" } else { perms.as_str() };
        out.rules.push(node.rule(access));
        if perms == "none" {
            out.gone.push(node.name);
        } else {
            out.nodes.push(node);
        }
    }
    out.rules.extend(device_rules);
    Ok(out)
}

/// Whether two rules are about the same device (type, major, minor).
fn same_device(a: &DeviceRule, b: &DeviceRule) -> bool {
    (a.kind, a.major, a.minor) == (b.kind, b.major, b.minor)
}

/// `rules` with only the last rule of each device, in the order of those last rules: what
/// v1's entry-by-entry writes leave, for v2's first-match program.
fn last_wins(rules: Vec<DeviceRule>) -> Vec<DeviceRule> {
    let mut out: Vec<DeviceRule> = Vec::new();
    for rule in rules {
        out.retain(|r| !same_device(r, &rule));
        out.push(rule);
    }
    out
}

fn feature_on<'a>(get: &impl Fn(&str) -> Option<&'a str>, name: &str) -> bool {
    get("FEATURES")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|e| e.split_once(':'))
        .rfind(|(n, _)| n.eq_ignore_ascii_case(name))
        .is_some_and(|(_, v)| v.eq_ignore_ascii_case("on"))
}

/// The VE's whole allowlist: vz's minimal /dev, the root device's quota node, then `extra`.
fn full_rules(ve: &Ve, extra: &[DeviceRule]) -> Result<Vec<DeviceRule>> {
    let mut rules = vz_ns::default_device_rules();
    let root = ve.root()?;
    let area = vz_quota::PrivateArea::open(&ve.private()?).map_err(devices_error)?;
    if let Some(device) = area.mounted_device(&root).map_err(devices_error)? {
        rules.extend(super::start::quota_device(&device)?.map(|d| d.rule()));
    }
    rules.extend_from_slice(extra);
    Ok(last_wins(rules))
}

/// Puts `rules` into the VE's allowlist: on v1 entry by entry (`changed`), on v2 by
/// attaching a new program for the whole list.
fn apply_rules(
    ve: &Ve,
    cgroup: &VeCgroup,
    changed: &[DeviceRule],
    all: &[DeviceRule],
) -> Result<()> {
    if cgroup.is_v2() {
        let dir = cgroup.dir_of("").ok_or_else(|| devices_error("no cgroup"))?;
        vz_ns::apply_device_rules_v2(&dir, &full_rules(ve, all)?).map_err(devices_error)
    } else {
        match cgroup.dir_of("devices") {
            Some(dir) => vz_ns::update_device_rules_v1(&dir, changed).map_err(devices_error),
            None => Err(devices_error("the host has no devices cgroup controller")),
        }
    }
}

/// The VE root's host ids, which own the nodes made for it; `None` for a privileged VE.
fn node_owner(ve: &Ve) -> Result<Option<(u32, u32)>> {
    let identity = crate::idmap::recorded(ve.config()?)?;
    Ok(identity.and_then(crate::idmap::Identity::id_map).map(|m| (m.host_uid(0), m.host_gid(0))))
}

/// The block device the VE's root is on (`major`, `minor`): the loop device of an image, or
/// the whole disk under a directory; `None` on a file system without a block device.
fn ve_disk(ve: &Ve) -> Result<Option<(u32, u32)>> {
    use nix::sys::stat::{major, minor, stat};
    let root = ve.root()?;
    let dev = stat(&root).map_err(|e| io_error(format!("stat {}: {e}", root.display())))?.st_dev;
    let (mut maj, mut min) = (major(dev), minor(dev));
    if maj == 0 {
        return Ok(None);
    }
    let sys = PathBuf::from(format!("/sys/dev/block/{maj}:{min}"));
    if sys.join("partition").exists() {
        let parent = std::fs::read_to_string(sys.join("../dev")).unwrap_or_default();
        if let Some((a, b)) = parent.trim().split_once(':') {
            (maj, min) = (a.parse().unwrap_or(maj), b.parse().unwrap_or(min));
        }
    }
    let number = |n: u64| u32::try_from(n).map_err(|_| io_error(format!("device number {n}")));
    Ok(Some((number(maj)?, number(min)?)))
}

fn io_error(message: String) -> CtlError {
    CtlError::Param { code: 148, message: format!("Unable to set I/O parameters: {message}") }
}

/// `IOLIMIT`/`IOPSLIMIT` of a config on the VE's disk.
fn apply_io_limits<'a>(
    ve: &Ve,
    cgroup: &VeCgroup,
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<()> {
    let number = |key: &str| {
        get(key)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::parse::<u64>)
            .transpose()
            .map_err(|_| {
                io_error(format!("{key}={:?} is not a number", get(key).unwrap_or_default()))
            })
    };
    let limits = IoLimits {
        bps: number("IOLIMIT")?.filter(|v| *v > 0),
        iops: number("IOPSLIMIT")?.filter(|v| *v > 0),
    };
    let Some((major, minor)) = ve_disk(ve)? else {
        warn("Warning: the container's root is on no block device: I/O limits not applied");
        return Ok(());
    };
    let set = cgroup
        .set_io_limits(major, minor, limits)
        .map_err(|e| io_error(crate::error::chain(&e)))?;
    if !set {
        warn("Warning: the host has no blkio/io cgroup controller: I/O limits not applied");
    }
    Ok(())
}

fn apply_ioprio(cgroup: &VeCgroup, prio: u8) -> Result<()> {
    let weight = IOPRIO_WEIGHTS[usize::from(prio.min(7))];
    let set = cgroup.set_io_weight(weight).map_err(|e| io_error(crate::error::chain(&e)))?;
    if !set {
        warn(
            "Warning: no I/O weight on this host (no BFQ scheduler, no io.cost): \
             ioprio saved, not applied",
        );
    }
    Ok(())
}

fn apply_nodemask(cgroup: &VeCgroup, mask: &str) -> Result<()> {
    let mems = (mask != "all").then_some(mask);
    let fail = |e: CtlError| CtlError::Param {
        code: 2,
        message: format!("Unable to set nodemask {mask}: {}", crate::error::chain(&e)),
    };
    if !cgroup.set_mems(mems).map_err(fail)? {
        warn("Warning: the host has no cpuset controller: nodemask not applied");
    }
    Ok(())
}

fn netdev_error(name: &str, e: vz_ns::NsError) -> CtlError {
    CtlError::Param { code: 104, message: format!("Unable to move network device {name}: {e}") }
}

/// Loads the kernel modules of the VE's features (bridge, ip_gre, sit, ipip); a module the
/// kernel has built in or already loaded needs nothing.
fn load_feature_modules<'a>(get: impl Fn(&str) -> Option<&'a str>) {
    for (feature, module) in FEATURE_MODULES {
        if !feature_on(&get, feature) || std::path::Path::new("/sys/module").join(module).exists() {
            continue;
        }
        let loaded = std::process::Command::new("modprobe")
            .args(["-q", module])
            .status()
            .is_ok_and(|s| s.success());
        if !loaded {
            warn(format!("Warning: feature {feature}: kernel module {module} could not be loaded"));
        }
    }
}

/// Puts this module's settings of the VE's config into effect on a VE whose init `pid`
/// exists and has not run yet: device allowlist entries and nodes, I/O limits and weight,
/// NUMA nodes, moved network devices, feature modules.
///
/// # Errors
/// 86 devices, 148 I/O, 2 nodemask, 104 network devices.
pub(crate) fn at_start(ve: &Ve, cgroup: &VeCgroup, pid: i32) -> Result<()> {
    on_cgroup(ve, cgroup)?;
    dev_nodes(ve, pid)?;
    for name in ve.get("NETDEV").unwrap_or_default().split_whitespace() {
        vz_ns::net::move_netdev_in(pid, name).map_err(|e| netdev_error(name, e))?;
    }
    load_feature_modules(|k: &str| ve.get(k));
    Ok(())
}

/// The settings [`at_start`] puts on the VE's cgroup: device allowlist entries, I/O limits
/// and weight, NUMA nodes. A restore puts them on the cgroup it makes before CRIU runs.
///
/// # Errors
/// 86 devices, 148 I/O, 2 nodemask.
pub(crate) fn on_cgroup(ve: &Ve, cgroup: &VeCgroup) -> Result<()> {
    let get = |k: &str| ve.get(k);
    let devices = ve_devices(get)?;
    if !devices.rules.is_empty() {
        apply_rules(ve, cgroup, &devices.rules, &devices.rules)?;
    }
    if get("IOLIMIT").is_some() || get("IOPSLIMIT").is_some() {
        apply_io_limits(ve, cgroup, get)?;
    }
    if let Some(prio) = get("IOPRIO").and_then(|p| p.trim().parse::<u8>().ok()) {
        apply_ioprio(cgroup, prio)?;
    }
    if let Some(mask) = get("NODEMASK").filter(|m| !m.trim().is_empty()) {
        apply_nodemask(cgroup, mask.trim())?;
    }
    Ok(())
}

/// The DEVNODES nodes in the /dev of the VE whose init is `pid` (a restored VE's /dev is
/// made afresh, without them).
///
/// # Errors
/// 86 when a node cannot be made.
pub(crate) fn dev_nodes(ve: &Ve, pid: i32) -> Result<()> {
    let devices = ve_devices(|k: &str| ve.get(k))?;
    vz_ns::make_dev_nodes(pid, &devices.nodes, node_owner(ve)?).map_err(devices_error)
}

/// Puts `changes` into effect on the running VE whose init is `pid`; `saved` are the
/// CTID.conf values they give (merged with the config).
///
/// # Errors
/// As [`at_start`].
pub(crate) fn apply_live(
    ve: &Ve,
    pid: i32,
    changes: &ParamChanges,
    saved: &[(&'static str, String)],
) -> Result<()> {
    let get = |k: &str| {
        saved.iter().find(|(key, _)| *key == k).map(|(_, v)| v.as_str()).or_else(|| ve.get(k))
    };
    let cgroup = ve.cgroup()?;
    if !changes.devices.is_empty() || !changes.devnodes.is_empty() {
        let devices = ve_devices(get)?;
        let mut changed = changes.devices.clone();
        for (name, perms) in &changes.devnodes {
            let node = DevNode::from_host(name).map_err(devices_error)?;
            let rule = node.rule(if perms == "none" { "" } else { perms });
            // The device's access as the whole config gives it (DEVICES wins).
            let effective = devices.rules.iter().rev().find(|r| same_device(r, &rule));
            changed.push(*effective.unwrap_or(&rule));
        }
        apply_rules(ve, &cgroup, &changed, &devices.rules)?;
        let given = |n: &String| changes.devnodes.iter().any(|(name, _)| name == n);
        let make: Vec<DevNode> = devices.nodes.into_iter().filter(|n| given(&n.name)).collect();
        vz_ns::make_dev_nodes(pid, &make, node_owner(ve)?).map_err(devices_error)?;
        let gone: Vec<String> = devices.gone.into_iter().filter(given).collect();
        vz_ns::remove_dev_nodes(pid, &gone).map_err(devices_error)?;
    }
    if changes.iolimit.is_some() || changes.iopslimit.is_some() {
        apply_io_limits(ve, &cgroup, get)?;
    }
    if let Some(prio) = changes.ioprio {
        apply_ioprio(&cgroup, prio)?;
    }
    if let Some(mask) = &changes.nodemask {
        apply_nodemask(&cgroup, mask)?;
    }
    for name in &changes.netdev_add {
        vz_ns::net::move_netdev_in(pid, name).map_err(|e| netdev_error(name, e))?;
    }
    for name in &changes.netdev_del {
        vz_ns::net::move_netdev_out(pid, name).map_err(|e| netdev_error(name, e))?;
    }
    Ok(())
}

/// Moves the VE's `NETDEV` devices back to the host while its network namespace still
/// lives (at stop): the kernel would delete a virtual device with the namespace. Failures
/// are warnings: the stop goes on.
pub(crate) fn return_netdevs(ve: &Ve) {
    let Ok(pid) = ve.init_pid() else { return };
    for name in ve.get("NETDEV").unwrap_or_default().split_whitespace() {
        if let Err(e) = vz_ns::net::move_netdev_out(pid, name) {
            warn(format!("Warning: network device {name} not moved back to the host: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_and_nodes_become_rules() {
        let conf = [("DEVICES", "c:10:200:rw b:8:0:none"), ("DEVNODES", "null:r zero:none")];
        let get = |k: &str| conf.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let d = ve_devices(get).unwrap();
        let rules: Vec<String> = d.rules.iter().map(ToString::to_string).collect();
        assert_eq!(rules, ["c:1:3:r", "c:1:5:none", "c:10:200:rw", "b:8:0:none"]);
        assert_eq!(d.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["null"]);
        assert_eq!(d.gone, ["zero"]);
        assert!(feature_on(&|_: &str| Some("ppp:off fuse:on"), "fuse"));
        assert!(!feature_on(&|_: &str| Some("fuse:on fuse:off"), "fuse"));
    }

    #[test]
    fn the_last_rule_of_a_device_wins() {
        let rules: Vec<DeviceRule> =
            ["c:1:3:rwm", "c:10:200:rw", "c:1:3:none"].iter().map(|r| r.parse().unwrap()).collect();
        let kept: Vec<String> = last_wins(rules).iter().map(ToString::to_string).collect();
        assert_eq!(kept, ["c:10:200:rw", "c:1:3:none"]);
        let conf = [("DEVNODES", "null:rw"), ("DEVICES", "c:1:3:none")];
        let get = |k: &str| conf.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let d = ve_devices(get).unwrap();
        let kept: Vec<String> = last_wins(d.rules).iter().map(ToString::to_string).collect();
        assert_eq!(kept, ["c:1:3:none"], "DEVICES wins over DEVNODES");
    }

    #[test]
    fn ioprio_default_is_the_kernels_default_weight() {
        assert_eq!(IOPRIO_WEIGHTS[4], 100);
        assert!(IOPRIO_WEIGHTS.windows(2).all(|w| w[0] < w[1]));
    }
}
