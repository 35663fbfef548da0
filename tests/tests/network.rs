//! Black-box tests of VE networking through the binaries: venet addresses given at create
//! and changed at run time, real traffic host ↔ VE and VE ↔ VE, a VE's own firewall, the
//! duplicate-address refusal, and teardown. Everything runs in the test tree's own network
//! namespace (see `VzTree`): no packet reaches the machine's network.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

use std::process::Output;

use vz_tests::{Need, VzTree, ok, output_text, require, unique_ctid};

/// An HTTP GET of `url` from the tree's host side, with a short timeout.
fn fetch_from_host(tree: &VzTree, url: &str) -> Output {
    tree.in_netns("curl").args(["-s", "--max-time", "3", url]).output().expect("run curl")
}

/// Starts busybox httpd on port 8080 in the VE, serving a page that names it.
fn serve(tree: &VzTree, ctid: &str) {
    let script =
        format!("mkdir -p /www && echo page-of-{ctid} > /www/index.html && httpd -p 8080 -h /www");
    ok(tree.run("vzctl", &["exec", ctid, &script]));
}

#[test]
fn venet_carries_traffic_and_follows_runtime_changes() {
    require!(
        Need::Root,
        Need::Program("/bin/busybox"),
        Need::Program("/usr/bin/curl"),
        Need::Program("/usr/bin/nsenter"),
        Need::CgroupController("pids")
    );
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let (a, b) = (unique_ctid().to_string(), unique_ctid().to_string());
    ok(tree.run("vzctl", &["create", &a, "--ipadd", "192.0.2.10", "--ipadd", "2001:db8::10"]));
    ok(tree.run("vzctl", &["create", &b, "--ipadd", "192.0.2.20"]));
    let taken = tree.run("vzctl", &["create", &unique_ctid().to_string(), "--ipadd", "192.0.2.10"]);
    assert_eq!(taken.status.code(), Some(78), "{}", output_text(&taken));
    let bad = tree.run("vzctl", &["set", &b, "--ipadd", "192.0.2.300", "--save"]);
    assert_eq!(bad.status.code(), Some(71), "{}", output_text(&bad));
    ok(tree.run("vzctl", &["start", &a]));
    ok(tree.run("vzctl", &["start", &b]));

    let inside = ok(tree.run("vzctl", &["exec", &a, "ip addr show venet0; ip route"]));
    assert!(inside.contains("192.0.2.10") && inside.contains("2001:db8::10"), "{inside}");
    assert!(inside.contains("default"), "a default route through venet0: {inside}");
    serve(&tree, &a);
    let page = ok(fetch_from_host(&tree, "http://192.0.2.10:8080/"));
    assert_eq!(page.trim(), format!("page-of-{a}"));
    let page6 = ok(fetch_from_host(&tree, "http://[2001:db8::10]:8080/"));
    assert_eq!(page6.trim(), format!("page-of-{a}"));
    let get = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 192.0.2.10 8080";
    let from_b = ok(tree.run("vzctl", &["exec", &b, get]));
    assert!(from_b.contains(&format!("page-of-{a}")), "VE to VE: {from_b}");

    // A VE's own firewall affects only that VE: A drops its port 8080.
    let a_pid = tree.init_pid(&a);
    let drop = [
        "--net",
        "-t",
        &a_pid,
        "iptables-nft",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "8080",
        "-j",
        "DROP",
    ];
    let added = std::process::Command::new("nsenter").args(drop).output().expect("run nsenter");
    assert!(added.status.success(), "{}", output_text(&added));
    assert!(!fetch_from_host(&tree, "http://192.0.2.10:8080/").status.success(), "dropped by A");
    serve(&tree, &b);
    assert_eq!(
        ok(fetch_from_host(&tree, "http://192.0.2.20:8080/")).trim(),
        format!("page-of-{b}")
    );

    // Runtime: a new address of B answers at once, a removed one is gone at once.
    ok(tree.run("vzctl", &["set", &b, "--ipadd", "198.51.100.5", "--save"]));
    assert_eq!(
        ok(fetch_from_host(&tree, "http://198.51.100.5:8080/")).trim(),
        format!("page-of-{b}")
    );
    ok(tree.run("vzctl", &["set", &b, "--ipdel", "198.51.100.5", "--save"]));
    assert!(!fetch_from_host(&tree, "http://198.51.100.5:8080/").status.success());
    let conf = std::fs::read_to_string(tree.path().join(format!("conf/{b}.conf"))).unwrap();
    assert!(conf.contains("IP_ADDRESS=\"192.0.2.20\""), "{conf}");

    // Teardown: nothing of the VEs is left on the host side.
    ok(tree.run("vzctl", &["stop", &a]));
    ok(tree.run("vzctl", &["stop", &b, "--fast"]));
    let links = ok(tree.in_netns("ip").args(["-o", "link"]).output().unwrap());
    assert!(!links.contains("venet"), "{links}");
    let routes = ok(tree.in_netns("ip").args(["route"]).output().unwrap());
    assert!(!routes.contains("192.0.2.10") && !routes.contains("192.0.2.20"), "{routes}");
    let neigh = ok(tree.in_netns("ip").args(["neigh", "show", "proxy"]).output().unwrap());
    assert!(neigh.trim().is_empty(), "{neigh}");
}

/// `--ifname eth0` with `--mac`, `--host_ifname`, `--bridge` and `--mac_filter` changes the
/// running VE's pair in place: the VE end's MAC, the host end renamed onto the other bridge,
/// the MAC guard (an nftables netdev table per host end) moved to the new name and MAC; saved
/// in NETIF. An interface the VE lacks is 130; the changes without --ifname are 20.
#[test]
fn a_veth_is_changed_in_place_by_ifname() {
    require!(
        Need::Root,
        Need::Program("/bin/busybox"),
        Need::Program("/usr/sbin/nft"),
        Need::CgroupController("pids")
    );
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    let (a, b) = (format!("vza{ctid}"), format!("vzb{ctid}"));
    for bridge in [&a, &b] {
        ok(tree
            .in_netns("ip")
            .args(["link", "add", bridge, "type", "bridge"])
            .output()
            .expect("ip"));
    }
    let netif = format!("eth0,,,,{a}");
    ok(tree.run("vzctl", &["set", &ctid, "--netif_add", &netif, "--save"]));
    let old_host = format!("veth{ctid}.0");
    let new_host = format!("vzh{ctid}");
    let mac = "00:18:51:12:34:56";
    let set = [
        "set",
        &ctid,
        "--ifname",
        "eth0",
        "--mac",
        mac,
        "--host_ifname",
        &new_host,
        "--bridge",
        &b,
        "--mac_filter",
        "on",
        "--save",
    ];
    ok(tree.run("vzctl", &set));
    let link =
        |name: &str| tree.in_netns("ip").args(["-o", "link", "show", name]).output().expect("ip");
    assert!(!link(&old_host).status.success(), "the old host end is still there");
    let shown = ok(link(&new_host));
    assert!(shown.contains(&format!("master {b}")) && shown.contains(",UP>"), "{shown}");
    let inside = ok(tree.run("vzctl", &["exec", &ctid, "cat /sys/class/net/eth0/address"]));
    assert_eq!(inside.trim(), mac);
    let table = |name: &str| {
        let safe: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        tree.in_netns("nft")
            .args(["list", "table", "netdev", &format!("vz_{safe}")])
            .output()
            .expect("nft")
    };
    let guard = ok(table(&new_host));
    assert!(guard.contains(mac), "{guard}");
    let conf = tree.ve_conf(&ctid);
    let wanted = [format!("host_ifname={new_host}"), format!("bridge={b}"), "mac_filter=on".into()];
    assert!(wanted.iter().all(|w| conf.contains(w.as_str())), "{conf}");
    let out = tree.run("vzctl", &["set", &ctid, "--ifname", "eth9", "--mac_filter", "off"]);
    assert_eq!(out.status.code(), Some(130), "{}", output_text(&out));
    let out = tree.run("vzctl", &["set", &ctid, "--mac_filter", "off"]);
    assert_eq!(out.status.code(), Some(20), "{}", output_text(&out));
    // Off again: the guard goes.
    ok(tree.run("vzctl", &["set", &ctid, "--ifname", "eth0", "--mac_filter", "off", "--save"]));
    assert!(!table(&new_host).status.success(), "the guard is still there");
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
    for bridge in [&a, &b] {
        ok(tree.in_netns("ip").args(["link", "del", bridge]).output().expect("ip"));
    }
}
