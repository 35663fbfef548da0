//! A cgroup of a test's own: made under a `vz-test-*` name on whichever hierarchy the host
//! runs (a v1 hierarchy per controller, or the cgroup2 tree with controllers enabled in the
//! parent), detected at run time; processes are moved in and counted; on drop every process
//! left in it (or in a sub-cgroup) is killed by pid, and the cgroups are removed deepest
//! first, retrying while exited tasks are still being reaped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::names::unique_name;

/// Where cgroup2 is mounted on a pure v2 host.
const V2_ROOT: &str = "/sys/fs/cgroup";

/// How long a drop waits for killed processes to leave, then for `rmdir` to succeed: an
/// orphaned zombie keeps a v1 cgroup busy until PID 1 reaps it, which can take seconds.
const KILL_WAIT: Duration = Duration::from_secs(10);
const RMDIR_WAIT: Duration = Duration::from_secs(60);

/// Whether the host runs pure cgroup v2 (cgroup2 mounted at `/sys/fs/cgroup`).
pub fn is_cgroup_v2() -> bool {
    Path::new(V2_ROOT).join("cgroup.controllers").exists()
}

/// The mount point of the v1 hierarchy that carries `controller` (`"cpu"`, `"pids"`…, found
/// in `/proc/self/mounts`, so co-mounted hierarchies such as `cpu,cpuacct` are found too).
pub fn cgroup_v1_mount(controller: &str) -> Option<PathBuf> {
    mounts().into_iter().find_map(|(fstype, point, opts)| {
        (fstype == "cgroup" && opts.split(',').any(|o| o == controller))
            .then(|| PathBuf::from(point))
    })
}

/// Where cgroup2 is mounted: `/sys/fs/cgroup` on a pure v2 host, e.g.
/// `/sys/fs/cgroup/unified` on a hybrid one.
fn cgroup2_mount() -> Option<PathBuf> {
    mounts().into_iter().find_map(|(fstype, point, _)| (fstype == "cgroup2").then(|| point.into()))
}

/// `(fstype, mount point, options)` of every mount of this process.
fn mounts() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(((*f.get(2)?).to_owned(), (*f.get(1)?).to_owned(), (*f.get(3)?).to_owned()))
        })
        .collect()
}

/// A cgroup made for one test; see the module documentation. Sub-cgroups made with
/// [`TestCgroup::child`] (or by the code under test) are removed with it.
#[derive(Debug)]
pub struct TestCgroup {
    dir: PathBuf,
}

/// Makes the cgroup `dir` as vz does: a new v1 cpuset cgroup gets its parent's sets
/// (`vz_cgroup::tree::make_path`), since empty ones refuse tasks.
fn make_dir(dir: &Path) -> anyhow::Result<()> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        bail!("{} is not a cgroup below another", dir.display());
    };
    if dir.exists() {
        bail!("{} exists already", dir.display());
    }
    let cpuset = !is_cgroup_v2() && parent.join("cpuset.cpus").exists();
    vz_cgroup::tree::make_path(parent, Path::new(name), cpuset)?;
    Ok(())
}

impl TestCgroup {
    /// A fresh cgroup `vz-test-…-<tag>` on the hierarchy of `controller`: on v1 in the
    /// hierarchy mounted with it, on v2 below the root with `controller` enabled there.
    ///
    /// # Errors
    /// When the controller is not available, or the directory cannot be made.
    pub fn new(controller: &str, tag: &str) -> anyhow::Result<TestCgroup> {
        let base = if is_cgroup_v2() {
            enable(Path::new(V2_ROOT), &[controller])?;
            PathBuf::from(V2_ROOT)
        } else {
            cgroup_v1_mount(controller).with_context(|| {
                format!("no cgroup v1 hierarchy has the controller {controller}")
            })?
        };
        Self::make(base.join(unique_name(tag)))
    }

    /// A fresh cgroup on a pure v2 host with `controllers` enabled in the root and in its own
    /// `cgroup.subtree_control`, so that its children (made with [`TestCgroup::child`]) get
    /// them. Processes belong in a child: v2 has no processes in a cgroup that delegates.
    ///
    /// # Errors
    /// On a host that is not pure cgroup v2, when a controller is not available, or when the
    /// directory cannot be made.
    pub fn v2_with(controllers: &[&str], tag: &str) -> anyhow::Result<TestCgroup> {
        if !is_cgroup_v2() {
            bail!("a v2 cgroup with {controllers:?} needs a pure cgroup v2 host");
        }
        enable(Path::new(V2_ROOT), controllers)?;
        let cgroup = Self::make(Path::new(V2_ROOT).join(unique_name(tag)))?;
        enable(cgroup.dir(), controllers)?;
        Ok(cgroup)
    }

    /// A fresh cgroup in the cgroup2 tree wherever it is mounted (`/sys/fs/cgroup` on a pure
    /// v2 host, `/sys/fs/cgroup/unified` on a hybrid one), with no controller enabled.
    ///
    /// # Errors
    /// When cgroup2 is not mounted, or the directory cannot be made.
    pub fn on_cgroup2(tag: &str) -> anyhow::Result<TestCgroup> {
        let base = cgroup2_mount().context("no cgroup2 mount on this host")?;
        Self::make(base.join(unique_name(tag)))
    }

    fn make(dir: PathBuf) -> anyhow::Result<TestCgroup> {
        make_dir(&dir)?;
        Ok(TestCgroup { dir })
    }

    /// Makes the sub-cgroup `name` and returns its directory; it is removed with this cgroup.
    ///
    /// # Errors
    /// When the directory cannot be made.
    pub fn child(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.dir.join(name);
        make_dir(&dir)?;
        Ok(dir)
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its `cgroup.procs` file.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// The pids in the cgroup and its sub-cgroups now, sorted.
    pub fn pids(&self) -> Vec<u32> {
        pids_below(&self.dir)
    }

    /// Moves the process `pid` into the cgroup.
    ///
    /// # Errors
    /// When the kernel refuses the move; the error names the pid and the file.
    pub fn add(&self, pid: u32) -> anyhow::Result<()> {
        let procs = self.procs();
        std::fs::write(&procs, pid.to_string())
            .with_context(|| format!("write pid {pid} to {}", procs.display()))
    }

    /// Waits up to `timeout` for the cgroup and its sub-cgroups to have no process; whether
    /// they became empty.
    pub fn wait_empty(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.pids().is_empty() {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills every process in the cgroup and its sub-cgroups with SIGKILL, by pid (only
    /// processes the test started are in a cgroup of its own), until none is left or
    /// `timeout` passes; whether they are gone. The calling process itself is never killed.
    pub fn kill_all(&self, timeout: Duration) -> bool {
        kill_all_in(&self.dir, timeout)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        remove_tree(&self.dir);
    }
}

/// Kills what is left in `top` and its sub-cgroups, then removes them deepest first,
/// retrying while busy for [`RMDIR_WAIT`]. Never panics; a leak is reported on stderr.
pub(crate) fn remove_tree(top: &Path) {
    if !top.exists() {
        return;
    }
    if !kill_all_in(top, KILL_WAIT) {
        eprintln!("cleanup: processes left in {}", top.display());
    }
    if let Err(e) = vz_cgroup::tree::remove(&[top.to_owned()], RMDIR_WAIT) {
        eprintln!("cleanup: leaked cgroup: {e}: {:?}", std::error::Error::source(&e));
    }
}

fn kill_all_in(top: &Path, timeout: Duration) -> bool {
    let me = std::process::id();
    let start = Instant::now();
    loop {
        let pids: Vec<String> = pids_below(top)
            .into_iter()
            .filter(|pid| *pid != me)
            .map(|pid| pid.to_string())
            .collect();
        if pids.is_empty() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        // A pid that exited meanwhile makes kill complain: that is expected, hence null.
        let _ = Command::new("kill")
            .arg("-9")
            .args(&pids)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pids in `dir`'s cgroup and its sub-cgroups, sorted (none when it is gone).
fn pids_below(dir: &Path) -> Vec<u32> {
    let pids = vz_cgroup::tree::tasks(dir).unwrap_or_default();
    pids.into_iter().filter_map(|p| u32::try_from(p).ok()).collect()
}

/// Enables `controllers` in `dir`'s `cgroup.subtree_control` (those not enabled yet).
fn enable(dir: &Path, controllers: &[&str]) -> anyhow::Result<()> {
    let available = std::fs::read_to_string(dir.join("cgroup.controllers"))
        .with_context(|| format!("read {}", dir.join("cgroup.controllers").display()))?;
    let control = dir.join("cgroup.subtree_control");
    let enabled =
        std::fs::read_to_string(&control).with_context(|| format!("read {}", control.display()))?;
    for c in controllers {
        if !available.split_whitespace().any(|a| a == *c) {
            bail!("the cgroup controller {c} is not available in {}", dir.display());
        }
        if !enabled.split_whitespace().any(|e| e == *c) {
            std::fs::write(&control, format!("+{c}"))
                .with_context(|| format!("write +{c} to {}", control.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Need;

    /// A `sleep` child of this process; killed and reaped on drop if still running.
    struct Sleep(std::process::Child);

    impl Sleep {
        fn start() -> Sleep {
            Sleep(Command::new("sleep").arg("1000").spawn().expect("spawn sleep"))
        }
    }

    impl Drop for Sleep {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_cgroup_holds_its_processes_and_is_removed_with_them() {
        crate::require!(Need::Root, Need::CgroupController("pids"));
        let cgroup = TestCgroup::new("pids", "kit").expect("make the cgroup");
        let dir = cgroup.dir().to_path_buf();
        assert!(dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vz-test-")));
        assert!(cgroup.pids().is_empty());
        let mut sleep = Sleep::start();
        cgroup.add(sleep.0.id()).expect("move the sleep in");
        assert_eq!(cgroup.pids(), [sleep.0.id()]);
        assert!(!cgroup.wait_empty(Duration::from_millis(100)), "the sleep is still there");
        // A process in a sub-cgroup counts, and the sub-cgroup goes with its parent.
        let inner = cgroup.child("inner").expect("make a child");
        std::fs::write(inner.join("cgroup.procs"), sleep.0.id().to_string()).expect("move");
        assert_eq!(cgroup.pids(), [sleep.0.id()]);
        drop(cgroup);
        let start = Instant::now();
        let status = loop {
            if let Some(status) = sleep.0.try_wait().expect("poll") {
                break status;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "drop did not kill the sleep");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(!status.success(), "killed: {status:?}");
        assert!(!dir.exists(), "{} removed", dir.display());
    }

    #[test]
    fn kill_all_empties_the_cgroup_and_spares_others() {
        crate::require!(Need::Root, Need::CgroupController("pids"));
        let cgroup = TestCgroup::new("pids", "kit-kill").expect("make the cgroup");
        let inside = Sleep::start();
        let mut outside = Sleep::start();
        cgroup.add(inside.0.id()).expect("move in");
        let reaper = std::thread::spawn(move || {
            let mut inside = inside;
            inside.0.wait().expect("reap")
        });
        assert!(cgroup.kill_all(Duration::from_secs(5)));
        assert!(!reaper.join().expect("reaper").success());
        assert!(cgroup.wait_empty(Duration::from_secs(5)));
        assert!(outside.0.try_wait().expect("poll").is_none(), "a process outside lives on");
    }

    #[test]
    fn moving_a_missing_pid_names_it() {
        crate::require!(Need::Root, Need::CgroupController("pids"));
        let cgroup = TestCgroup::new("pids", "kit-bad").expect("make the cgroup");
        let err = cgroup.add(u32::MAX).expect_err("no such process");
        let text = format!("{err:#}");
        assert!(text.contains(&u32::MAX.to_string()) && text.contains("cgroup.procs"), "{text}");
    }

    #[test]
    fn v2_with_enables_controllers_for_the_children_or_says_it_needs_v2() {
        crate::require!(Need::Root);
        if !is_cgroup_v2() {
            let err = TestCgroup::v2_with(&["pids"], "kit-v2").expect_err("not a v2 host");
            assert!(err.to_string().contains("cgroup v2"), "{err}");
            return;
        }
        let cgroup = TestCgroup::v2_with(&["pids"], "kit-v2").expect("make the cgroup");
        let child = cgroup.child("ve").expect("make a child");
        let controllers = std::fs::read_to_string(child.join("cgroup.controllers")).expect("read");
        assert!(controllers.split_whitespace().any(|c| c == "pids"), "{controllers}");
    }

    #[test]
    fn an_unknown_controller_is_named() {
        crate::require!(Need::Root);
        let err = TestCgroup::new("vz-no-such-controller", "kit").expect_err("no such controller");
        assert!(err.to_string().contains("vz-no-such-controller"), "{err}");
    }

    #[test]
    fn a_cgroup2_mount_is_found_on_hybrid_and_pure_hosts() {
        crate::require!(Need::Root);
        let cgroup = TestCgroup::on_cgroup2("kit-2").expect("make the cgroup");
        assert!(cgroup.procs().exists(), "{}", cgroup.dir().display());
    }
}
