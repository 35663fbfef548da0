//! Routes and neighbour proxy entries of venet, and [`check_host`] for the host-global
//! settings that routing to VEs needs (which vz reports but never changes).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressScope};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteScope, RouteType,
};

use super::{Netlink, errno, link_name, nl_err, read_sysctl};
use crate::error::{NsError, Result};

/// `RT_TABLE_MAIN`: the table of the routes vz adds.
const MAIN_TABLE: u8 = 254;

/// A host route `ip/32` (`/128`) to the device `oif`, as `ip route add IP dev DEV`.
fn host_route(ip: IpAddr, oif: u32) -> RouteMessage {
    match ip {
        IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(v4, 32)
            .output_interface(oif)
            .scope(RouteScope::Link)
            .build(),
        IpAddr::V6(v6) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(v6, 128)
            .output_interface(oif)
            .build(),
    }
}

/// The default route of the VE's family `v6` through `oif` (`default dev venet0`).
pub(super) fn add_default_route(nl: &Netlink, v6: bool, oif: u32) -> Result<()> {
    let msg = if v6 {
        RouteMessageBuilder::<Ipv6Addr>::new().output_interface(oif).build()
    } else {
        RouteMessageBuilder::<Ipv4Addr>::new().output_interface(oif).scope(RouteScope::Link).build()
    };
    match nl.run(nl.handle().route().add(msg).execute()) {
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        r => r.map_err(|e| nl_err("add default route", format!("in {}", nl.ns), e)),
    }
}

/// Adds the host route of a VE address; an address that is routed elsewhere or assigned
/// on the host is [`NsError::AddressInUse`].
pub(super) fn add_host_route(nl: &Netlink, ip: IpAddr, oif: u32) -> Result<()> {
    if let Some(dev) = local_address_device(nl, ip)? {
        return Err(NsError::AddressInUse { address: ip.to_string(), device: dev });
    }
    match nl.run(nl.handle().route().add(host_route(ip, oif)).execute()) {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::EEXIST) => {
            let device = route_device(nl, ip)?.unwrap_or_else(|| "a route of the host".into());
            Err(NsError::AddressInUse { address: ip.to_string(), device })
        }
        Err(e) => Err(nl_err("add host route", ip.to_string(), e)),
    }
}

/// Deletes the host route of a VE address (gone already is fine).
pub(super) fn del_host_route(nl: &Netlink, ip: IpAddr, oif: u32) -> Result<()> {
    match nl.run(nl.handle().route().del(host_route(ip, oif)).execute()) {
        Err(e) if errno(&e) == Some(libc::ESRCH) => Ok(()),
        r => r.map_err(|e| nl_err("delete host route", ip.to_string(), e)),
    }
}

/// Every route of the main table of both families.
fn all_routes(nl: &Netlink) -> Result<Vec<RouteMessage>> {
    let mut out = Vec::new();
    for msg in [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ] {
        let req = nl.handle().route().get(msg).execute();
        out.extend(
            nl.run(req.try_collect::<Vec<_>>())
                .map_err(|e| nl_err("list routes", nl.ns.clone(), e))?,
        );
    }
    Ok(out)
}

fn route_dst(r: &RouteMessage) -> Option<IpAddr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        RouteAttribute::Destination(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    })
}

fn route_oif(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

/// The destinations of host routes (/32, /128) to the device `oif`: a VE's addresses.
pub(super) fn host_routes_to(nl: &Netlink, oif: u32) -> Result<Vec<IpAddr>> {
    Ok(all_routes(nl)?
        .iter()
        .filter(|r| {
            let full = if r.header.address_family == AddressFamily::Inet { 32 } else { 128 };
            r.header.table == MAIN_TABLE
                && r.header.kind == RouteType::Unicast
                && r.header.destination_prefix_length == full
                && route_oif(r) == Some(oif)
        })
        .filter_map(route_dst)
        .collect())
}

/// The device of an existing host route to `ip`, by name.
fn route_device(nl: &Netlink, ip: IpAddr) -> Result<Option<String>> {
    let Some(oif) = all_routes(nl)?.iter().find(|r| route_dst(r) == Some(ip)).and_then(route_oif)
    else {
        return Ok(None);
    };
    let links = nl.links()?;
    Ok(links.iter().find(|l| l.header.index == oif).and_then(link_name).map(str::to_owned))
}

/// Every address of the namespace, with the index of its device and its scope.
fn all_addresses(nl: &Netlink) -> Result<Vec<(IpAddr, u32, AddressScope)>> {
    let req = nl.handle().address().get().execute();
    let msgs: Vec<_> =
        nl.run(req.try_collect()).map_err(|e| nl_err("list addresses", nl.ns.clone(), e))?;
    Ok(msgs
        .iter()
        .filter_map(|m| {
            let ip = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })?;
            Some((ip, m.header.index, m.header.scope))
        })
        .collect())
}

/// The name of the host device that has `ip` as an address of its own.
fn local_address_device(nl: &Netlink, ip: IpAddr) -> Result<Option<String>> {
    let Some((_, index, _)) = all_addresses(nl)?.into_iter().find(|(a, _, _)| *a == ip) else {
        return Ok(None);
    };
    let links = nl.links()?;
    Ok(Some(
        links
            .iter()
            .find(|l| l.header.index == index)
            .and_then(link_name)
            .unwrap_or("?")
            .to_owned(),
    ))
}

/// OpenVZ's neighbour devices (`NEIGHBOUR_DEVS=all`, `vps-functions`): links that are up,
/// not loopback, not NOARP (so no venet host end), not enslaved to a bridge or bond, and
/// have an address of the family of `v6` wider than link scope.
pub(super) fn neighbour_devices(nl: &Netlink, v6: bool) -> Result<Vec<LinkMessage>> {
    let addrs = all_addresses(nl)?;
    Ok(nl
        .links()?
        .into_iter()
        .filter(|l| {
            let f = l.header.flags;
            f.contains(LinkFlags::Up)
                && !f.contains(LinkFlags::Loopback)
                && !f.contains(LinkFlags::Noarp)
                && !l.attributes.iter().any(|a| matches!(a, LinkAttribute::Controller(_)))
                && addrs.iter().any(|(ip, idx, scope)| {
                    *idx == l.header.index
                        && ip.is_ipv6() == v6
                        && !matches!(scope, AddressScope::Link | AddressScope::Host)
                })
        })
        .collect())
}

/// Adds proxy ARP / proxy NDP entries for `ip` on every neighbour device
/// (`ip neigh add proxy IP dev DEV`), so that machines on the host's networks reach the VE.
pub(super) fn add_proxy_entries(nl: &Netlink, ip: IpAddr) -> Result<()> {
    for dev in neighbour_devices(nl, ip.is_ipv6())? {
        let req = nl.handle().neighbours().add(dev.header.index, ip).flags(NeighbourFlags::Proxy);
        match nl.run(req.execute()) {
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            r => r.map_err(|e| {
                nl_err("add proxy neighbour entry", format!("{ip} on {}", name_of(&dev)), e)
            })?,
        }
    }
    Ok(())
}

fn name_of(l: &LinkMessage) -> String {
    link_name(l).unwrap_or("?").to_owned()
}

/// Every proxy neighbour entry of the namespace.
pub(super) fn proxy_entries(nl: &Netlink) -> Result<Vec<NeighbourMessage>> {
    let req = nl.handle().neighbours().get().proxies().execute();
    nl.run(req.try_collect()).map_err(|e| nl_err("list proxy neighbour entries", nl.ns.clone(), e))
}

fn neighbour_dst(m: &NeighbourMessage) -> Option<IpAddr> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    })
}

/// Removes the proxy entries of `ip` from every device that has one.
pub(super) fn del_proxy_entries(nl: &Netlink, ip: IpAddr) -> Result<()> {
    for entry in proxy_entries(nl)?.into_iter().filter(|m| neighbour_dst(m) == Some(ip)) {
        match nl.run(nl.handle().neighbours().del(entry).execute()) {
            Err(e) if errno(&e) == Some(libc::ENOENT) => {}
            r => r.map_err(|e| nl_err("delete proxy neighbour entry", ip.to_string(), e))?,
        }
    }
    Ok(())
}

/// A host setting that keeps venet from working fully; vz reports it and leaves host-global
/// sysctls alone (the admin decides, as OpenVZ's `vz-postinstall sysctl` did).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostWarning {
    /// `net.ipv4.ip_forward` is 0: VEs are reachable only from the host itself.
    Ipv4ForwardingOff,
    /// `net.ipv6.conf.all.forwarding` is 0: IPv6 addresses of VEs are reachable only from the host.
    Ipv6ForwardingOff,
    /// `net.ipv4.conf.all.rp_filter` is 2 (loose), which overrides the strict per-device
    /// check that stops a VE from sending with an address it was not given.
    LooseRpFilter,
    /// Neither `net.ipv6.conf.all.proxy_ndp` nor the device's is on: other machines on that
    /// network do not reach the VEs' IPv6 addresses.
    ProxyNdpOff {
        /// The neighbour device.
        device: String,
    },
}

impl fmt::Display for HostWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostWarning::Ipv4ForwardingOff => f.write_str(
                "net.ipv4.ip_forward is 0: containers are reachable from this host only",
            ),
            HostWarning::Ipv6ForwardingOff => f.write_str(
                "net.ipv6.conf.all.forwarding is 0: IPv6 addresses of containers are reachable from this host only",
            ),
            HostWarning::LooseRpFilter => f.write_str(
                "net.ipv4.conf.all.rp_filter is 2 (loose): containers can send from IPv4 addresses they were not given",
            ),
            HostWarning::ProxyNdpOff { device } => write!(
                f,
                "net.ipv6.conf.{device}.proxy_ndp is 0: IPv6 addresses of containers are not reachable from the network on {device}"
            ),
        }
    }
}

/// Checks the host settings venet relies on, in the calling thread's network namespace.
///
/// # Errors
/// [`NsError::Io`] if a sysctl cannot be read, [`NsError::Netlink`] if links cannot be listed.
/// A host without IPv6 gives no IPv6 warnings.
pub fn check_host() -> Result<Vec<HostWarning>> {
    let mut out = Vec::new();
    if read_sysctl("/proc/sys/net/ipv4/ip_forward")? == "0" {
        out.push(HostWarning::Ipv4ForwardingOff);
    }
    if read_sysctl("/proc/sys/net/ipv4/conf/all/rp_filter")? == "2" {
        out.push(HostWarning::LooseRpFilter);
    }
    if std::path::Path::new("/proc/sys/net/ipv6").exists() {
        if read_sysctl("/proc/sys/net/ipv6/conf/all/forwarding")? == "0" {
            out.push(HostWarning::Ipv6ForwardingOff);
        }
        if read_sysctl("/proc/sys/net/ipv6/conf/all/proxy_ndp")? == "0" {
            let nl = Netlink::host()?;
            for dev in neighbour_devices(&nl, true)? {
                let name = name_of(&dev);
                if read_sysctl(&format!("/proc/sys/net/ipv6/conf/{name}/proxy_ndp"))? == "0" {
                    out.push(HostWarning::ProxyNdpOff { device: name });
                }
            }
        }
    }
    Ok(out)
}
