//! Benchmark of a VE's network through the real binaries: TCP throughput (iperf3, 3 s each
//! way) and round-trip latency (`ping`-free: iperf3's connect time is not a latency, so a
//! request/response loop over `nc` is timed instead) host ↔ VE over venet, beside host ↔ host
//! over loopback, all inside the test tree's own network namespace.
//!
//! Run as root: `cargo bench -p vz-tests --bench network` after building the binaries (or set
//! `VZ_BIN_DIR`). Not a test: it asserts nothing but that the tools ran.
#![allow(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::process::Command;

use vz_tests::{Need, VzTree, ok};

fn main() {
    let needs = [
        Need::Root,
        Need::Program("/bin/busybox"),
        Need::Program("/usr/bin/iperf3"),
        Need::Program("/usr/bin/python3"),
    ];
    if !vz_tests::check_needs("network bench", &needs) {
        return;
    }
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = "1900200";
    ok(tree.run("vzctl", &["--quiet", "create", ctid, "--ipadd", "192.0.2.50"]));
    ok(tree.run("vzctl", &["--quiet", "start", ctid]));
    let pid = tree.init_pid(ctid);
    // iperf3 is the host's binary, run in the VE's network namespace: the packets take the
    // VE's path (venet0 → host end → host), which is what is measured.
    let server = Server::start(Command::new("nsenter").args([
        "--net",
        "-t",
        &pid,
        "iperf3",
        "-s",
        "-1",
        "-B",
        "192.0.2.50",
    ]));
    let venet = iperf(&tree, "192.0.2.50");
    drop(server);
    let server = Server::start(tree.in_netns("iperf3").args(["-s", "-1", "-B", "127.0.0.1"]));
    let lo = iperf(&tree, "127.0.0.1");
    drop(server);
    let venet_rtt = round_trip(&tree, &["--net", "-t", &pid], "192.0.2.50");
    let lo_rtt = round_trip(&tree, &[&format!("--net=/run/netns/{}", tree.netns())], "127.0.0.1");
    println!("{:<28} {:>12} {:>16}", "path", "TCP Gbit/s", "round trip (us)");
    println!("{:<28} {:>12.1} {:>16.0}", "host -> VE (venet)", venet, venet_rtt);
    println!("{:<28} {:>12.1} {:>16.0}", "host -> host (loopback)", lo, lo_rtt);
    ok(tree.run("vzctl", &["--quiet", "stop", ctid, "--fast"]));
}

/// Throughput host → `address` in Gbit/s (iperf3 client in the tree's namespace, 3 s).
fn iperf(tree: &VzTree, address: &str) -> f64 {
    let out =
        tree.in_netns("iperf3").args(["-c", address, "-t", "3", "-J"]).output().expect("iperf3");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 -J output");
    json["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0) / 1e9
}

/// Median round trip in microseconds of 200 one-byte TCP exchanges with a server at
/// `address:7777` started in the namespace `ns_args` selects (python3's socket echo loop).
fn round_trip(tree: &VzTree, ns_args: &[&str], address: &str) -> f64 {
    let echo = format!(
        "import socket\ns=socket.socket(socket.AF_INET6 if ':' in '{address}' else socket.AF_INET)\n\
         s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{address}',7777))\ns.listen(1)\n\
         c,_=s.accept()\nwhile True:\n  d=c.recv(1)\n  if not d: break\n  c.send(d)\n"
    );
    let server =
        Server::start(Command::new("nsenter").args(ns_args).args(["python3", "-c", &echo]));
    let client = format!(
        "import socket,time\nc=socket.create_connection(('{address}',7777))\n\
         c.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,1)\nts=[]\n\
         for _ in range(200):\n  t=time.perf_counter();c.send(b'x');c.recv(1);ts.append(time.perf_counter()-t)\n\
         ts.sort();print(ts[len(ts)//2]*1e6)\n"
    );
    let out = tree.in_netns("python3").args(["-c", &client]).output().expect("echo client");
    drop(server);
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(f64::NAN)
}

/// A server the bench started, given 300 ms to listen; killed by its pid and reaped when the
/// guard goes, also when the bench panics.
struct Server(std::process::Child);

impl Server {
    fn start(command: &mut Command) -> Server {
        let child = command.spawn().expect("start a server");
        std::thread::sleep(std::time::Duration::from_millis(300));
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
