//! What a beancounter holds: the [`Usage`] row, and accounting from `/proc` for the parameters
//! no cgroup counts (open files, sockets and their queues, file locks, ptys, locked and private
//! memory, netfilter entries), summed over the processes of the VE's cgroup.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::Path;

use crate::resource::Resource;

/// One row of a beancounter, as in `/proc/user_beancounters`, in the parameter's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// The parameter.
    pub resource: Resource,
    /// Current usage.
    pub held: u64,
    /// Highest usage the kernel recorded (equal to `held` where the kernel keeps no peak).
    pub maxheld: u64,
    /// Barrier in effect.
    pub barrier: u64,
    /// Limit in effect.
    pub limit: u64,
    /// Refusals counted by the kernel (0 where no kernel counter exists).
    pub failcnt: u64,
    /// Whether `held` is measured on this kernel; `false` means no data source exists and the
    /// numbers are zeros (see the crate README's table).
    pub measured: bool,
}

impl Usage {
    pub(crate) fn unmeasured(resource: Resource) -> Self {
        let unl = crate::param::UNLIMITED;
        Usage {
            resource,
            held: 0,
            maxheld: 0,
            barrier: unl,
            limit: unl,
            failcnt: 0,
            measured: false,
        }
    }

    pub(crate) fn held(resource: Resource, held: u64) -> Self {
        Usage { held, maxheld: held, measured: true, ..Usage::unmeasured(resource) }
    }
}

/// Counts over the processes of a VE, from `/proc/<pid>/…`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TaskStats {
    pub(crate) tasks: u64,
    pub(crate) threads: u64,
    pub(crate) files: u64,
    pub(crate) tcp_socks: u64,
    pub(crate) other_socks: u64,
    pub(crate) tcp_snd: u64,
    pub(crate) tcp_rcv: u64,
    pub(crate) dgram_snd: u64,
    pub(crate) dgram_rcv: u64,
    pub(crate) locked_kb: u64,
    pub(crate) privvm_kb: u64,
    pub(crate) ptys: u64,
    pub(crate) flocks: u64,
    /// Netfilter entries of the processes' network namespaces; `None` if none could be read.
    pub(crate) iptent: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct SockInfo {
    tcp: bool,
    tx: u64,
    rx: u64,
}

/// Sums the per-process data of `pids` (thread-group ids). Processes that exit meanwhile are
/// skipped: a beancounter is a snapshot.
pub(crate) fn task_stats(pids: &[u32]) -> TaskStats {
    let mut stats = TaskStats::default();
    let mut sockets = BTreeSet::new();
    let mut ptys = BTreeSet::new();
    let mut tables: HashMap<String, HashMap<u64, SockInfo>> = HashMap::new();
    let mut ns_of_socket: HashMap<u64, String> = HashMap::new();
    for &pid in pids {
        let proc = format!("/proc/{pid}");
        let status = procfs::process::Process::new(i32::try_from(pid).unwrap_or(-1))
            .and_then(|p| p.status());
        let Ok(status) = status else { continue };
        stats.tasks += 1;
        stats.threads += status.threads.max(1);
        stats.locked_kb += status.vmlck.unwrap_or(0);
        stats.privvm_kb += status.vmdata.unwrap_or(0) + status.vmstk.unwrap_or(0);
        let netns = fs::read_link(format!("{proc}/ns/net"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(fds) = fs::read_dir(format!("{proc}/fd")) else { continue };
        for fd in fds.flatten() {
            stats.files += 1;
            let Ok(target) = fs::read_link(fd.path()) else { continue };
            let target = target.to_string_lossy();
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                if let Ok(inode) = inode.parse::<u64>()
                    && sockets.insert(inode)
                {
                    ns_of_socket.insert(inode, netns.clone());
                }
            } else if let Some(n) =
                target.strip_prefix("/dev/pts/").and_then(|n| n.parse::<u32>().ok())
            {
                ptys.insert(n);
            } else if target == "/dev/ptmx" || target == "/dev/pts/ptmx" {
                let info = fs::read_to_string(format!(
                    "{proc}/fdinfo/{}",
                    fd.file_name().to_string_lossy()
                ));
                if let Some(n) = info.ok().as_deref().and_then(|i| field(i, "tty-index:")) {
                    ptys.insert(u32::try_from(n).unwrap_or(u32::MAX));
                }
            }
        }
        if !netns.is_empty() && !tables.contains_key(&netns) {
            tables.insert(netns.clone(), socket_tables(&proc));
            if let Some(entries) = crate::iptent::entries_of_netns(pid) {
                *stats.iptent.get_or_insert(0) += entries;
            }
        }
    }
    for inode in sockets {
        let info =
            ns_of_socket.get(&inode).and_then(|ns| tables.get(ns)).and_then(|t| t.get(&inode));
        match info {
            Some(s) if s.tcp => {
                stats.tcp_socks += 1;
                stats.tcp_snd += s.tx;
                stats.tcp_rcv += s.rx;
            }
            Some(s) => {
                stats.other_socks += 1;
                stats.dgram_snd += s.tx;
                stats.dgram_rcv += s.rx;
            }
            None => stats.other_socks += 1,
        }
    }
    stats.ptys = ptys.len() as u64;
    stats.flocks = count_locks(pids);
    stats
}

fn field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The TCP and UDP sockets of the network namespace `proc` is in, by inode, with their send
/// and receive queues (`tx_queue:rx_queue`, bytes). Listening TCP sockets report their accept
/// backlog there, not bytes, so their queues are not counted.
fn socket_tables(proc: &str) -> HashMap<u64, SockInfo> {
    let mut map = HashMap::new();
    for (file, tcp) in [("tcp", true), ("tcp6", true), ("udp", false), ("udp6", false)] {
        let Ok(text) = fs::read_to_string(format!("{proc}/net/{file}")) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(state), Some(queues), Some(inode)) = (f.get(3), f.get(4), f.get(9)) else {
                continue;
            };
            let Ok(inode) = inode.parse::<u64>() else { continue };
            let (tx, rx) = queues.split_once(':').unwrap_or(("0", "0"));
            let hex = |s: &str| u64::from_str_radix(s, 16).unwrap_or(0);
            let listening = tcp && *state == "0A";
            let (tx, rx) = if listening { (0, 0) } else { (hex(tx), hex(rx)) };
            map.insert(inode, SockInfo { tcp, tx, rx });
        }
    }
    map
}

/// File locks held by `pids` in `/proc/locks` (waiters, shown with `->`, hold nothing).
fn count_locks(pids: &[u32]) -> u64 {
    let Ok(text) = fs::read_to_string("/proc/locks") else { return 0 };
    let set: HashSet<u32> = pids.iter().copied().collect();
    text.lines()
        .filter(|l| !l.contains("->"))
        .filter_map(|l| l.split_whitespace().nth(4)?.parse::<u32>().ok())
        .filter(|pid| set.contains(pid))
        .count() as u64
}

/// The processes of a cgroup directory and every cgroup below it (`cgroup.procs`).
///
/// # Errors
/// [`UbcError::Cgroup`](crate::UbcError::Cgroup) when a `cgroup.procs` cannot be read.
pub(crate) fn cgroup_pids(dir: &Path) -> crate::Result<Vec<u32>> {
    let pids = vz_cgroup::tree::tasks(dir)?;
    Ok(pids.into_iter().filter_map(|p| u32::try_from(p).ok()).collect())
}

/// The rows measured from `/proc` (and the ones nothing measures), before the cgroup rows.
pub(crate) fn proc_rows(stats: &TaskStats) -> Vec<Usage> {
    let page_kb = (crate::page_size() / 1024).max(1);
    let mut rows = vec![
        Usage::held(Resource::LockedPages, stats.locked_kb / page_kb),
        Usage::held(Resource::PrivvmPages, stats.privvm_kb / page_kb),
        Usage::held(Resource::NumTcpSock, stats.tcp_socks),
        Usage::held(Resource::NumOtherSock, stats.other_socks),
        Usage::held(Resource::NumFlock, stats.flocks),
        Usage::held(Resource::NumPty, stats.ptys),
        Usage::held(Resource::TcpSndBuf, stats.tcp_snd),
        Usage::held(Resource::TcpRcvBuf, stats.tcp_rcv),
        Usage::held(Resource::OtherSockBuf, stats.dgram_snd),
        Usage::held(Resource::DgramRcvBuf, stats.dgram_rcv),
        Usage::held(Resource::NumFile, stats.files),
        stats.iptent.map_or(Usage::unmeasured(Resource::NumIptent), |n| {
            Usage::held(Resource::NumIptent, n)
        }),
    ];
    for r in [Resource::NumSiginfo, Resource::VmGuarPages] {
        rows.push(Usage::unmeasured(r));
    }
    rows
}

/// Replaces (or adds) the row of `row.resource`.
pub(crate) fn put(rows: &mut Vec<Usage>, row: Usage) {
    rows.retain(|r| r.resource != row.resource);
    rows.push(row);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_counted() {
        let me = std::process::id();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = task_stats(&[me]);
        assert_eq!(before.tasks, 1);
        assert!(before.tcp_socks >= 2, "{before:?}");
        assert!(before.other_socks >= 1, "{before:?}");
        assert!(before.files >= before.tcp_socks + before.other_socks, "{before:?}");
        assert!(before.privvm_kb > 0, "{before:?}");
        drop((listener, client, udp));
    }

    /// Files of a `sleep` started through `sh` with `extra` more descriptors open.
    fn sleep_files(extra: &str) -> TaskStats {
        let mut child = std::process::Command::new("sh")
            .args(["-c", &format!("exec sleep 30 {extra}")])
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let comm = format!("/proc/{}/comm", child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
            assert!(std::time::Instant::now() < deadline, "sleep did not start");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let stats = task_stats(&[child.id()]);
        child.kill().unwrap();
        child.wait().unwrap();
        stats
    }

    #[test]
    fn a_child_files_are_counted_exactly() {
        // The harness may pass inherited descriptors: compare two children.
        let plain = sleep_files("");
        let more = sleep_files("7</dev/null 8</dev/null 9</dev/null");
        assert_eq!((plain.tasks, plain.threads, plain.tcp_socks, plain.flocks), (1, 1, 0, 0));
        assert_eq!(more.files, plain.files + 3, "{plain:?} {more:?}");
    }

    #[test]
    fn queued_bytes_are_seen() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        client.write_all(&[7u8; 3000]).unwrap();
        // Nobody reads: the bytes sit in the server's receive queue.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let s = task_stats(&[std::process::id()]);
            if s.tcp_rcv >= 3000 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{s:?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn vanished_processes_are_skipped() {
        assert_eq!(task_stats(&[u32::MAX - 1]), TaskStats::default());
    }

    #[test]
    fn this_process_counts_itself() {
        let stats = task_stats(&[std::process::id()]);
        assert_eq!(stats.tasks, 1);
        assert!(stats.threads >= 1 && stats.privvm_kb > 0 && stats.files > 0, "{stats:?}");
    }
}
