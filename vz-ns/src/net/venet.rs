//! Routed VE networking, OpenVZ's venet, on a veth pair.
//!
//! Per VE a veth pair: `venet0` in the VE, `<prefix><CTID>` on the host. Both ends are
//! NOARP and share one MAC address, so frames need no ARP/NDP on the pair and each end
//! accepts what the other sends (a NOARP device sends to its own MAC). The VE's addresses
//! sit on `venet0` (/32 or /128 unless a mask is given) with `default dev venet0`; the host
//! has a route per address to the host end and proxy ARP/NDP entries on its neighbour
//! devices, so machines on the host's networks reach the VE when the host forwards.
//!
//! Source addresses: the host end has `rp_filter=1` (strict). With host routes only to the
//! VE's own addresses, an IPv4 packet from the VE with any other source fails the reverse
//! path check and is dropped, also when addressed to the host itself. IPv6 has no reverse
//! path filter in the kernel: the host end drops IPv6 packets whose source is not one of the
//! VE's addresses (or link-local/unspecified) with an nftables rule ([`super::guard`]), and
//! has IPv6 off while the VE has no IPv6 address.

use std::net::{IpAddr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::LinkUnspec;
use rtnetlink::packet_route::address::AddressHeaderFlags;

use super::addr::VeAddr;
use super::route::{
    add_default_route, add_host_route, add_proxy_entries, del_host_route, del_proxy_entries,
    host_routes_to,
};
use super::{
    Netlink, add_pair, check_ifname, del_pair, errno, host_name_taken, link_mac, link_name, nl_err,
    random_mac, write_sysctl,
};
use crate::error::{NsError, Result};

/// The routed network of one VE: `IP_ADDRESS` in `CTID.conf`, `--ipadd`/`--ipdel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenetConfig {
    /// The host end's name, from [`venet_host_ifname`] (e.g. `venet101`).
    pub host_ifname: String,
    /// The VE's addresses; unspecified ones are skipped.
    pub addresses: Vec<VeAddr>,
}

/// Routed VE networking; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct Venet;

/// The host end's name: `<prefix><CTID>`, e.g. `venet101` for prefix `venet`.
///
/// # Errors
/// [`NsError::BadNetif`] if the name would not fit IFNAMSIZ (15 bytes) or is not a device
/// name.
pub fn venet_host_ifname(prefix: &str, ctid: &str) -> Result<String> {
    let name = format!("{prefix}{ctid}");
    check_ifname("host_ifname", &name)?;
    Ok(name)
}

impl Venet {
    /// The VE end's name.
    pub const VE_IFNAME: &'static str = "venet0";

    /// Makes the pair, brings up `lo` and `venet0` in the VE and the host end on the host
    /// (with `rp_filter=1`), then adds the addresses ([`Venet::add_addresses`]). Call between
    /// [`crate::spawn_init`] and [`crate::PendingInit::release`]. On error nothing is left.
    ///
    /// # Errors
    /// [`NsError::BadNetif`] for a bad or taken host name, [`NsError::AddressInUse`] for an
    /// address routed to another device or assigned on the host, [`NsError::Netlink`] with
    /// the kernel's errno otherwise.
    ///
    /// # Privileges
    /// CAP_NET_ADMIN and CAP_SYS_ADMIN (setns) in the host's namespaces.
    pub fn setup(init_pid: i32, cfg: &VenetConfig) -> Result<()> {
        let name = cfg.host_ifname.as_str();
        check_ifname("host_ifname", name)?;
        let host = Netlink::host()?;
        if host.link_by_name(name)?.is_some() {
            return Err(host_name_taken(name));
        }
        let ve = Netlink::in_netns_of(init_pid)?;
        let result = make_pair(&host, &ve, name)
            .and_then(|()| guard_sources(&host, name, &ipv6_of(&cfg.addresses)))
            .and_then(|()| add_all(&host, &ve, name, &cfg.addresses))
            .and_then(|()| guard_sources(&host, name, &[]));
        if let Err(e) = &result {
            log_failed_setup(&host, &ve, name, init_pid, e);
            // Routes and proxy entries go with the host end; a pair half made goes too.
            let undone =
                Venet::teardown(name).and_then(|()| del_pair(&host, &ve, name, Venet::VE_IFNAME));
            if let Err(e) = undone {
                tracing::warn!(error = %e, name, "undoing a failed venet setup");
            }
        }
        result
    }

    /// Adds addresses to a VE whose venet is set up, at once: host route, the address on
    /// `venet0` and the default route of its family in the VE, proxy ARP/NDP entries. On
    /// error the addresses of this call that were added are removed again.
    ///
    /// # Errors
    /// As [`Venet::setup`]; [`NsError::NoSuchDevice`] if the VE has no venet.
    ///
    /// # Privileges
    /// As [`Venet::setup`].
    pub fn add_addresses(init_pid: i32, host_ifname: &str, addrs: &[VeAddr]) -> Result<()> {
        let host = Netlink::host()?;
        let ve = Netlink::in_netns_of(init_pid)?;
        // Allowed (and IPv6 on) before the routes exist; then exactly what was added.
        guard_sources(&host, host_ifname, &ipv6_of(addrs))?;
        let added = add_all(&host, &ve, host_ifname, addrs);
        guard_sources(&host, host_ifname, &[])?;
        added
    }

    /// Removes addresses from a running VE: proxy entries, host route, the address in the VE.
    /// Addresses the VE does not have are skipped.
    ///
    /// # Errors
    /// [`NsError::NoSuchDevice`] if the VE has no venet, [`NsError::Netlink`] otherwise.
    ///
    /// # Privileges
    /// As [`Venet::setup`].
    pub fn del_addresses(init_pid: i32, host_ifname: &str, addrs: &[VeAddr]) -> Result<()> {
        let host = Netlink::host()?;
        let ve = Netlink::in_netns_of(init_pid)?;
        let host_idx = host.index_of(host_ifname)?;
        let ve_idx = ve.index_of(Self::VE_IFNAME)?;
        for a in addrs {
            del_one(&host, &ve, host_idx, ve_idx, a.ip())?;
        }
        guard_sources(&host, host_ifname, &[])
    }

    /// The VE's addresses as the host routes them (destinations of host routes to the host
    /// end); empty if the host end does not exist.
    ///
    /// # Errors
    /// [`NsError::Netlink`] if routes cannot be listed.
    pub fn addresses(host_ifname: &str) -> Result<Vec<IpAddr>> {
        let host = Netlink::host()?;
        match host.link_by_name(host_ifname)? {
            Some(link) => host_routes_to(&host, link.header.index),
            None => Ok(Vec::new()),
        }
    }

    /// Takes over a host end that exists without its host side: one CRIU made again at a
    /// restore, or one a dump of a suspended VE took down (the kernel dropped its routes).
    /// Gives it the VE end's MAC and NOARP, `rp_filter=1`, the IPv6 source guard, brings it
    /// up and adds the host routes and proxy entries of `addrs` it lacks. The VE's side (its
    /// addresses and routes) is left as it is. Running it again changes nothing.
    ///
    /// # Errors
    /// [`NsError::NoSuchDevice`] if either end is missing, [`NsError::AddressInUse`] for an
    /// address routed elsewhere, [`NsError::Netlink`] otherwise.
    ///
    /// # Privileges
    /// As [`Venet::setup`].
    pub fn adopt_host_end(init_pid: i32, host_ifname: &str, addrs: &[VeAddr]) -> Result<()> {
        let host = Netlink::host()?;
        let ve = Netlink::in_netns_of(init_pid)?;
        let veif = ve
            .link_by_name(Self::VE_IFNAME)?
            .ok_or_else(|| NsError::NoSuchDevice { name: Self::VE_IFNAME.into() })?;
        let mac = link_mac(&veif).map(<[u8]>::to_vec).unwrap_or_default();
        let idx = host.index_of(host_ifname)?;
        let set = LinkUnspec::new_with_index(idx).address(mac).arp(false).build();
        host.run(host.handle().link().set(set).execute())
            .map_err(|e| nl_err("set MAC and NOARP", host_ifname.into(), e))?;
        write_sysctl(&format!("/proc/sys/net/ipv4/conf/{host_ifname}/rp_filter"), "1")?;
        // An IPv4-only VE's host end never had a guard table (one is made only for IPv6
        // addresses; CRIU made this end anew after a restore): it only needs IPv6 off,
        // without two `nft` runs (20-25 ms each, in the frozen window of a migration).
        let v6 = ipv6_of(addrs);
        if v6.is_empty() {
            write_sysctl(&format!("/proc/sys/net/ipv6/conf/{host_ifname}/disable_ipv6"), "1")?;
        } else {
            guard_sources(&host, host_ifname, &v6)?;
        }
        let up = LinkUnspec::new_with_index(idx).up().build();
        host.run(host.handle().link().set(up).execute())
            .map_err(|e| nl_err("set up", host_ifname.into(), e))?;
        let routed = host_routes_to(&host, idx)?;
        for a in addrs.iter().filter(|a| !a.is_unspecified() && !routed.contains(&a.ip())) {
            add_host_route(&host, a.ip(), idx)?;
            add_proxy_entries(&host, a.ip())?;
        }
        if v6.is_empty() { Ok(()) } else { guard_sources(&host, host_ifname, &[]) }
    }

    /// Removes the host's proxy ARP/NDP entries of `addrs`: for a VE whose host end is already
    /// gone with its network namespace (a VE that powered off by itself), so that
    /// [`Venet::teardown`] can no longer find its addresses from the routes.
    ///
    /// # Errors
    /// [`NsError::Netlink`] if an entry cannot be removed.
    ///
    /// # Privileges
    /// CAP_NET_ADMIN in the host's network namespace.
    pub fn remove_proxy_entries(addrs: &[VeAddr]) -> Result<()> {
        let host = Netlink::host()?;
        addrs.iter().try_for_each(|a| del_proxy_entries(&host, a.ip()))
    }

    /// Removes a VE's venet from the host: the proxy entries of its addresses and the host
    /// end (which deletes the pair and the routes through it). Works whether the VE still
    /// runs or not; a host end that does not exist is not an error.
    ///
    /// # Errors
    /// [`NsError::Netlink`] if an entry or the link cannot be removed.
    ///
    /// # Privileges
    /// CAP_NET_ADMIN in the host's network namespace.
    pub fn teardown(host_ifname: &str) -> Result<()> {
        let host = Netlink::host()?;
        let Some(link) = host.link_by_name(host_ifname)? else {
            return Ok(());
        };
        let routed = host_routes_to(&host, link.header.index)?;
        // Still this name's index after the listing: the routes were this VE's (another
        // VE's host end takes a freed index as it comes in, with routes of its own).
        let same = host.link_by_name(host_ifname)?.map(|l| l.header.index);
        if same == Some(link.header.index) {
            for ip in routed {
                del_proxy_entries(&host, ip)?;
            }
        }
        host.del_link(host_ifname)?;
        super::guard::remove(host_ifname)?;
        tracing::debug!(host_ifname, "venet removed");
        Ok(())
    }
}

/// Logs where the pair's ends are after a failed setup, and whether the VE's init lives (how
/// a host end deleted by another VE's stop was told from one that never came: see
/// [`Netlink::del_link`]).
fn log_failed_setup(host: &Netlink, ve: &Netlink, name: &str, init_pid: i32, error: &NsError) {
    // By a listing of every link, not the lookup by name the failed step may have used.
    let look = |ns: &Netlink, link: &str| match ns.links() {
        Ok(links) => match links.iter().find(|l| link_name(l) == Some(link)) {
            Some(l) => format!("index {}", l.header.index),
            None => "none".to_owned(),
        },
        Err(e) => e.to_string(),
    };
    tracing::warn!(
        %error,
        host_end_on_host = look(host, name),
        host_end_in_ve = look(ve, name),
        ve_end = look(ve, Venet::VE_IFNAME),
        init_alive = std::path::Path::new(&format!("/proc/{init_pid}")).exists(),
        "venet setup of {name} failed"
    );
}

/// Creates the pair from the VE (`venet0` is never visible on the host) with the host end
/// made on the host ([`add_pair`]), both ends NOARP with one random MAC, and brings the host
/// end (after `rp_filter=1`) and the VE's `lo` up.
fn make_pair(host: &Netlink, ve: &Netlink, name: &str) -> Result<()> {
    let mac = random_mac()?;
    add_pair(ve, Venet::VE_IFNAME, &mac, name, &mac, true, true)?;
    let idx = host.index_of(name)?;
    write_sysctl(&format!("/proc/sys/net/ipv4/conf/{name}/rp_filter"), "1")?;
    let up = LinkUnspec::new_with_index(idx).up().build();
    host.run(host.handle().link().set(up).execute())
        .map_err(|e| nl_err("set up", name.into(), e))?;
    let lo = ve.index_of("lo")?;
    let up = LinkUnspec::new_with_index(lo).up().build();
    ve.run(ve.handle().link().set(up).execute()).map_err(|e| nl_err("set up lo", ve.ns.clone(), e))
}

/// Sets the host end's IPv6 source guard to the VE's IPv6 addresses as the host routes
/// them, and `extra` (addresses about to be added).
fn guard_sources(host: &Netlink, host_ifname: &str, extra: &[Ipv6Addr]) -> Result<()> {
    let idx = host.index_of(host_ifname)?;
    let routed: Vec<IpAddr> = host_routes_to(host, idx)?;
    let mut v6 = ipv6_in(routed.iter().copied());
    v6.extend_from_slice(extra);
    super::guard::venet_ipv6(host_ifname, &v6)
}

fn ipv6_of(addrs: &[VeAddr]) -> Vec<Ipv6Addr> {
    ipv6_in(addrs.iter().filter(|a| !a.is_unspecified()).map(VeAddr::ip))
}

fn ipv6_in(ips: impl Iterator<Item = IpAddr>) -> Vec<Ipv6Addr> {
    ips.filter_map(|ip| match ip {
        IpAddr::V6(v6) => Some(v6),
        IpAddr::V4(_) => None,
    })
    .collect()
}

fn add_all(host: &Netlink, ve: &Netlink, host_ifname: &str, addrs: &[VeAddr]) -> Result<()> {
    let host_idx = host.index_of(host_ifname)?;
    let ve_idx = ve.index_of(Venet::VE_IFNAME)?;
    let mut done = Vec::new();
    for a in addrs.iter().filter(|a| !a.is_unspecified()) {
        match add_one(host, ve, host_idx, ve_idx, a) {
            Ok(()) => done.push(a.ip()),
            Err(e) => {
                for ip in done {
                    let _ = del_one(host, ve, host_idx, ve_idx, ip);
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

fn add_one(host: &Netlink, ve: &Netlink, host_idx: u32, ve_idx: u32, a: &VeAddr) -> Result<()> {
    let ip = a.ip();
    add_host_route(host, ip, host_idx)?;
    let rest = (|| {
        let mut req = ve.handle().address().add(ve_idx, ip, a.prefix_len());
        if ip.is_ipv6() {
            req.message_mut().header.flags.insert(AddressHeaderFlags::Nodad);
        }
        match ve.run(req.execute()) {
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            r => r.map_err(|e| nl_err("add address", format!("{a} in {}", ve.ns), e))?,
        }
        add_default_route(ve, ip.is_ipv6(), ve_idx)?;
        add_proxy_entries(host, ip)
    })();
    match &rest {
        Ok(()) => tracing::debug!(%a, "venet address added"),
        Err(_) => {
            let _ = del_one(host, ve, host_idx, ve_idx, ip);
        }
    }
    rest
}

fn del_one(host: &Netlink, ve: &Netlink, host_idx: u32, ve_idx: u32, ip: IpAddr) -> Result<()> {
    del_proxy_entries(host, ip)?;
    del_host_route(host, ip, host_idx)?;
    let req = ve.handle().address().get().set_link_index_filter(ve_idx).set_address_filter(ip);
    let msgs: Vec<_> = ve
        .run(req.execute().try_collect())
        .map_err(|e| nl_err("list addresses", ve.ns.clone(), e))?;
    for m in msgs {
        match ve.run(ve.handle().address().del(m).execute()) {
            Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => {}
            r => r.map_err(|e| nl_err("delete address", format!("{ip} in {}", ve.ns), e))?,
        }
    }
    tracing::debug!(%ip, "venet address removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(venet_host_ifname("venet", "101").unwrap(), "venet101");
        assert_eq!(venet_host_ifname("vz", "4000000000").unwrap(), "vz4000000000");
        let e = venet_host_ifname("venet", "12345678901").unwrap_err();
        assert!(e.to_string().contains("venet12345678901"), "{e}");
    }
}
