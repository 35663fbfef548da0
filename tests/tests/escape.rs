//! The escape suite: root in a default VE tries the ways out of a container the field
//! knows, through the real binaries, and each attempt must fail. Attempts that need a
//! system call busybox has no applet for run `escape-probe` (tests/probes/escape-probe.c,
//! built static here), which prints `ESCAPED …` and exits 0 when an attempt works.
//!
//! The canary tests run some of the same attempts where a protection is switched off on
//! purpose (a privileged VE, `LOCAL_UID=0`; seccomp overrides), and require them to
//! work there: so each probe is shown able to see the escape it guards against.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use vz_tests::{Need, VzTree, ok, output_text, require, unique_ctid};

const NEEDS: [Need; 4] = [
    Need::Root,
    Need::Program("/bin/busybox"),
    Need::Program("/usr/bin/gcc"),
    Need::CgroupController("pids"),
];

/// Builds the probe at `out` (each test is a process of its own: one build per test, and
/// nothing left in /tmp afterwards).
fn build_probe(out: &Path) {
    let source = vz_tests::workspace().join("tests/probes/escape-probe.c");
    let built = std::process::Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(out)
        .arg(&source)
        .output()
        .expect("run gcc");
    assert!(built.status.success(), "gcc: {}", output_text(&built));
}

/// A running busybox VE of its own tree, with the probe in /bin.
struct RunningVe {
    tree: VzTree,
    ctid: String,
}

impl RunningVe {
    /// `global` goes into vz.conf, `own` into the VE's CTID.conf before it starts.
    fn start(global: &str, own: &str) -> RunningVe {
        let tree = VzTree::new(global);
        tree.build_busybox_cache();
        let ctid = unique_ctid().to_string();
        ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox"]));
        let conf = tree.path().join(format!("conf/{ctid}.conf"));
        let mut text = std::fs::read_to_string(&conf).expect("read CTID.conf");
        text.push_str(own);
        std::fs::write(&conf, text).expect("write CTID.conf");
        ok(tree.run("vzctl", &["mount", &ctid]));
        let target = tree.path().join(format!("root/{ctid}/bin/escape-probe"));
        build_probe(&target);
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        ok(tree.run("vzctl", &["start", &ctid]));
        RunningVe { tree, ctid }
    }

    fn default() -> RunningVe {
        Self::start("", "")
    }

    fn root(&self) -> PathBuf {
        self.tree.path().join(format!("root/{}", self.ctid))
    }

    fn sh(&self, script: &str) -> Output {
        self.tree.run("vzctl", &["exec2", &self.ctid, script])
    }

    /// Runs `script`, which must fail: `what` names the way out.
    fn refused(&self, what: &str, script: &str) {
        let out = self.sh(script);
        assert_ne!(out.status.code(), Some(0), "{what} must fail in a VE: {}", output_text(&out));
    }

    fn probe(&self, args: &str) -> Output {
        self.sh(&format!("/bin/escape-probe {args}"))
    }

    /// The probe's attempt must be refused (exit 1, not a usage error).
    fn probe_refused(&self, args: &str) {
        let out = self.probe(args);
        assert_eq!(out.status.code(), Some(1), "{args}: {}", output_text(&out));
    }

    /// The probe's attempt must work (a canary: the protection is off here).
    fn probe_escapes(&self, args: &str) {
        let out = self.probe(args);
        assert_eq!(out.status.code(), Some(0), "canary {args}: {}", output_text(&out));
    }

    fn init_pid(&self) -> i32 {
        self.tree.init_pid(&self.ctid).parse().expect("init pid")
    }
}

impl Drop for RunningVe {
    fn drop(&mut self) {
        let _ = self.tree.run("vzctl", &["stop", &self.ctid, "--fast"]);
    }
}

fn status_field(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status.lines().find_map(|l| l.strip_prefix(field)).unwrap_or_default().trim().to_owned()
}

#[test]
fn ve_root_is_not_host_root_and_ves_never_share_host_ids() {
    require!(NEEDS[0], NEEDS[1], NEEDS[2], NEEDS[3]);
    let ve = RunningVe::default();
    let pid = ve.init_pid();
    let uids = status_field(pid, "Uid:");
    assert!(uids.split_whitespace().all(|u| u != "0"), "init's host uids: {uids}");
    let own = std::fs::read_link(format!("/proc/{pid}/ns/user")).expect("ns");
    assert_ne!(own, std::fs::read_link("/proc/self/ns/user").expect("ns"), "own user namespace");
    // An entered program is in the VE's user namespace too (it reads its own map).
    let map = ok(ve.tree.run("vzctl", &["exec", &ve.ctid, "cat /proc/self/uid_map"]));
    assert!(map.split_whitespace().nth(1).is_some_and(|host| host != "0"), "map {map}");
    // CTID.conf records the range.
    let conf = std::fs::read_to_string(ve.tree.path().join(format!("conf/{}.conf", ve.ctid)))
        .expect("read CTID.conf");
    assert!(conf.contains("LOCAL_UID=") && !conf.contains("LOCAL_UID=\"0\""), "{conf}");
    // A second VE of the tree gets another range.
    let other = unique_ctid().to_string();
    ok(ve.tree.run("vzctl", &["create", &other, "--ostemplate", "busybox"]));
    let local_uid = |ctid: &str| {
        let path = ve.tree.path().join(format!("conf/{ctid}.conf"));
        let text = std::fs::read_to_string(path).expect("read CTID.conf");
        text.lines().find(|l| l.starts_with("LOCAL_UID=")).unwrap_or_default().to_owned()
    };
    assert_ne!(local_uid(&ve.ctid), local_uid(&other), "each VE its own range");
}

fn check_kernel_keyrings(ve: &RunningVe) {
    ve.probe_refused("keyctl");
    ve.probe_refused("add_key");
}

fn check_modules_kexec_syslog_bpf_perf(ve: &RunningVe) {
    for attempt in ["init_module", "finit_module", "kexec_load", "syslog", "bpf", "perf_event_open"]
    {
        ve.probe_refused(attempt);
    }
    ve.refused("loading modules", "insmod /lib/modules/none.ko || modprobe loop");
}

fn check_open_by_handle_at(ve: &RunningVe) {
    ve.probe_refused("open_by_handle_at");
}

#[test]
fn canaries_the_probes_see_an_escape_where_the_protection_is_off() {
    require!(NEEDS[0], NEEDS[1], NEEDS[2], NEEDS[3]);
    // Privileged (root is the host's) and without the filter for these calls: the same
    // probes that must be refused above get through, so they can tell.
    let privileged = "LOCAL_UID=0\nLOCAL_GID=0\n";
    let ve =
        RunningVe::start(privileged, "SYSCALLS=\"keyctl:on add_key:on open_by_handle_at:on\"\n");
    ve.probe_escapes("keyctl");
    ve.probe_escapes("open_by_handle_at");
    // The filter alone still refuses what it denies in a privileged VE.
    let filtered = RunningVe::start(privileged, "");
    filtered.probe_refused("keyctl");
    filtered.probe_refused("open_by_handle_at");
}

fn check_cgroup_limits(ve: &RunningVe) {
    // The VE may mount its own view of a v1 hierarchy or cgroup2 (its cgroup namespace);
    // the limits in it are the host's files.
    let script = "mkdir -p /mnt/cg; \
                  (mount -t cgroup -o pids none /mnt/cg || mount -t cgroup2 none /mnt/cg) && \
                  echo max > /mnt/cg/pids.max";
    ve.refused("raising its own pids.max", script);
    ve.refused("raising it after unshare -U", &format!("unshare -U -r sh -c '{script}'"));
    ve.refused(
        "a release_agent",
        "mkdir -p /mnt/rdma; mount -t cgroup -o rdma none /mnt/rdma && \
         echo /bin/sh > /mnt/rdma/release_agent",
    );
    let dir = ve.tree.cgroup_parent();
    let limit = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
        .iter()
        .map(|m| PathBuf::from(m).join(dir).join(&ve.ctid).join("pids.max"))
        .find(|p| p.exists())
        .expect("the VE's pids.max");
    assert_eq!(std::fs::read_to_string(&limit).expect("read").trim(), "100");
}

fn check_kernel_views(ve: &RunningVe) {
    ve.refused("writing /proc/sysrq-trigger", "echo h > /proc/sysrq-trigger");
    ve.refused("writing kernel.panic", "echo 1 > /proc/sys/kernel/panic");
    ve.refused("writing kernel.core_pattern", "echo '|/bin/sh' > /proc/sys/kernel/core_pattern");
    ve.refused("reading /proc/kcore", "head -c 1 /proc/kcore | grep -q .");
    ve.refused("reading /proc/kpageflags", "head -c 8 /proc/kpageflags | grep -q .");
    ve.refused("writing an irq's affinity", "echo 1 > /proc/irq/0/smp_affinity");
    ve.refused("listing /proc/bus", "ls /proc/bus | grep -q .");
    ve.refused("listing /sys/firmware", "ls /sys/firmware | grep -q .");
    // Loop devices name their backing files: other VEs' images.
    ve.refused("reading a loop backing file", "cat /sys/block/loop*/loop/backing_file");
    ve.refused("listing the host's virtual disks", "ls /sys/devices/virtual/block | grep -q .");
    // The masks hold: the VE's root cannot unmount them or mount a fresh proc or sysfs.
    ve.refused("unmasking /proc/kcore", "umount /proc/kcore");
    ve.refused("unmasking the loop devices", "umount /sys/devices/virtual/block");
    ve.refused("a fresh proc", "mkdir -p /mnt/p && mount -t proc proc /mnt/p");
    ve.refused("a fresh sysfs", "mkdir -p /mnt/s && mount -t sysfs sysfs /mnt/s");
    ve.refused("/proc/sys made writable", "mount -o remount,rw /proc/sys");
}

fn check_device_nodes(ve: &RunningVe) {
    ve.refused("mknod of a disk", "mknod /tmp/sda b 8 0");
    ve.refused("mknod of a loop device", "mknod /tmp/loop0 b 7 0");
    ve.refused("device nodes on the root", "mount -o remount,dev /");
    // The root's own device node (for the quota tools) cannot be opened, not even by root.
    ve.refused(
        "opening the root's device",
        "for d in /dev/loop*; do head -c1 $d && exit 0; done; exit 1",
    );
}

fn check_host_terminal(ve: &RunningVe) {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = std::fs::File::from(pty.slave);
    let mut child = ve
        .tree
        .cmd("vzctl")
        .args(["exec", &ve.ctid, "/bin/escape-probe tiocsti; ls -l /proc/self/fd/0"])
        .stdin(slave.try_clone().expect("dup"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vzctl exec");
    drop(slave);
    let mut out = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut out).expect("read");
    child.wait().expect("wait");
    assert!(out.contains("refused tiocsti"), "TIOCSTI into the caller's terminal: {out}");
    assert!(!out.contains("/dev/pts"), "the VE got the caller's terminal: {out}");
    // Nothing was typed into the caller's terminal.
    let master = std::fs::File::from(pty.master);
    nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
        .expect("nonblocking");
    let mut typed = [0_u8; 64];
    let n = (&master).read(&mut typed).unwrap_or(0);
    assert_eq!(n, 0, "typed into the host terminal: {:?}", &typed[..n]);
}

fn check_host_stdout(ve: &RunningVe) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("out");
    let out = std::fs::File::create(&file).expect("create");
    // Reopening fd 1 by its /proc link reaches the relay's pipe at most, never the file.
    let script = "ls -l /proc/self/fd/1; echo reopened > /proc/self/fd/1";
    ve.tree.cmd("vzctl").args(["exec", &ve.ctid, script]).stdout(out).status().expect("run");
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.contains("pipe:"), "stdout is a pipe in the VE: {text}");
    assert!(!text.contains(&dir.path().to_string_lossy().into_owned()), "{text}");
}

fn check_enter_ptmx(ve: &RunningVe) {
    ok(ve.tree.run("vzctl", &["exec", &ve.ctid, "rm -f /dev/ptmx && mkfifo /dev/ptmx"]));
    let out = ve
        .tree
        .cmd("vzctl")
        .args(["enter", &ve.ctid])
        .stdin(Stdio::null())
        .output()
        .expect("run vzctl enter");
    assert_ne!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(output_text(&out).contains("not a pty multiplexer"), "{}", output_text(&out));
}

fn check_host_side_mounts(ve: &RunningVe) {
    // A set-uid root program and a device node made by the VE's root...
    ok(ve.tree.run(
        "vzctl",
        &["exec", &ve.ctid, "cp /bin/busybox /suid && chmod 4755 /suid && ls -ln /suid"],
    ));
    let root = ve.root();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let line = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some(root.to_str().expect("utf-8")))
        .expect("VE_ROOT is a mount point");
    let options = line.split_whitespace().nth(5).unwrap_or_default();
    assert!(options.contains("nosuid") && options.contains("nodev"), "{line}");
    // ... are behind a directory only root can traverse.
    for dir in [root.parent().expect("parent"), &ve.tree.path().join("private")] {
        let mode = std::fs::metadata(dir).expect("stat").mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", dir.display());
    }
    let as_nobody = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(root.join("suid"))
        .args(["id", "-u"])
        .output()
        .expect("run setpriv");
    assert_ne!(as_nobody.status.code(), Some(0), "{}", output_text(&as_nobody));
}

/// Stops the VE, plants a link where a mount goes and starts it again (which must fail).
fn check_planted_symlink(ve: &RunningVe) {
    let (tree, ctid) = (&ve.tree, &ve.ctid);
    ok(tree.run("vzctl", &["stop", ctid, "--fast"]));
    ok(tree.run("vzctl", &["mount", ctid]));
    // What a VE's root could leave behind: its /proc a link to a host directory.
    let target = tempfile::tempdir().expect("tempdir");
    let proc_dir = tree.path().join(format!("root/{ctid}/proc"));
    std::fs::remove_dir_all(&proc_dir).expect("remove /proc");
    std::os::unix::fs::symlink(target.path(), &proc_dir).expect("plant");
    let out = tree.run("vzctl", &["start", ctid]);
    assert_ne!(out.status.code(), Some(0), "{}", output_text(&out));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let target_path = target.path().to_string_lossy().into_owned();
    assert!(!mountinfo.contains(&target_path), "something was mounted on the link's target");
}

/// The VE's root plants links where vzctl writes the VE's hostname and DNS files (from the
/// host, through VE_ROOT): a link to a host file in place of /etc/hosts, /etc/hostname and
/// /etc/resolv.conf, then /etc itself a link that leads out of VE_ROOT on the host. `vzctl
/// set` must resolve every name inside the VE's root: the host's files stay as they were, the
/// links are replaced by the VE's own files, and a way out is refused.
fn check_planted_setup_links(ve: &RunningVe) {
    let (tree, ctid) = (&ve.tree, &ve.ctid);
    let victim = tree.path().join("victim");
    std::fs::create_dir_all(&victim).expect("mkdir victim");
    let names = ["hosts", "hostname", "resolv.conf"];
    for name in names {
        std::fs::write(victim.join(name), "the host's\n").expect("write a victim file");
    }
    let plant: Vec<String> = names
        .iter()
        .map(|n| format!("rm -f /etc/{n} && ln -s {} /etc/{n}", victim.join(n).display()))
        .collect();
    ok(tree.run("vzctl", &["exec", ctid, &plant.join(" && ")]));
    let set = ["set", ctid, "--hostname", "out.example", "--nameserver", "192.0.2.99"];
    ok(tree.run("vzctl", &set));
    for name in names {
        let text = std::fs::read_to_string(victim.join(name)).expect("read a victim file");
        assert_eq!(text, "the host's\n", "the host's {name} was written through the VE's link");
    }
    let inside = ok(tree.run(
        "vzctl",
        &["exec", ctid, "ls -l /etc/hosts /etc/hostname /etc/resolv.conf; cat /etc/hosts"],
    ));
    assert!(!inside.contains(" -> "), "the links are replaced by files: {inside}");
    assert!(inside.contains("out.example out # vz-hostname"), "{inside}");
    let resolv = ok(tree.run("vzctl", &["exec", ctid, "cat /etc/resolv.conf"]));
    assert_eq!(resolv, "nameserver 192.0.2.99\n");

    // /etc a link whose target, taken on the host from VE_ROOT, is the victim directory.
    let link = "mv /etc /etc.real && ln -s ../../victim /etc";
    ok(tree.run("vzctl", &["exec", ctid, link]));
    let out = tree.run("vzctl", &["set", ctid, "--nameserver", "192.0.2.98"]);
    assert_ne!(out.status.code(), Some(0), "{}", output_text(&out));
    for name in names {
        let text = std::fs::read_to_string(victim.join(name)).expect("read a victim file");
        assert_eq!(text, "the host's\n", "the host's {name} was written through /etc");
    }
    let entries = std::fs::read_dir(&victim).expect("list the victim directory").count();
    assert_eq!(entries, names.len(), "nothing new in the host's directory");
    ok(tree.run("vzctl", &["exec", ctid, "rm /etc && mv /etc.real /etc"]));
}

fn check_processes_and_fds(ve: &RunningVe) {
    ve.refused("a host path through /proc/*/root", "ls /proc/*/root/work /proc/*/root/home/*");
    let fds = ok(ve.tree.run("vzctl", &["exec", &ve.ctid, "ls /proc/1/fd"]));
    assert_eq!(fds.split_whitespace().collect::<Vec<_>>(), ["0", "1", "2"], "init's fds");
    // An entered program holds its three stdio pipes and nothing else of the host's.
    let links = ok(ve.tree.run("vzctl", &["exec", &ve.ctid, "ls -l /proc/self/fd/"]));
    let host_paths: Vec<&str> =
        links.lines().filter(|l| l.contains("-> /") && !l.contains("/proc/")).collect();
    assert!(host_paths.is_empty(), "{links}");
    // No host process is visible, so none can be traced.
    let pids = ok(ve.tree.run("vzctl", &["exec", &ve.ctid, "ls -d /proc/[0-9]*"]));
    assert!(pids.lines().count() < 8, "{pids}");
    ve.probe_refused(&format!("ptrace {}", std::process::id()));
}

/// A child process killed (by pid) and reaped when dropped, also when the test fails.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Receives UDP datagrams on `[addr]:port` in the tree's network namespace for `seconds`,
/// printing their texts (the probe sends its source address).
fn udp6_listener(tree: &VzTree, addr: &str, port: u16, seconds: u32) -> Reaped {
    let script = format!(
        "import socket,sys\n\
         s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
         s.bind(('{addr}',{port}))\n\
         s.settimeout({seconds})\n\
         print('ready',flush=True)\n\
         try:\n\
         \x20while True: print(s.recv(100).decode(),flush=True)\n\
         except socket.timeout: pass\n"
    );
    Reaped(
        tree.in_netns("python3")
            .args(["-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run the listener"),
    )
}

#[test]
fn a_venet_ve_sends_ipv6_only_from_its_own_addresses() {
    require!(NEEDS[0], NEEDS[1], NEEDS[2], NEEDS[3], Need::Program("/usr/sbin/nft"));
    let given = "2001:db8::101";
    let ve = RunningVe::start("", &format!("IP_ADDRESS=\"{given}\"\n"));
    let host = "2001:db8:ffff::1";
    let mut listener = udp6_listener(&ve.tree, host, 7777, 4);
    let mut stdout = listener.0.stdout.take().expect("stdout");
    let mut ready = [0_u8; 6];
    stdout.read_exact(&mut ready).expect("listener ready");
    ok(ve.tree.run("vzctl", &["exec", &ve.ctid, "ip -6 addr add 2001:db8::666/128 dev venet0"]));
    // The given address reaches the host (the listener can see), the other does not.
    let sent = ve.probe(&format!("udp6 {given} {host} 7777"));
    assert_eq!(sent.status.code(), Some(0), "{}", output_text(&sent));
    let spoofed = ve.probe(&format!("udp6 2001:db8::666 {host} 7777"));
    assert_eq!(
        spoofed.status.code(),
        Some(0),
        "sent (and dropped on the host end): {}",
        output_text(&spoofed)
    );
    let mut got = String::new();
    stdout.read_to_string(&mut got).expect("read");
    assert!(got.contains(given), "the allowed source arrives: {got}");
    assert!(!got.contains("2001:db8::666"), "a spoofed source arrived: {got}");
    // Without an IPv6 address the VE's host end takes no IPv6 at all.
    ok(ve.tree.run("vzctl", &["set", &ve.ctid, "--ipdel", given]));
    let config = std::fs::read_to_string(ve.tree.path().join("vz.conf")).expect("vz.conf");
    let prefix = config
        .lines()
        .find_map(|l| l.strip_prefix("VE_NETDEV_PREFIX="))
        .unwrap_or("venet")
        .trim_matches('"')
        .to_owned();
    let sysctl = format!("/proc/sys/net/ipv6/conf/{prefix}{}/disable_ipv6", ve.ctid);
    let out = ve.tree.in_netns("cat").arg(&sysctl).output().expect("read the sysctl");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{}", output_text(&out));
}

#[test]
fn host_global_system_calls_are_refused() {
    require!(NEEDS[0], NEEDS[1], NEEDS[2], NEEDS[3]);
    let ve = RunningVe::default();
    check_kernel_keyrings(&ve);
    check_modules_kexec_syslog_bpf_perf(&ve);
    check_open_by_handle_at(&ve);
}

#[test]
fn kernel_views_devices_cgroups_and_processes_stay_the_ves() {
    require!(NEEDS[0], NEEDS[1], NEEDS[2], NEEDS[3]);
    let ve = RunningVe::start("", "NUMPROC=\"100:100\"\n");
    check_kernel_views(&ve);
    check_device_nodes(&ve);
    check_cgroup_limits(&ve);
    check_processes_and_fds(&ve);
}

#[test]
fn the_callers_terminal_and_files_stay_outside() {
    require!(NEEDS[0], NEEDS[1], NEEDS[2], NEEDS[3]);
    let ve = RunningVe::default();
    check_host_terminal(&ve);
    check_host_stdout(&ve);
    check_enter_ptmx(&ve);
}

#[test]
fn the_host_side_of_a_ves_files_is_shielded() {
    require!(NEEDS[0], NEEDS[1], NEEDS[2], NEEDS[3]);
    let ve = RunningVe::default();
    check_host_side_mounts(&ve);
    check_planted_setup_links(&ve);
    check_planted_symlink(&ve);
}

/// Host-global sysctls (no namespace of the VE owns them): a write of the value each holds
/// (so a write that got through would change nothing on the host) must be refused.
const HOST_SYSCTLS: [&str; 9] = [
    "kernel/panic",
    "kernel/core_pattern",
    "kernel/modprobe",
    "kernel/printk",
    "kernel/randomize_va_space",
    "vm/overcommit_memory",
    "vm/min_free_kbytes",
    "fs/file-max",
    "fs/protected_symlinks",
];

/// /proc files of the host kernel that root of a VE must not read.
const HOST_ONLY_PROC_FILES: [&str; 4] =
    ["/proc/kcore", "/proc/kpageflags", "/proc/kpagecount", "/proc/kpagecgroup"];

/// Writes of host-global sysctls and reads of the host's page-frame files are refused, by
/// the kernel's checks in a VE with its own user namespace and by the read-only /proc/sys
/// and the masks in a privileged one; the VE's own net and ipc knobs stay writable and
/// change only the VE's.
fn check_host_sysctls_closed_own_open(ve: &RunningVe) {
    for name in HOST_SYSCTLS {
        let path = format!("/proc/sys/{name}");
        if !Path::new(&path).exists() {
            continue;
        }
        let script =
            format!("[ -e {path} ] || exit 3; v=$(cat {path}) && printf '%s\\n' \"$v\" > {path}");
        let out = ve.sh(&script);
        assert!(
            !matches!(out.status.code(), Some(0 | 3)),
            "writing {path} must be refused in a VE (3: missing there): {}",
            output_text(&out)
        );
    }
    // drop_caches is write-only: 4 drops nothing (it only silences the kernel's notice).
    ve.refused("writing vm.drop_caches", "echo 4 > /proc/sys/vm/drop_caches");
    ve.refused("writing /proc/sysrq-trigger", "echo h > /proc/sysrq-trigger");
    for file in HOST_ONLY_PROC_FILES {
        ve.refused(&format!("reading {file}"), &format!("head -c 8 {file} | grep -q ."));
    }
    // The VE's own: a message queue bound of its IPC namespace and its network's forwarding.
    let host_msgmnb = std::fs::read_to_string("/proc/sys/kernel/msgmnb").expect("msgmnb");
    let own: u64 = host_msgmnb.trim().parse::<u64>().expect("a number") + 1;
    let out = ok(ve.tree.run(
        "vzctl",
        &[
            "exec",
            &ve.ctid,
            &format!(
                "echo {own} > /proc/sys/kernel/msgmnb && cat /proc/sys/kernel/msgmnb && \
                 echo 1 > /proc/sys/net/ipv4/ip_forward && cat /proc/sys/net/ipv4/ip_forward"
            ),
        ],
    ));
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), [own.to_string(), "1".to_owned()]);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/msgmnb").expect("msgmnb"),
        host_msgmnb,
        "the host's own msgmnb is untouched"
    );
}

#[test]
fn host_global_sysctls_stay_closed_and_the_ves_own_open() {
    require!(NEEDS[0], NEEDS[1], NEEDS[2], NEEDS[3]);
    check_host_sysctls_closed_own_open(&RunningVe::default());
    check_host_sysctls_closed_own_open(&RunningVe::start("LOCAL_UID=0\nLOCAL_GID=0\n", ""));
}
