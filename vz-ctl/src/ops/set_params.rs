//! The `vzctl set` options for capabilities, devices, features, block I/O, boot order, stop
//! timeout, netfilter, moved network devices and NUMA nodes (reference §1.5, §2.2, §2.5):
//! their parsing and checking (bad value: exit 21) and the CTID.conf values they give.
//!
//! List keys (`CAPABILITY`, `DEVICES`, `DEVNODES`, `FEATURES`, `NETDEV`) are merged with the
//! VE's current value, as OpenVZ does: an entry for the same capability, device, node or
//! feature replaces the old one, others are kept. What each does to the kernel is in
//! `set_live.rs`.

use vz_ns::{DevNode, DeviceKind, DeviceRule};

use crate::error::{CtlError, Result};

/// OpenVZ's features (reference §2.5) and `fuse`, with what vz does for each.
pub(crate) const FEATURES: [&str; 9] =
    ["sysfs", "nfs", "sit", "ipip", "ppp", "ipgre", "bridge", "nfsd", "fuse"];

/// `IOLIMIT`'s ceiling: OpenVZ caps it at 2 GB/s.
const IOLIMIT_MAX: u64 = 2 << 30;

/// The options of this module, as given (already checked).
#[derive(Debug, Clone, Default)]
pub struct ParamChanges {
    /// `--capability NAME:on|off`, normalised (`SYS_TIME:on`), in order.
    pub capability: Vec<String>,
    /// `--devices` rules.
    pub devices: Vec<DeviceRule>,
    /// `--devnodes`: (name below /dev, access letters or `none`).
    pub devnodes: Vec<(String, String)>,
    /// `--features NAME:on|off`, normalised, in order.
    pub features: Vec<String>,
    /// `--iolimit` in bytes per second (0: unlimited).
    pub iolimit: Option<u64>,
    /// `--iopslimit` in operations per second (0: unlimited).
    pub iopslimit: Option<u64>,
    /// `--ioprio` 0–7.
    pub ioprio: Option<u8>,
    /// `--applyconfig NAME`.
    pub applyconfig: Option<String>,
    /// `--applyconfig_map name`.
    pub applyconfig_map: bool,
    /// `--stop-timeout` seconds.
    pub stop_timeout: Option<u64>,
    /// `--bootorder N`.
    pub bootorder: Option<u64>,
    /// `--netfilter disabled|stateless|stateful|full`.
    pub netfilter: Option<String>,
    /// `--netdev_add`, each occurrence.
    pub netdev_add: Vec<String>,
    /// `--netdev_del`, each occurrence.
    pub netdev_del: Vec<String>,
    /// `--nodemask LIST|all`.
    pub nodemask: Option<String>,
    /// `--mount_opts`, checked and normalised.
    pub mount_opts: Option<String>,
    /// `--iptables` (obsolete): the modules as given, saved as `IPTABLES`; the NETFILTER
    /// level they stand for goes to [`Self::netfilter`].
    pub iptables: Option<String>,
}

/// The netfilter modules of OpenVZ's obsolete `--iptables` (vzctl's iptables.c) and the
/// NETFILTER level each needs: connection tracking makes `stateful`, NAT `full`.
const IPTABLES_MODULES: [(&str, &str); 26] = [
    ("ip_tables", "stateless"),
    ("iptable_filter", "stateless"),
    ("iptable_mangle", "stateless"),
    ("ipt_limit", "stateless"),
    ("ipt_multiport", "stateless"),
    ("ipt_tos", "stateless"),
    ("ipt_TOS", "stateless"),
    ("ipt_REJECT", "stateless"),
    ("ipt_TCPMSS", "stateless"),
    ("ipt_tcpmss", "stateless"),
    ("ipt_ttl", "stateless"),
    ("ipt_LOG", "stateless"),
    ("ipt_length", "stateless"),
    ("ipt_owner", "stateless"),
    ("xt_mac", "stateless"),
    ("ip_conntrack", "stateful"),
    ("ip_conntrack_ftp", "stateful"),
    ("ip_conntrack_irc", "stateful"),
    ("ipt_conntrack", "stateful"),
    ("ipt_state", "stateful"),
    ("ipt_helper", "stateful"),
    ("iptable_nat", "full"),
    ("ip_nat_ftp", "full"),
    ("ip_nat_irc", "full"),
    ("ipt_REDIRECT", "full"),
    ("ipt_MASQUERADE", "full"),
];

/// `--iptables MODULE[,MODULE…]` (or space-separated, as the IPTABLES key): the modules,
/// space-separated, and the NETFILTER level they need (OpenVZ's default `stateless` for none).
fn iptables(value: &str) -> Result<(String, &'static str)> {
    let levels = ["stateless", "stateful", "full"];
    let mut level = 0;
    let mut modules = Vec::new();
    for name in value.split([',', ' ']).filter(|m| !m.is_empty()) {
        let Some((_, needs)) = IPTABLES_MODULES.iter().find(|(m, _)| *m == name) else {
            return Err(bad("iptables", value, format!("unknown netfilter module {name}")));
        };
        level = level.max(levels.iter().position(|l| l == needs).unwrap_or(0));
        modules.push(name);
    }
    Ok((modules.join(" "), levels[level]))
}

fn bad(option: &str, value: &str, reason: impl Into<String>) -> CtlError {
    CtlError::BadParameter {
        option: option.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

impl ParamChanges {
    /// Parses and checks the options of this module among `given` (canonical name, value),
    /// in command line order; `cpumask_given` tells whether `--cpumask` is there too.
    ///
    /// # Errors
    /// [`CtlError::BadParameter`] (21) naming the option and value; [`CtlError::Usage`] (20)
    /// for `--nodemask` without `--cpumask`; [`CtlError::Param`] (86) for a `--devnodes`
    /// name that is no device on the host.
    pub fn parse(given: &[(&'static str, Option<String>)]) -> Result<ParamChanges> {
        let mut c = ParamChanges::default();
        let (mut cpumask, mut auto) = (false, false);
        for (name, value) in given {
            let Some(value) = value.as_deref() else { continue };
            match *name {
                "capability" => c.capability.extend(on_off_entries(name, value, capability_name)?),
                "features" => c.features.extend(on_off_entries(name, value, feature_name)?),
                "devices" => c.devices.push(device_rule(value)?),
                "devnodes" => c.devnodes.push(devnode(value)?),
                "iolimit" => c.iolimit = Some(iolimit(value)?),
                "iopslimit" => c.iopslimit = Some(number_or_unlimited(name, value)?),
                "ioprio" => {
                    let prio = value.trim().parse::<u8>().ok().filter(|p| *p <= 7);
                    c.ioprio = Some(prio.ok_or_else(|| bad(name, value, "expected 0 to 7"))?);
                }
                "applyconfig" => {
                    if value.is_empty() || value.contains('/') {
                        return Err(bad(name, value, "expected the name of a sample config"));
                    }
                    c.applyconfig = Some(value.to_owned());
                }
                "applyconfig_map" => {
                    if value != "name" {
                        return Err(bad(name, value, "only name is supported"));
                    }
                    c.applyconfig_map = true;
                }
                "stop-timeout" => {
                    let secs = value.trim().parse::<u64>();
                    c.stop_timeout = Some(secs.map_err(|_| bad(name, value, "expected seconds"))?);
                }
                "bootorder" => {
                    let order = value.trim().parse::<u64>();
                    c.bootorder = Some(order.map_err(|_| bad(name, value, "expected a number"))?);
                }
                "netfilter" => {
                    if !matches!(value, "disabled" | "stateless" | "stateful" | "full") {
                        return Err(bad(
                            name,
                            value,
                            "expected disabled, stateless, stateful or full",
                        ));
                    }
                    c.netfilter = Some(value.to_owned());
                }
                "netdev_add" | "netdev_del" => {
                    vz_ns::net::check_netdev_name(value)
                        .map_err(|e| bad(name, value, e.to_string()))?;
                    let list =
                        if *name == "netdev_add" { &mut c.netdev_add } else { &mut c.netdev_del };
                    list.push(value.to_owned());
                }
                "nodemask" => c.nodemask = Some(nodemask(value)?),
                "iptables" => {
                    // Each occurrence adds modules, as OpenVZ's repeated --iptables.
                    let given =
                        c.iptables.take().map_or(value.to_owned(), |m| format!("{m} {value}"));
                    let (modules, level) = iptables(&given)?;
                    c.iptables = Some(modules);
                    c.netfilter = Some(level.to_owned());
                }
                "mount_opts" => {
                    let options = vz_quota::ImageMountOptions::parse(value)
                        .map_err(|e| bad(name, value, e.to_string()))?;
                    c.mount_opts = Some(options.to_config());
                }
                "cpumask" => {
                    cpumask = true;
                    auto = value.trim() == "auto";
                }
                _ => {}
            }
        }
        if c.nodemask.is_some() && !cpumask {
            return Err(CtlError::Usage("--nodemask requires --cpumask".into()));
        }
        if auto && c.nodemask.is_none() {
            return Err(CtlError::Usage("--cpumask auto requires --nodemask".into()));
        }
        Ok(c)
    }

    /// Whether nothing of this module is asked for.
    pub fn is_empty(&self) -> bool {
        self.capability.is_empty()
            && self.devices.is_empty()
            && self.devnodes.is_empty()
            && self.features.is_empty()
            && self.iolimit.is_none()
            && self.iopslimit.is_none()
            && self.ioprio.is_none()
            && self.applyconfig.is_none()
            && !self.applyconfig_map
            && self.stop_timeout.is_none()
            && self.bootorder.is_none()
            && self.netfilter.is_none()
            && self.netdev_add.is_empty()
            && self.netdev_del.is_empty()
            && self.nodemask.is_none()
            && self.mount_opts.is_none()
            && self.iptables.is_none()
    }

    /// Whether something here is put into effect on a running VE at once (devices, I/O,
    /// network devices, NUMA nodes); the rest is saved for the next start.
    pub fn has_live(&self) -> bool {
        !self.devices.is_empty()
            || !self.devnodes.is_empty()
            || self.iolimit.is_some()
            || self.iopslimit.is_some()
            || self.ioprio.is_some()
            || !self.netdev_add.is_empty()
            || !self.netdev_del.is_empty()
            || self.nodemask.is_some()
    }

    /// Whether something here needs a restart to take effect (OpenVZ's restart-required
    /// parameters: capabilities, features, netfilter, the image's mount options).
    pub fn needs_restart(&self) -> bool {
        !self.capability.is_empty()
            || !self.features.is_empty()
            || self.netfilter.is_some()
            || self.mount_opts.is_some()
    }

    /// The CTID.conf values these options give, merged with the VE's current ones (`get`).
    pub fn saved<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let by_name = |e: &str| e.split(':').next().unwrap_or_default().to_ascii_uppercase();
        if !self.capability.is_empty() {
            out.push(("CAPABILITY", merge(get("CAPABILITY"), &self.capability, by_name)));
        }
        if !self.features.is_empty() {
            let by_feature = |e: &str| e.split(':').next().unwrap_or_default().to_ascii_lowercase();
            out.push(("FEATURES", merge(get("FEATURES"), &self.features, by_feature)));
        }
        if !self.devices.is_empty() {
            let new: Vec<String> = self.devices.iter().map(ToString::to_string).collect();
            let by_device = |e: &str| e.rsplit_once(':').map_or(e, |(dev, _)| dev).to_owned();
            out.push(("DEVICES", merge(get("DEVICES"), &new, by_device)));
        }
        if !self.devnodes.is_empty() {
            let new: Vec<String> = self.devnodes.iter().map(|(n, a)| format!("{n}:{a}")).collect();
            let by_node = |e: &str| e.rsplit_once(':').map_or(e, |(name, _)| name).to_owned();
            out.push(("DEVNODES", merge(get("DEVNODES"), &new, by_node)));
        }
        let number = |v: Option<u64>| v.map(|v| v.to_string());
        for (key, value) in [
            ("IOLIMIT", number(self.iolimit)),
            ("IOPSLIMIT", number(self.iopslimit)),
            ("IOPRIO", self.ioprio.map(|p| p.to_string())),
            ("STOP_TIMEOUT", number(self.stop_timeout)),
            ("BOOTORDER", number(self.bootorder)),
            ("NETFILTER", self.netfilter.clone()),
            ("NODEMASK", self.nodemask.clone()),
            ("MOUNT_OPTS", self.mount_opts.clone()),
            ("IPTABLES", self.iptables.clone()),
        ] {
            if let Some(value) = value {
                out.push((key, value));
            }
        }
        if !self.netdev_add.is_empty() || !self.netdev_del.is_empty() {
            let mut list: Vec<String> =
                get("NETDEV").unwrap_or_default().split_whitespace().map(str::to_owned).collect();
            list.retain(|d| !self.netdev_del.contains(d));
            for dev in &self.netdev_add {
                if !list.contains(dev) {
                    list.push(dev.clone());
                }
            }
            out.push(("NETDEV", list.join(" ")));
        }
        out
    }
}

/// `old` (space-separated entries) with `new` entries replacing those of the same `key`,
/// others appended in order.
fn merge(old: Option<&str>, new: &[String], key: impl Fn(&str) -> String) -> String {
    let mut list: Vec<String> =
        old.unwrap_or_default().split_whitespace().map(str::to_owned).collect();
    for entry in new {
        match list.iter_mut().find(|e| key(e) == key(entry)) {
            Some(slot) => slot.clone_from(entry),
            None => list.push(entry.clone()),
        }
    }
    list.join(" ")
}

/// `NAME:on|off[,NAME:on|off…]` → normalised entries; `name` checks and normalises a name.
fn on_off_entries(
    option: &str,
    value: &str,
    name: fn(&str) -> std::result::Result<String, String>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in value.split([',', ' ']).filter(|e| !e.is_empty()) {
        let Some((n, state)) = entry.split_once(':') else {
            return Err(bad(option, value, format!("{entry}: expected name:on or name:off")));
        };
        let state = state.to_ascii_lowercase();
        if state != "on" && state != "off" {
            return Err(bad(option, value, format!("{entry}: expected name:on or name:off")));
        }
        let n = name(n).map_err(|reason| bad(option, value, reason))?;
        if let Some(refused) = refused_feature(&n, &state) {
            return Err(bad(option, value, refused));
        }
        out.push(format!("{n}:{state}"));
    }
    if out.is_empty() {
        return Err(bad(option, value, "expected name:on or name:off"));
    }
    Ok(out)
}

/// A capability name as CTID.conf stores it (upper case, no `CAP_`), if vz-ns knows it.
fn capability_name(name: &str) -> std::result::Result<String, String> {
    let upper = name.to_ascii_uppercase();
    let upper = upper.strip_prefix("CAP_").unwrap_or(&upper).to_owned();
    let mut probe = vz_ns::CapSet::empty();
    probe.apply_overrides(&format!("{upper}:on")).map_err(|e| e.to_string())?;
    Ok(upper)
}

fn feature_name(name: &str) -> std::result::Result<String, String> {
    let lower = name.to_ascii_lowercase();
    if FEATURES.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(format!("unknown feature {name}; known: {}", FEATURES.join(", ")))
    }
}

/// Why a feature setting is refused on a stock kernel, if it is. Capability entries never
/// match (their names are upper case).
fn refused_feature(name: &str, state: &str) -> Option<&'static str> {
    match (name, state) {
        ("nfs", "on") => Some(
            "nfs can not be mounted from a container's own user namespace on a stock kernel \
             (the nfs file system is not FS_USERNS_MOUNT)",
        ),
        ("nfsd", "on") => Some(
            "the kernel NFS server serves only the host's user namespace; run a user-space \
             NFS server (nfs-ganesha) in the container instead",
        ),
        ("sysfs", "off") => Some("a container always has its read-only /sys"),
        _ => None,
    }
}

/// `b|c:MAJOR:MINOR|all:PERMS` with PERMS of `rwq` or `none` (OpenVZ's `--devices`).
fn device_rule(value: &str) -> Result<DeviceRule> {
    let rule: DeviceRule =
        value.parse().map_err(|e: vz_ns::NsError| bad("devices", value, e.to_string()))?;
    let perms = value.rsplit(':').next().unwrap_or_default();
    if perms != "none" && !perms.chars().all(|c| "rwq".contains(c)) {
        return Err(bad("devices", value, "perms must be letters of rwq, or none"));
    }
    match (rule.kind, rule.major) {
        (DeviceKind::Block | DeviceKind::Char, Some(_)) => {}
        _ => return Err(bad("devices", value, "expected b|c:major:minor|all:perms")),
    }
    if rule.kind == DeviceKind::Block && rule.major == Some(7) {
        return Err(bad(
            "devices",
            value,
            "loop devices (major 7) can not be given to a container",
        ));
    }
    Ok(rule)
}

/// `NAME:PERMS` (OpenVZ's `--devnodes`): NAME below /dev, a device on the host.
fn devnode(value: &str) -> Result<(String, String)> {
    let Some((name, perms)) = value.rsplit_once(':') else {
        return Err(bad("devnodes", value, "expected name:perms"));
    };
    if perms != "none" && (perms.is_empty() || !perms.chars().all(|c| "rwq".contains(c))) {
        return Err(bad("devnodes", value, "perms must be letters of rwq, or none"));
    }
    let node = DevNode::from_host(name).map_err(|e| CtlError::Param {
        code: 86,
        message: format!("Unable to set devnodes {value}: {e}"),
    })?;
    if node.kind == DeviceKind::Block && node.major == 7 {
        return Err(bad(
            "devnodes",
            value,
            "loop devices (major 7) can not be given to a container",
        ));
    }
    Ok((node.name, perms.to_owned()))
}

/// `N[B|K|M|G]` (a bare number is MB/s) or `unlimited` → bytes per second, at most 2 GB/s.
fn iolimit(value: &str) -> Result<u64> {
    let v = value.trim();
    if v == "unlimited" {
        return Ok(0);
    }
    let (digits, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => v.split_at(i),
        None => (v, "M"),
    };
    let shift = match unit.to_ascii_uppercase().as_str() {
        "B" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(bad("iolimit", value, "expected N[B|K|M|G] (MB/s without a unit)")),
    };
    let n: u64 = digits.parse().map_err(|_| bad("iolimit", value, "expected a number"))?;
    Ok(n.checked_shl(shift).filter(|b| b >> shift == n).unwrap_or(u64::MAX).min(IOLIMIT_MAX))
}

fn number_or_unlimited(option: &str, value: &str) -> Result<u64> {
    match value.trim() {
        "unlimited" => Ok(0),
        v => v.parse().map_err(|_| bad(option, value, "expected a number or unlimited")),
    }
}

/// `all` or a node list (`0`, `0-1,3`) of nodes this host has.
fn nodemask(value: &str) -> Result<String> {
    let v = value.trim();
    if v == "all" {
        return Ok(v.to_owned());
    }
    let nodes =
        parse_list(v).ok_or_else(|| bad("nodemask", value, "expected a node list or all"))?;
    for node in &nodes {
        if !std::path::Path::new(&format!("/sys/devices/system/node/node{node}")).exists() {
            return Err(bad("nodemask", value, format!("this host has no NUMA node {node}")));
        }
    }
    Ok(v.to_owned())
}

/// A kernel list `0-2,5` → its numbers.
fn parse_list(text: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let (lo, hi): (u32, u32) = match part.split_once('-') {
            Some((lo, hi)) => (lo.parse().ok()?, hi.parse().ok()?),
            None => {
                let n = part.parse().ok()?;
                (n, n)
            }
        };
        if lo > hi || hi - lo > 4096 {
            return None;
        }
        out.extend(lo..=hi);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, Option<String>)> {
        pairs.iter().map(|(k, v)| (*k, Some((*v).to_owned()))).collect()
    }

    #[test]
    fn iptables_modules_give_the_netfilter_level_they_need() {
        assert_eq!(
            iptables("iptable_filter,ipt_limit").unwrap(),
            ("iptable_filter ipt_limit".into(), "stateless")
        );
        assert_eq!(iptables("iptable_filter ipt_state").unwrap().1, "stateful");
        assert_eq!(iptables("ipt_state,iptable_nat,ipt_LOG").unwrap().1, "full");
        assert_eq!(iptables("").unwrap(), (String::new(), "stateless"));
        assert!(iptables("iptable_filter,xt_bogus").is_err());
        let given = [
            ("iptables", Some("iptable_filter".to_owned())),
            ("iptables", Some("iptable_nat".to_owned())),
        ];
        let c = ParamChanges::parse(&given).unwrap();
        assert_eq!(c.iptables.as_deref(), Some("iptable_filter iptable_nat"));
        assert_eq!(c.netfilter.as_deref(), Some("full"));
        assert!(c.needs_restart());
    }

    #[test]
    fn options_parse_and_merge_with_the_config() {
        let c = ParamChanges::parse(&given(&[
            ("capability", "sys_time:on,CAP_NET_ADMIN:off"),
            ("features", "ppp:on"),
            ("devices", "c:10:200:rw"),
            ("devnodes", "/dev/null:r"),
            ("iolimit", "10"),
            ("iopslimit", "300"),
            ("ioprio", "7"),
            ("stop-timeout", "30"),
            ("bootorder", "5"),
            ("netfilter", "full"),
            ("netdev_add", "eth1"),
        ]))
        .unwrap();
        let old = [
            ("CAPABILITY", "SYS_TIME:off CHOWN:off"),
            ("DEVICES", "c:10:200:r b:8:0:r"),
            ("NETDEV", "eth2"),
        ];
        let get = |k: &str| old.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let saved = c.saved(get);
        let value = |k: &str| saved.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(value("CAPABILITY"), Some("SYS_TIME:on CHOWN:off NET_ADMIN:off"));
        assert_eq!(value("DEVICES"), Some("c:10:200:rw b:8:0:r"));
        assert_eq!(value("DEVNODES"), Some("null:r"));
        assert_eq!(value("FEATURES"), Some("ppp:on"));
        assert_eq!(value("IOLIMIT"), Some("10485760"));
        assert_eq!(value("IOPSLIMIT"), Some("300"));
        assert_eq!(value("IOPRIO"), Some("7"));
        assert_eq!(value("STOP_TIMEOUT"), Some("30"));
        assert_eq!(value("BOOTORDER"), Some("5"));
        assert_eq!(value("NETFILTER"), Some("full"));
        assert_eq!(value("NETDEV"), Some("eth2 eth1"));
        assert!(c.needs_restart() && c.has_live());
    }

    #[test]
    fn bad_values_exit_21_naming_the_option() {
        for (opt, val) in [
            ("capability", "sys_foo:on"),
            ("capability", "chown"),
            ("features", "nfs:on"),
            ("features", "nfsd:on"),
            ("features", "warp:on"),
            ("devices", "a:all:all:rw"),
            ("devices", "b:7:0:rw"),
            ("devices", "c:1:3:rwm"),
            ("devnodes", "null"),
            ("iolimit", "10X"),
            ("ioprio", "8"),
            ("netfilter", "some"),
            ("netdev_add", "venet0"),
            ("netdev_del", "lo"),
            ("applyconfig_map", "group"),
            ("stop-timeout", "-1"),
        ] {
            let e = ParamChanges::parse(&given(&[(opt, val)])).unwrap_err();
            assert_eq!(e.exit_code(), 21, "--{opt} {val}: {e}");
            assert!(e.to_string().contains(&format!("--{opt}")), "{e}");
        }
        let e = ParamChanges::parse(&given(&[("devnodes", "no-such-node:rw")])).unwrap_err();
        assert_eq!(e.exit_code(), 86);
        let e = ParamChanges::parse(&given(&[("nodemask", "0")])).unwrap_err();
        assert_eq!(e.exit_code(), 20, "--nodemask needs --cpumask");
        let ok = ParamChanges::parse(&given(&[("nodemask", "0"), ("cpumask", "all")])).unwrap();
        assert_eq!(ok.nodemask.as_deref(), Some("0"));
        let e = ParamChanges::parse(&given(&[("cpumask", "auto")])).unwrap_err();
        assert_eq!(e.exit_code(), 20, "auto needs --nodemask");
        ParamChanges::parse(&given(&[("cpumask", "auto"), ("nodemask", "0")])).unwrap();
    }

    #[test]
    fn iolimit_units_and_cap() {
        assert_eq!(iolimit("1").unwrap(), 1 << 20);
        assert_eq!(iolimit("512K").unwrap(), 512 << 10);
        assert_eq!(iolimit("100b").unwrap(), 100);
        assert_eq!(iolimit("unlimited").unwrap(), 0);
        assert_eq!(iolimit("5G").unwrap(), IOLIMIT_MAX);
        assert_eq!(iolimit("99999999999999999G").unwrap(), IOLIMIT_MAX);
    }

    #[test]
    fn node_lists() {
        assert_eq!(parse_list("0-2,5"), Some(vec![0, 1, 2, 5]));
        assert_eq!(parse_list("2-1"), None);
        assert_eq!(parse_list("x"), None);
    }
}
