//! numtcpsock and numothersock on cgroup v2 (also the cgroup2 tree of a hybrid host): the
//! socket programs refuse the inet socket past each limit with EPERM and count the refusal,
//! a closed socket makes room again, unix sockets are not limited, and raising one limit at
//! runtime keeps the other.

#![allow(clippy::unwrap_used, reason = "test helpers panic on failure")]

use std::process::Command;

use vz_tests::TestCgroup;
use vz_ubc::{BarrierLimit, Beancounter, CgroupDirs, Enforcement, Resource, UbcSet};

/// Opens up to 8 TCP, 8 UDP and 4 unix sockets (each kind until the first refusal), closes
/// the TCP ones and opens up to 8 TCP again; prints the four counts.
const SCRIPT: &str = r#"
import socket
def grab(family, kind, n):
    got = []
    for _ in range(n):
        try:
            got.append(socket.socket(family, kind))
        except PermissionError:
            break
    return got
tcp = grab(socket.AF_INET, socket.SOCK_STREAM, 8)
udp = grab(socket.AF_INET6, socket.SOCK_DGRAM, 8)
unix = grab(socket.AF_UNIX, socket.SOCK_STREAM, 4)
counts = [len(tcp), len(udp), len(unix)]
for s in tcp:
    s.close()
counts.append(len(grab(socket.AF_INET, socket.SOCK_STREAM, 8)))
print(*counts)
"#;

/// Runs [`SCRIPT`] inside `cg`; returns its four counts.
fn run_in(cg: &TestCgroup) -> Vec<u32> {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("echo $$ > {} && exec /usr/bin/python3 -c \"$0\"", cg.procs().display()))
        .arg(SCRIPT)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    text.split_whitespace().map(|n| n.parse().unwrap()).collect()
}

fn failcnt(bc: &Beancounter, resource: Resource) -> u64 {
    row(bc, resource).failcnt
}

fn row(bc: &Beancounter, resource: Resource) -> vz_ubc::Usage {
    bc.usage().unwrap().into_iter().find(|u| u.resource == resource).unwrap()
}

#[test]
fn socket_counts_are_limited_by_the_cgroup_socket_programs() {
    vz_tests::require!(vz_tests::Need::Root, vz_tests::Need::Program("/usr/bin/python3"));
    let cg = TestCgroup::on_cgroup2("sockets").unwrap();
    let bc = Beancounter::new(4245, CgroupDirs::V2 { dir: cg.dir().to_path_buf() });
    let mut set = UbcSet::new();
    set.set(Resource::NumTcpSock, BarrierLimit::both(5));
    set.set(Resource::NumOtherSock, BarrierLimit::both(3));
    let report = bc.apply(&set).unwrap();
    for r in [Resource::NumTcpSock, Resource::NumOtherSock] {
        assert!(matches!(report.get(r), Some(Enforcement::Enforced { .. })), "{r}: {report:?}");
    }

    // 5 TCP and 3 other inet sockets; unix sockets are not limited; closing makes room.
    assert_eq!(run_in(&cg), [5, 3, 4, 5]);
    assert_eq!(failcnt(&bc, Resource::NumTcpSock), 2, "refused twice: first and second grab");
    assert_eq!(failcnt(&bc, Resource::NumOtherSock), 1);
    // The limits in force are read back from the kernel's maps, not from a config.
    let tcp = row(&bc, Resource::NumTcpSock);
    assert_eq!((tcp.barrier, tcp.limit), (5, 5), "{tcp:?}");

    // Raising numtcpsock alone at runtime keeps numothersock and the refusals counted.
    let mut raise = UbcSet::new();
    raise.set(Resource::NumTcpSock, BarrierLimit::both(100));
    bc.apply(&raise).unwrap();
    assert_eq!(run_in(&cg), [8, 3, 4, 8]);
    assert_eq!(failcnt(&bc, Resource::NumTcpSock), 2);
    assert_eq!(failcnt(&bc, Resource::NumOtherSock), 2);
    assert_eq!(row(&bc, Resource::NumTcpSock).limit, 100);
    assert_eq!(row(&bc, Resource::NumOtherSock).limit, 3, "kept");

    // Sockets held while the limits change stay counted: 3 held, numtcpsock 5 leaves 2.
    let mut holder = hold_three_tcp_sockets(&cg);
    let mut change = UbcSet::new();
    change.set(Resource::NumOtherSock, BarrierLimit::both(0));
    bc.apply(&change).unwrap();
    change.set(Resource::NumTcpSock, BarrierLimit::both(5));
    bc.apply(&change).unwrap();
    let counts = run_in(&cg);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(counts[..2], [2, 0], "3 of 5 TCP sockets held; numothersock 0 refuses all");
}

/// A process in `cg` holding three TCP sockets, once it has them.
fn hold_three_tcp_sockets(cg: &TestCgroup) -> std::process::Child {
    use std::io::BufRead;
    let script = "import socket, time\n\
                  s = [socket.socket() for _ in range(3)]\n\
                  print('ready', flush=True)\n\
                  time.sleep(60)";
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("echo $$ > {} && exec /usr/bin/python3 -c \"$0\"", cg.procs().display()))
        .arg(script)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    child
}
