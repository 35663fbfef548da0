//! Bridged VE networking, OpenVZ's veth: `NETIF` records, OpenVZ's names and MACs, and
//! the pair whose host end joins a bridge.

use std::fmt;
use std::str::FromStr;

use rtnetlink::LinkUnspec;

use super::{Netlink, add_pair, check_ifname, del_pair, host_name_taken, nl_err};
use crate::error::{NsError, Result};

/// OpenVZ's OUI for generated MACs (SWsoft, `SW_OUI` in vzctl's `veth.h`).
const SW_OUI: [u8; 3] = [0x00, 0x18, 0x51];

/// An Ethernet address, `XX:XX:XX:XX:XX:XX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// vzctl's `generate_mac`: OUI 00:18:51 and three bytes of a hash of
    /// `"<dev>:<CTID>:<seed> "` (vzctl seeds with the host's id; any stable number gives
    /// stable MACs).
    pub(crate) fn generate(dev: &str, ctid: &str, seed: u64) -> MacAddr {
        let data = format!("{dev}:{ctid}:{seed} ");
        let b = data.as_bytes();
        let mut hash: u32 = ctid.parse::<u32>().unwrap_or(0);
        for i in 0..b.len() - 1 {
            hash = hash.wrapping_add(u32::from(b[i]));
            let tmp = (u32::from(b[i + 1]) << 11) ^ hash;
            hash = (hash << 16) ^ tmp;
            hash = hash.wrapping_add(hash >> 11);
        }
        hash ^= hash << 3;
        hash = hash.wrapping_add(hash >> 5);
        hash ^= hash << 4;
        hash = hash.wrapping_add(hash >> 17);
        hash ^= hash << 25;
        hash = hash.wrapping_add(hash >> 6);
        let [o0, o1, o2] = SW_OUI;
        let [h0, h1, h2, _] = hash.to_le_bytes();
        MacAddr([o0, o1, o2, h0, h1, h2])
    }
}

impl FromStr for MacAddr {
    type Err = NsError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || NsError::BadNetif {
            field: "mac",
            value: s.to_owned(),
            reason: "not in the form XX:XX:XX:XX:XX:XX".into(),
        };
        let mut out = [0u8; 6];
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        for (o, p) in out.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

/// One bridged interface of a VE: a `NETIF` record
/// (`ifname=eth0,mac=..,host_ifname=veth101.0,host_mac=..,bridge=vmbr0`), `--netif_add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethSpec {
    /// The name inside the VE (`eth0`).
    pub ifname: String,
    /// The VE end's MAC.
    pub mac: MacAddr,
    /// The host end's name (`veth101.0`).
    pub host_ifname: String,
    /// The host end's MAC.
    pub host_mac: MacAddr,
    /// The bridge the host end joins, if any.
    pub bridge: Option<String>,
    /// `mac_filter=on`: the host end takes only frames from [`VethSpec::mac`].
    pub mac_filter: bool,
}

impl VethSpec {
    /// `--netif_add ifname[,mac,host_ifname,host_mac,bridge]` with OpenVZ's defaults:
    /// `host_ifname = veth<CTID>.<N>` (N the number in `ifname`), generated MACs when none is
    /// given, the host MAC copying the VE MAC when only that is given.
    ///
    /// # Errors
    /// [`NsError::BadNetif`] naming the field.
    pub fn from_netif_add(arg: &str, ctid: &str, seed: u64) -> Result<VethSpec> {
        let f: Vec<&str> = arg.split(',').collect();
        if f.len() > 5 {
            return Err(NsError::BadNetif {
                field: "netif_add",
                value: arg.to_owned(),
                reason: "more than 5 fields".into(),
            });
        }
        let get = |i: usize| f.get(i).copied().filter(|s| !s.is_empty());
        let kv: Vec<(&str, &str)> = [
            ("ifname", get(0)),
            ("mac", get(1)),
            ("host_ifname", get(2)),
            ("host_mac", get(3)),
            ("bridge", get(4)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        Self::from_pairs(&kv, ctid, seed, get(1).is_some() && get(3).is_none())
    }

    fn from_pairs(kv: &[(&str, &str)], ctid: &str, seed: u64, copy_mac: bool) -> Result<Self> {
        let find = |k: &str| kv.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let ifname = find("ifname").ok_or_else(|| NsError::BadNetif {
            field: "ifname",
            value: String::new(),
            reason: "missing".into(),
        })?;
        check_ifname("ifname", ifname)?;
        let n: String = ifname.chars().filter(char::is_ascii_digit).collect();
        let host_ifname = match find("host_ifname") {
            Some(h) => h.to_owned(),
            None => format!("veth{ctid}.{}", if n.is_empty() { "0" } else { &n }),
        };
        check_ifname("host_ifname", &host_ifname)?;
        let mac = match find("mac") {
            Some(m) => m.parse()?,
            None => MacAddr::generate(ifname, ctid, seed),
        };
        let host_mac = match find("host_mac") {
            Some(m) => m.parse().map_err(|_| bad_mac("host_mac", m))?,
            None if copy_mac => mac,
            None => MacAddr::generate(&host_ifname, ctid, seed),
        };
        let bridge = find("bridge").map(str::to_owned);
        if let Some(b) = &bridge {
            check_ifname("bridge", b)?;
        }
        let mac_filter = match find("mac_filter") {
            None | Some("off") => false,
            Some("on") => true,
            Some(other) => {
                return Err(NsError::BadNetif {
                    field: "mac_filter",
                    value: other.to_owned(),
                    reason: "not on or off".into(),
                });
            }
        };
        Ok(VethSpec { ifname: ifname.to_owned(), mac, host_ifname, host_mac, bridge, mac_filter })
    }
}

impl VethSpec {
    /// This interface with OpenVZ's `--mac`, `--host_ifname`, `--host_mac`, `--bridge` or
    /// `--mac_filter` values applied (`changes`: (key, value) of [`parse_netif`]'s keys).
    ///
    /// # Errors
    /// [`NsError::BadNetif`] naming the field.
    pub fn changed(&self, changes: &[(&str, &str)], ctid: &str) -> Result<VethSpec> {
        let (mac, host_mac) = (self.mac.to_string(), self.host_mac.to_string());
        let filter = if self.mac_filter { "on" } else { "off" };
        let mut kv: Vec<(&str, &str)> = vec![
            ("ifname", &self.ifname),
            ("mac", &mac),
            ("host_ifname", &self.host_ifname),
            ("host_mac", &host_mac),
            ("mac_filter", filter),
        ];
        if let Some(bridge) = &self.bridge {
            kv.push(("bridge", bridge));
        }
        for (key, value) in changes {
            kv.retain(|(k, _)| k != key);
            kv.push((key, value));
        }
        Self::from_pairs(&kv, ctid, 0, false)
    }
}

fn bad_mac(field: &'static str, value: &str) -> NsError {
    NsError::BadNetif {
        field,
        value: value.into(),
        reason: "not in the form XX:XX:XX:XX:XX:XX".into(),
    }
}

/// Parses a `NETIF` value: `;`-separated records of `key=value` pairs. A record without
/// `host_mac` copies `mac`, as vzctl does when reading the config; `mac_filter=on` makes the
/// host end take only frames from the VE's MAC; unknown keys are accepted and not kept.
///
/// # Errors
/// [`NsError::BadNetif`] naming the field and record.
pub fn parse_netif(value: &str, ctid: &str, seed: u64) -> Result<Vec<VethSpec>> {
    let mut out = Vec::new();
    for record in value.split(';').map(str::trim).filter(|r| !r.is_empty()) {
        let mut kv = Vec::new();
        for pair in record.split(',') {
            let (k, v) = pair.split_once('=').ok_or_else(|| NsError::BadNetif {
                field: "NETIF",
                value: record.to_owned(),
                reason: format!("{pair:?} is not key=value"),
            })?;
            kv.push((k.trim(), v.trim()));
        }
        let has_mac = kv.iter().any(|(k, _)| *k == "mac");
        out.push(VethSpec::from_pairs(&kv, ctid, seed, has_mac)?);
    }
    Ok(out)
}

/// The `NETIF` text of the records, keys in vzctl's order.
pub fn format_netif(specs: &[VethSpec]) -> String {
    let one = |s: &VethSpec| {
        let mut r = format!("ifname={}", s.ifname);
        if let Some(b) = &s.bridge {
            r.push_str(&format!(",bridge={b}"));
        }
        let r = format!("{r},mac={},host_ifname={},host_mac={}", s.mac, s.host_ifname, s.host_mac);
        if s.mac_filter { format!("{r},mac_filter=on") } else { r }
    };
    specs.iter().map(one).collect::<Vec<_>>().join(";")
}

/// Bridged VE interfaces.
#[derive(Debug, Clone, Copy)]
pub struct Veth;

impl Veth {
    /// Creates the pair: the VE end named [`VethSpec::ifname`] in the VE (down; the VE's
    /// own network configuration brings it up), the host end up on the host and, with a
    /// bridge, joined to it.
    ///
    /// # Errors
    /// [`NsError::NoSuchDevice`] naming a bridge that does not exist, [`NsError::BadNetif`]
    /// if the host name is taken, [`NsError::Netlink`] otherwise. Nothing is left on error.
    ///
    /// # Privileges
    /// CAP_NET_ADMIN and CAP_SYS_ADMIN (setns) in the host's namespaces.
    pub fn add(init_pid: i32, spec: &VethSpec) -> Result<()> {
        let host = Netlink::host()?;
        let bridge = spec.bridge.as_deref().map(|b| host.index_of(b)).transpose()?;
        if host.link_by_name(&spec.host_ifname)?.is_some() {
            return Err(host_name_taken(&spec.host_ifname));
        }
        let ve = Netlink::in_netns_of(init_pid)?;
        let (name, hname) = (spec.ifname.as_str(), spec.host_ifname.as_str());
        add_pair(&ve, name, &spec.mac.0, hname, &spec.host_mac.0, false, false)?;
        let result = host_side(&host, spec, bridge);
        if result.is_err() {
            let _ = Veth::del(init_pid, spec);
        }
        result
    }

    /// Takes over a host end that exists without its host side (one CRIU made again at a
    /// restore): its MAC, the MAC guard when `mac_filter` is on, the bridge, up.
    ///
    /// # Errors
    /// [`NsError::NoSuchDevice`] for a missing end or bridge, [`NsError::Netlink`] otherwise.
    ///
    /// # Privileges
    /// CAP_NET_ADMIN in the host's network namespace.
    pub fn adopt_host_end(spec: &VethSpec) -> Result<()> {
        let host = Netlink::host()?;
        let bridge = spec.bridge.as_deref().map(|b| host.index_of(b)).transpose()?;
        let idx = host.index_of(&spec.host_ifname)?;
        let set = LinkUnspec::new_with_index(idx).address(spec.host_mac.0.to_vec()).build();
        host.run(host.handle().link().set(set).execute())
            .map_err(|e| nl_err("set MAC", spec.host_ifname.clone(), e))?;
        host_side(&host, spec, bridge)
    }

    /// Changes a VE's running pair from `old` to `new` (the same VE end): the VE end's MAC;
    /// the host end's name (renamed while down), MAC and bridge; the MAC guard, taken off
    /// before and put on again for the new names and MAC.
    ///
    /// # Errors
    /// [`NsError::NoSuchDevice`] for a missing end or bridge, [`NsError::BadNetif`] if the
    /// new host name is taken, [`NsError::Netlink`] otherwise.
    ///
    /// # Privileges
    /// As [`Veth::add`].
    pub fn reconfigure(init_pid: i32, old: &VethSpec, new: &VethSpec) -> Result<()> {
        let host = Netlink::host()?;
        let bridge = new.bridge.as_deref().map(|b| host.index_of(b)).transpose()?;
        if old.host_ifname != new.host_ifname && host.link_by_name(&new.host_ifname)?.is_some() {
            return Err(host_name_taken(&new.host_ifname));
        }
        if old.mac != new.mac {
            let ve = Netlink::in_netns_of(init_pid)?;
            let idx = ve.index_of(&new.ifname)?;
            let set = LinkUnspec::new_with_index(idx).address(new.mac.0.to_vec()).build();
            ve.run(ve.handle().link().set(set).execute())
                .map_err(|e| nl_err("set MAC", format!("{} in {}", new.ifname, ve.ns), e))?;
        }
        if old.mac_filter {
            super::guard::remove(&old.host_ifname)?;
        }
        let idx = host.index_of(&old.host_ifname)?;
        let mut set = LinkUnspec::new_with_index(idx);
        if old.host_ifname != new.host_ifname {
            let down = LinkUnspec::new_with_index(idx).down().build();
            host.run(host.handle().link().set(down).execute())
                .map_err(|e| nl_err("set down", old.host_ifname.clone(), e))?;
            set = set.name(new.host_ifname.clone());
        }
        if old.host_mac != new.host_mac {
            set = set.address(new.host_mac.0.to_vec());
        }
        if old.bridge.is_some() && bridge.is_none() {
            set = set.nocontroller();
        }
        host.run(host.handle().link().set(set.build()).execute())
            .map_err(|e| nl_err("change", old.host_ifname.clone(), e))?;
        host_side(&host, new, bridge)
    }

    /// Removes the pair (deleting either end deletes both): the host end if it is on the
    /// host, else the VE end in the VE. Gone already is not an error.
    ///
    /// # Errors
    /// [`NsError::Netlink`] if the link cannot be deleted.
    ///
    /// # Privileges
    /// As [`Veth::add`].
    pub fn del(init_pid: i32, spec: &VethSpec) -> Result<()> {
        let host = Netlink::host()?;
        if spec.mac_filter {
            super::guard::remove(&spec.host_ifname)?;
        }
        if host.del_link(&spec.host_ifname)? {
            return Ok(());
        }
        let ve = Netlink::in_netns_of(init_pid)?;
        del_pair(&host, &ve, &spec.host_ifname, &spec.ifname)
    }
}

fn host_side(host: &Netlink, spec: &VethSpec, bridge: Option<u32>) -> Result<()> {
    let idx = host.index_of(&spec.host_ifname)?;
    if spec.mac_filter {
        // Before the host end comes up: no frame passes unguarded.
        super::guard::veth_mac(&spec.host_ifname, &spec.mac.to_string())?;
    }
    let mut set = LinkUnspec::new_with_index(idx).up();
    if let Some(b) = bridge {
        set = set.controller(b);
    }
    host.run(host.handle().link().set(set.build()).execute())
        .map_err(|e| nl_err("set up and join bridge", spec.host_ifname.clone(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netif_add_defaults() {
        let s = VethSpec::from_netif_add("eth0", "101", 7).unwrap();
        assert_eq!(s.host_ifname, "veth101.0");
        assert_eq!(&s.mac.0[..3], &[0x00, 0x18, 0x51]);
        assert_eq!(&s.host_mac.0[..3], &[0x00, 0x18, 0x51]);
        assert_ne!(s.mac, s.host_mac, "both generated, from different names");
        assert_eq!(s, VethSpec::from_netif_add("eth0", "101", 7).unwrap(), "stable");
        let s = VethSpec::from_netif_add("eth1,00:18:51:AA:BB:CC,,,vmbr0", "7", 0).unwrap();
        assert_eq!((s.host_ifname.as_str(), s.host_mac), ("veth7.1", s.mac));
        assert_eq!(s.bridge.as_deref(), Some("vmbr0"));
        assert!(!s.mac_filter);
    }

    #[test]
    fn mac_filter_is_kept_when_on_and_checked() {
        let s = &parse_netif("ifname=eth0,mac=00:18:51:00:00:09,mac_filter=on", "5", 0).unwrap()[0];
        assert!(s.mac_filter);
        assert!(format_netif(std::slice::from_ref(s)).ends_with(",mac_filter=on"));
        assert!(parse_netif("ifname=eth0,mac_filter=maybe", "5", 0).is_err());
    }

    #[test]
    fn a_change_keeps_what_it_does_not_name() {
        let s = VethSpec::from_netif_add("eth0,,,,vmbr0", "101", 7).unwrap();
        let c = s.changed(&[("host_ifname", "vm101"), ("mac_filter", "on")], "101").unwrap();
        assert_eq!((c.host_ifname.as_str(), c.mac_filter), ("vm101", true));
        assert_eq!((c.mac, c.host_mac, c.bridge.as_deref()), (s.mac, s.host_mac, Some("vmbr0")));
        assert!(s.changed(&[("mac", "zz")], "101").is_err());
        assert_eq!(s.changed(&[], "101").unwrap(), s);
    }

    #[test]
    fn bad_records_name_the_field() {
        let e = VethSpec::from_netif_add("eth0,00:18:51", "1", 0).unwrap_err();
        assert!(e.to_string().contains("mac"), "{e}");
        let e = VethSpec::from_netif_add("eth0,,,zz", "1", 0).unwrap_err();
        assert!(e.to_string().contains("host_mac"), "{e}");
        let e = parse_netif("ifname=eth0,bridge", "1", 0).unwrap_err();
        assert!(e.to_string().contains("bridge"), "{e}");
        assert!(parse_netif("mac=00:18:51:00:00:01", "1", 0).is_err());
    }

    #[test]
    fn netif_round_trip() {
        let v = "ifname=eth0,bridge=vmbr0,mac=00:18:51:01:02:03,host_ifname=veth101.0,host_mac=FE:FF:FF:FF:FF:FF;ifname=eth1,mac=00:18:51:01:02:04,host_ifname=veth101.1,host_mac=00:18:51:01:02:04";
        let specs = parse_netif(v, "101", 0).unwrap();
        assert_eq!(format_netif(&specs), v);
        let s = parse_netif("ifname=eth2,mac=00:18:51:00:00:09,mac_filter=on", "5", 0).unwrap();
        assert_eq!(s[0].host_mac, s[0].mac, "a missing host_mac copies mac");
    }
}
