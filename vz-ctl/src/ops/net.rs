//! The VE's network (reference §9): routed venet addresses from `IP_ADDRESS` and bridged veth
//! interfaces from `NETIF`, made by vz-ns over netlink between spawning the VE's init and
//! releasing it, changed at run time by `vzctl set`, removed at stop.

use std::net::IpAddr;

use vz_ns::net::{VeAddr, Venet, VenetConfig, Veth, VethSpec};

use crate::config::VeConfig;
use crate::error::{CtlError, Result};
use crate::output::say;
use crate::ve::Ve;

/// The default prefix of a VE's venet host end (`VE_NETDEV_PREFIX` in vz.conf).
const DEFAULT_PREFIX: &str = "venet";

/// The name of the VE's venet end on the host, e.g. `venet101`.
///
/// # Errors
/// [`CtlError::Net`] when the name would not be a valid device name.
pub fn host_ifname(ve: &Ve) -> Result<String> {
    let prefix = ve.global.get("VE_NETDEV_PREFIX").unwrap_or(DEFAULT_PREFIX);
    vz_ns::net::venet_host_ifname(prefix, &ve.ctid.to_string()).map_err(net_error)
}

/// The VE's venet addresses (`IP_ADDRESS`).
///
/// # Errors
/// Exit 71 for a malformed address.
pub fn addresses(ve: &Ve) -> Result<Vec<VeAddr>> {
    parse_addresses(ve.get("IP_ADDRESS").unwrap_or_default())
}

/// Parses an `IP_ADDRESS` list (`ip[/mask] …`), dropping 0.0.0.0 and ::.
///
/// # Errors
/// Exit 71 naming the address.
pub fn parse_addresses(list: &str) -> Result<Vec<VeAddr>> {
    vz_ns::net::parse_address_list(list).map_err(|e| CtlError::BadAddress(e.to_string()))
}

/// The VE's bridged interfaces (`NETIF`).
///
/// # Errors
/// Exit 130 for a malformed record.
pub fn netifs(ve: &Ve) -> Result<Vec<VethSpec>> {
    let value = ve.get("NETIF").unwrap_or_default();
    vz_ns::net::parse_netif(value, &ve.ctid.to_string(), mac_seed()).map_err(net_error)
}

/// Makes the VE's network in the namespaces of the not yet released init `pid`. On error
/// nothing of it is left.
///
/// # Errors
/// 71 malformed address, 78 address in use, 34 when an address cannot be added, 130 for veth.
pub fn setup(ve: &Ve, pid: i32) -> Result<()> {
    let addresses = addresses(ve)?;
    if !addresses.is_empty() {
        warn_about_host();
        let config = VenetConfig { host_ifname: host_ifname(ve)?, addresses };
        Venet::setup(pid, &config).map_err(net_error)?;
    }
    for (done, spec) in netifs(ve)?.iter().enumerate() {
        if let Err(e) = Veth::add(pid, spec) {
            teardown(ve, &netifs(ve)?[..done]);
            return Err(net_error(e));
        }
    }
    Ok(())
}

/// Removes what the host keeps of the VE's network: the venet host end with its routes and
/// proxy entries, and the host ends of its veth interfaces. Best effort: failures are
/// logged, a stopped VE is still stopped.
pub fn teardown(ve: &Ve, veths: &[VethSpec]) {
    let result = host_ifname(ve).and_then(|name| Venet::teardown(&name).map_err(net_error));
    if let Err(e) = result {
        tracing::warn!("removing the venet of CT {}: {e}", ve.ctid);
    }
    // A VE that powered off by itself took its host end along: its proxy entries are found
    // by the configured addresses instead.
    if let Ok(addrs) = addresses(ve)
        && let Err(e) = Venet::remove_proxy_entries(&addrs)
    {
        tracing::warn!("removing the proxy entries of CT {}: {e}", ve.ctid);
    }
    // A veth pair lives as long as the VE's namespace; only a host end still on the host
    // (a failed start) is removed here, by its name (the pid is not used for that).
    for spec in veths.iter().filter(|s| host_link_exists(&s.host_ifname)) {
        if let Err(e) = Veth::del(0, spec) {
            tracing::warn!("veth {} of CT {}: {e}", spec.host_ifname, ve.ctid);
        }
    }
}

/// Adds addresses to a running VE (making its venet if it had none).
///
/// # Errors
/// As [`setup`].
pub fn add_live(ve: &Ve, pid: i32, added: &[VeAddr]) -> Result<()> {
    let name = host_ifname(ve)?;
    let has_venet =
        !Venet::addresses(&name).map_err(net_error)?.is_empty() || host_link_exists(&name);
    if has_venet {
        Venet::add_addresses(pid, &name, added).map_err(net_error)
    } else {
        warn_about_host();
        Venet::setup(pid, &VenetConfig { host_ifname: name, addresses: added.to_vec() })
            .map_err(net_error)
    }
}

/// Removes addresses from a running VE.
///
/// # Errors
/// 34 when the kernel refuses.
pub fn del_live(ve: &Ve, pid: i32, removed: &[VeAddr]) -> Result<()> {
    Venet::del_addresses(pid, &host_ifname(ve)?, removed).map_err(net_error)
}

/// Refuses addresses another VE's config already has (OpenVZ exit 78).
///
/// # Errors
/// [`CtlError::AddressInUse`] naming the address and the CT.
pub fn check_unique(ve: &Ve, wanted: &[VeAddr]) -> Result<()> {
    for other in crate::list::all_ctids(&ve.global.conf_dir())? {
        if other == ve.ctid {
            continue;
        }
        let Some(config) = VeConfig::load(&ve.global, other.get()).map_err(CtlError::Config)?
        else {
            continue;
        };
        let theirs = parse_addresses(config.get("IP_ADDRESS").unwrap_or_default())?;
        let taken: Vec<IpAddr> = theirs.iter().map(VeAddr::ip).collect();
        if let Some(a) = wanted.iter().find(|a| taken.contains(&a.ip())) {
            return Err(CtlError::AddressInUse { address: a.ip().to_string(), ctid: other });
        }
    }
    Ok(())
}

fn host_link_exists(name: &str) -> bool {
    vz_ns::net::link_exists(name).unwrap_or_else(|e| {
        tracing::warn!("looking for the device {name}: {e}");
        false
    })
}

/// Prints the host settings that keep a VE's addresses from being reachable.
fn warn_about_host() {
    match vz_ns::net::check_host() {
        Ok(warnings) => warnings.iter().for_each(|w| say(format!("WARNING: {w}"))),
        Err(e) => tracing::warn!("checking the host's network settings: {e}"),
    }
}

/// The seed of generated MACs: this host's machine id (OpenVZ used the host's hwid), hashed
/// with FNV-1a so it is the same on every run.
fn mac_seed() -> u64 {
    let id = std::fs::read("/etc/machine-id").unwrap_or_default();
    id.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// The exit code of a network failure: 78 address in use, 71 bad address, 130 veth, else 34.
fn net_error(e: vz_ns::NsError) -> CtlError {
    match e {
        vz_ns::NsError::AddressInUse { address, device } => {
            CtlError::AddressInUseOnHost { address: address.to_string(), device }
        }
        vz_ns::NsError::BadAddress { .. } => CtlError::BadAddress(e.to_string()),
        e @ (vz_ns::NsError::BadNetif { .. } | vz_ns::NsError::NoSuchDevice { .. }) => {
            CtlError::Veth(e)
        }
        e => CtlError::Net(e),
    }
}

/// The new `IP_ADDRESS` list: `current` with `added`, without `removed` (`all` removes all).
pub fn updated_list(current: &[VeAddr], added: &[VeAddr], removed: &[String]) -> Vec<VeAddr> {
    if removed.iter().any(|r| r == "all") {
        return added.to_vec();
    }
    let gone: Vec<IpAddr> =
        removed.iter().filter_map(|r| r.split('/').next()?.parse().ok()).collect();
    let mut list: Vec<VeAddr> = current
        .iter()
        .filter(|a| !gone.contains(&a.ip()) && !added.iter().any(|n| n.ip() == a.ip()))
        .copied()
        .collect();
    list.extend_from_slice(added);
    list
}

/// What one `vzctl set` does to a VE's network: the `--ipadd/--ipdel/--netif_add/--netif_del`
/// options resolved against its current config.
#[derive(Debug, Default)]
pub struct NetPlan {
    added: Vec<VeAddr>,
    removed: Vec<VeAddr>,
    addresses: Option<Vec<VeAddr>>,
    veth_added: Vec<VethSpec>,
    veth_removed: Vec<VethSpec>,
    /// Interfaces changed in place by `--ifname` with `--mac` …: (before, after).
    veth_changed: Vec<(VethSpec, VethSpec)>,
    netifs: Option<Vec<VethSpec>>,
}

impl NetPlan {
    /// Resolves the options; refuses addresses other VEs have.
    ///
    /// # Errors
    /// 71 malformed address, 78 address of another VE, 130 malformed or unknown interface.
    pub fn new(
        ve: &Ve,
        ipadd: &[String],
        ipdel: &[String],
        netif_add: &[String],
        netif_del: &[String],
    ) -> Result<NetPlan> {
        let mut plan = NetPlan::default();
        if !ipadd.is_empty() || !ipdel.is_empty() {
            let current = addresses(ve)?;
            let added = parse_addresses(&ipadd.join(" "))?;
            let deleted: Vec<&String> = ipdel.iter().filter(|d| *d != "all").collect();
            for d in &deleted {
                parse_addresses(d)?;
            }
            check_unique(ve, &added)?;
            let list = updated_list(&current, &added, ipdel);
            plan.removed = current.iter().filter(|a| !list.contains(a)).copied().collect();
            plan.added = list.iter().filter(|a| !current.contains(a)).copied().collect();
            plan.addresses = Some(list);
        }
        if !netif_add.is_empty() || !netif_del.is_empty() {
            let mut list = netifs(ve)?;
            let all = netif_del.iter().any(|d| d == "all");
            for name in netif_del.iter().filter(|d| *d != "all") {
                if !list.iter().any(|s| &s.ifname == name) {
                    return Err(CtlError::NoInterface { ifname: name.clone(), ctid: ve.ctid });
                }
            }
            let (gone, kept): (Vec<_>, Vec<_>) =
                list.drain(..).partition(|s| all || netif_del.contains(&s.ifname));
            list = kept;
            for arg in netif_add {
                let spec = VethSpec::from_netif_add(arg, &ve.ctid.to_string(), mac_seed())
                    .map_err(net_error)?;
                list.retain(|s| s.ifname != spec.ifname);
                plan.veth_added.push(spec.clone());
                list.push(spec);
            }
            plan.veth_removed = gone;
            plan.netifs = Some(list);
        }
        Ok(plan)
    }

    /// Adds OpenVZ's `--ifname IF` with `--mac`, `--host_ifname`, `--host_mac`, `--bridge`,
    /// `--mac_filter` (`changes`: key and value) to the plan.
    ///
    /// # Errors
    /// 130 for an interface the VE does not have or a malformed value.
    pub fn change_netif(
        &mut self,
        ve: &Ve,
        ifname: &str,
        changes: &[(String, String)],
    ) -> Result<()> {
        let mut list = match self.netifs.take() {
            Some(list) => list,
            None => netifs(ve)?,
        };
        let Some(old) = list.iter_mut().find(|s| s.ifname == ifname) else {
            return Err(CtlError::NoInterface { ifname: ifname.to_owned(), ctid: ve.ctid });
        };
        let pairs: Vec<(&str, &str)> =
            changes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let new = old.changed(&pairs, &ve.ctid.to_string()).map_err(net_error)?;
        self.veth_changed.push((old.clone(), new.clone()));
        *old = new;
        self.netifs = Some(list);
        Ok(())
    }

    /// Whether the set changes nothing of the network.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_none() && self.netifs.is_none()
    }

    /// Puts the changes into effect on the running VE whose init is `pid`.
    ///
    /// # Errors
    /// As [`setup`].
    pub fn apply_live(&self, ve: &Ve, pid: i32) -> Result<()> {
        if !self.removed.is_empty() {
            del_live(ve, pid, &self.removed)?;
        }
        if !self.added.is_empty() {
            add_live(ve, pid, &self.added)?;
        }
        for spec in &self.veth_removed {
            Veth::del(pid, spec).map_err(net_error)?;
        }
        for spec in &self.veth_added {
            Veth::add(pid, spec).map_err(net_error)?;
        }
        for (old, new) in &self.veth_changed {
            Veth::reconfigure(pid, old, new).map_err(net_error)?;
        }
        Ok(())
    }

    /// The CTID.conf keys to save (`IP_ADDRESS`, `NETIF`).
    pub fn saved(&self) -> Vec<(&'static str, String)> {
        let mut saved = Vec::new();
        if let Some(list) = &self.addresses {
            saved.push(("IP_ADDRESS", vz_ns::net::format_address_list(list)));
        }
        if let Some(list) = &self.netifs {
            saved.push(("NETIF", vz_ns::net::format_netif(list)));
        }
        saved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &str) -> Vec<VeAddr> {
        parse_addresses(list).unwrap()
    }

    #[test]
    fn address_lists_update_like_openvz() {
        let current = addrs("192.0.2.1 192.0.2.2/24");
        let del = vec!["192.0.2.1".to_owned()];
        assert_eq!(
            updated_list(&current, &addrs("192.0.2.3"), &del),
            addrs("192.0.2.2/24 192.0.2.3")
        );
        // Re-adding an address with a new mask replaces it.
        assert_eq!(
            updated_list(&current, &addrs("192.0.2.2/28"), &[]),
            addrs("192.0.2.1 192.0.2.2/28")
        );
        assert_eq!(
            updated_list(&current, &addrs("2001:db8::1"), &["all".to_owned()]),
            addrs("2001:db8::1")
        );
    }

    #[test]
    fn malformed_addresses_exit_71() {
        assert_eq!(parse_addresses("192.0.2.300").unwrap_err().exit_code(), 71);
        assert_eq!(parse_addresses("192.0.2.1/33").unwrap_err().exit_code(), 71);
    }
}
