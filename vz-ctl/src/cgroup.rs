//! The VE's cgroup: `<VE_CGROUP_PARENT>/<CTID>` on every controller vz uses.
//!
//! vz-ctl alone creates and removes it (design.md); the subsystems receive its directories.
//! The hierarchy is detected at run time from `/proc/self/mountinfo`: a pure cgroup v2 host
//! (cgroup2 at `/sys/fs/cgroup`), or v1 hierarchies, one per controller (this project's
//! hybrid development host has v1 controllers and a cgroup2 mount with none of them).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vz_cgroup::knob::{read, read_u64, write};
use vz_cgroup::{CgroupError, Freezer, tree};

use crate::error::{CtlError, Result};

mod cache;

/// The v1 controllers a VE's cgroup is made in, when the host has them, and the named
/// hierarchy systemd keeps its own tree in (delegated to a VE's root, see
/// [`VeCgroup::delegate`]).
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    SYSTEMD_HIERARCHY,
];

/// The super option of systemd's named v1 hierarchy.
const SYSTEMD_HIERARCHY: &str = "name=systemd";

/// The files of a v2 cgroup a delegated subtree's owner writes (systemd's delegation).
const V2_DELEGATED_FILES: [&str; 3] = ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"];

/// The v2 controllers vz enables for VEs, when the host offers them.
const V2_CONTROLLERS: &[&str] = &["cpu", "cpuset", "memory", "io", "pids"];

/// The name under which a hybrid host's cgroup2 tree is listed among the v1 hierarchies.
pub const UNIFIED: &str = "unified";

/// How long removal waits for exited tasks to be reaped (a zombie keeps a v1 cgroup busy).
const REMOVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times [`VeCgroup::pids`] walks a populated cgroup again that it found empty.
const WALK_RETRIES: usize = 3;

/// How long [`VeCgroup::kill_all`] waits for the VE's tasks to freeze before it kills them.
const KILL_FREEZE_WAIT: Duration = Duration::from_millis(500);

/// The cgroup hierarchy of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// Pure cgroup v2, mounted at the path.
    V2(PathBuf),
    /// cgroup v1: (controller, mount point) for each controller found, and ([`UNIFIED`],
    /// mount point) for a cgroup2 tree beside them.
    V1(Vec<(String, PathBuf)>),
}

impl Hierarchy {
    /// The host's hierarchy, detected once per process (it does not change under us).
    ///
    /// # Errors
    /// [`CtlError::Cgroup`] if mountinfo cannot be read or no cgroup is mounted.
    pub fn detect() -> Result<Hierarchy> {
        Ok(Detected::get()?.hierarchy.clone())
    }
}

/// Where this process found the hierarchies: in the hierarchy kept by an earlier command
/// ([`cache`], while its mounts are unchanged), else by reading the mount table once
/// (~2.5 µs per mount: 5 ms on a host with 2,000), which keeps it for the next command.
struct Detected {
    hierarchy: Hierarchy,
    /// The cgroup2 mount, as [`cgroup2_mount`] picks it, with its options, when this process
    /// read the mount table.
    read: Option<Option<CgroupMount>>,
}

impl Detected {
    fn get() -> Result<&'static Detected> {
        static DETECTED: std::sync::OnceLock<Detected> = std::sync::OnceLock::new();
        if let Some(detected) = DETECTED.get() {
            return Ok(detected);
        }
        let cache = Path::new(cache::CACHE);
        let detected = match cache::load(cache) {
            Some(hierarchy) => Detected { hierarchy, read: None },
            None => {
                let detected = Self::read_mountinfo()?;
                cache::store(cache, &detected.hierarchy);
                detected
            }
        };
        Ok(DETECTED.get_or_init(|| detected))
    }

    /// Reads the hierarchy from `/proc/self/mountinfo`; when no cgroup is mounted in this
    /// mount namespace (e.g. under `ip netns exec`, which mounts a fresh /sys), mounts the
    /// hierarchies this process is in at /sys/fs/cgroup and reads again.
    fn read_mountinfo() -> Result<Detected> {
        let path = Path::new("/proc/self/mountinfo");
        let read = || read(path).map_err(CtlError::from);
        let parse = |text: String| {
            parse_mountinfo(&text)
                .map(|hierarchy| Detected { hierarchy, read: Some(cgroup2_mount(&text)) })
        };
        if let Some(detected) = parse(read()?) {
            return Ok(detected);
        }
        let mounted = crate::cgroup_mount::mount_own_hierarchies();
        if let Some(detected) = parse(read()?) {
            return Ok(detected);
        }
        let why = match mounted {
            Ok(()) => "the kernel lists no cgroup hierarchy for this process".to_owned(),
            Err(e) => e,
        };
        Err(CtlError::Cgroup(CgroupError::Io {
            op: "find a cgroup hierarchy in",
            path: path.to_owned(),
            source: std::io::Error::new(
                ErrorKind::NotFound,
                format!(
                    "no cgroup or cgroup2 file system is mounted in this mount namespace, \
                     and mounting them at /sys/fs/cgroup failed: {why}"
                ),
            ),
        }))
    }
}

/// The cgroup2 mount (see [`pick`]) with its options as this command's read of the mount
/// table showed them, or, when it has not read it (the hierarchy was kept), as a read now
/// does.
///
/// # Errors
/// A sentence saying what could not be read.
pub(crate) fn cgroup2_mount_of_this_command() -> std::result::Result<Option<CgroupMount>, String> {
    match Detected::get().map_err(|e| e.to_string())?.read.as_ref() {
        Some(cgroup2) => Ok(cgroup2.clone()),
        None => cgroup2_mount_now(),
    }
}

/// The cgroup2 mount (see [`pick`]) with its options, from a read of the mount table now.
///
/// # Errors
/// A sentence saying what could not be read.
pub(crate) fn cgroup2_mount_now() -> std::result::Result<Option<CgroupMount>, String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
    Ok(cgroup2_mount(&text))
}

/// One cgroup mount of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    /// The hierarchy's directory the mount shows (`/` for the whole hierarchy).
    root: String,
    /// Where it is mounted.
    pub(crate) point: PathBuf,
    /// `cgroup2`, or the v1 controllers (and `name=`) of its super options.
    v2: bool,
    controllers: Vec<String>,
    /// The mount's own options (`rw,nosuid,...`).
    pub(crate) mount_options: String,
    /// The file system's (super block's) options (`rw,nsdelegate,...`).
    pub(crate) super_options: String,
}

/// The cgroup mounts of a mountinfo text, mount points unescaped.
fn cgroup_mounts(text: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let left: Vec<&str> = left.split(' ').collect();
        let (Some(root), Some(point), Some(mount_options)) =
            (left.get(3), left.get(4), left.get(5))
        else {
            continue;
        };
        let mut right = right.split(' ');
        let fstype = right.next().unwrap_or_default();
        let super_opts = right.nth(1).unwrap_or_default();
        let v2 = match fstype {
            "cgroup" => false,
            "cgroup2" => true,
            _ => continue,
        };
        mounts.push(CgroupMount {
            root: unescape_mount(root),
            point: PathBuf::from(unescape_mount(point)),
            v2,
            controllers: if v2 {
                Vec::new()
            } else {
                super_opts.split(',').map(str::to_owned).collect()
            },
            mount_options: (*mount_options).to_owned(),
            super_options: super_opts.to_owned(),
        });
    }
    mounts
}

/// A mountinfo field with its octal escapes undone (vz-quota owns the parsing).
fn unescape_mount(field: &str) -> String {
    vz_quota::unescape_mountinfo(field).to_string_lossy().into_owned()
}

/// Of several mounts of one hierarchy, the one to use: a mount of the whole hierarchy (root
/// `/`; a bind of a subtree, such as a tool's bind of one cgroup, is not the hierarchy),
/// preferably the conventional one under /sys/fs/cgroup (others, such as CRIU's temporary
/// `.criu.cgyard` mounts, may vanish at any time), else the first. Only when no mount shows
/// the whole hierarchy is a subtree at /sys/fs/cgroup taken, as a container without a
/// cgroup namespace gets from its runtime (its cgroups are made below that subtree).
fn pick<'a>(candidates: impl Iterator<Item = &'a CgroupMount>) -> Option<&'a CgroupMount> {
    let all: Vec<&CgroupMount> = candidates.collect();
    let conventional = |m: &&&CgroupMount| m.point.starts_with("/sys/fs/cgroup");
    let whole: Vec<&CgroupMount> = all.iter().copied().filter(|m| m.root == "/").collect();
    whole
        .iter()
        .find(conventional)
        .or_else(|| whole.first())
        .or_else(|| all.iter().find(conventional))
        .copied()
}

/// The mount of the cgroup2 hierarchy a mountinfo text shows, if any (see [`pick`]).
fn cgroup2_mount(text: &str) -> Option<CgroupMount> {
    let mounts = cgroup_mounts(text);
    pick(mounts.iter().filter(|m| m.v2)).cloned()
}

/// The hierarchy a mountinfo text shows, if any (see [`pick`] for several mounts).
fn parse_mountinfo(text: &str) -> Option<Hierarchy> {
    let mounts = cgroup_mounts(text);
    let mut v1 = Vec::new();
    for controller in V1_CONTROLLERS {
        let of = mounts.iter().filter(|m| !m.v2 && m.controllers.iter().any(|c| c == controller));
        if let Some(mount) = pick(of) {
            v1.push(((*controller).to_owned(), mount.point.clone()));
        }
    }
    let v2 = pick(mounts.iter().filter(|m| m.v2));
    match (v1.is_empty(), v2) {
        // A pure v2 host: its controllers are in the cgroup2 tree.
        (true, Some(v2)) => Some(Hierarchy::V2(v2.point.clone())),
        (true, None) => None,
        (false, v2) => {
            // A hybrid host's cgroup2 tree holds no controller vz uses, but cgroup programs
            // (vz-ubc's socket limits) attach there: VEs get a directory in it too.
            if let Some(v2) = v2 {
                v1.push((UNIFIED.to_owned(), v2.point.clone()));
            }
            Some(Hierarchy::V1(v1))
        }
    }
}

/// The cgroup of one VE (it may or may not exist yet).
#[derive(Debug, Clone)]
pub struct VeCgroup {
    hierarchy: Hierarchy,
    relative: PathBuf,
}

impl VeCgroup {
    /// The cgroup `<parent>/<ctid>` in `hierarchy`.
    pub fn new(hierarchy: Hierarchy, parent: &str, ctid: u32) -> VeCgroup {
        VeCgroup { hierarchy, relative: Path::new(parent.trim_matches('/')).join(ctid.to_string()) }
    }

    /// The VE's directory under each controller (v1), or its one directory (v2).
    pub fn dirs(&self) -> Vec<(Option<&str>, PathBuf)> {
        match &self.hierarchy {
            Hierarchy::V2(root) => vec![(None, root.join(&self.relative))],
            Hierarchy::V1(mounts) => mounts
                .iter()
                .map(|(name, mount)| (Some(name.as_str()), mount.join(&self.relative)))
                .collect(),
        }
    }

    /// The VE's directory for a v1 controller, or the v2 directory.
    pub fn dir_of(&self, controller: &str) -> Option<PathBuf> {
        self.dirs()
            .into_iter()
            .find(|(name, _)| name.is_none_or(|n| n == controller))
            .map(|(_, dir)| dir)
    }

    /// Whether this host runs pure cgroup v2.
    pub fn is_v2(&self) -> bool {
        matches!(self.hierarchy, Hierarchy::V2(_))
    }

    /// The `cgroup.procs` files a task writes its pid into to join the VE's cgroup.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> =
            self.dirs().into_iter().map(|(_, dir)| dir.join("cgroup.procs")).collect();
        files.dedup();
        files
    }

    /// Creates the cgroup (and its parent) on every controller.
    ///
    /// # Errors
    /// [`CtlError::Cgroup`] naming the directory or knob that failed.
    pub fn create(&self) -> Result<()> {
        match &self.hierarchy {
            Hierarchy::V2(root) => self.create_v2(root),
            Hierarchy::V1(mounts) => {
                for (name, mount) in mounts {
                    tree::make_path(mount, &self.relative, name == "cpuset")?;
                }
                Ok(())
            }
        }
    }

    fn create_v2(&self, root: &Path) -> Result<()> {
        let available = read(&root.join("cgroup.controllers"))?;
        let enable: Vec<String> = V2_CONTROLLERS
            .iter()
            .filter(|c| available.split_whitespace().any(|a| a == **c))
            .map(|c| format!("+{c}"))
            .collect();
        let mut dir = root.to_path_buf();
        for (depth, part) in self.relative.iter().enumerate() {
            if depth > 0 {
                pass_on_memory_protection(&dir)?;
            }
            write(&dir.join("cgroup.subtree_control"), &enable.join(" "))?;
            dir.push(part);
            tree::make_dir(&dir)?;
        }
        Ok(())
    }

    /// The pids of the tasks in the VE's cgroup and below it (empty when it does not exist).
    ///
    /// A read of `cgroup.procs` can miss a task that moves while it runs: between the VE's
    /// cgroups, which an init inside makes below the VE's own on v2, or on v1 between those
    /// of systemd's named hierarchy (which moves it to another css_set of the same `pids`
    /// cgroup). A walk that found none while the kernel counts a task (cgroup2's `populated`
    /// flag, or the v1 `pids` count) is made again, a few times.
    pub fn pids(&self) -> Vec<i32> {
        let dir = self.dir_of("pids").or_else(|| self.dir_of("freezer"));
        let Some(dir) = dir.or_else(|| self.dirs().first().map(|(_, d)| d.clone())) else {
            return Vec::new();
        };
        let walk = || tree::tasks(&dir).unwrap_or_default();
        let mut pids = walk();
        for _ in 0..WALK_RETRIES {
            if !pids.is_empty() || self.populated() != Some(true) {
                break;
            }
            pids = walk();
        }
        pids
    }

    /// Whether the VE has tasks (design.md: a VE runs iff its cgroup has tasks): on v2 its
    /// `populated` flag, which answers for the whole subtree at once; on v1 whether [`pids`]
    /// finds one (the `pids` count also counts exited tasks nobody reaped yet).
    ///
    /// [`pids`]: Self::pids
    pub fn has_tasks(&self) -> bool {
        match (&self.hierarchy, self.populated()) {
            (Hierarchy::V2(_), Some(populated)) => populated,
            _ => !self.pids().is_empty(),
        }
    }

    /// Whether the kernel counts a task in the VE's cgroup or below, in one read: the
    /// `populated` flag of its cgroup2 directory (v2, or a hybrid host's cgroup2 tree, where
    /// VEs have a directory too), else the v1 `pids` controller's count; `None` when neither
    /// can be read.
    fn populated(&self) -> Option<bool> {
        if let Some(dir) = self.dir_of(UNIFIED)
            && let Ok(populated) = tree::populated(&dir)
        {
            return Some(populated);
        }
        let count = read_u64(&self.dir_of("pids")?.join("pids.current"));
        count.ok().flatten().map(|n| n > 0)
    }

    /// The VE's freezer (v2: its directory; v1: its directory in the freezer hierarchy).
    pub fn freezer(&self) -> Option<Freezer> {
        if self.is_v2() {
            self.dir_of("").map(Freezer::V2)
        } else {
            self.dir_of("freezer").map(Freezer::V1)
        }
    }

    /// Kills every task of the VE: freeze, SIGKILL each task, thaw, and wait until the
    /// cgroup is empty or `timeout` passes. Returns whether it is empty.
    ///
    /// # Errors
    /// [`CtlError::Cgroup`] if the freezer cannot be written.
    pub fn kill_all(&self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        while self.has_tasks() {
            if Instant::now() > deadline {
                return Ok(false);
            }
            let freezer = self.freezer();
            // Frozen, the tasks cannot fork between the listing and the kill; a task that will
            // not freeze soon (one in uninterruptible sleep) is killed all the same.
            if let Some(f) = &freezer
                && let Err(e) = f.freeze_within(KILL_FREEZE_WAIT)
            {
                tracing::debug!(error = %e, "killing the VE's tasks unfrozen");
            }
            let mut killed = Vec::new();
            for pid in self.pids() {
                // The pidfd first: it names this process even if the pid is reused.
                killed.extend(vz_ns::ExitWatch::open(pid).ok());
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            if let Some(f) = &freezer {
                f.thaw()?;
            }
            // Until they are gone (pidfds), at most 10 ms a round: no fixed sleep.
            let round = Instant::now() + Duration::from_millis(10);
            for watch in &killed {
                let _ = watch.wait(round.saturating_duration_since(Instant::now()));
            }
        }
        Ok(true)
    }

    /// Gives the VE's root (host ids `uid`, `gid`) the part of its cgroup an init inside
    /// manages: the directory of systemd's named hierarchy and its files on a v1 host, the
    /// directory and its `cgroup.procs`, `cgroup.threads` and `cgroup.subtree_control` on v2;
    /// and in both, every sub-cgroup below with its files (those CRIU made again at a
    /// restore are root's until given). The limits stay root's files, which the VE cannot
    /// write.
    ///
    /// # Errors
    /// [`CtlError::Cgroup`] naming the file that could not be given.
    pub fn delegate(&self, uid: u32, gid: u32) -> Result<()> {
        let chown = |path: &Path| {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|source| {
                CtlError::Cgroup(CgroupError::Io { op: "delegate", path: path.to_owned(), source })
            })
        };
        let chown_with_files = |dir: &Path| {
            chown(dir)?;
            let entries = std::fs::read_dir(dir).map_err(|source| {
                CtlError::Cgroup(CgroupError::Io { op: "list", path: dir.to_owned(), source })
            })?;
            entries.flatten().try_for_each(|entry| chown(&entry.path()))
        };
        for (name, dir) in self.dirs() {
            match name {
                Some(SYSTEMD_HIERARCHY) => chown_with_files(&dir)?,
                None => {
                    chown(&dir)?;
                    for file in V2_DELEGATED_FILES {
                        chown(&dir.join(file))?;
                    }
                }
                Some(_) => continue,
            }
            let mut below = Vec::new();
            tree::subdirs_deepest_first(&dir, &mut below);
            below.iter().try_for_each(|sub| chown_with_files(sub))?;
        }
        Ok(())
    }

    /// Removes the VE's cgroup directories (and what an init inside made below them,
    /// deepest first), waiting for exited tasks to be reaped.
    ///
    /// # Errors
    /// [`CtlError::Cgroup`] for a directory that stays busy or cannot be removed.
    pub fn remove(&self) -> Result<()> {
        let dirs: Vec<PathBuf> = self.dirs().into_iter().map(|(_, dir)| dir).collect();
        Ok(tree::remove(&dirs, REMOVE_TIMEOUT)?)
    }
}

/// Block I/O limits of one device for a VE (`IOLIMIT`, `IOPSLIMIT`): `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoLimits {
    /// Bytes per second, reads and writes each.
    pub bps: Option<u64>,
    /// Operations per second, reads and writes each.
    pub iops: Option<u64>,
}

impl VeCgroup {
    /// Throttles the VE's I/O to the block device `major:minor` (a whole disk or a loop
    /// device): v1 `blkio.throttle.{read,write}_{bps,iops}_device`, v2 `io.max`.
    ///
    /// # Errors
    /// [`CtlError::Cgroup`] naming the knob the kernel refused; `Ok(false)` without an
    /// I/O controller.
    pub fn set_io_limits(&self, major: u32, minor: u32, limits: IoLimits) -> Result<bool> {
        let dev = format!("{major}:{minor}");
        if self.is_v2() {
            let Some(dir) = self.dir_of("io").filter(|d| d.join("io.max").exists()) else {
                return Ok(false);
            };
            let num = |v: Option<u64>| v.map_or_else(|| "max".to_owned(), |v| v.to_string());
            let (bps, iops) = (num(limits.bps), num(limits.iops));
            write(
                &dir.join("io.max"),
                &format!("{dev} rbps={bps} wbps={bps} riops={iops} wiops={iops}"),
            )?;
            return Ok(true);
        }
        let Some(dir) = self.dir_of("blkio").filter(|d| d.exists()) else { return Ok(false) };
        // 0 removes the device's entry (unlimited).
        for (knob, value) in [
            ("read_bps_device", limits.bps),
            ("write_bps_device", limits.bps),
            ("read_iops_device", limits.iops),
            ("write_iops_device", limits.iops),
        ] {
            write(
                &dir.join(format!("blkio.throttle.{knob}")),
                &format!("{dev} {}", value.unwrap_or(0)),
            )?;
        }
        Ok(true)
    }

    /// Sets the VE's proportional I/O weight (`IOPRIO`): v2 `io.weight` (blk-iocost) or
    /// `io.bfq.weight`, v1 `blkio.bfq.weight` or `blkio.weight`; `weight` is on the 1–10000
    /// scale of io.weight with 100 the kernel's default, scaled for the 1–1000 knobs.
    ///
    /// # Errors
    /// [`CtlError::Cgroup`] naming the knob; `Ok(false)` when the host has no weight knob
    /// (no I/O scheduler that weighs cgroups, such as BFQ, and no io.cost).
    pub fn set_io_weight(&self, weight: u32) -> Result<bool> {
        let (dir, knobs): (Option<PathBuf>, [(&str, u32, u32); 2]) = if self.is_v2() {
            (self.dir_of("io"), [("io.weight", 1, 10_000), ("io.bfq.weight", 1, 1000)])
        } else {
            (self.dir_of("blkio"), [("blkio.bfq.weight", 1, 1000), ("blkio.weight", 10, 1000)])
        };
        let Some(dir) = dir else { return Ok(false) };
        for (knob, min, max) in knobs {
            let path = dir.join(knob);
            if path.exists() {
                let value = weight.clamp(min, max).to_string();
                let value = if knob == "io.weight" { format!("default {value}") } else { value };
                write(&path, &value)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Restricts the VE's memory to the NUMA nodes `mems` (`cpuset.mems`, a kernel list such
    /// as `0-1,3`); `None` gives it every node its parent has.
    ///
    /// # Errors
    /// [`CtlError::Cgroup`] naming the knob; `Ok(false)` without a cpuset controller.
    pub fn set_mems(&self, mems: Option<&str>) -> Result<bool> {
        let Some(dir) = self.dir_of("cpuset").filter(|d| d.join("cpuset.mems").exists()) else {
            return Ok(false);
        };
        let value = match mems {
            Some(m) => m.to_owned(),
            None => {
                let parent = dir.parent().map(|p| p.join("cpuset.effective_mems"));
                match parent.filter(|p| p.exists()) {
                    Some(p) => read(&p)?.trim().to_owned(),
                    // v2 with no own setting: an empty cpuset.mems inherits the parent's.
                    None => String::new(),
                }
            }
        };
        write(&dir.join("cpuset.mems"), &value)?;
        Ok(true)
    }
}

/// Lets a VE's memory guarantees (memory.low for oomguarpages, memory.min for vmguarpages)
/// take effect: on v2 a cgroup is protected only as far as its parent is, so every parent
/// below the root passes its whole usage on (`max`); VEs without a guarantee still get none.
fn pass_on_memory_protection(parent: &Path) -> Result<()> {
    for file in ["memory.min", "memory.low"] {
        let path = parent.join(file);
        if path.exists() && read(&path)?.trim() != "max" {
            write(&path, "max")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    fn v1(h: Option<Hierarchy>) -> Vec<(String, PathBuf)> {
        match h {
            Some(Hierarchy::V1(list)) => list,
            other => panic!("not v1: {other:?}"),
        }
    }

    #[test]
    fn a_hybrid_host_has_v1_controllers_and_the_unified_tree() {
        let list = v1(parse_mountinfo(HYBRID));
        assert_eq!(
            list,
            [
                ("cpu".to_owned(), PathBuf::from("/sys/fs/cgroup/cpu")),
                ("pids".to_owned(), PathBuf::from("/sys/fs/cgroup/pids")),
                (SYSTEMD_HIERARCHY.to_owned(), PathBuf::from("/sys/fs/cgroup/systemd")),
                (UNIFIED.to_owned(), PathBuf::from("/sys/fs/cgroup/unified")),
            ]
        );
    }

    #[test]
    fn other_mounts_of_a_hierarchy_and_subtree_binds_are_not_chosen() {
        // CRIU's yard first, a bind of a subtree, then the real mounts.
        let text = format!(
            "90 1 0:36 / /tmp/.criu.cgyard.X/pids rw - cgroup cgroup rw,pids\n\
             91 1 0:36 /vz/101 /mnt/ve\\040pids rw - cgroup cgroup rw,pids\n\
             92 1 0:38 /sub /mnt/v2 rw - cgroup2 cgroup2 rw\n{HYBRID}"
        );
        let list = v1(parse_mountinfo(&text));
        assert!(list.contains(&("pids".to_owned(), PathBuf::from("/sys/fs/cgroup/pids"))));
        assert!(list.contains(&(UNIFIED.to_owned(), PathBuf::from("/sys/fs/cgroup/unified"))));
        // Only elsewhere: the whole-hierarchy mount wherever it is, never the subtree bind.
        let text = "90 1 0:36 /vz /mnt/sub rw - cgroup cgroup rw,pids\n\
                    91 1 0:36 / /mnt/my\\040pids rw - cgroup cgroup rw,pids\n";
        assert_eq!(v1(parse_mountinfo(text)), [("pids".to_owned(), PathBuf::from("/mnt/my pids"))]);
        assert!(parse_mountinfo("90 1 0:36 /vz /mnt/sub rw - cgroup cgroup rw,pids\n").is_none());
        // A container's runtime bound its own subtree at the usual place: that is all there is.
        let text = "90 1 0:36 /docker/x /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
        assert_eq!(
            v1(parse_mountinfo(text)),
            [("pids".to_owned(), PathBuf::from("/sys/fs/cgroup/pids"))]
        );
    }

    #[test]
    fn pure_v2_anywhere_and_nothing_at_all() {
        let text = "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert!(
            matches!(parse_mountinfo(text), Some(Hierarchy::V2(p)) if p == Path::new("/sys/fs/cgroup"))
        );
        let text = "30 1 0:26 / /run/cg rw - cgroup2 cgroup2 rw\n";
        assert!(
            matches!(parse_mountinfo(text), Some(Hierarchy::V2(p)) if p == Path::new("/run/cg"))
        );
        assert!(parse_mountinfo("23 1 0:21 / /sys rw - sysfs sysfs rw\n").is_none());
    }
}
