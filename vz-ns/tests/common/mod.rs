//! Fixtures of the vz-ns kernel tests: a busybox root on its own tmpfs, a running VE in a
//! cgroup of the test's own (the kit's [`TestCgroup`]), and guards that remove all of it also
//! when a test fails.
#![allow(dead_code, reason = "each test binary uses a part of the kit")]
#![allow(unreachable_pub, reason = "a module of test binaries")]
#![allow(clippy::print_stderr, reason = "guards report failed cleanups")]

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::unix::fs::PermissionsExt;

use vz_ns::{CapSet, EnterSpec, IdMap, InitSpec, SeccompPolicy, TtyMode, default_device_rules};
use vz_tests::{Need, TestCgroup};

/// What a test of a VE in its own user namespace on an idmapped ext4 root needs.
pub const IDMAPPED_VE_NEEDS: [Need; 5] = [
    Need::Root,
    Need::CgroupController("pids"),
    Need::Loop,
    Need::Program("/bin/busybox"),
    Need::Program("/sbin/mkfs.ext4"),
];

/// The environment given to init and entered programs in the tests.
pub fn test_env() -> Vec<(String, String)> {
    vec![
        ("PATH".to_owned(), "/bin:/sbin".to_owned()),
        ("HOME".to_owned(), "/".to_owned()),
        ("VZ_TEST_MARK".to_owned(), "clean-env".to_owned()),
    ]
}

/// A busybox root: a tmpfs mounted on a tempdir (so the VE's root is one mount of its own,
/// as a loop-mounted private area is), with /bin/busybox and its applet links.
#[derive(Debug)]
pub struct BusyboxRoot {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl BusyboxRoot {
    pub fn new() -> anyhow::Result<Self> {
        become_subreaper()?;
        let dir = tempfile::Builder::new().prefix("vz-test-ns-").tempdir()?;
        let root = dir.path().join("root");
        std::fs::create_dir(&root)?;
        nix::mount::mount(Some("tmpfs"), &root, Some("tmpfs"), MsFlags::empty(), Some("size=16m"))
            .with_context(|| format!("mount tmpfs on {}", root.display()))?;
        let this = BusyboxRoot { dir, root };
        this.fill()?;
        Ok(this)
    }

    /// A busybox root on an ext4 image on a loop device, mounted `nosuid,nodev` as vz mounts
    /// a private area (tmpfs cannot be idmapped before Linux 6.3: the kernel lab has 6.1).
    pub fn new_ext4() -> anyhow::Result<Self> {
        become_subreaper()?;
        let dir = tempfile::Builder::new().prefix("vz-test-ns-").tempdir()?;
        let root = dir.path().join("root");
        std::fs::create_dir(&root)?;
        let image = dir.path().join("root.img");
        std::fs::File::create(&image)?.set_len(64 << 20)?;
        run("mkfs.ext4", &["-q", "-F", &image.to_string_lossy()])?;
        run(
            "mount",
            &["-o", "loop,nosuid,nodev", &image.to_string_lossy(), &root.to_string_lossy()],
        )?;
        let this = BusyboxRoot { dir, root };
        this.fill()?;
        Ok(this)
    }

    fn fill(&self) -> anyhow::Result<()> {
        for d in ["bin", "sbin", "etc", "tmp", "proc", "sys", "dev", "root"] {
            std::fs::create_dir(self.root.join(d))?;
        }
        std::fs::copy("/bin/busybox", self.root.join("bin/busybox"))?;
        let list = std::process::Command::new("/bin/busybox").arg("--list").output()?;
        for applet in String::from_utf8(list.stdout)?.lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", self.root.join("bin").join(applet))?;
            }
        }
        std::fs::write(
            self.root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
        )?;
        std::fs::write(self.root.join("etc/group"), "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")?;
        std::fs::set_permissions(self.root.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.root
    }
}

impl Drop for BusyboxRoot {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.root, MntFlags::MNT_DETACH) {
            eprintln!("cleanup: umount {}: {e}", self.root.display());
        }
        let _ = &self.dir; // removed by TempDir's own drop
    }
}

/// Makes the test process the reaper of its VEs' inits (orphaned when the child that forked
/// them exits), so [`TestVe`]'s drop reaps the killed init itself: left to this host's PID 1
/// a zombie init can keep the test's v1 cgroups busy past their removal.
fn become_subreaper() -> anyhow::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).context("PR_SET_CHILD_SUBREAPER")
}

/// Runs a host tool, failing with its stderr.
fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(program).args(args).output()?;
    if !out.status.success() {
        bail!("{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The init of the tests' VEs: busybox sh waiting in `sleep 1000`.
pub const SLEEPING_INIT: [&str; 4] = ["/bin/busybox", "sh", "-c", "sleep 1000; echo never"];

/// A spec for a test VE at `root` running `argv`: the test environment, OpenVZ's default
/// capabilities and device allowlist, no hostname and no limits. Tests change fields from here.
pub fn init_spec(root: &Path, cgroup_procs: Vec<PathBuf>, argv: &[&str]) -> InitSpec {
    InitSpec {
        root: root.to_owned(),
        hostname: None,
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        env: test_env(),
        cgroup_procs,
        caps: CapSet::openvz_default(),
        devices: default_device_rules(),
        pty_max: None,
        rlimits: Vec::new(),
        quota_device: None,
        quotactl_server: None,
        id_map: None,
        seccomp: SeccompPolicy::default(),
        run_tmpfs: false,
        proc_view: None,
        console: false,
    }
}

/// A running VE for the tests: init is `sleep 1000` under busybox sh. Field order is drop
/// order: the init is killed (by the cgroup guard) before the root is unmounted.
#[derive(Debug)]
pub struct TestVe {
    pub init_pid: i32,
    pub caps: CapSet,
    /// Every `cgroup.procs` file of the VE (entered processes join them all).
    pub cgroup_procs: Vec<PathBuf>,
    pub cgroup: TestCgroup,
    pub root: BusyboxRoot,
}

impl TestVe {
    pub fn start(hostname: &str) -> anyhow::Result<Self> {
        Self::start_with(hostname, TestCgroup::new("pids", "ns")?, Vec::new())
    }

    /// Starts a VE whose init joins `cgroup` and the extra `cgroup.procs` files.
    pub fn start_with(
        hostname: &str,
        cgroup: TestCgroup,
        extra: Vec<PathBuf>,
    ) -> anyhow::Result<Self> {
        Self::start_on(BusyboxRoot::new()?, hostname, cgroup, extra, None, |_| {})
    }

    /// Starts an unprivileged VE: its own user namespace with `map`, on an ext4 root.
    pub fn start_userns(hostname: &str, map: IdMap) -> anyhow::Result<Self> {
        Self::start_userns_with(hostname, map, |_| {})
    }

    /// As [`TestVe::start_userns`], with the spec changed by `customize` first.
    pub fn start_userns_with(
        hostname: &str,
        map: IdMap,
        customize: impl FnOnce(&mut InitSpec),
    ) -> anyhow::Result<Self> {
        let cgroup = TestCgroup::new("pids", "ns")?;
        let root = BusyboxRoot::new_ext4()?;
        Self::start_on(root, hostname, cgroup, Vec::new(), Some(map), customize)
    }

    fn start_on(
        root: BusyboxRoot,
        hostname: &str,
        cgroup: TestCgroup,
        extra: Vec<PathBuf>,
        id_map: Option<IdMap>,
        customize: impl FnOnce(&mut InitSpec),
    ) -> anyhow::Result<Self> {
        let mut cgroup_procs = vec![cgroup.procs()];
        cgroup_procs.extend(extra);
        let caps = if id_map.is_some() {
            CapSet::user_namespace_default()
        } else {
            CapSet::openvz_default()
        };
        let mut spec = InitSpec {
            hostname: Some(hostname.to_owned()),
            id_map,
            caps,
            ..init_spec(root.path(), cgroup_procs.clone(), &SLEEPING_INIT)
        };
        customize(&mut spec);
        let pending = vz_ns::spawn_init(&spec)?;
        let handle = pending.release()?;
        Ok(TestVe { init_pid: handle.pid, caps: spec.caps, cgroup_procs, cgroup, root })
    }

    pub fn enter_spec(&self, argv: &[&str]) -> EnterSpec {
        EnterSpec {
            init_pid: self.init_pid,
            cgroup_procs: self.cgroup_procs.clone(),
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            env: test_env(),
            caps: self.caps,
            tty: TtyMode::Inherit,
            rlimits: Vec::new(),
            quotactl_server: None,
            seccomp: SeccompPolicy::default(),
        }
    }

    /// Runs `script` with `sh -c` in the VE, its output captured in a file of the VE. A script
    /// that hangs (say, blocked on a device) is killed after a minute, so the test fails and
    /// its guards still clean up, instead of the runner killing the whole test process.
    pub fn sh(&self, script: &str) -> anyhow::Result<(i32, String)> {
        let out = self.root.path().join("root/.vz-test-out");
        let _ = std::fs::remove_file(&out);
        let wrapped = format!("exec >/root/.vz-test-out 2>&1; {script}");
        let argv = ["timeout", "-s", "KILL", "60", "sh", "-c", &wrapped];
        let code = vz_ns::enter(&self.enter_spec(&argv))?;
        let text =
            std::fs::read_to_string(&out).with_context(|| format!("read {}", out.display()))?;
        Ok((code, text))
    }

    /// Like [`TestVe::sh`], but fails unless the script exits 0.
    pub fn sh_ok(&self, script: &str) -> anyhow::Result<String> {
        let (code, text) = self.sh(script)?;
        if code != 0 {
            bail!("`{script}` exited {code}: {text}");
        }
        Ok(text)
    }
}

impl Drop for TestVe {
    fn drop(&mut self) {
        let init = Pid::from_raw(self.init_pid);
        let _ = kill(init, Signal::SIGKILL);
        // Ours to reap (see `become_subreaper`); ECHILD at once if it is not.
        let _ = nix::sys::wait::waitpid(init, None);
    }
}
