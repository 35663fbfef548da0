//! VE networking through rtnetlink: routed [`Venet`] (OpenVZ's `IP_ADDRESS`) and bridged
//! [`Veth`] (`NETIF`), and [`check_host`] for the host settings they rely on.
//!
//! The asynchronous rtnetlink stays inside this module: every call builds a current-thread
//! tokio runtime (no worker threads, so a later fork of the VE's init stays safe), opens a
//! netlink socket in the namespace it works in and blocks until done. A socket for a VE's
//! namespace is opened by switching the calling thread into that namespace for the
//! `socket(2)` call only (`setns(2)` with `CLONE_NEWNET` is per thread); the socket stays
//! bound to the namespace it was made in.
//!
//! "The host" is the network namespace of the calling thread; the kernel tests run the host
//! side in a namespace of their own that way.

mod addr;
mod guard;
mod netdev;
mod route;
mod venet;
mod veth;

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use nix::sched::CloneFlags;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};

use crate::error::{NsError, Result};

pub use addr::{VeAddr, format_address_list, parse_address_list};
pub use netdev::{check_netdev_name, move_netdev_in, move_netdev_out};
pub use route::{HostWarning, check_host};
pub use venet::{Venet, VenetConfig, venet_host_ifname};
pub use veth::{MacAddr, Veth, VethSpec, format_netif, parse_netif};

/// Longest interface name the kernel takes (IFNAMSIZ 16 with the NUL).
pub(crate) const IFNAME_MAX: usize = 15;

/// Checks an interface name: 1–15 bytes, no `/`, blank or `:` (kernel `dev_valid_name`).
///
/// # Errors
/// [`NsError::BadNetif`] naming `field` and the value.
pub(crate) fn check_ifname(field: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > IFNAME_MAX {
        "longer than 15 bytes (IFNAMSIZ)"
    } else if name == "." || name == ".." || name.contains(['/', ':', ' ', '\t', '\n', '\0']) {
        "not a device name"
    } else {
        return Ok(());
    };
    Err(NsError::BadNetif { field, value: name.to_owned(), reason: reason.to_owned() })
}

/// Whether a network device of this name exists in the caller's network namespace (asked over
/// netlink: `/sys/class/net` shows the namespace of whoever mounted sysfs, not the caller's).
///
/// # Errors
/// [`crate::NsError::Netlink`] if links cannot be listed.
pub fn link_exists(name: &str) -> Result<bool> {
    Ok(Netlink::host()?.link_by_name(name)?.is_some())
}

/// Whether the device `name` of the caller's network namespace is administratively up;
/// `None` if there is none.
///
/// # Errors
/// [`crate::NsError::Netlink`] if links cannot be listed.
pub fn link_is_up(name: &str) -> Result<Option<bool>> {
    let link = Netlink::host()?.link_by_name(name)?;
    Ok(link.map(|l| l.header.flags.contains(LinkFlags::Up)))
}

/// Sets the device `name` of the caller's network namespace down (a suspended VE's host end,
/// so its kernel takes no packets a dump does not hold); up again with the adopt calls.
///
/// # Errors
/// [`crate::NsError::NoSuchDevice`] if there is none, [`crate::NsError::Netlink`] otherwise.
///
/// # Privileges
/// CAP_NET_ADMIN in the caller's network namespace.
pub fn set_link_down(name: &str) -> Result<()> {
    let host = Netlink::host()?;
    // By name in the request itself, as [`Netlink::del_link`] deletes.
    let down = rtnetlink::LinkUnspec::new_with_name(name).down().build();
    host.run(host.handle().link().set(down).execute()).map_err(|e| match errno(&e) {
        Some(libc::ENODEV) => NsError::NoSuchDevice { name: name.to_owned() },
        _ => nl_err("set down", name.into(), e),
    })
}

/// The first interface index vz gives the VE's ends of its pairs (`venet0`, `eth0`, …).
///
/// CRIU restores a VE's interfaces with their indexes, and for a VE of its own user
/// namespace it makes them from the host's network namespace (its usernsd), where the kernel
/// looks the index up first: an index a host device has turns the creation into a change of
/// that device, which fails (EOPNOTSUPP) — with an ordinary host's eth0 at 2, a VE's
/// `venet0` at 2 or 3 could never be restored. The host's own devices count up from 1, so
/// VE ends from 2^30 up never meet them.
pub(crate) const VE_IFINDEX_BASE: u32 = 1 << 30;

/// The lowest index from [`VE_IFINDEX_BASE`] no interface of `ns` has.
pub(crate) fn free_ve_ifindex(ns: &Netlink) -> Result<u32> {
    let used: Vec<u32> = ns.links()?.iter().map(|l| l.header.index).collect();
    Ok((VE_IFINDEX_BASE..).find(|i| !used.contains(i)).unwrap_or(VE_IFINDEX_BASE))
}

/// A netlink connection in one network namespace, with its own current-thread runtime.
pub(crate) struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: rtnetlink::Handle,
    /// What this connection is for, in error messages ("host", "VE 1234").
    pub(crate) ns: String,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").field("ns", &self.ns).finish_non_exhaustive()
    }
}

impl Netlink {
    /// A connection in the calling thread's network namespace.
    pub(crate) fn host() -> Result<Self> {
        Self::open("host".to_owned())
    }

    /// A connection in the network namespace of the process `pid` (a VE's init).
    pub(crate) fn in_netns_of(pid: i32) -> Result<Self> {
        let target = open_ns(&ns_path(pid))?;
        let own = own_netns()?;
        nix::sched::setns(&target, CloneFlags::CLONE_NEWNET)
            .map_err(|e| NsError::sys("enter the VE's network namespace", e))?;
        let conn = Self::open(format!("VE {pid}"));
        nix::sched::setns(&own, CloneFlags::CLONE_NEWNET)
            .map_err(|e| NsError::sys("return to the host network namespace", e))?;
        conn
    }

    fn open(ns: String) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| NsError::io("build netlink runtime", "tokio", e))?;
        let (conn, handle, _) = {
            let _ctx = rt.enter();
            rtnetlink::new_connection().map_err(|e| NsError::Netlink {
                op: "open netlink socket",
                object: ns.clone(),
                source: e,
            })?
        };
        rt.spawn(conn);
        Ok(Netlink { rt, handle, ns })
    }

    /// Runs one request to completion.
    pub(crate) fn run<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The rtnetlink handle (cloned into request futures).
    pub(crate) fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }

    /// The link named `name`, if it exists.
    pub(crate) fn link_by_name(&self, name: &str) -> Result<Option<LinkMessage>> {
        let mut req =
            std::pin::pin!(self.handle.link().get().match_name(name.to_owned()).execute());
        match self.run(req.try_next()) {
            Ok(msg) => Ok(msg),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(nl_err("look up link", format!("{name} in {}", self.ns), e)),
        }
    }

    /// The index of the link named `name`, or [`NsError::NoSuchDevice`].
    pub(crate) fn index_of(&self, name: &str) -> Result<u32> {
        self.link_by_name(name)?
            .map(|l| l.header.index)
            .ok_or_else(|| NsError::NoSuchDevice { name: name.to_owned() })
    }

    /// Every link of the namespace.
    pub(crate) fn links(&self) -> Result<Vec<LinkMessage>> {
        let req = self.handle.link().get().execute();
        self.run(req.try_collect()).map_err(|e| nl_err("list links", self.ns.clone(), e))
    }

    /// Deletes the link named `name` in one request, the kernel finding the name as it
    /// deletes; whether there was one. (A lookup and then a delete by index could delete
    /// another link: one that took the index in between, as a VE's new host end does when it
    /// comes into the namespace keeping its index, freed a moment before by another VE's
    /// stop.)
    pub(crate) fn del_link(&self, name: &str) -> Result<bool> {
        let mut req = self.handle.link().del(0);
        req.message_mut().attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.run(req.execute()) {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(nl_err("delete link", name.to_owned(), e)),
        }
    }
}

/// The name of a link message.
pub(crate) fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// The hardware address of a link message.
pub(crate) fn link_mac(link: &LinkMessage) -> Option<&[u8]> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) => Some(m.as_slice()),
        _ => None,
    })
}

/// Deletes a veth pair wherever its ends are: the host end on the host, or either end still
/// in the VE (a pair half made). Deleting one end removes both; nothing there is no error.
pub(crate) fn del_pair(host: &Netlink, ve: &Netlink, host_name: &str, ve_name: &str) -> Result<()> {
    if host.del_link(host_name)? {
        return Ok(());
    }
    for name in [host_name, ve_name] {
        if ve.del_link(name)? {
            return Ok(());
        }
    }
    Ok(())
}

/// Creates a veth pair from inside the VE's namespace `ve`: `ve_end` there (at a free index
/// of the VE's, with `ve_mac`, NOARP if `noarp`, up if `ve_end_up`) and its peer `host_name`
/// with `host_mac`, made directly in the host's namespace (down, NOARP if `noarp`). Made
/// there rather than moved out afterwards: a move waits for an RCU grace period
/// (`synchronize_net`), 20 ms and more per start. A `host_name` taken on the host fails the
/// whole pair with [`host_name_taken`]'s error.
///
/// # Errors
/// That, or [`NsError::Netlink`] with the kernel's errno.
pub(crate) fn add_pair(
    ve: &Netlink,
    ve_end: &str,
    ve_mac: &[u8],
    host_name: &str,
    host_mac: &[u8],
    noarp: bool,
    ve_end_up: bool,
) -> Result<()> {
    use rtnetlink::packet_route::link::{InfoData, InfoVeth};
    use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth};
    use std::os::fd::AsRawFd;
    let host_ns = own_netns()?;
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(host_name)
        .address(host_mac.to_vec())
        .arp(!noarp)
        .setns_by_fd(host_ns.as_raw_fd())
        .build();
    let builder = LinkVeth::new(ve_end, host_name).address(ve_mac.to_vec()).arp(!noarp);
    let builder = if ve_end_up { builder.up() } else { builder };
    let mut msg = builder.set_info_data(InfoData::Veth(InfoVeth::Peer(peer))).build();
    msg.header.index = free_ve_ifindex(ve)?;
    match ve.run(ve.handle().link().add(msg).execute()) {
        Err(e) if errno(&e) == Some(libc::EEXIST) => Err(host_name_taken(host_name)),
        r => r.map_err(|e| nl_err("create veth pair", format!("{ve_end}/{host_name}"), e)),
    }
}

/// A random unicast, locally administered Ethernet address.
///
/// # Errors
/// [`NsError::Io`] when /dev/urandom cannot be read.
pub(crate) fn random_mac() -> Result<[u8; 6]> {
    use std::io::Read;
    let mut mac = [0_u8; 6];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut mac))
        .map_err(|e| NsError::io("read", "/dev/urandom", e))?;
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}

/// The error for a host-side device name already in use.
pub(crate) fn host_name_taken(name: &str) -> NsError {
    NsError::BadNetif {
        field: "host_ifname",
        value: name.to_owned(),
        reason: "a device of that name exists on the host".into(),
    }
}

/// The calling thread's own network namespace (to move a device back to the host).
pub(crate) fn own_netns() -> Result<File> {
    open_ns(Path::new("/proc/thread-self/ns/net"))
}

fn ns_path(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

fn open_ns(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| NsError::io("open network namespace", path, e))
}

/// The errno of a netlink error reply, if it is one.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// An [`NsError::Netlink`] for `op` on `object`.
pub(crate) fn nl_err(op: &'static str, object: String, e: rtnetlink::Error) -> NsError {
    let source = match &e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => std::io::Error::other(other.to_string()),
    };
    NsError::Netlink { op, object, source }
}

/// Reads a sysctl file of the calling thread's network namespace (trimmed).
pub(crate) fn read_sysctl(path: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| NsError::io("read sysctl", path, e))
}

/// Writes a sysctl file of the calling thread's network namespace.
pub(crate) fn write_sysctl(path: &str, value: &str) -> Result<()> {
    tracing::debug!(path, value, "sysctl");
    std::fs::write(path, value).map_err(|e| NsError::io("write sysctl", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        assert!(check_ifname("host_ifname", "venet101").is_ok());
        assert!(check_ifname("host_ifname", "veth1234567.12").is_ok());
        for bad in ["", "veth12345678.123", "a/b", "a b", "eth0:1", ".."] {
            let e = check_ifname("host_ifname", bad).unwrap_err();
            assert!(e.to_string().contains("host_ifname"), "{e}");
        }
    }
}
