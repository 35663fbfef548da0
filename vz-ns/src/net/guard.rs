//! What a VE may send as its source on the host end of its pair, beyond IPv4's reverse
//! path filter: a venet VE's IPv6 source must be one of its addresses (or link-local, or
//! unspecified for duplicate address detection), and a veth VE with `mac_filter=on` may send
//! only from its own MAC. Each guard is an nftables table of the netdev family bound to the
//! host end (`vz_<ifname>`, ingress hook, before the host routes or bridges the frame),
//! replaced as a whole in one transaction by `nft -f -`; the kernel has no per-device switch
//! for either. A venet VE without IPv6 addresses gets no table: IPv6 is off on its host end.
//!
//! Removing a guard first asks nf_tables over netlink whether the table is there ([`exists`]):
//! an `nft` run costs ~20 ms even with nothing to delete (its transaction waits for an RCU
//! grace period), and a start or stop of a venet VE with IPv4 addresses only removes a table
//! that is almost never there: two runs per start, one per stop.

use std::io::Write;
use std::net::Ipv6Addr;
use std::process::{Command, Stdio};

use super::write_sysctl;
use crate::error::{NsError, Result};

/// The guard table's name for the host end `ifname` (nft identifiers: letters, digits, `_`).
fn table(ifname: &str) -> String {
    let safe: String =
        ifname.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("vz_{safe}")
}

/// Lets the host end of a venet take only IPv6 packets from `allowed` (the VE's addresses),
/// link-local or unspecified sources; with none allowed, IPv6 is off on it.
///
/// # Errors
/// [`NsError::Io`] when the sysctl or nft fails (nft's message in the error).
pub(crate) fn venet_ipv6(ifname: &str, allowed: &[Ipv6Addr]) -> Result<()> {
    let sysctl = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    if allowed.is_empty() {
        write_sysctl(&sysctl, "1")?;
        return remove(ifname);
    }
    let sources: Vec<String> = ["fe80::/10".to_owned(), "::/128".to_owned()]
        .into_iter()
        .chain(allowed.iter().map(Ipv6Addr::to_string))
        .collect();
    let rule = format!("ip6 saddr != {{ {} }} drop", sources.join(", "));
    // The guard before IPv6 comes on: no moment without it.
    replace(ifname, &rule)?;
    write_sysctl(&sysctl, "0")
}

/// Lets the host end of a bridged veth take only frames from `mac` (OpenVZ's
/// `mac_filter=on`).
///
/// # Errors
/// [`NsError::Io`] when nft fails.
pub(crate) fn veth_mac(ifname: &str, mac: &str) -> Result<()> {
    replace(ifname, &format!("ether saddr != {mac} drop"))
}

/// Removes the guard of `ifname`, if any.
///
/// # Errors
/// [`NsError::Io`] when nft fails for another reason than a missing table.
pub(crate) fn remove(ifname: &str) -> Result<()> {
    if !exists(ifname)? {
        return Ok(());
    }
    let t = table(ifname);
    // Declaring the table first makes the delete succeed whether it existed or not.
    nft(&format!("table netdev {t} {{}}\ndelete table netdev {t}\n"))
}

/// Replaces the guard table of `ifname` by one whose ingress chain holds `rule`.
fn replace(ifname: &str, rule: &str) -> Result<()> {
    let t = table(ifname);
    nft(&format!(
        "table netdev {t} {{}}\ndelete table netdev {t}\n\
         table netdev {t} {{\n  chain source {{\n    \
         type filter hook ingress device \"{ifname}\" priority -500; policy accept;\n    \
         {rule}\n  }}\n}}\n"
    ))
}

/// nfnetlink's subsystem of nf_tables, and its messages' types within it.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
/// The netdev family of nf_tables (`NFPROTO_NETDEV`).
const NFPROTO_NETDEV: u8 = 5;
/// `NFTA_TABLE_NAME`, the table name attribute.
const NFTA_TABLE_NAME: u16 = 1;

/// Whether the guard table of `ifname` is in this network namespace: one `GETTABLE` request
/// on a `NETLINK_NETFILTER` socket, answered by the table or by `ENOENT`. Any other answer
/// (nf_tables missing, a refusal) counts as there, so that `nft` decides.
///
/// # Errors
/// [`NsError::Sys`] when the netlink socket cannot be used at all.
pub(crate) fn exists(ifname: &str) -> Result<bool> {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto,
        socket,
    };
    use std::os::fd::AsRawFd;
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )
    .map_err(|e| NsError::sys("open a NETLINK_NETFILTER socket", e))?;
    // The kernel always answers a request; the limit only bounds a wait that would hang.
    let limit = nix::sys::time::TimeVal::new(5, 0);
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimeout, &limit)
        .map_err(|e| NsError::sys("set a timeout on a NETLINK_NETFILTER socket", e))?;
    let request = get_table_request(&table(ifname));
    sendto(sock.as_raw_fd(), &request, &NetlinkAddr::new(0, 0), MsgFlags::empty())
        .map_err(|e| NsError::sys("ask nf_tables for a guard table", e))?;
    let mut answer = [0_u8; 8192];
    match recv(sock.as_raw_fd(), &mut answer, MsgFlags::empty()) {
        Ok(n) => Ok(table_in_answer(&answer[..n])),
        // No answer in time: `nft` decides.
        Err(nix::errno::Errno::EAGAIN) => Ok(true),
        Err(e) => Err(NsError::sys("read nf_tables' answer", e)),
    }
}

/// The netlink message asking nf_tables for the netdev table `name`.
fn get_table_request(name: &str) -> Vec<u8> {
    const NLM_F_REQUEST: u16 = 1;
    let mut attr_name = name.as_bytes().to_vec();
    attr_name.push(0);
    let attr_len = 4 + attr_name.len();
    let padded = attr_len.div_ceil(4) * 4;
    let len = 16 + 4 + padded;
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    msg.extend_from_slice(&(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETTABLE).to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    msg.extend_from_slice(&1_u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0_u32.to_ne_bytes()); // port: the kernel's
    msg.extend_from_slice(&[NFPROTO_NETDEV, 0, 0, 0]); // nfgenmsg: family, version, res_id
    msg.extend_from_slice(&u16::try_from(attr_len).unwrap_or(u16::MAX).to_ne_bytes());
    msg.extend_from_slice(&NFTA_TABLE_NAME.to_ne_bytes());
    msg.extend_from_slice(&attr_name);
    msg.resize(len, 0);
    msg
}

/// Whether nf_tables' `answer` to [`get_table_request`] says the table is there: a
/// `NEWTABLE` message, or an error other than `ENOENT`.
fn table_in_answer(answer: &[u8]) -> bool {
    const NLMSG_ERROR: u16 = 2;
    let Some(header) = answer.get(..20) else { return true };
    let kind = u16::from_ne_bytes([header[4], header[5]]);
    if kind == NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWTABLE {
        return true;
    }
    if kind == NLMSG_ERROR {
        let error = i32::from_ne_bytes([header[16], header[17], header[18], header[19]]);
        return error != -libc::ENOENT;
    }
    true
}

fn nft(script: &str) -> Result<()> {
    let fail = |e: std::io::Error| NsError::io("run", "nft -f - (the VE's source guard)", e);
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(fail)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(fail)?;
    }
    let out = child.wait_with_output().map_err(fail)?;
    if out.status.success() {
        return Ok(());
    }
    let message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    Err(fail(std::io::Error::other(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_request_names_the_netdev_table() {
        let msg = get_table_request("vz_venet101");
        assert_eq!(msg.len() % 4, 0);
        assert_eq!(u32::from_ne_bytes(msg[..4].try_into().unwrap()) as usize, msg.len());
        assert_eq!(u16::from_ne_bytes([msg[4], msg[5]]), 10 << 8 | 1);
        assert_eq!(msg[16], NFPROTO_NETDEV);
        assert_eq!(u16::from_ne_bytes([msg[20], msg[21]]), 4 + 12, "name and its NUL");
        assert_eq!(&msg[24..36], b"vz_venet101\0");
    }

    #[test]
    fn only_a_table_or_another_error_than_enoent_counts_as_there() {
        let answer = |kind: u16, error: i32| {
            let mut a = vec![0_u8; 36];
            a[4..6].copy_from_slice(&kind.to_ne_bytes());
            a[16..20].copy_from_slice(&error.to_ne_bytes());
            a
        };
        assert!(table_in_answer(&answer(10 << 8, 0)), "NEWTABLE");
        assert!(!table_in_answer(&answer(2, -libc::ENOENT)), "no such table");
        assert!(table_in_answer(&answer(2, -libc::EPERM)), "nft decides");
        assert!(table_in_answer(&[]), "nft decides");
    }

    #[test]
    fn exists_sees_the_table_nft_made_and_removed() {
        vz_tests::require!(vz_tests::Need::Root, vz_tests::Need::Program("/usr/sbin/nft"));
        // In a network namespace of the test's own thread, gone with the thread.
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare net");
            assert!(!exists("veth9.0").expect("ask"), "no table yet");
            nft("table netdev vz_veth9_0 {}\n").expect("nft makes the table");
            assert!(exists("veth9.0").expect("ask"), "the table nft made");
            remove("veth9.0").expect("remove");
            assert!(!exists("veth9.0").expect("ask"), "removed");
            remove("veth9.0").expect("removing nothing is no error");
        })
        .join()
        .expect("the test thread");
    }

    #[test]
    fn table_names_are_nft_identifiers() {
        assert_eq!(table("venet101"), "vz_venet101");
        assert_eq!(table("veth101.0"), "vz_veth101_0");
    }
}
