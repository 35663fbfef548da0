//! A test tree's own lxcfs (vz.conf's `LXCFS_MOUNT`, started by `vzctl start`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::tree::{VzTree, unmount_under};

/// The tree's lxcfs: its mount directory and pid file; dropping it kills that lxcfs (by the
/// pid in the tree's pid file, after checking the process is an lxcfs on this directory)
/// and unmounts the directory. Declare it after the tree, so it is dropped first.
#[derive(Debug)]
pub struct TreeLxcfs {
    dir: PathBuf,
    pid_file: PathBuf,
}

impl TreeLxcfs {
    /// Points the tree's vz.conf at `<tree>/lxcfs`, with `extra` lines.
    ///
    /// # Panics
    /// When vz.conf cannot be read or written.
    pub fn configure(tree: &VzTree, extra: &str) -> TreeLxcfs {
        let dir = tree.path().join("lxcfs");
        let mut conf = std::fs::read_to_string(tree.vz_conf()).expect("read vz.conf");
        conf.push_str(&format!("LXCFS_MOUNT={}\n{extra}", dir.display()));
        std::fs::write(tree.vz_conf(), conf).expect("write vz.conf");
        TreeLxcfs { dir, pid_file: tree.path().join("lock/lxcfs.pid") }
    }

    /// The pid of the tree's running lxcfs, if any.
    pub fn pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(&self.pid_file).ok()?.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        (cmdline.starts_with("lxcfs ") && cmdline.contains(&*self.dir.to_string_lossy()))
            .then_some(pid)
    }

    /// Kills the tree's lxcfs with `signal` (`-TERM`, `-KILL`) and waits until it is gone.
    pub fn kill(&self, signal: &str) {
        let Some(pid) = self.pid() else { return };
        let _ = std::process::Command::new("kill").args([signal, &pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TreeLxcfs {
    fn drop(&mut self) {
        self.kill("-TERM");
        self.kill("-KILL");
        unmount_under(&self.dir);
    }
}
