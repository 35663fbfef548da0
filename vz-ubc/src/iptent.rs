//! numiptent's held value: the netfilter entries of a VE's network namespaces, counted from
//! the kernel's own tables. nftables rules come from an `NFT_MSG_GETRULE` dump over
//! nfnetlink; the legacy iptables tables listed in `/proc/<pid>/net/ip{,6}_tables_names` give
//! their entry counts through `IPT_SO_GET_INFO` / `IP6T_SO_GET_INFO`, less each table's
//! built-in chain policies and its terminating entry, so an empty table counts 0. The kernel
//! keeps no per-namespace limit on either: numiptent is accounted, not enforced.
#![allow(unsafe_code, reason = "setns, netlink and getsockopt calls; each has a SAFETY comment")]

use std::fs::{self, File};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// nfnetlink subsystem of nftables and its "get rules" / "new rule" messages.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
/// `IPT_SO_GET_INFO` and `IP6T_SO_GET_INFO` (both 64, at levels SOL_IP and SOL_IPV6).
const SO_GET_INFO: libc::c_int = 64;
/// `NLM_F_REQUEST | NLM_F_DUMP` of a netlink header.
const DUMP_FLAGS: u16 = 0x0001 | 0x0300;
/// `NFPROTO_UNSPEC`: every family.
const NFPROTO_UNSPEC: u8 = 0;
/// Length of a table name in `struct ipt_getinfo`.
const TABLE_NAME_LEN: usize = 32;

/// `struct ipt_getinfo` (identical to `struct ip6t_getinfo`).
#[repr(C)]
struct TableInfo {
    name: [u8; TABLE_NAME_LEN],
    valid_hooks: u32,
    hook_entry: [u32; 5],
    underflow: [u32; 5],
    num_entries: u32,
    size: u32,
}

/// The netfilter entries of the network namespace of process `pid`: nftables rules plus
/// the legacy tables' added entries. `None` when the namespace cannot be entered or read.
pub(crate) fn entries_of_netns(pid: u32) -> Option<u64> {
    let ns = File::open(format!("/proc/{pid}/ns/net")).ok()?;
    let legacy: Vec<(libc::c_int, String)> = [(libc::AF_INET, "ip"), (libc::AF_INET6, "ip6")]
        .into_iter()
        .flat_map(|(family, prefix)| {
            fs::read_to_string(format!("/proc/{pid}/net/{prefix}_tables_names"))
                .unwrap_or_default()
                .lines()
                .map(|name| (family, name.trim().to_owned()))
                .filter(|(_, name)| !name.is_empty())
                .collect::<Vec<_>>()
        })
        .collect();
    // setns changes only the calling thread's network namespace: a thread of its own enters
    // the VE's, counts there and ends, and no other thread of this process moves.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: `ns` is an open namespace file; setns affects this thread only.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    tracing::debug!(pid, error = %io::Error::last_os_error(), "setns(net)");
                    return None;
                }
                let nft = nft_rules().ok()?;
                let xt: u64 = legacy
                    .iter()
                    .map(|(family, name)| legacy_entries(*family, name).unwrap_or(0))
                    .sum();
                Some(nft + xt)
            })
            .join()
            .ok()
            .flatten()
    })
}

fn socket(domain: libc::c_int, kind: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned by the returned OwnedFd.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The number of nftables rules in this thread's network namespace (all families). 0 when
/// the kernel has no nfnetlink.
fn nft_rules() -> io::Result<u64> {
    let sock = match socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_NETFILTER) {
        Ok(sock) => sock,
        Err(e) if e.raw_os_error() == Some(libc::EPROTONOSUPPORT) => return Ok(0),
        Err(e) => return Err(e),
    };
    let request = dump_request();
    // SAFETY: sends `request.len()` bytes from a live buffer on an open socket; the kernel
    // is the default destination of a netlink socket.
    let sent = unsafe { libc::send(sock.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut rules = 0;
    loop {
        // SAFETY: receives at most `buf.len()` bytes into a live, writable buffer.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        match count_rule_messages(&buf[..n])? {
            Batch::More(count) => rules += count,
            Batch::Done(count) => return Ok(rules + count),
        }
    }
}

/// A netlink `NFT_MSG_GETRULE` dump request for every family: nlmsghdr + nfgenmsg.
fn dump_request() -> Vec<u8> {
    let kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE;
    let len = 20u32;
    let mut msg = Vec::with_capacity(20);
    msg.extend(len.to_ne_bytes());
    msg.extend(kind.to_ne_bytes());
    msg.extend(DUMP_FLAGS.to_ne_bytes());
    msg.extend(1u32.to_ne_bytes()); // sequence number
    msg.extend(0u32.to_ne_bytes()); // port id: the kernel assigns it
    msg.extend([NFPROTO_UNSPEC, 0, 0, 0]); // nfgenmsg: family, version, res_id
    msg
}

/// What one received buffer of the dump held.
#[derive(Debug, PartialEq, Eq)]
enum Batch {
    /// This many rules, and more messages follow.
    More(u64),
    /// This many rules, and the dump is complete.
    Done(u64),
}

/// Counts the rule messages of one buffer of netlink messages.
fn count_rule_messages(mut buf: &[u8]) -> io::Result<Batch> {
    let rule = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE;
    let mut count = 0;
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < 16 || len > buf.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated netlink message"));
        }
        match i32::from(kind) {
            libc::NLMSG_DONE => return Ok(Batch::Done(count)),
            libc::NLMSG_ERROR => {
                let code =
                    buf.get(16..20).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
                return Ok(Batch::Done(count));
            }
            _ if kind == rule => count += 1,
            _ => {}
        }
        // Messages are aligned to 4 bytes.
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(Batch::More(count))
}

/// Entries a user added to legacy table `name` of `family` in this thread's namespace: all
/// entries less one policy per built-in chain and the terminating entry.
fn legacy_entries(family: libc::c_int, name: &str) -> io::Result<u64> {
    let sock = socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW)?;
    let level = if family == libc::AF_INET6 { libc::SOL_IPV6 } else { libc::SOL_IP };
    let mut info = TableInfo {
        name: [0; TABLE_NAME_LEN],
        valid_hooks: 0,
        hook_entry: [0; 5],
        underflow: [0; 5],
        num_entries: 0,
        size: 0,
    };
    let bytes = name.as_bytes();
    let n = bytes.len().min(TABLE_NAME_LEN - 1);
    info.name[..n].copy_from_slice(&bytes[..n]);
    let mut len = libc::socklen_t::try_from(size_of::<TableInfo>()).unwrap_or(0);
    // SAFETY: `info` is a live `struct ipt_getinfo` of `len` bytes the kernel fills in.
    let rc = unsafe {
        libc::getsockopt(sock.as_raw_fd(), level, SO_GET_INFO, (&raw mut info).cast(), &raw mut len)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let fixed = u64::from(info.valid_hooks.count_ones()) + 1;
    Ok(u64::from(info.num_entries).saturating_sub(fixed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = 16 + payload.len();
        let mut m = Vec::new();
        m.extend(u32::try_from(len).unwrap().to_ne_bytes());
        m.extend(kind.to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend(payload);
        m.resize(len.next_multiple_of(4), 0);
        m
    }

    #[test]
    fn the_dump_request_is_a_getrule_dump() {
        let r = dump_request();
        assert_eq!(r.len(), 20);
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), 0x0a07);
        assert_eq!(u16::from_ne_bytes([r[6], r[7]]), 0x0301);
    }

    #[test]
    fn rule_messages_are_counted_until_done() {
        let rule = message(0x0a06, &[1, 2, 3, 4, 5]);
        let mut buf = [rule.clone(), rule.clone(), message(0x0a03, &[0; 4])].concat();
        assert_eq!(count_rule_messages(&buf).unwrap(), Batch::More(2));
        buf.extend(message(3, &[0; 4]));
        buf.extend(rule);
        assert_eq!(count_rule_messages(&buf).unwrap(), Batch::Done(2));
        let error = message(2, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(count_rule_messages(&error).unwrap_err().raw_os_error(), Some(libc::EPERM));
        assert!(count_rule_messages(&[16, 0, 0]).is_ok_and(|b| b == Batch::More(0)));
        assert!(count_rule_messages(&message(0x0a06, &[])[..12]).is_ok());
        let mut bad = message(0x0a06, &[]);
        bad[0] = 200;
        assert!(count_rule_messages(&bad).is_err());
    }

    #[test]
    fn this_namespace_can_be_counted() {
        vz_tests::require!(vz_tests::Need::Root);
        assert!(entries_of_netns(std::process::id()).is_some());
    }
}
