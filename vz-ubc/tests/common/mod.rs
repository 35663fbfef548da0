//! Test cgroups for the kernel tests: a fresh cgroup per test on whichever hierarchy the host
//! runs (v1: memory + pids directories; v2: a parent with `+memory +pids` delegated and the VE
//! directory below it), workloads started inside it, and cleanup on drop (kill by pid, then
//! rmdir with retries: orphaned zombies keep a v1 cgroup busy for a second or two here).

#![allow(dead_code, reason = "each test file uses part of the kit")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vz_ubc::CgroupDirs;

/// A cgroup made for one test.
pub(crate) struct TestCgroup {
    pub(crate) dirs: CgroupDirs,
    /// Directories to remove, deepest first.
    remove: Vec<PathBuf>,
    /// Directories whose processes are ours to kill.
    proc_dirs: Vec<PathBuf>,
    children: Vec<Child>,
}

pub(crate) fn is_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

impl TestCgroup {
    pub(crate) fn new(tag: &str) -> anyhow::Result<TestCgroup> {
        let name = vz_tests::unique_name(tag);
        let mut cg = TestCgroup {
            dirs: CgroupDirs::V2 { dir: PathBuf::new() },
            remove: vec![],
            proc_dirs: vec![],
            children: vec![],
        };
        if is_v2() {
            let root = Path::new("/sys/fs/cgroup");
            let enabled = std::fs::read_to_string(root.join("cgroup.subtree_control"))?;
            for c in ["memory", "pids"] {
                if !enabled.split_whitespace().any(|e| e == c) {
                    std::fs::write(root.join("cgroup.subtree_control"), format!("+{c}"))?;
                }
            }
            let parent = root.join(&name);
            std::fs::create_dir(&parent)?;
            cg.remove.push(parent.clone());
            std::fs::write(parent.join("cgroup.subtree_control"), "+memory +pids")?;
            let dir = parent.join("ve");
            std::fs::create_dir(&dir)?;
            cg.remove.insert(0, dir.clone());
            cg.proc_dirs.push(dir.clone());
            cg.dirs = CgroupDirs::V2 { dir };
        } else {
            let memory = PathBuf::from("/sys/fs/cgroup/memory").join(&name);
            std::fs::create_dir(&memory)?;
            cg.remove.push(memory.clone());
            let pids = PathBuf::from("/sys/fs/cgroup/pids").join(&name);
            std::fs::create_dir(&pids)?;
            cg.remove.push(pids.clone());
            cg.proc_dirs = vec![memory.clone(), pids.clone()];
            cg.dirs = CgroupDirs::V1 { memory, pids: Some(pids) };
        }
        Ok(cg)
    }

    /// The `cgroup.procs` files a workload must join.
    fn procs_files(&self) -> Vec<PathBuf> {
        self.proc_dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Starts `script` with `sh -c` inside the cgroup: the shell writes its own pid into every
    /// `cgroup.procs` before running the workload, so nothing runs outside.
    pub(crate) fn spawn(&mut self, script: &str) -> anyhow::Result<&mut Child> {
        let mut join = String::new();
        for f in self.procs_files() {
            join.push_str(&format!("echo $$ > {} || exit 99; ", f.display()));
        }
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{join}{script}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.children.push(child);
        Ok(self.children.last_mut().expect("just pushed"))
    }

    /// Pids currently in the cgroup (all started by this test).
    pub(crate) fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .procs_files()
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<u32>>())
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Kills every process of the cgroup (ours) and reaps our direct children.
    pub(crate) fn kill_all(&mut self) {
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = Command::new("kill")
                    .arg("-9")
                    .arg(pid.to_string())
                    .stderr(Stdio::null())
                    .status();
            }
            for child in &mut self.children {
                let _ = child.try_wait();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        self.kill_all();
        for dir in &self.remove {
            let deadline = Instant::now() + Duration::from_secs(10);
            while dir.exists() && std::fs::remove_dir(dir).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            #[allow(clippy::print_stderr, reason = "a leak must be visible in the test output")]
            if dir.exists() {
                eprintln!("leaked cgroup {}", dir.display());
            }
        }
    }
}

/// Polls `f` until it returns `Some`, for at most `secs` seconds.
pub(crate) fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
