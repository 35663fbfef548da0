//! Kernel test helper: a throw-away cgroup tree with busy-loop processes, on whichever
//! cgroup hierarchy this machine runs (v1 here, pure v2 in the kernel lab), cleaned up by
//! `Drop` also when a test fails. Shared by `tests/kernel_*.rs` and `benches/fairness.rs`.
#![allow(dead_code, unreachable_pub, reason = "each user takes the parts it needs")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use vz_sched::CgroupDirs;

const V2_ROOT: &str = "/sys/fs/cgroup";

/// Where each controller's hierarchy is mounted.
#[derive(Debug, Clone)]
pub enum Hierarchy {
    /// v1 mount points (cpuacct `None` when co-mounted with cpu).
    V1 { cpu: PathBuf, cpuacct: Option<PathBuf>, cpuset: Option<PathBuf> },
    /// cgroup2 at /sys/fs/cgroup; whether the cpuset controller is available.
    V2 { cpuset: bool },
}

impl Hierarchy {
    /// Detects the hierarchy at run time: cgroup2 at /sys/fs/cgroup, else the v1 mounts.
    pub fn detect() -> Result<Self> {
        if Path::new(V2_ROOT).join("cgroup.controllers").exists() {
            let controllers =
                std::fs::read_to_string(Path::new(V2_ROOT).join("cgroup.controllers"))?;
            return Ok(Hierarchy::V2 {
                cpuset: controllers.split_whitespace().any(|c| c == "cpuset"),
            });
        }
        let mounts = std::fs::read_to_string("/proc/self/mounts")?;
        let find = |name: &str| {
            mounts.lines().find_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (f.get(2) == Some(&"cgroup") && f.get(3)?.split(',').any(|o| o == name))
                    .then(|| PathBuf::from(f[1]))
            })
        };
        let cpu = find("cpu").context("no v1 cpu hierarchy mounted")?;
        let cpuacct = find("cpuacct").filter(|p| *p != cpu);
        Ok(Hierarchy::V1 { cpu, cpuacct, cpuset: find("cpuset") })
    }

    pub fn has_cpuset(&self) -> bool {
        match self {
            Hierarchy::V1 { cpuset, .. } => cpuset.is_some(),
            Hierarchy::V2 { cpuset } => *cpuset,
        }
    }

    pub fn is_v2(&self) -> bool {
        matches!(self, Hierarchy::V2 { .. })
    }
}

/// `<root>/<unique name>/{children}` on every hierarchy used, plus busy loops in them.
#[derive(Debug)]
pub struct TestTree {
    pub hierarchy: Hierarchy,
    name: String,
    children: Vec<String>,
    burners: Vec<Child>,
}

impl TestTree {
    /// Makes the parent (with a large weight, so that other load on the machine does not
    /// starve the test) and the children, empty of settings.
    pub fn new(tag: &str, children: &[&str]) -> Result<Self> {
        let hierarchy = Hierarchy::detect()?;
        let mut tree = TestTree {
            hierarchy,
            name: vz_tests::unique_name(tag),
            children: Vec::new(),
            burners: Vec::new(),
        };
        // The guard exists from here on: whatever was made is removed if a step fails.
        for dir in tree.roots() {
            mkdir(&dir.join(&tree.name))?;
        }
        match tree.hierarchy.clone() {
            Hierarchy::V1 { cpu, cpuset, .. } => {
                write(&cpu.join(&tree.name).join("cpu.shares"), "262144")?;
                if let Some(cs) = cpuset {
                    for knob in ["cpuset.cpus", "cpuset.mems"] {
                        let value = std::fs::read_to_string(cs.join(knob))?;
                        write(&cs.join(&tree.name).join(knob), value.trim())?;
                    }
                }
            }
            Hierarchy::V2 { cpuset } => {
                let enable = if cpuset { "+cpu +cpuset" } else { "+cpu" };
                write(&Path::new(V2_ROOT).join("cgroup.subtree_control"), enable)?;
                let parent = Path::new(V2_ROOT).join(&tree.name);
                write(&parent.join("cgroup.subtree_control"), enable)?;
                write(&parent.join("cpu.weight"), "10000")?;
            }
        }
        for child in children {
            for dir in tree.roots() {
                mkdir(&dir.join(&tree.name).join(child))?;
            }
            tree.children.push((*child).to_owned());
        }
        Ok(tree)
    }

    fn roots(&self) -> Vec<PathBuf> {
        match &self.hierarchy {
            Hierarchy::V1 { cpu, cpuacct, cpuset } => {
                std::iter::once(cpu.clone()).chain(cpuacct.clone()).chain(cpuset.clone()).collect()
            }
            Hierarchy::V2 { .. } => vec![PathBuf::from(V2_ROOT)],
        }
    }

    /// The directories vz-sched gets for `child`, as vz-ctl would hand them over.
    pub fn dirs(&self, child: &str) -> CgroupDirs {
        let at = |root: &Path| root.join(&self.name).join(child);
        match &self.hierarchy {
            Hierarchy::V1 { cpu, cpuacct, cpuset } => CgroupDirs::V1 {
                cpu: at(cpu),
                cpuacct: cpuacct.as_deref().map(at),
                cpuset: cpuset.as_deref().map(at),
            },
            Hierarchy::V2 { .. } => CgroupDirs::V2 { dir: at(Path::new(V2_ROOT)) },
        }
    }

    /// The raw content of a knob of `child`, read straight from the kernel.
    pub fn knob(&self, child: &str, file: &str) -> Result<String> {
        let dir = match (&self.hierarchy, self.dirs(child)) {
            (_, CgroupDirs::V2 { dir }) => dir,
            (Hierarchy::V1 { .. }, CgroupDirs::V1 { cpu, cpuacct, cpuset }) => {
                if file.starts_with("cpuset.") {
                    cpuset.context("no cpuset hierarchy")?
                } else if file.starts_with("cpuacct.") {
                    cpuacct.unwrap_or(cpu)
                } else {
                    cpu
                }
            }
            _ => bail!("hierarchy mismatch"),
        };
        let path = dir.join(file);
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("read {}", path.display()))?
            .trim()
            .to_owned())
    }

    /// The parent's raw knob (cpuset.cpus/mems).
    pub fn parent_knob(&self, file: &str) -> Result<String> {
        let root = match &self.hierarchy {
            Hierarchy::V1 { cpuset, cpu, .. } if file.starts_with("cpuset.") => {
                cpuset.clone().unwrap_or(cpu.clone())
            }
            Hierarchy::V1 { cpu, .. } => cpu.clone(),
            Hierarchy::V2 { .. } => PathBuf::from(V2_ROOT),
        };
        Ok(std::fs::read_to_string(root.join(&self.name).join(file))?.trim().to_owned())
    }

    /// Starts `n` busy loops (`sh -c 'while :; do :; done'`) and moves them into `child`.
    pub fn burn(&mut self, child: &str, n: usize) -> Result<Vec<u32>> {
        self.burn_nice(child, n, 0)
    }

    /// As [`burn`](Self::burn) at nice level `nice`; returns the pids.
    pub fn burn_nice(&mut self, child: &str, n: usize, nice: i32) -> Result<Vec<u32>> {
        let mut pids = Vec::new();
        for _ in 0..n {
            let proc = Command::new("nice")
                .args(["-n", &nice.to_string(), "sh", "-c", "while :; do :; done"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .context("spawn a busy loop")?;
            let pid = proc.id();
            self.burners.push(proc);
            pids.push(pid);
            for dir in self.roots() {
                write(&dir.join(&self.name).join(child).join("cgroup.procs"), &pid.to_string())?;
            }
        }
        Ok(pids)
    }

    /// CPU time used by `child`, in seconds, through vz-sched's `read`.
    pub fn usage_s(&self, child: &str) -> Result<f64> {
        Ok(vz_sched::read(&self.dirs(child))?.usage_ns as f64 / 1e9)
    }

    /// CPU time per wall second of each child over `wall`.
    pub fn measure(&self, children: &[&str], wall: Duration) -> Result<Vec<f64>> {
        let before: Vec<f64> = children.iter().map(|c| self.usage_s(c)).collect::<Result<_>>()?;
        let start = Instant::now();
        std::thread::sleep(wall);
        let after: Vec<f64> = children.iter().map(|c| self.usage_s(c)).collect::<Result<_>>()?;
        let secs = start.elapsed().as_secs_f64();
        Ok(before.iter().zip(after).map(|(b, a)| (a - b) / secs).collect())
    }

    /// CPU time of one process (utime + stime of `/proc/<pid>/stat`), in clock ticks.
    pub fn proc_ticks(pid: u32) -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The command may hold spaces: fields count from the last ')'.
        let rest = stat.rsplit_once(')').context("malformed /proc/<pid>/stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| -> Result<u64> {
            Ok(fields.get(i).context("short /proc/<pid>/stat")?.parse()?)
        };
        // After ")": state is field 3 of the whole line, utime 14 and stime 15.
        Ok(tick(11)? + tick(12)?)
    }

    /// Kills every busy loop of this tree (by pid) and reaps it.
    pub fn stop_burners(&mut self) {
        for mut proc in self.burners.drain(..) {
            let _ = proc.kill();
            let _ = proc.wait();
        }
    }
}

impl Drop for TestTree {
    fn drop(&mut self) {
        self.stop_burners();
        let mut dirs = Vec::new();
        for root in self.roots() {
            for child in &self.children {
                dirs.push(root.join(&self.name).join(child));
            }
        }
        for root in self.roots() {
            dirs.push(root.join(&self.name));
        }
        for dir in dirs {
            rmdir_retry(&dir);
        }
    }
}

/// Removes a cgroup, retrying for up to 10 s while it is busy (orphans are reaped slowly).
fn rmdir_retry(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if Instant::now() >= deadline => {
                #[allow(clippy::print_stderr, reason = "a leak must be visible")]
                {
                    eprintln!("leaked cgroup {}: {e}", dir.display());
                }
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn mkdir(path: &Path) -> Result<()> {
    std::fs::create_dir(path).with_context(|| format!("mkdir {}", path.display()))
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).with_context(|| format!("write {value:?} to {}", path.display()))
}
