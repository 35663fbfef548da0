//! A temporary vz tree for black-box tests of the binaries: its own vz.conf (found through
//! `VZ_CONFIG`), config, lock, run, dump, template, private and root directories, a cgroup
//! parent of its own, and a network namespace of its own that plays the host's network: the
//! binaries run in it, so a VE's host-side devices, routes and proxy entries never reach the
//! machine's real network. It has only `lo`, forwarding on, and the test address ranges
//! routed to `unreachable`, so no test packet can leave. Dropping the tree stops every VE
//! made in it and removes every mount, cgroup, process, namespace and file it left, also
//! when the test failed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::names::unique_name;

/// A temporary vz installation.
#[derive(Debug)]
pub struct VzTree {
    dir: tempfile::TempDir,
    cgroup_parent: String,
    netns: String,
}

/// Address ranges of the tests (RFC 5737 and RFC 3849 documentation ranges).
pub const TEST_RANGES: [&str; 4] =
    ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"];

impl VzTree {
    /// Makes the tree, with the shipped sample configs and the extra vz.conf lines given.
    ///
    /// # Panics
    /// When the tree cannot be made (a test setup failure).
    pub fn new(extra_conf: &str) -> VzTree {
        let dir = tempfile::Builder::new().prefix("vz-test-").tempdir().expect("make a temp dir");
        let cgroup_parent = unique_name("cg");
        let root = dir.path();
        for sub in ["conf", "names", "lock", "run", "dump", "template/cache", "private", "root"] {
            std::fs::create_dir_all(root.join(sub)).expect("make tree dirs");
        }
        let samples = workspace().join("vz-ctl/etc/conf");
        for entry in std::fs::read_dir(&samples).expect("read vz-ctl/etc/conf").flatten() {
            std::fs::copy(entry.path(), root.join("conf").join(entry.file_name()))
                .expect("copy sample");
        }
        let conf = format!(
            "# vz.conf of a test tree\n\
             LOCKDIR={r}/lock\nDUMPDIR={r}/dump\nTEMPLATE={r}/template\n\
             VE_ROOT={r}/root/$VEID\nVE_PRIVATE={r}/private/$VEID\n\
             VE_CONF_DIR={r}/conf\nVZ_NAMES_DIR={r}/names\nVZ_RUN_DIR={r}/run\n\
             VE_CGROUP_PARENT={cgroup_parent}\nDEF_OSTEMPLATE=busybox\nCONFIGFILE=\"vswap-256m\"\n\
             VE_LAYOUT=ploop\nLOGGING=yes\nLOGFILE={r}/vzctl.log\nSTOP_TIMEOUT=20\n{extra_conf}\n",
            r = root.display()
        );
        std::fs::write(root.join("vz.conf"), conf).expect("write vz.conf");
        let netns = unique_name("net");
        let tree = VzTree { dir, cgroup_parent, netns };
        tree.make_netns();
        tree
    }

    /// Makes the tree's network namespace: `lo` up with a host address of each family,
    /// forwarding on (VE to VE traffic passes the host side), the test ranges unreachable.
    fn make_netns(&self) {
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("run ip");
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        ip(&["netns", "add", &self.netns]);
        ip(&["-n", &self.netns, "link", "set", "lo", "up"]);
        // The host's own addresses (a real host has its LAN address): replies go there.
        for (address, family) in [("203.0.113.1/32", "-4"), ("2001:db8:ffff::1/128", "-6")] {
            ip(&["-n", &self.netns, family, "addr", "add", address, "dev", "lo"]);
        }
        for range in TEST_RANGES {
            ip(&["-n", &self.netns, "route", "add", "unreachable", range]);
        }
        for sysctl in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            let out = self.in_netns("sysctl").args(["-qw", sysctl]).output().expect("run sysctl");
            assert!(
                out.status.success(),
                "sysctl {sysctl}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// A command run in the tree's network namespace (and nothing else: `nsenter --net`, so
    /// mounts are shared with the test, unlike `ip netns exec`).
    pub fn in_netns(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.netns)).arg("--").arg(program);
        cmd
    }

    /// The name of the tree's network namespace (under /run/netns).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The tree's top directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Compiles the C program `source` into a static binary `<tree>/<name>` (gcc, `-O2
    /// -static -pthread`: it runs in any VE) and returns its path.
    ///
    /// # Panics
    /// When gcc fails.
    pub fn compile_c(&self, name: &str, source: &str) -> PathBuf {
        let src = self.path().join(format!("{name}.c"));
        let bin = self.path().join(name);
        std::fs::write(&src, source).expect("write the C source");
        let built = Command::new("gcc")
            .args(["-O2", "-static", "-pthread", "-o"])
            .arg(&bin)
            .arg(&src)
            .output()
            .expect("run gcc");
        crate::ok(built);
        bin
    }

    /// Pids of this tree's vz helper processes `vzctl <command> <ctid> …` (`__quotactl-server`:
    /// they inherit vzctl's `VZ_CONFIG`, which tells this tree's apart).
    pub fn helper_pids(&self, command: &str, ctid: &str) -> Vec<i32> {
        self.pids_running(&format!("{command}\0{ctid}\0"))
    }

    /// Pids of this tree's console server (`vzctl __consoled`, one for all its running VEs;
    /// none while no VE runs).
    pub fn console_server_pids(&self) -> Vec<i32> {
        self.pids_running("__consoled\0")
    }

    /// Pids of the processes whose command line contains `command` and whose `VZ_CONFIG` is
    /// this tree's.
    fn pids_running(&self, command: &str) -> Vec<i32> {
        let config = format!("VZ_CONFIG={}\0", self.vz_conf().display());
        let has = |pid: i32, file: &str, text: &str| {
            std::fs::read(format!("/proc/{pid}/{file}"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(text))
        };
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| has(pid, "cmdline", command) && has(pid, "environ", &config))
            .collect()
    }

    /// The path of the tree's vz.conf.
    pub fn vz_conf(&self) -> PathBuf {
        self.path().join("vz.conf")
    }

    /// The cgroup parent of the tree's VEs.
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// The host pid of the running VE `ctid`'s init: the process of its cgroup (the pids
    /// controller's on v1) that is pid 1 of its own pid namespace.
    ///
    /// # Panics
    /// When the VE has no cgroup or no init.
    pub fn init_pid(&self, ctid: &str) -> String {
        let base = if crate::is_cgroup_v2() {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            crate::cgroup_v1_mount("pids").expect("a v1 pids hierarchy")
        };
        let procs = base.join(format!("{}/{ctid}/cgroup.procs", self.cgroup_parent));
        let text = std::fs::read_to_string(&procs)
            .unwrap_or_else(|e| panic!("read {}: {e}", procs.display()));
        text.lines()
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .is_ok_and(|s| s.lines().any(|l| l.starts_with("NSpid:") && l.ends_with("\t1")))
            })
            .expect("the VE's init")
            .to_owned()
    }

    /// A command running the vz binary `name` against this tree, in its network namespace.
    pub fn cmd(&self, name: &str) -> Command {
        let mut cmd = self.in_netns(bin_dir().join(name));
        cmd.env("VZ_CONFIG", self.vz_conf());
        cmd
    }

    /// Runs `name args…` against the tree and returns its output.
    ///
    /// # Panics
    /// When the binary cannot be run at all.
    pub fn run(&self, name: &str, args: &[&str]) -> Output {
        self.cmd(name).args(args).output().unwrap_or_else(|e| panic!("run {name}: {e}"))
    }

    /// Builds the busybox template cache into the tree (`vzpkg create cache busybox`).
    ///
    /// # Panics
    /// When vzpkg fails.
    pub fn build_busybox_cache(&self) {
        let out = self.run("vzpkg", &["create", "cache", "busybox"]);
        assert!(out.status.success(), "vzpkg failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A busybox VE of a fresh CTID, created and started (`--wait`); its CTID.
    ///
    /// # Panics
    /// When a step fails.
    pub fn running_busybox_ve(&self) -> String {
        self.build_busybox_cache();
        let ctid = crate::unique_ctid().to_string();
        crate::ok(self.run("vzctl", &["create", &ctid, "--ostemplate", "busybox"]));
        crate::ok(self.run("vzctl", &["start", &ctid, "--wait"]));
        ctid
    }

    /// A file of VE `ctid`'s cgroup: `<controller>/<parent>/<ctid>/<v1>` on cgroup v1, the
    /// file `v2` of its one directory on v2.
    pub fn cgroup_file(&self, ctid: &str, controller: &str, v1: &str, v2: &str) -> PathBuf {
        let parent = &self.cgroup_parent;
        if crate::is_cgroup_v2() {
            PathBuf::from(format!("/sys/fs/cgroup/{parent}/{ctid}/{v2}"))
        } else {
            PathBuf::from(format!("/sys/fs/cgroup/{controller}/{parent}/{ctid}/{v1}"))
        }
    }

    /// The text of VE `ctid`'s CTID.conf.
    ///
    /// # Panics
    /// When it cannot be read.
    pub fn ve_conf(&self, ctid: &str) -> String {
        std::fs::read_to_string(self.path().join(format!("conf/{ctid}.conf")))
            .expect("read the CT config")
    }

    fn cleanup(&self) {
        let conf_dir = self.path().join("conf");
        for entry in std::fs::read_dir(&conf_dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".conf").filter(|id| id.parse::<u32>().is_ok()) {
                let _ = self.cmd("vzctl").args(["--quiet", "stop", id, "--fast"]).output();
            }
        }
        kill_and_remove_cgroups(&self.cgroup_parent);
        unmount_under(self.path());
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).output();
    }
}

impl Drop for VzTree {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The directory holding the built vz binaries: `VZ_BIN_DIR`, else the cargo target dir.
///
/// # Panics
/// With instructions when the binaries are not built.
pub fn bin_dir() -> PathBuf {
    let dir = std::env::var_os("VZ_BIN_DIR").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"))
            .join("debug")
    });
    assert!(
        dir.join("vzctl").exists(),
        "vz binaries not found in {}: run `cargo build --workspace --bins` or `cargo xtask test` \
         (which sets VZ_BIN_DIR)",
        dir.display()
    );
    dir
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Kills the processes in `<hierarchy>/<parent>` of every cgroup hierarchy (by pid) and
/// removes the cgroups, deepest first, retrying while exited tasks are reaped.
pub fn kill_and_remove_cgroups(parent: &str) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 3 || !fields[2].starts_with("cgroup") {
            continue;
        }
        crate::cgroup::remove_tree(&Path::new(fields[1]).join(parent));
    }
}

/// Lazily unmounts every mount at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        let _ = Command::new("umount").arg("-l").arg(&point).status();
    }
}
