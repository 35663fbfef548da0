//! numiptent is accounted from the kernel's netfilter tables of the VE's network namespace:
//! a fresh namespace holds 0, each rule added there (nftables through iptables-nft and
//! ip6tables-nft, and legacy iptables where the kernel has it) counts one, and the host's
//! rules never count.

#![allow(clippy::unwrap_used, reason = "test helpers panic on failure")]

mod common;

use std::process::{Command, Stdio};

use common::{VeCgroup, wait_for};
use vz_ubc::{Beancounter, Resource, Usage};

fn numiptent(bc: &Beancounter) -> Usage {
    bc.usage().unwrap().into_iter().find(|u| u.resource == Resource::NumIptent).unwrap()
}

/// Runs `tool args…` in the network namespace of `pid`; whether it succeeded.
fn in_netns(pid: u32, tool: &str, args: &[&str]) -> bool {
    Command::new("/usr/bin/nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .arg(tool)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn rules_in_the_ve_network_namespace_are_counted() {
    vz_tests::require!(
        vz_tests::Need::Root,
        vz_tests::Need::CgroupController("memory"),
        vz_tests::Need::Program("/usr/bin/unshare"),
        vz_tests::Need::Program("/usr/bin/nsenter"),
        vz_tests::Need::Program("/usr/sbin/iptables-nft")
    );
    let mut cg = VeCgroup::new("iptent").unwrap();
    let bc = Beancounter::new(4243, cg.dirs.clone());
    cg.spawn("exec /usr/bin/unshare --net /bin/sleep 60").unwrap();
    let own_netns = std::fs::read_link("/proc/self/ns/net").unwrap();
    let pid = wait_for(10, || {
        cg.pids().into_iter().find(|p| {
            std::fs::read_link(format!("/proc/{p}/ns/net")).is_ok_and(|ns| ns != own_netns)
        })
    })
    .expect("the workload did not enter a network namespace of its own");

    let fresh = numiptent(&bc);
    assert!(fresh.measured && fresh.held == 0, "{fresh:?}");

    let drop_port = |tool: &str, port: &str| {
        assert!(in_netns(pid, tool, &["-A", "INPUT", "-p", "tcp", "--dport", port, "-j", "DROP"]));
    };
    for port in ["7", "9", "13"] {
        drop_port("/usr/sbin/iptables-nft", port);
    }
    drop_port("/usr/sbin/ip6tables-nft", "7");
    assert_eq!(numiptent(&bc).held, 4);

    // Legacy x_tables where the kernel has them: the added entries count, the table's own don't.
    if in_netns(pid, "/usr/sbin/iptables-legacy", &["-w", "-L", "-n"]) {
        drop_port("/usr/sbin/iptables-legacy", "7");
        drop_port("/usr/sbin/iptables-legacy", "9");
        assert_eq!(numiptent(&bc).held, 6);
    }

    assert!(in_netns(pid, "/usr/sbin/iptables-nft", &["-D", "INPUT", "1"]));
    let after = numiptent(&bc).held;
    assert!(after == 3 || after == 5, "one rule deleted: {after}");
}
