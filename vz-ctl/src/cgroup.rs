//! The VE's cgroup: `<VE_CGROUP_PARENT>/<CTID>` on every controller vz uses.
//!
//! vz-ctl alone creates and removes it (design.md); the subsystems receive its directories.
//! The hierarchy is detected at run time from `/proc/self/mountinfo`: a pure cgroup v2 host
//! (cgroup2 at `/sys/fs/cgroup`), or v1 hierarchies, one per controller (this project's
//! hybrid development host has v1 controllers and a cgroup2 mount with none of them).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{CtlError, Result};

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

/// The cgroup hierarchy of this host.
#[derive(Debug, Clone)]
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
        static DETECTED: std::sync::OnceLock<Hierarchy> = std::sync::OnceLock::new();
        if let Some(hierarchy) = DETECTED.get() {
            return Ok(hierarchy.clone());
        }
        let hierarchy = Self::read_mountinfo()?;
        Ok(DETECTED.get_or_init(|| hierarchy).clone())
    }

    /// Reads the hierarchy from `/proc/self/mountinfo`.
    fn read_mountinfo() -> Result<Hierarchy> {
        let path = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(path).map_err(|source| CtlError::Cgroup {
            op: "read",
            path: path.to_owned(),
            source,
        })?;
        let mut v1 = Vec::new();
        let mut v2 = None;
        let mut unified = None;
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let mount_point = left.split(' ').nth(4).unwrap_or_default();
            let mut right = right.split(' ');
            let fstype = right.next().unwrap_or_default();
            let super_opts = right.nth(1).unwrap_or_default();
            match fstype {
                "cgroup" => {
                    for opt in super_opts.split(',') {
                        if V1_CONTROLLERS.contains(&opt) {
                            v1.push((opt.to_owned(), PathBuf::from(mount_point)));
                        }
                    }
                }
                "cgroup2" if mount_point == "/sys/fs/cgroup" => v2 = Some(mount_point.into()),
                "cgroup2" => unified = Some(PathBuf::from(mount_point)),
                _ => {}
            }
        }
        // A hybrid host's cgroup2 tree holds no controller vz uses, but cgroup programs
        // (vz-ubc's socket limits) attach there: VEs get a directory in it too.
        if let Some(mount) = unified.filter(|_| !v1.is_empty()) {
            v1.push((UNIFIED.to_owned(), mount));
        }
        match (v2, v1.is_empty()) {
            (Some(root), _) => Ok(Hierarchy::V2(root)),
            (None, false) => Ok(Hierarchy::V1(v1)),
            (None, true) => Err(CtlError::Cgroup {
                op: "find a cgroup hierarchy in",
                path: path.to_owned(),
                source: std::io::Error::from(ErrorKind::NotFound),
            }),
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
                    let dir = mount.join(&self.relative);
                    mkdir_all(&dir)?;
                    if name == "cpuset" {
                        inherit_cpuset(mount, &self.relative)?;
                    }
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
            mkdir(&dir)?;
        }
        Ok(())
    }

    /// The pids of the tasks in the VE's cgroup (empty when it does not exist).
    pub fn pids(&self) -> Vec<i32> {
        let dir = self.dir_of("pids").or_else(|| self.dir_of("freezer"));
        let Some(dir) = dir.or_else(|| self.dirs().first().map(|(_, d)| d.clone())) else {
            return Vec::new();
        };
        // An init inside may have moved its tasks into cgroups of its own below the VE's.
        let mut dirs = vec![dir.clone()];
        subdirs_deepest_first(&dir, &mut dirs);
        dirs.iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<i32>>())
            .collect()
    }

    /// Whether the VE has tasks (design.md: a VE runs iff its cgroup has tasks).
    pub fn has_tasks(&self) -> bool {
        !self.pids().is_empty()
    }

    /// Freezes (`true`) or thaws (`false`) every task of the VE.
    ///
    /// # Errors
    /// [`CtlError::Cgroup`] if the freezer cannot be written.
    pub fn set_frozen(&self, frozen: bool) -> Result<()> {
        if self.is_v2() {
            let Some(dir) = self.dir_of("") else { return Ok(()) };
            return write(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" });
        }
        let Some(dir) = self.dir_of("freezer") else { return Ok(()) };
        write(&dir.join("freezer.state"), if frozen { "FROZEN" } else { "THAWED" })?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while frozen && read(&dir.join("freezer.state"))?.trim() == "FREEZING" {
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
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
            self.set_frozen(true)?;
            for pid in self.pids() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            self.set_frozen(false)?;
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(true)
    }

    /// Gives the VE's root (host ids `uid`, `gid`) the part of its cgroup an init inside
    /// manages: the directory of systemd's named hierarchy and its files on a v1 host, the
    /// directory and its `cgroup.procs`, `cgroup.threads` and `cgroup.subtree_control` on v2.
    /// The limits stay root's files, which the VE cannot write.
    ///
    /// # Errors
    /// [`CtlError::Cgroup`] naming the file that could not be given.
    pub fn delegate(&self, uid: u32, gid: u32) -> Result<()> {
        let chown = |path: &Path| {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|source| {
                CtlError::Cgroup { op: "delegate", path: path.to_owned(), source }
            })
        };
        for (name, dir) in self.dirs() {
            match name {
                Some(SYSTEMD_HIERARCHY) => {
                    chown(&dir)?;
                    let entries = std::fs::read_dir(&dir).map_err(|source| CtlError::Cgroup {
                        op: "list",
                        path: dir.clone(),
                        source,
                    })?;
                    for entry in entries.flatten() {
                        chown(&entry.path())?;
                    }
                }
                None => {
                    chown(&dir)?;
                    for file in V2_DELEGATED_FILES {
                        chown(&dir.join(file))?;
                    }
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Removes the VE's cgroup directories (and what an init inside made below them,
    /// deepest first), waiting for exited tasks to be reaped.
    ///
    /// # Errors
    /// [`CtlError::Cgroup`] for a directory that stays busy or cannot be removed.
    pub fn remove(&self) -> Result<()> {
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        let mut dirs = Vec::new();
        for (_, dir) in self.dirs() {
            subdirs_deepest_first(&dir, &mut dirs);
            dirs.push(dir);
        }
        for dir in dirs {
            loop {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(source) => {
                        return Err(CtlError::Cgroup { op: "remove", path: dir, source });
                    }
                }
            }
        }
        Ok(())
    }
}

/// Every directory below `dir`, children before their parents.
fn subdirs_deepest_first(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let path = entry.path();
            subdirs_deepest_first(&path, out);
            out.push(path);
        }
    }
}

/// Copies `cpuset.cpus`/`cpuset.mems` down from the hierarchy root to each new level, since a
/// v1 cpuset cgroup with empty sets refuses tasks.
fn inherit_cpuset(mount: &Path, relative: &Path) -> Result<()> {
    let mut parent = mount.to_path_buf();
    for part in relative.iter() {
        let child = parent.join(part);
        for knob in ["cpuset.cpus", "cpuset.mems"] {
            if read(&child.join(knob))?.trim().is_empty() {
                let value = read(&parent.join(knob))?;
                write(&child.join(knob), value.trim())?;
            }
        }
        parent = child;
    }
    Ok(())
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

fn mkdir(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => {
            Err(CtlError::Cgroup { op: "create", path: dir.to_owned(), source: e })
        }
        _ => Ok(()),
    }
}

fn mkdir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| CtlError::Cgroup {
        op: "create",
        path: dir.to_owned(),
        source,
    })
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| CtlError::Cgroup {
        op: "read",
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, value: &str) -> Result<()> {
    tracing::debug!(path = %path.display(), value, "cgroup write");
    std::fs::write(path, value).map_err(|source| CtlError::Cgroup {
        op: "write",
        path: path.to_owned(),
        source,
    })
}
