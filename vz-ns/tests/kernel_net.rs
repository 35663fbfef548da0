//! Kernel tests of VE networking (venet and veth) with real traffic between namespaces.
//!
//! No packet may leave the machine: every scenario runs on a thread that first unshares a
//! network namespace of its own, which plays "the host" (only `lo` and test devices, the test
//! ranges 192.0.2.0/24, 198.51.100.0/24 and 2001:db8::/32 routed to `unreachable`). "Another
//! machine on the LAN" is a third namespace (a `sleep` under `unshare -n`, killed by pid) tied
//! to the test host by a veth pair. Everything dies with the test's namespaces and VEs.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

mod common;

use std::net::IpAddr;
use std::process::{Child, Command};

use anyhow::{Context, bail, ensure};
use common::TestVe;
use nix::sched::CloneFlags;
use vz_ns::NsError;
use vz_ns::net::{HostWarning, VeAddr, Venet, VenetConfig, Veth, VethSpec, parse_address_list};
use vz_tests::Need;

/// Runs `f` on a fresh thread in a network namespace of its own, set up as the test host.
fn on_test_host(f: impl FnOnce() -> anyhow::Result<()> + Send) -> anyhow::Result<()> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).context("unshare net")?;
            ip(&["link", "set", "lo", "up"])?;
            for net in ["192.0.2.0/24", "198.51.100.0/24"] {
                ip(&["route", "add", "unreachable", net])?;
            }
            ip(&["-6", "route", "add", "unreachable", "2001:db8::/32"])?;
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the test thread panicked"))?
    })
}

/// Runs a program (inherits the calling thread's network namespace); fails unless it exits 0.
fn run(argv: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(argv[0]).args(&argv[1..]).output().with_context(|| argv.join(" "))?;
    ensure!(
        out.status.success(),
        "`{}` failed: {}{}",
        argv.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    let mut argv = vec!["/usr/sbin/ip"];
    argv.extend(args);
    run(&argv)
}

fn sysctl(path: &str, value: &str) -> anyhow::Result<()> {
    std::fs::write(path, value).with_context(|| format!("write {path}"))
}

/// GET http://addr:8080/ from the calling thread's namespace (the test host).
fn http_get(addr: &str) -> Option<String> {
    let url = format!("http://{addr}:8080/");
    run(&["/usr/bin/curl", "-sg", "-m", "3", &url]).ok()
}

fn addrs(s: &str) -> Vec<VeAddr> {
    parse_address_list(s).expect("test addresses parse")
}

/// The `Icmp: InEchos` counter of the test host's namespace.
fn in_echos() -> anyhow::Result<u64> {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp")?;
    let mut lines = snmp.lines().filter(|l| l.starts_with("Icmp:"));
    let (names, values) = (lines.next().context("Icmp header")?, lines.next().context("Icmp")?);
    let i = names.split_whitespace().position(|n| n == "InEchos").context("InEchos")?;
    Ok(values.split_whitespace().nth(i).context("InEchos value")?.parse()?)
}

/// "Another machine on the LAN": a namespace held by a `sleep`, killed by pid on drop.
struct LanMachine(Child);

impl LanMachine {
    /// Makes the machine and a veth pair `lanh` (test host, 198.51.100.1/25,
    /// 2001:db8:ff::1/64) – `lanm` (the machine, .2 and ::2).
    fn start() -> anyhow::Result<Self> {
        let child = Command::new("/usr/bin/unshare").args(["-n", "sleep", "600"]).spawn()?;
        let this = LanMachine(child);
        std::thread::sleep(std::time::Duration::from_millis(100));
        let pid = this.0.id().to_string();
        ip(&["link", "add", "lanh", "type", "veth", "peer", "name", "lanm", "netns", &pid])?;
        ip(&["addr", "add", "198.51.100.1/25", "dev", "lanh"])?;
        ip(&["addr", "add", "2001:db8:ff::1/64", "dev", "lanh", "nodad"])?;
        ip(&["link", "set", "lanh", "up"])?;
        this.ip(&["link", "set", "lo", "up"])?;
        this.ip(&["addr", "add", "198.51.100.2/25", "dev", "lanm"])?;
        this.ip(&["addr", "add", "2001:db8:ff::2/64", "dev", "lanm", "nodad"])?;
        this.ip(&["link", "set", "lanm", "up"])?;
        Ok(this)
    }

    fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        self.run(&[&["/usr/sbin/ip"], args].concat())
    }

    fn run(&self, argv: &[&str]) -> anyhow::Result<String> {
        let ns = format!("--net=/proc/{}/ns/net", self.0.id());
        run(&[&["/usr/bin/nsenter", ns.as_str()], argv].concat())
    }

    fn http_get(&self, addr: &str) -> Option<String> {
        let url = format!("http://{addr}:8080/");
        self.run(&["/usr/bin/curl", "-sg", "-m", "3", &url]).ok()
    }
}

impl Drop for LanMachine {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A VE serving `hello-<name>` with busybox httpd on port 8080 (all its addresses).
fn serving_ve(name: &str) -> anyhow::Result<TestVe> {
    let ve = TestVe::start(name)?;
    ve.sh_ok(&format!(
        "mkdir -p /tmp/www && echo hello-{name} > /tmp/www/index.html && httpd -p 8080 -h /tmp/www"
    ))?;
    Ok(ve)
}

#[test]
fn check_host_reports_forwarding_off_in_a_fresh_namespace() -> anyhow::Result<()> {
    vz_tests::require!(Need::Root, Need::Program("/usr/sbin/ip"));
    on_test_host(|| {
        let w = vz_ns::net::check_host()?;
        ensure!(w.contains(&HostWarning::Ipv4ForwardingOff), "{w:?}");
        sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")?;
        let w = vz_ns::net::check_host()?;
        ensure!(!w.contains(&HostWarning::Ipv4ForwardingOff), "{w:?}");
        ensure!(!w.contains(&HostWarning::Ipv6ForwardingOff), "{w:?}");
        sysctl("/proc/sys/net/ipv4/conf/all/rp_filter", "2")?;
        ensure!(vz_ns::net::check_host()?.contains(&HostWarning::LooseRpFilter));
        Ok(())
    })
}

#[test]
fn venet_routes_traffic_enforces_sources_and_tears_down() -> anyhow::Result<()> {
    vz_tests::require!(
        Need::Root,
        Need::CgroupController("pids"),
        Need::Program("/bin/busybox"),
        Need::Program("/usr/bin/curl"),
        Need::Program("/usr/sbin/ip"),
        Need::Program("/usr/bin/unshare"),
        Need::Program("/usr/bin/nsenter"),
        Need::Program("/usr/sbin/iptables-nft")
    );
    on_test_host(|| {
        sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")?;
        let lan = LanMachine::start()?;
        sysctl("/proc/sys/net/ipv6/conf/lanh/proxy_ndp", "1")?;
        let a = serving_ve("a")?;
        let b = serving_ve("b")?;
        let cfg_a = VenetConfig {
            host_ifname: "venet101".into(),
            addresses: addrs("192.0.2.10 198.51.100.10 2001:db8:ff::10"),
        };
        Venet::setup(a.init_pid, &cfg_a)?;
        let cfg_b =
            VenetConfig { host_ifname: "venet102".into(), addresses: addrs("192.0.2.20 0.0.0.0") };
        Venet::setup(b.init_pid, &cfg_b)?;

        // Inside: venet0 with the addresses, NOARP, default route through it.
        let link = a.sh_ok("ip addr show venet0; ip route; ip -6 route")?;
        for want in ["NOARP", "192.0.2.10/32", "198.51.100.10/32", "2001:db8:ff::10/128"] {
            ensure!(link.contains(want), "VE A lacks {want}: {link}");
        }
        ensure!(link.contains("default dev venet0"), "{link}");

        // Host to VE, VE to VE, LAN machine to VE through proxy ARP and proxy NDP.
        ensure!(http_get("192.0.2.10").as_deref() == Some("hello-a\n"), "host -> A");
        ensure!(http_get("[2001:db8:ff::10]").as_deref() == Some("hello-a\n"), "host -> A v6");
        ensure!(http_get("192.0.2.20").as_deref() == Some("hello-b\n"), "host -> B");
        let out = b.sh_ok("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 192.0.2.10 8080")?;
        ensure!(out.contains("hello-a"), "B -> A: {out}");
        ensure!(lan.http_get("198.51.100.10").as_deref() == Some("hello-a\n"), "LAN -> A");
        ensure!(lan.http_get("[2001:db8:ff::10]").as_deref() == Some("hello-a\n"), "LAN -> A v6");
        ensure!(lan.http_get("198.51.100.11").is_none(), "no one answers for a free address");

        // A firewall of its own: a drop rule in A's namespace stops A's port, not B's.
        let a_net = format!("--net=/proc/{}/ns/net", a.init_pid);
        let rule = ["INPUT", "-p", "tcp", "--dport", "8080", "-j", "DROP"];
        run(&[&["/usr/bin/nsenter", a_net.as_str(), "/usr/sbin/iptables-nft", "-A"], &rule[..]]
            .concat())?;
        ensure!(http_get("192.0.2.10").is_none(), "A's own drop rule stops its port");
        ensure!(http_get("192.0.2.20").as_deref() == Some("hello-b\n"), "B is not affected");
        run(&[&["/usr/bin/nsenter", a_net.as_str(), "/usr/sbin/iptables-nft", "-D"], &rule[..]]
            .concat())?;
        ensure!(http_get("192.0.2.10").is_some(), "A answers again");

        // Sources: from a given address the echo request arrives, from another it does not.
        a.sh_ok("ip addr add 192.0.2.99/32 dev venet0")?;
        let before = in_echos()?;
        a.sh_ok("ping -c 1 -W 2 -I 192.0.2.10 198.51.100.1")?;
        ensure!(in_echos()? == before + 1, "a ping from a given address arrives");
        let (code, _) = a.sh("ping -c 1 -W 2 -I 192.0.2.99 198.51.100.1")?;
        ensure!(code != 0 && in_echos()? == before + 1, "a spoofed source is dropped");
        let (code, _) = a.sh("ping -c 1 -W 2 -I 192.0.2.20 198.51.100.1")?;
        ensure!(code != 0 && in_echos()? == before + 1, "B's address cannot be used by A");

        runtime_add_del(&a)?;

        // An address of another VE is refused, naming the device that has it.
        match Venet::add_addresses(b.init_pid, "venet102", &addrs("192.0.2.10")) {
            Err(NsError::AddressInUse { device, .. }) => ensure!(device == "venet101"),
            other => bail!("duplicate address: {other:?}"),
        }
        ensure!(http_get("192.0.2.10").is_some(), "the refused add left A alone");

        // Teardown leaves no device, route or proxy entry.
        Venet::teardown("venet101")?;
        Venet::teardown("venet102")?;
        Venet::teardown("venet102")?; // again: nothing there is fine
        let links = ip(&["link"])?;
        ensure!(!links.contains("venet10"), "{links}");
        let routes = ip(&["route"])? + &ip(&["-6", "route"])?;
        ensure!(!routes.contains("192.0.2.10") && !routes.contains("2001:db8:ff::10"), "{routes}");
        let proxies = ip(&["neigh", "show", "proxy"])? + &ip(&["-6", "neigh", "show", "proxy"])?;
        ensure!(proxies.trim().is_empty(), "proxy entries left: {proxies}");
        ensure!(Venet::addresses("venet101")?.is_empty());
        Ok(())
    })
}

fn runtime_add_del(a: &TestVe) -> anyhow::Result<()> {
    ensure!(http_get("192.0.2.11").is_none(), "not yet added");
    Venet::add_addresses(a.init_pid, "venet101", &addrs("192.0.2.11"))?;
    ensure!(http_get("192.0.2.11").as_deref() == Some("hello-a\n"), "reachable at once");
    let mut have = Venet::addresses("venet101")?;
    have.sort();
    let want: Vec<IpAddr> = ["192.0.2.10", "192.0.2.11", "198.51.100.10", "2001:db8:ff::10"]
        .iter()
        .map(|s| s.parse().expect("ip"))
        .collect();
    ensure!(have == want, "{have:?}");
    Venet::del_addresses(a.init_pid, "venet101", &addrs("192.0.2.11 2001:db8:ff::10"))?;
    ensure!(http_get("192.0.2.11").is_none(), "unreachable at once");
    ensure!(http_get("[2001:db8:ff::10]").is_none(), "v6 unreachable at once");
    let inside = a.sh_ok("ip addr show venet0")?;
    ensure!(!inside.contains("192.0.2.11") && !inside.contains("2001:db8:ff::10"), "{inside}");
    ensure!(http_get("192.0.2.10").is_some(), "the other addresses stay");
    Ok(())
}

#[test]
fn veth_host_end_joins_the_bridge() -> anyhow::Result<()> {
    vz_tests::require!(
        Need::Root,
        Need::CgroupController("pids"),
        Need::Program("/bin/busybox"),
        Need::Program("/usr/bin/curl"),
        Need::Program("/usr/sbin/ip"),
        Need::Program("/usr/bin/unshare")
    );
    on_test_host(|| {
        let ve = serving_ve("v")?;
        let mut spec = VethSpec::from_netif_add("eth0,,,,vmbr0", "101", 1)?;
        match Veth::add(ve.init_pid, &spec) {
            Err(NsError::NoSuchDevice { name }) => ensure!(name == "vmbr0"),
            other => bail!("a missing bridge: {other:?}"),
        }
        ensure!(!ip(&["link"])?.contains("veth101.0"), "nothing left after the refusal");
        ip(&["link", "add", "vmbr0", "type", "bridge"])?;
        ip(&["addr", "add", "198.51.100.1/25", "dev", "vmbr0"])?;
        ip(&["link", "set", "vmbr0", "up"])?;
        Veth::add(ve.init_pid, &spec)?;
        let host = ip(&["link", "show", "veth101.0"])?;
        ensure!(host.contains("master vmbr0") && host.contains(",UP"), "{host}");
        let lower = spec.host_mac.to_string().to_lowercase();
        ensure!(host.contains(&lower), "host MAC {lower}: {host}");
        ve.sh_ok(
            "ip addr add 198.51.100.50/25 dev eth0 && ip link set eth0 up && ip link set lo up",
        )?;
        let inside = ve.sh_ok("ip link show eth0")?;
        ensure!(inside.contains(&spec.mac.to_string().to_lowercase()), "{inside}");
        ensure!(
            http_get("198.51.100.50").as_deref() == Some("hello-v\n"),
            "host -> VE over the bridge"
        );
        Veth::del(ve.init_pid, &spec)?;
        ensure!(!ip(&["link"])?.contains("veth101.0"), "host end removed");
        ensure!(ve.sh("ip link show eth0")?.0 != 0, "VE end removed");
        spec.host_ifname = "lo".into();
        ensure!(matches!(Veth::add(ve.init_pid, &spec), Err(NsError::BadNetif { .. })));
        Ok(())
    })
}
