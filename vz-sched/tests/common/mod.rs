//! Kernel test helper: a throw-away cgroup tree with busy-loop processes, on whichever
//! cgroup hierarchy this machine runs (v1 here, pure v2 in the kernel lab), made of the kit's
//! [`TestCgroup`]s, so it is cleaned up by `Drop` also when a test fails. Shared by
//! `tests/kernel_*.rs` and `benches/fairness.rs`.
#![allow(dead_code, unreachable_pub, reason = "each user takes the parts it needs")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use vz_sched::CgroupDirs;
use vz_tests::TestCgroup;

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
        if vz_tests::is_cgroup_v2() {
            let controllers =
                std::fs::read_to_string(Path::new(V2_ROOT).join("cgroup.controllers"))?;
            return Ok(Hierarchy::V2 {
                cpuset: controllers.split_whitespace().any(|c| c == "cpuset"),
            });
        }
        let cpu = vz_tests::cgroup_v1_mount("cpu").context("no v1 cpu hierarchy mounted")?;
        let cpuacct = vz_tests::cgroup_v1_mount("cpuacct").filter(|p| *p != cpu);
        Ok(Hierarchy::V1 { cpu, cpuacct, cpuset: vz_tests::cgroup_v1_mount("cpuset") })
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

/// A `vz-test-*` parent on every hierarchy used, with the same children in each, plus busy
/// loops in them.
#[derive(Debug)]
pub struct TestTree {
    pub hierarchy: Hierarchy,
    /// The parent on the cpu hierarchy (v1) or in the v2 tree.
    cpu: TestCgroup,
    /// The parents on a separate cpuacct and on the cpuset hierarchy (v1 only).
    cpuacct: Option<TestCgroup>,
    cpuset: Option<TestCgroup>,
    burners: Vec<Child>,
}

impl TestTree {
    /// Makes the parent (with a large weight, so that other load on the machine does not
    /// starve the test) and the children, empty of settings.
    pub fn new(tag: &str, children: &[&str]) -> Result<Self> {
        let hierarchy = Hierarchy::detect()?;
        // The kit's guards exist from here on: whatever was made is removed if a step fails.
        let tree = match &hierarchy {
            Hierarchy::V1 { cpuacct, cpuset: cpuset_root, .. } => {
                let cpu = TestCgroup::new("cpu", tag)?;
                write(&cpu.dir().join("cpu.shares"), "262144")?;
                let cpuacct =
                    cpuacct.as_ref().map(|_| TestCgroup::new("cpuacct", tag)).transpose()?;
                let cpuset =
                    cpuset_root.as_ref().map(|_| TestCgroup::new("cpuset", tag)).transpose()?;
                TestTree { hierarchy, cpu, cpuacct, cpuset, burners: Vec::new() }
            }
            Hierarchy::V2 { cpuset } => {
                let enable: &[&str] = if *cpuset { &["cpu", "cpuset"] } else { &["cpu"] };
                let cpu = TestCgroup::v2_with(enable, tag)?;
                write(&cpu.dir().join("cpu.weight"), "10000")?;
                TestTree { hierarchy, cpu, cpuacct: None, cpuset: None, burners: Vec::new() }
            }
        };
        for child in children {
            for parent in tree.parents() {
                parent.child(child)?;
            }
        }
        Ok(tree)
    }

    fn parents(&self) -> impl Iterator<Item = &TestCgroup> {
        std::iter::once(&self.cpu).chain(&self.cpuacct).chain(&self.cpuset)
    }

    /// The directories vz-sched gets for `child`, as vz-ctl would hand them over.
    pub fn dirs(&self, child: &str) -> CgroupDirs {
        let at = |parent: &TestCgroup| parent.dir().join(child);
        match &self.hierarchy {
            Hierarchy::V1 { .. } => CgroupDirs::V1 {
                cpu: at(&self.cpu),
                cpuacct: self.cpuacct.as_ref().map(at),
                cpuset: self.cpuset.as_ref().map(at),
            },
            Hierarchy::V2 { .. } => CgroupDirs::V2 { dir: at(&self.cpu) },
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
        let parent = match &self.cpuset {
            Some(cpuset) if file.starts_with("cpuset.") => cpuset,
            _ => &self.cpu,
        };
        Ok(std::fs::read_to_string(parent.dir().join(file))?.trim().to_owned())
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
            for parent in self.parents() {
                write(&parent.dir().join(child).join("cgroup.procs"), &pid.to_string())?;
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
    /// Reaps the busy loops (no zombie keeps a cgroup busy); the kit's guards then remove
    /// the cgroups.
    fn drop(&mut self) {
        self.stop_burners();
    }
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).with_context(|| format!("write {value:?} to {}", path.display()))
}
