//! Two "servers" and a client on one machine: each server a [`VzTree`] (its own vz.conf,
//! cgroup parent and network namespace) running an sshd made by the test (host key, client
//! key, authorized_keys and a forced-command wrapper that gives the remote commands that
//! tree's `VZ_CONFIG` and the built binaries' PATH) listening only inside its namespace, and
//! a client namespace whose bridge links the three with veths on 198.51.100.0/24 (a
//! documentation range, routed nowhere else). Dropping the rig kills the sshds by pid and
//! removes the client namespace (and with it every veth).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vz_tests::{Need, VzTree, bin_dir, last_count, ok, unique_name, wait_count};

/// What a migration between the rig's two servers needs on this host.
pub(crate) fn needs() -> [Need; 8] {
    [
        Need::Root,
        Need::Loop,
        Need::Program("/bin/busybox"),
        Need::Program("/usr/local/sbin/criu"),
        Need::Program("/usr/sbin/sshd"),
        Need::Program("/usr/bin/ssh"),
        Need::Program("/usr/bin/arping"),
        if vz_tests::is_cgroup_v2() {
            Need::CgroupController("pids")
        } else {
            Need::CgroupController("freezer")
        },
    ]
}

/// The client's address on the bridge.
pub(crate) const CLIENT_IP: &str = "198.51.100.1";
/// The source server's address.
pub(crate) const SRC_IP: &str = "198.51.100.2";
/// The destination server's address (its sshd listens there).
pub(crate) const DST_IP: &str = "198.51.100.3";
/// The client's, source's and destination's IPv6 addresses on the bridge (a documentation
/// range): the servers' make their LAN links IPv6 neighbour devices (proxy NDP for VEs).
const LAN6: [&str; 3] = ["2001:db8:100::1/64", "2001:db8:100::2/64", "2001:db8:100::3/64"];

pub(crate) fn status(tree: &VzTree, ctid: &str) -> String {
    ok(tree.run("vzctl", &["status", ctid])).trim().to_owned()
}

/// Runs on `on` and exists nowhere on `off` (no config, private area, root, dump, cgroup).
pub(crate) fn assert_only_on(on: &VzTree, off: &VzTree, ctid: &str) {
    assert_eq!(status(on, ctid), format!("CTID {ctid} exist mounted running"));
    assert_eq!(status(off, ctid), format!("CTID {ctid} deleted unmounted down"));
    for left in [
        format!("conf/{ctid}.conf"),
        format!("private/{ctid}"),
        format!("root/{ctid}"),
        format!("dump/Dump.{ctid}"),
        format!("dump/Dump.{ctid}.migrate"),
    ] {
        assert!(!off.path().join(&left).exists(), "{left} left behind");
    }
    let cgroup = if vz_tests::is_cgroup_v2() {
        std::path::Path::new("/sys/fs/cgroup").to_owned()
    } else {
        vz_tests::cgroup_v1_mount("pids").expect("pids")
    };
    let dir = cgroup.join(off.cgroup_parent()).join(ctid);
    assert!(!dir.exists(), "cgroup {} left behind", dir.display());
}

/// [`assert_only_on`], and the VE's counter goes on there.
pub(crate) fn works_only_on(on: &VzTree, off: &VzTree, ctid: &str) {
    assert_only_on(on, off, ctid);
    let at = last_count(on, ctid);
    wait_count(on, ctid, at + 3);
}

/// The two trees, the client namespace and the destination's sshd.
pub(crate) struct Rig {
    pub(crate) src: VzTree,
    pub(crate) dst: VzTree,
    client_ns: String,
    sshd: Vec<Child>,
    keys: tempfile::TempDir,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Rig {
    /// Makes the rig; `extra_conf` goes into both trees' vz.conf.
    pub(crate) fn new(extra_conf: &str) -> Rig {
        let src = VzTree::new(extra_conf);
        let dst = VzTree::new(extra_conf);
        let client_ns = unique_name("cl");
        let keys = tempfile::Builder::new().prefix("vz-mig-ssh-").tempdir().expect("temp dir");
        let mut rig = Rig { src, dst, client_ns, sshd: Vec::new(), keys };
        rig.link();
        for key in ["host_key", "client_key"] {
            ok(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(rig.key_path(key))
                .output()
                .expect("run ssh-keygen"));
        }
        let host_pub = std::fs::read_to_string(rig.key_path("host_key.pub")).expect("key");
        let known = format!("{SRC_IP} {host_pub}{DST_IP} {host_pub}");
        std::fs::write(rig.key_path("known_hosts"), known).expect("write known_hosts");
        rig.start_sshd(true);
        rig.start_sshd(false);
        rig
    }

    fn link(&self) {
        let c = &self.client_ns;
        ip(&["netns", "add", c]);
        ip(&["-n", c, "link", "set", "lo", "up"]);
        ip(&["-n", c, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", c, "link", "set", "br0", "up"]);
        ip(&["-n", c, "addr", "add", &format!("{CLIENT_IP}/24"), "dev", "br0"]);
        ip(&["-n", c, "addr", "add", LAN6[0], "dev", "br0", "nodad"]);
        for (tree, addr, n) in [(&self.src, SRC_IP, 0), (&self.dst, DST_IP, 1)] {
            let (inner, outer) = ("lan0", format!("port{n}"));
            ip(&[
                "link",
                "add",
                inner,
                "netns",
                tree.netns(),
                "type",
                "veth",
                "peer",
                "name",
                &outer,
                "netns",
                c,
            ]);
            ip(&["-n", c, "link", "set", &outer, "master", "br0", "up"]);
            ip(&["-n", tree.netns(), "link", "set", inner, "up"]);
            ip(&["-n", tree.netns(), "addr", "add", &format!("{addr}/24"), "dev", inner]);
            ip(&["-n", tree.netns(), "addr", "add", LAN6[n + 1], "dev", inner, "nodad"]);
            // The tree routes the test ranges to `unreachable`; this one is its LAN now.
            ip(&[
                "-n",
                tree.netns(),
                "route",
                "replace",
                "198.51.100.0/24",
                "dev",
                inner,
                "src",
                addr,
            ]);
        }
    }

    fn key_path(&self, name: &str) -> PathBuf {
        self.keys.path().join(name)
    }

    /// The sshd of the destination (`dst`) or of the source, for migrations back.
    fn start_sshd(&mut self, dst: bool) {
        std::fs::create_dir_all("/run/sshd").expect("sshd's privilege separation directory");
        let (tree, addr, tag) =
            if dst { (&self.dst, DST_IP, "dst") } else { (&self.src, SRC_IP, "src") };
        let wrapper = self.key_path(&format!("wrapper-{tag}"));
        let die_at = self.key_path("die-at");
        let script = format!(
            "#!/bin/sh\n\
             # This tree for every command of the migration.\n\
             export VZ_CONFIG={conf} PATH={bin}:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin\n\
             # Fault injection: the first command containing the text of die-at loses its\n\
             # connection (the session's sshd is killed), as a dying network would do.\n\
             pattern=$(cat {die_at} 2>/dev/null)\n\
             if [ -n \"$pattern\" ]; then case \"$SSH_ORIGINAL_COMMAND\" in *\"$pattern\"*)\n\
               rm -f {die_at}; p=$$\n\
               while [ \"$p\" -gt 1 ]; do\n\
                 if [ \"$(cat /proc/$p/comm)\" = sshd ]; then kill -9 $p; exit 255; fi\n\
                 p=$(cut -d' ' -f4 /proc/$p/stat)\n\
               done;;\n\
             esac; fi\n\
             # Crash points of the destination's commands (`VZ_TEST_CRASH_AT`), while set.\n\
             if [ -f {crash_at} ]; then export VZ_TEST_CRASH_AT=\"$(cat {crash_at})\"; fi\n\
             exec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n",
            conf = tree.vz_conf().display(),
            bin = bin_dir().display(),
            die_at = die_at.display(),
            crash_at = self.key_path("crash-at").display(),
        );
        std::fs::write(&wrapper, script).expect("write the wrapper");
        ok(Command::new("chmod").arg("755").arg(&wrapper).output().expect("chmod"));
        let client_pub = std::fs::read_to_string(self.key_path("client_key.pub")).expect("key");
        let authorized = self.key_path(&format!("authorized_keys-{tag}"));
        std::fs::write(
            &authorized,
            format!("command=\"{}\",no-pty,no-port-forwarding {client_pub}", wrapper.display()),
        )
        .expect("write authorized_keys");
        let config = format!(
            "ListenAddress {addr}\nPort 22\nHostKey {hk}\nPidFile none\nAuthorizedKeysFile {ak}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\n\
             PrintMotd no\nAcceptEnv none\n",
            hk = self.key_path("host_key").display(),
            ak = authorized.display(),
        );
        let config_path = self.key_path(&format!("sshd_config-{tag}"));
        std::fs::write(&config_path, config).expect("write sshd_config");
        let log_path = self.key_path(&format!("sshd-{tag}.log"));
        let log = std::fs::File::create(&log_path).expect("sshd log");
        let child = tree
            .in_netns("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        self.sshd.push(child);
        let peer = if dst { &self.src } else { &self.dst };
        let words = self.ssh_words();
        let start = Instant::now();
        loop {
            let out = peer.in_netns("ssh").args(&words).args([addr, "true"]).output();
            if out.is_ok_and(|o| o.status.success()) {
                return;
            }
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            assert!(start.elapsed() < Duration::from_secs(10), "the {tag} sshd: {log}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ssh_words(&self) -> Vec<String> {
        self.ssh_opts().split_whitespace().map(str::to_owned).collect()
    }

    /// The `--ssh=` options that reach the destination's sshd.
    pub(crate) fn ssh_opts(&self) -> String {
        format!(
            "-F /dev/null -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes \
             -o ConnectTimeout=5 -o LogLevel=ERROR",
            self.key_path("client_key").display(),
            self.key_path("known_hosts").display()
        )
    }

    /// Makes the destination drop the connection of the next remote command containing
    /// `pattern`.
    pub(crate) fn die_at(&self, pattern: &str) {
        std::fs::write(self.key_path("die-at"), pattern).expect("write die-at");
    }

    /// Makes the remote commands (the destination's holder) kill themselves at the crash
    /// point `step` until [`Rig::no_crash`].
    pub(crate) fn crash_remote_at(&self, step: &str) {
        std::fs::write(self.key_path("crash-at"), step).expect("write crash-at");
    }

    /// Ends [`Rig::crash_remote_at`].
    pub(crate) fn no_crash(&self) {
        let _ = std::fs::remove_file(self.key_path("crash-at"));
    }

    /// `vzmigrate ARGS --ssh=... DST_IP CTID` on the source.
    pub(crate) fn vzmigrate(&self, args: &[&str], ctid: &str) -> std::process::Output {
        self.vzmigrate_from(true, args, ctid)
    }

    /// `vzmigrate` from the source to the destination (`forward`) or back.
    pub(crate) fn vzmigrate_from(
        &self,
        forward: bool,
        args: &[&str],
        ctid: &str,
    ) -> std::process::Output {
        self.vzmigrate_command(forward, args, ctid).output().expect("run vzmigrate")
    }

    /// The command of [`Rig::vzmigrate_from`], not started.
    pub(crate) fn vzmigrate_command(&self, forward: bool, args: &[&str], ctid: &str) -> Command {
        let ssh = format!("--ssh={}", self.ssh_opts());
        let (from, to) = if forward { (&self.src, DST_IP) } else { (&self.dst, SRC_IP) };
        let mut cmd = from.cmd("vzmigrate");
        cmd.args(args).arg(ssh).args([to, ctid]);
        cmd
    }

    /// `vzmigrate ARGS --ssh=... -o Hostname=DST_IP DEST CTID` on the source: the destination
    /// named `dest`, a name only ssh knows (as a `Host` alias of ssh_config would be).
    pub(crate) fn vzmigrate_to_alias(
        &self,
        dest: &str,
        args: &[&str],
        ctid: &str,
    ) -> std::process::Output {
        let ssh = format!("--ssh={} -o Hostname={DST_IP}", self.ssh_opts());
        let mut cmd = self.src.cmd("vzmigrate");
        cmd.args(args).arg(ssh).args([dest, ctid]);
        cmd.output().expect("run vzmigrate")
    }

    /// `vzmigrate` (from the source if `forward`, else back) that SIGKILLs itself at the
    /// crash point `step` (`VZ_TEST_CRASH_AT`; that it was killed is asserted); the ssh
    /// master connections it left are ended (they would linger for ControlPersist's 60 s).
    pub(crate) fn vzmigrate_killed_at(
        &self,
        forward: bool,
        args: &[&str],
        ctid: &str,
        step: &str,
    ) -> std::process::Output {
        use std::os::unix::process::ExitStatusExt as _;
        let tmp = tempfile::tempdir().expect("make a temporary directory");
        let ssh = format!("--ssh={}", self.ssh_opts());
        let (from, to) = if forward { (&self.src, DST_IP) } else { (&self.dst, SRC_IP) };
        let mut cmd = from.cmd("vzmigrate");
        cmd.env("VZ_TEST_CRASH_AT", step).env("TMPDIR", tmp.path());
        cmd.args(args).arg(ssh).args([to, ctid]);
        let out = cmd.output().expect("run vzmigrate");
        end_ssh_masters(tmp.path());
        let text = vz_tests::output_text(&out);
        assert_eq!(out.status.signal(), Some(9), "vzmigrate {args:?} killed at {step}: {text}");
        out
    }

    /// The MAC of a server's LAN interface.
    pub(crate) fn lan_mac(tree: &VzTree) -> String {
        let out =
            ok(tree.in_netns("ip").args(["-o", "link", "show", "lan0"]).output().expect("ip"));
        let mac = out.split_whitespace().skip_while(|w| *w != "link/ether").nth(1);
        mac.expect("lan0's MAC").to_ascii_lowercase()
    }

    /// The client's neighbour entry for `ip` (`198.51.100.77 dev br0 lladdr … REACHABLE`).
    pub(crate) fn client_neighbour(&self, ip: &str) -> String {
        let out = self.in_client("ip").args(["neigh", "show", ip]).output().expect("run ip");
        ok(out).to_ascii_lowercase()
    }

    /// Starts capturing, in the client's namespace, the ICMPv6 neighbour advertisements
    /// (ethernet frames) that reach it, until [`Capture::stop`].
    pub(crate) fn capture_advertisements(&self) -> Capture {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let netns = PathBuf::from(format!("/run/netns/{}", self.client_ns));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || capture(&netns, &flag, &ready_tx));
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("the capture's packet socket");
        Capture { stop, thread }
    }

    /// A command in the client's namespace.
    pub(crate) fn in_client(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.client_ns)).arg("--").arg(program);
        cmd
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for sshd in &mut self.sshd {
            let _ = sshd.kill();
            let _ = sshd.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.client_ns]).output();
    }
}

/// A capture of neighbour advertisements running in a thread of its own.
pub(crate) struct Capture {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Vec<u8>>>,
}

impl Capture {
    /// Ends the capture; the frames seen.
    pub(crate) fn stop(self) -> Vec<Vec<u8>> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the capture thread")
    }
}

/// The capture thread: enters the client's namespace (this thread only), opens a packet
/// socket there and keeps every ICMPv6 neighbour advertisement until `stop`.
fn capture(
    netns: &std::path::Path,
    stop: &std::sync::atomic::AtomicBool,
    ready: &std::sync::mpsc::Sender<()>,
) -> Vec<Vec<u8>> {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, setsockopt, socket,
        sockopt,
    };
    use std::os::fd::AsRawFd;
    let ns = std::fs::File::open(netns).expect("open the client's netns");
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("enter the client's netns");
    let fd =
        socket(AddressFamily::Packet, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::EthAll)
            .expect("a packet socket");
    let timeout = nix::sys::time::TimeVal::new(0, 100_000);
    setsockopt(&fd, sockopt::ReceiveTimeout, &timeout).expect("SO_RCVTIMEO");
    ready.send(()).expect("report the socket");
    let mut frames = Vec::new();
    let mut buf = [0u8; 2048];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            // IPv6, ICMPv6, type 136.
            Ok(n) if n >= 86 && buf[12..14] == [0x86, 0xdd] && buf[20] == 58 && buf[54] == 136 => {
                frames.push(buf[..n].to_vec());
            }
            Ok(_) | Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(e) => panic!("capture: {e}"),
        }
    }
    frames
}

/// Ends the ssh master connections a killed vzmigrate left under `tmp`.
fn end_ssh_masters(tmp: &std::path::Path) {
    for entry in std::fs::read_dir(tmp).expect("read the temporary directory").flatten() {
        let socket = entry.path().join("master");
        if socket.exists() {
            let _ = Command::new("ssh")
                .arg("-o")
                .arg(format!("ControlPath={}", socket.display()))
                .args(["-O", "exit", "unused"])
                .output();
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// The `Total suspended time` of `-t`'s lines, in ms.
pub(crate) fn suspended_ms(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains("Total suspended time:"))?;
    let secs: f64 = line.split_whitespace().rev().nth(1)?.parse().ok()?;
    Some(secs * 1000.0)
}
