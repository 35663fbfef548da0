//! Fixtures of the vz-cpt kernel tests: a VE-like process tree (vz-ns's init in new pid,
//! mount, uts, ipc, net and cgroup namespaces on a busybox root, in a freezer cgroup of the
//! test's own) running a counter, optionally a TCP server reached over a veth from a network
//! namespace the test made, and guards that remove all of it also when a test fails.
#![allow(dead_code, reason = "each test binary uses a part of the kit")]
#![allow(unreachable_pub, reason = "a module of test binaries")]
#![allow(clippy::print_stderr, reason = "guards report failed cleanups, tests report times")]

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use vz_cpt::{CriuOptions, DumpSpec, ExternalVeth, Freezer, HookEvent, RestoreSpec, RestoreStage};
use vz_tests::TestCgroup;

/// The VE's address and the test network namespace's client address (both only in
/// namespaces the test made).
pub const VE_IP: &str = "10.239.0.2";
pub const CLIENT_IP: &str = "10.239.255.1";
/// The host end's name, in the test network namespace.
pub const HOST_IF: &str = "vzcpt0";
/// The TCP port of the VE's server.
pub const PORT: u16 = 7000;

const INIT_SH: &str = r#"
mkdir -p /data
sleep 100000 &
echo $! > /data/sleeper
if [ "$1" = hog ]; then dd if=/dev/zero bs=256M count=1 2>/dev/null | sleep 100000 & fi
if [ "$1" = net ]; then nc -ll -p 7000 -e /srv.sh & fi
if [ "$1" = ghost ]; then dd if=/dev/zero of=/tmp/big bs=1M count=2 2>/dev/null; exec 4</tmp/big; rm /tmp/big; fi
exec 3>>/data/log
i=0
while true; do i=$((i+1)); echo $i >&3; usleep 50000; done
"#;

const SRV_SH: &str = "#!/bin/sh\nn=0\nwhile read l; do n=$((n+1)); echo \"$n $l\"; done\n";

/// What the test VE runs besides its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Only the counter and a sleeper.
    Plain,
    /// Also a TCP server on [`PORT`], with a veth to a test network namespace.
    Net,
    /// Also 256 MiB of touched anonymous memory (dd's buffer, held blocked on a pipe).
    Hog,
    /// Init holds a deleted 2 MiB file open (fd 4).
    Ghost,
}

/// The cgroup need of a test that freezes: the v1 freezer hierarchy, or on cgroup v2 the
/// `pids` controller the test cgroup is made with (`cgroup.freeze` is in every v2 cgroup).
pub fn freezer_need() -> vz_tests::Need {
    if vz_tests::is_cgroup_v2() {
        vz_tests::Need::CgroupController("pids")
    } else {
        vz_tests::Need::CgroupController("freezer")
    }
}

/// A network namespace made for one test (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct TestNetns {
    pub name: String,
}

impl TestNetns {
    pub fn new() -> anyhow::Result<Self> {
        let name = vz_tests::unique_name("cpt");
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let this = TestNetns { name };
        this.sh(&format!("ip link set lo up && ip addr add {CLIENT_IP}/32 dev lo"))?;
        Ok(this)
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs `script` with sh in the namespace (nsenter --net, never `ip netns exec`).
    pub fn sh(&self, script: &str) -> anyhow::Result<String> {
        let net = format!("--net={}", self.path().display());
        run(Command::new("nsenter").args([net.as_str(), "sh", "-c", script]))
    }

    /// Runs `f` on a thread that has joined this network namespace.
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        let file = std::fs::File::open(self.path())?;
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
                    .context("setns into the test netns")?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread in the test netns panicked"))?
        })
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("cleanup: ip netns del {}: {e}", self.name);
        }
    }
}

/// A VE-like tree for the tests. Field order is drop order: processes first (the init and
/// the cgroup's tasks), then the network namespace, then the root.
#[derive(Debug)]
pub struct TestVe {
    pub init_pid: i32,
    pub cgroup: TestCgroup,
    pub netns: Option<TestNetns>,
    pub root: tempfile::TempDir,
    pub dumps: tempfile::TempDir,
}

impl TestVe {
    /// Starts the VE: a busybox root in a fresh directory, init `sh /init.sh <load>` from
    /// vz-ns's `spawn_init`, in a freezer cgroup of its own; for [`Load::Net`] a veth whose
    /// host end is in a test network namespace, venet-style (same MAC both ends, NOARP).
    pub fn start(load: Load) -> anyhow::Result<Self> {
        let cgroup =
            TestCgroup::new(if vz_tests::is_cgroup_v2() { "pids" } else { "freezer" }, "cpt")?;
        let root = tempfile::Builder::new().prefix("vz-test-cpt-root-").tempdir()?;
        fill_root(root.path())?;
        let dumps = tempfile::Builder::new().prefix("vz-test-cpt-dump-").tempdir()?;
        let arg = match load {
            Load::Plain => "plain",
            Load::Net => "net",
            Load::Hog => "hog",
            Load::Ghost => "ghost",
        };
        let pending = spawn(root.path(), cgroup.procs(), arg)?;
        let mut ve = TestVe { init_pid: pending.pid(), cgroup, netns: None, root, dumps };
        if load == Load::Net {
            let netns = TestNetns::new()?;
            let pid = ve.init_pid;
            netns.sh(&format!("ip link add {HOST_IF} type veth peer name eth0 netns {pid}"))?;
            ve.in_net(&format!(
                "ip link set lo up && ip link set eth0 address 02:00:0a:ef:00:02 arp off up && \
                 ip addr add {VE_IP}/32 dev eth0 && ip route add default dev eth0"
            ))?;
            netns.sh(&host_end_script("02:00:0a:ef:00:02"))?;
            ve.netns = Some(netns);
        }
        pending.release()?;
        Ok(ve)
    }

    /// Runs `script` with the host's tools in the VE's network namespace.
    pub fn in_net(&self, script: &str) -> anyhow::Result<String> {
        let t = self.init_pid.to_string();
        run(Command::new("nsenter").args(["-t", t.as_str(), "-n", "sh", "-c", script]))
    }

    pub fn freezer(&self) -> Freezer {
        if vz_tests::is_cgroup_v2() {
            Freezer::V2(self.cgroup.dir().to_owned())
        } else {
            Freezer::V1(self.cgroup.dir().to_owned())
        }
    }

    pub fn images(&self) -> PathBuf {
        self.dumps.path().join("Dump.test")
    }

    pub fn dump_spec(&self) -> DumpSpec {
        DumpSpec {
            init_pid: self.init_pid,
            images_dir: self.images(),
            cgroup_procs: vec![self.cgroup.procs()],
            freezer: None,
            host_interfaces: if self.netns.is_some() { vec![HOST_IF.to_owned()] } else { vec![] },
            external_mounts: vec![],
            // The /dev nodes vz-ns makes are binds of the host's.
            external: vec!["mnt[]".to_owned()],
            syscall_listener_outside: false,
            leave_running: false,
            options: CriuOptions::default(),
        }
    }

    pub fn restore_spec(&self) -> RestoreSpec {
        RestoreSpec {
            images_dir: self.images(),
            root: self.root.path().to_owned(),
            veths: if self.netns.is_some() {
                vec![ExternalVeth { inside: "eth0".into(), outside: HOST_IF.into(), bridge: None }]
            } else {
                vec![]
            },
            external_mounts: vec![],
            // The /dev nodes vz-ns makes are binds of the host's.
            external: vec!["mnt[]".to_owned()],
            cgroup_roots: vec![],
            cgroup_mode: vz_cpt::CgroupMode::Soft,
            pidfile: Some(self.dumps.path().join("restored.pid")),
            child_of_caller: false,
            inherit_fds: vec![],
            options: CriuOptions::default(),
        }
    }

    /// Restores the VE (in the test network namespace when it has one, configuring the host
    /// end at post-setup-namespaces as vz does) and takes the restored init as its own.
    pub fn restore(&mut self, spec: &RestoreSpec) -> anyhow::Result<vz_cpt::Restored> {
        let criu = vz_cpt::Criu::default();
        let restored = match &self.netns {
            Some(netns) => netns.within(|| {
                vz_cpt::restore(&criu, spec, &mut |e: &HookEvent| {
                    if e.stage != RestoreStage::PostSetupNamespaces {
                        return Ok(());
                    }
                    configure_host_end(e.init_pid).map_err(|e| format!("{e:#}"))
                })
            })??,
            None => vz_cpt::restore(&criu, spec, &mut |_| Ok(()))?,
        };
        self.init_pid = restored.init_pid;
        Ok(restored)
    }

    /// Dumps the VE (in the test network namespace when it has one, where its host end is).
    pub fn dump(&self, spec: &DumpSpec) -> vz_cpt::Result<vz_cpt::DumpReport> {
        let criu = vz_cpt::Criu::default();
        match &self.netns {
            Some(netns) => {
                netns.within(|| vz_cpt::dump(&criu, spec)).expect("a thread in the test netns")
            }
            None => vz_cpt::dump(&criu, spec),
        }
    }

    /// The counter's log: the numbers written so far.
    pub fn counts(&self) -> anyhow::Result<Vec<u64>> {
        let text = match std::fs::read_to_string(self.root.path().join("data/log")) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            other => other?,
        };
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Waits until the counter has reached `n`.
    pub fn wait_count(&self, n: u64) -> anyhow::Result<u64> {
        let start = Instant::now();
        loop {
            let last = self.counts()?.last().copied().unwrap_or(0);
            if last >= n {
                return Ok(last);
            }
            if start.elapsed() > Duration::from_secs(20) {
                bail!("the counter stopped at {last}, waited for {n}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Checks the counter's log runs 1, 2, 3 … without a gap or a restart.
    pub fn assert_no_gap(&self) -> anyhow::Result<()> {
        let counts = self.counts()?;
        for (i, c) in counts.iter().enumerate() {
            ensure!(*c == i as u64 + 1, "counter log breaks at line {}: {c}", i + 1);
        }
        Ok(())
    }

    /// `(pid inside, command line)` of the VE's long-lived tasks (every task of the cgroup
    /// but the counter's short-lived children), sorted.
    pub fn inner_pids(&self) -> Vec<(i32, String)> {
        let mut out: Vec<(i32, String)> = self
            .cgroup
            .pids()
            .into_iter()
            .filter_map(|p| {
                let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
                let inner = status.lines().find(|l| l.starts_with("NSpid:"))?;
                let inner: i32 = inner.split_whitespace().last()?.parse().ok()?;
                let cmd = std::fs::read(format!("/proc/{p}/cmdline")).ok()?;
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                // The counter's transient children: the usleep, or init's fork before exec.
                let transient =
                    cmd.contains("usleep") || (inner != 1 && cmd.starts_with("/bin/sh /init.sh"));
                (!transient && !cmd.is_empty()).then_some((inner, cmd))
            })
            .collect();
        out.sort();
        out
    }

    /// Whether the VE's init is alive (not a zombie).
    pub fn is_running(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.init_pid))
            .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| !r.starts_with('Z')))
    }
}

impl Drop for TestVe {
    fn drop(&mut self) {
        // A test that failed while the VE was suspended leaves it frozen: a frozen task
        // takes SIGKILL only once thawed, and its cgroup would stay behind.
        let _ = self.freezer().thaw();
        let _ = kill(Pid::from_raw(self.init_pid), Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(
            Pid::from_raw(self.init_pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
    }
}

/// The one use of vz-ns: its init, held until the network is set up.
fn spawn(root: &Path, procs: PathBuf, arg: &str) -> anyhow::Result<vz_ns::PendingInit> {
    let spec = vz_ns::InitSpec {
        root: root.to_owned(),
        hostname: Some("cpt-test".to_owned()),
        argv: vec!["/bin/sh".into(), "/init.sh".into(), arg.into()],
        env: vec![("PATH".into(), "/bin:/sbin".into()), ("HOME".into(), "/".into())],
        cgroup_procs: vec![procs],
        caps: vz_ns::CapSet::openvz_default(),
        devices: vz_ns::default_device_rules(),
        pty_max: None,
        rlimits: Vec::new(),
        quota_device: None,
        quotactl_server: None,
        id_map: None,
        seccomp: vz_ns::SeccompPolicy::default(),
        run_tmpfs: false,
        proc_view: None,
        console: false,
    };
    Ok(vz_ns::spawn_init(&spec)?)
}

fn fill_root(root: &Path) -> anyhow::Result<()> {
    for d in ["bin", "sbin", "etc", "tmp", "proc", "sys", "dev", "root", "data"] {
        std::fs::create_dir(root.join(d))?;
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))?;
    let list = Command::new("/bin/busybox").arg("--list").output()?;
    for applet in String::from_utf8(list.stdout)?.lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("init.sh"), INIT_SH)?;
    std::fs::write(root.join("srv.sh"), SRV_SH)?;
    run(Command::new("chmod").args(["755"]).arg(root.join("srv.sh")))?;
    Ok(())
}

fn host_end_script(mac: &str) -> String {
    format!(
        "ip link set {HOST_IF} address {mac} arp off up && \
         ip route replace {VE_IP}/32 dev {HOST_IF} scope link"
    )
}

/// vz's post-setup-namespaces step: the host end gets the inside end's MAC, NOARP, up, and
/// the route to the VE (run on the restoring thread, so in the test network namespace).
pub fn configure_host_end(init_pid: i32) -> anyhow::Result<()> {
    let t = init_pid.to_string();
    let link = run(Command::new("nsenter").args([
        "-t",
        t.as_str(),
        "-n",
        "ip",
        "-o",
        "link",
        "show",
        "eth0",
    ]))?;
    let mac = link
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .context("no MAC on the VE's eth0")?
        .to_owned();
    run(Command::new("sh").args(["-c", &host_end_script(&mac)]))?;
    Ok(())
}

/// Runs a command; its stdout, or an error with its stderr.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A TCP client in the test network namespace: one connection to the VE's server, a line
/// sent and its answer read per [`Client::ping`].
#[derive(Debug)]
pub struct Client {
    stream: std::io::BufReader<std::net::TcpStream>,
    pub sent: u64,
}

impl Client {
    pub fn connect(netns: &TestNetns) -> anyhow::Result<Self> {
        let addr: std::net::SocketAddr = format!("{VE_IP}:{PORT}").parse()?;
        let stream = netns.within(|| {
            let start = Instant::now();
            loop {
                match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    Ok(s) => return Ok(s),
                    Err(e) if start.elapsed() > Duration::from_secs(10) => return Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })??;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client { stream: std::io::BufReader::new(stream), sent: 0 })
    }

    /// Sends `ping k` and checks the server's in-memory count answers `k`.
    pub fn ping(&mut self) -> anyhow::Result<()> {
        use std::io::{BufRead, Write};
        self.sent += 1;
        let k = self.sent;
        self.stream.get_mut().write_all(format!("ping {k}\n").as_bytes())?;
        let mut line = String::new();
        self.stream.read_line(&mut line).context("read the server's answer")?;
        ensure!(line.trim() == format!("{k} ping {k}"), "server answered {line:?} to ping {k}");
        Ok(())
    }
}
