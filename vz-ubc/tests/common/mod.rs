//! The VE cgroup of the kernel tests: a fresh cgroup per test from the kit ([`TestCgroup`]) on
//! whichever hierarchy the host runs (v1: memory + pids directories; v2: a parent with
//! `+memory +pids` delegated and the VE directory below it), and workloads started inside it.
//! Cleanup on drop: our workloads are killed and reaped, then the kit kills what is left by
//! pid and removes the cgroups with retries (orphaned zombies keep a v1 cgroup busy a while).

#![allow(dead_code, reason = "each test file uses part of the kit")]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vz_tests::TestCgroup;
use vz_ubc::CgroupDirs;

/// The cgroups of one test VE, with the workloads started in them.
pub(crate) struct VeCgroup {
    pub(crate) dirs: CgroupDirs,
    /// The `cgroup.procs` files a workload must join.
    procs: Vec<PathBuf>,
    children: Vec<Child>,
    /// Dropped after `children` are reaped (see `Drop`).
    cgroups: Vec<TestCgroup>,
}

impl VeCgroup {
    pub(crate) fn new(tag: &str) -> anyhow::Result<VeCgroup> {
        if vz_tests::is_cgroup_v2() {
            let parent = TestCgroup::v2_with(&["memory", "pids"], tag)?;
            let dir = parent.child("ve")?;
            Ok(VeCgroup {
                procs: vec![dir.join("cgroup.procs")],
                dirs: CgroupDirs::V2 { dir },
                children: vec![],
                cgroups: vec![parent],
            })
        } else {
            let memory = TestCgroup::new("memory", tag)?;
            let pids = TestCgroup::new("pids", tag)?;
            Ok(VeCgroup {
                dirs: CgroupDirs::V1 {
                    memory: memory.dir().to_path_buf(),
                    pids: Some(pids.dir().to_path_buf()),
                    unified: None,
                },
                procs: vec![memory.procs(), pids.procs()],
                children: vec![],
                cgroups: vec![memory, pids],
            })
        }
    }

    /// Starts `script` with `sh -c` inside the cgroup: the shell writes its own pid into every
    /// `cgroup.procs` before running the workload, so nothing runs outside.
    pub(crate) fn spawn(&mut self, script: &str) -> anyhow::Result<&mut Child> {
        let mut join = String::new();
        for f in &self.procs {
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
        let mut pids: Vec<u32> = self.cgroups.iter().flat_map(TestCgroup::pids).collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Kills every process of the cgroup (ours, by pid) and reaps our direct children.
    pub(crate) fn kill_all(&mut self) {
        for cgroup in &self.cgroups {
            cgroup.kill_all(Duration::from_secs(1));
        }
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for VeCgroup {
    fn drop(&mut self) {
        // Reaped children leave no zombie to keep the cgroups busy; the kit's guards then
        // remove the cgroups.
        self.kill_all();
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
