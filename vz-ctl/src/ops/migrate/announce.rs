//! The destination's unsolicited neighbour advertisements for a migrated VE's IPv6
//! addresses (RFC 4861 §7.2.6), the IPv6 twin of the gratuitous ARP: `vzmigrate __announce
//! CTID`, run there by vzmigrate over ssh once the VE runs there. For each IPv6 address of
//! the VE and each neighbour device of the host (up, not loopback, not NOARP — no venet —
//! not a bridge's or bond's port, with an IPv6 address wider than link scope: the devices
//! venet gives proxy NDP entries), one ICMPv6 Neighbor Advertisement to all nodes
//! (`ff02::1`): target the VE's address, Override set, the device's MAC as target link-layer
//! address, hop limit 255. Neighbours whose cache holds the source's MAC for the address
//! take the destination's at once. It goes through a raw ICMPv6 socket bound to the device
//! (the kernel fills in the source address, a link-local one of the device, and the
//! checksum); no external tool.
//!
//! On the source, the VE's proxy NDP (and ARP) entries go with its network, when vzmigrate
//! kills it there (`vzctl chkpnt --kill` tears the venet down).

use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn6, sendto, setsockopt,
    socket, sockopt,
};

use super::{MigrateError, Result};
use crate::config::GlobalConfig;
use crate::ctid::Ctid;
use crate::ve::Ve;

/// The hidden command of the destination's announcement.
pub const ANNOUNCE_COMMAND: &str = "__announce";

/// ICMPv6 type of a Neighbor Advertisement.
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// Its Override flag (the first byte of the flags word).
const OVERRIDE: u8 = 0x20;
/// The Target Link-Layer Address option.
const TARGET_LL_ADDR: u8 = 2;

/// The advertisement of `target` at `mac` (ICMPv6 message, checksum left to the kernel).
pub fn advertisement(target: Ipv6Addr, mac: [u8; 6]) -> [u8; 32] {
    let mut msg = [0u8; 32];
    msg[0] = NEIGHBOR_ADVERTISEMENT;
    msg[4] = OVERRIDE;
    msg[8..24].copy_from_slice(&target.octets());
    msg[24] = TARGET_LL_ADDR;
    msg[25] = 1; // length in units of 8 bytes
    msg[26..32].copy_from_slice(&mac);
    msg
}

/// A neighbour device: its name, index and MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Device {
    name: String,
    index: u32,
    mac: [u8; 6],
}

/// The host's IPv6 neighbour devices: links from getifaddrs(3) (netlink: this network
/// namespace's, where /sys may show another's), addresses from /proc/net/if_inet6 (whose
/// `net` is this process's namespace's). A bridge's or bond's port has no address of its own.
fn neighbour_devices() -> Vec<Device> {
    use nix::net::if_::InterfaceFlags as F;
    let inet6 = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    // `address ifindex prefixlen scope flags name`; scope 0 is global (wider than link).
    let with_wide_address = |index: u32| {
        inet6.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1).and_then(|i| u32::from_str_radix(i, 16).ok()) == Some(index)
                && f.get(3).and_then(|s| u32::from_str_radix(s, 16).ok()) == Some(0)
        })
    };
    let Ok(links) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    let mut devices: Vec<Device> = links
        .filter(|l| {
            l.flags.contains(F::IFF_UP)
                && !l.flags.intersects(F::IFF_LOOPBACK | F::IFF_NOARP | F::IFF_SLAVE)
        })
        .filter_map(|l| {
            let link = l.address.as_ref()?.as_link_addr()?;
            let index = u32::try_from(link.ifindex()).ok()?;
            let mac = link.addr().filter(|m| *m != [0; 6])?;
            with_wide_address(index).then(|| Device { name: l.interface_name.clone(), index, mac })
        })
        .collect();
    devices.sort_by_key(|d| d.index);
    devices.dedup();
    devices
}

/// Sends one advertisement of `target` on `dev`.
fn send(dev: &Device, target: Ipv6Addr) -> std::io::Result<()> {
    let fd =
        socket(AddressFamily::Inet6, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::IcmpV6)?;
    setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(&dev.name))?;
    // Receivers drop neighbour discovery that crossed a router (RFC 4861 §7.1.2).
    setsockopt(&fd, sockopt::Ipv6MulticastHops, &255)?;
    let all_nodes = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, dev.index);
    let msg = advertisement(target, dev.mac);
    sendto(fd.as_raw_fd(), &msg, &SockaddrIn6::from(all_nodes), MsgFlags::empty())?;
    Ok(())
}

/// `vzmigrate __announce CTID`: advertises the VE's IPv6 addresses on every neighbour
/// device; returns how many advertisements went out.
///
/// # Errors
/// [`MigrateError::Other`] when the config cannot be read or a send fails.
pub fn announce(ctid: u32) -> Result<usize> {
    let global = GlobalConfig::load().map_err(|e| MigrateError::Other(crate::error::chain(&e)))?;
    let ve = Ve::load(global.clone(), Ctid::resolve(&ctid.to_string(), &global.names_dir())?)?;
    let targets: Vec<Ipv6Addr> = ve
        .config()?
        .ip_addresses()
        .iter()
        .filter_map(|ip| ip.split('/').next()?.parse().ok())
        .collect();
    let mut sent = 0;
    for dev in neighbour_devices() {
        for target in &targets {
            send(&dev, *target).map_err(|e| {
                MigrateError::Other(format!("advertise {target} on {}: {e}", dev.name))
            })?;
            tracing::debug!("advertised {target} at {:02x?} on {}", dev.mac, dev.name);
            sent += 1;
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advertisement_overrides_with_the_target_and_its_mac() {
        let target: Ipv6Addr = "2001:db8::77".parse().unwrap();
        let msg = advertisement(target, [2, 0, 0, 0, 0, 9]);
        assert_eq!(&msg[..8], &[136, 0, 0, 0, 0x20, 0, 0, 0]);
        assert_eq!(&msg[8..24], &target.octets());
        assert_eq!(&msg[24..], &[2, 1, 2, 0, 0, 0, 0, 9]);
    }
}
