//! The destination's page server of the page-server and pre-copy modes (`vzmigrate
//! __page-server`, vz-ctl's `ops/migrate/page_server.rs`): it listens when its command
//! returns, a source that never connects leaves nothing behind once its wait is over, a
//! port in use fails at once, and a migration whose first port is taken on the destination
//! goes through on the next.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]
#![allow(clippy::print_stderr, reason = "the test reports what vzmigrate said")]

#[path = "migrate/rig.rs"]
#[allow(dead_code, reason = "the rig serves the migrate tests too")]
mod rig;

use std::process::Stdio;
use std::time::{Duration, Instant};

use rig::{Rig, assert_only_on, needs, works_only_on};
use vz_tests::{
    Need, VzTree, last_count, ok, output_text, require, start_working_ve, unique_ctid, wait_count,
};

/// Whether something listens on TCP `port` in the tree's network namespace.
fn listens(tree: &VzTree, port: u16) -> bool {
    let out = tree.in_netns("ss").args(["-Hltn", &format!("sport = :{port}")]).output();
    !ok(out.expect("run ss")).trim().is_empty()
}

/// Whether `pid` runs (a zombie waiting for the host's init to reap it does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

/// A port of the 20000..40000 range that nothing in the tree's namespace holds now.
fn free_port(tree: &VzTree) -> u16 {
    let port = 20_000 + u16::try_from(std::process::id() % 20_000).expect("in range");
    assert!(!listens(tree, port), "port {port} is taken in the test's own namespace");
    port
}

#[test]
fn a_page_server_whose_source_never_connects_ends_by_itself_and_leaves_nothing() {
    require!(Need::Root, Need::Program("/usr/local/sbin/criu"), Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    let ctid = unique_ctid().to_string();
    let port = free_port(&tree);
    let port_arg = port.to_string();
    let pidfile = tree.path().join(format!("dump/Dump.{ctid}.criu-pid"));
    let dump = tree.path().join(format!("dump/Dump.{ctid}"));
    let started = Instant::now();
    let serve = |wait: &str| {
        let args =
            ["__page-server", &ctid, "127.0.0.1", &port_arg, "--dir", "pre/1", "--wait", wait];
        tree.run("vzmigrate", &args)
    };
    ok(serve("2"));
    // Listening when the command returns, as a daemon whose pid is in the pid file.
    assert!(listens(&tree, port), "nothing listens on {port} after the command returned");
    let pid: i32 = std::fs::read_to_string(&pidfile).expect("pid file").trim().parse().unwrap();
    assert!(alive(pid), "the page server {pid} is not running");
    assert!(dump.join("pre/1").is_dir(), "no images directory");
    // A second page server on the same port fails at once (the caller tries another port).
    let out = serve("2");
    assert_eq!(out.status.code(), Some(7), "{}", output_text(&out));
    assert!(output_text(&out).contains("in use"), "{}", output_text(&out));
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap().trim(), pid.to_string());
    // Nobody connects: it ends by itself after its wait, and leaves nothing.
    while alive(pid) {
        assert!(started.elapsed() < Duration::from_secs(30), "the page server still waits");
        std::thread::sleep(Duration::from_millis(50));
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2), "it ended before its wait: {waited:?}");
    assert!(!listens(&tree, port), "the port still listens");
    assert!(!pidfile.exists(), "the pid file stays");
    assert!(!dump.exists(), "the images directories stay");

    // One connection: CRIU serves it, and ends as the peer closes it without a word.
    ok(serve("10"));
    let pid: i32 = std::fs::read_to_string(&pidfile).expect("pid file").trim().parse().unwrap();
    let nc = tree
        .in_netns("/bin/busybox")
        .args(["nc", "127.0.0.1", &port_arg])
        .stdin(Stdio::null())
        .output()
        .expect("run nc");
    eprintln!("nc: {}", output_text(&nc));
    let log = dump.join("pre/1/page-server.log");
    let start = Instant::now();
    while alive(pid) {
        assert!(start.elapsed() < Duration::from_secs(10), "CRIU's page server still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&log).expect("CRIU's page-server log");
    // (Its log at -v2: the peer closed the connection before the dump's last command.)
    assert!(text.contains("were not flushed"), "CRIU did not serve the connection: {text}");
    assert!(!listens(&tree, port), "the port still listens after the connection");
    std::fs::remove_dir_all(&dump).expect("remove the images");
    let _ = std::fs::remove_file(&pidfile);
}

/// The port of a page server of the final dump on its first try: vz-ctl's
/// `ops/migrate/precopy.rs` `port(0, 0)` of the migrating process `pid`.
fn first_port(pid: u32) -> u16 {
    20_000 + u16::try_from(pid.wrapping_add(7_919) % 20_000).expect("in range")
}

#[test]
fn a_page_server_port_taken_on_the_destination_is_passed_over() {
    let [a, b, c, d, e, f, g, h] = needs();
    require!(a, b, c, d, e, f, g, h);
    let rig = Rig::new("");
    let ctid = unique_ctid().to_string();
    start_working_ve(&rig.src, &ctid, "198.51.100.77", &[]);
    let before = last_count(&rig.src, &ctid);
    let migration = rig
        .vzmigrate_command(true, &["--online", "--mode=page-server", "-t"], &ctid)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vzmigrate");
    // nsenter execs vzmigrate: its pid, and with it the page server's first port, is known.
    let port = first_port(migration.id());
    let mut holder = rig
        .dst
        .in_netns("/bin/busybox")
        .args(["nc", "-l", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("run nc");
    let start = Instant::now();
    while !listens(&rig.dst, port) {
        assert!(start.elapsed() < Duration::from_secs(5), "nc does not listen on {port}");
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = migration.wait_with_output().expect("wait for vzmigrate");
    let held = holder.try_wait().expect("nc").is_none();
    let _ = holder.kill();
    let _ = holder.wait();
    let text = output_text(&out);
    eprintln!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(held, "nc's listener on {port} ended (it was connected to?)");
    assert!(text.contains(&format!("port {port}")), "the first port {port} was not tried: {text}");
    assert!(!text.contains("falling back"), "{text}");
    assert_only_on(&rig.dst, &rig.src, &ctid);
    wait_count(&rig.dst, &ctid, before + 3);
}

/// vzmigrate killed while the destination's page server waits for the dump: the next vzctl
/// command on the destination kills it (by its pid file) with the rest of the copy, and the
/// source's repair leaves the VE running there.
#[test]
fn a_page_server_left_by_a_killed_vzmigrate_is_ended_by_the_destination_s_repair() {
    let [a, b, c, d, e, f, g, h] = needs();
    require!(a, b, c, d, e, f, g, h);
    let rig = Rig::new("");
    let ctid = unique_ctid().to_string();
    start_working_ve(&rig.src, &ctid, "198.51.100.77", &[]);
    let args = ["--online", "--mode=page-server"];
    rig.vzmigrate_killed_at(true, &args, &ctid, "migrate:page-server");
    let pidfile = rig.dst.path().join(format!("dump/Dump.{ctid}.criu-pid"));
    let pid: i32 = std::fs::read_to_string(&pidfile).expect("pid file").trim().parse().unwrap();
    assert!(alive(pid), "no page server waits");
    let out = rig.dst.run("vzctl", &["start", &ctid]);
    let text = output_text(&out);
    assert!(text.contains("Recovering from an interrupted migration"), "{text}");
    let start = Instant::now();
    while alive(pid) {
        assert!(start.elapsed() < Duration::from_secs(5), "the repair left the page server");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pidfile.exists(), "the pid file stays");
    let out = rig.src.run("vzctl", &["start", &ctid]);
    assert!(output_text(&out).contains("Recovering"), "{}", output_text(&out));
    works_only_on(&rig.src, &rig.dst, &ctid);
}
