//! The VE's resource parameters: its beancounters (vz-ubc) and CPU settings (vz-sched) read
//! from its configuration (CTID.conf over vz.conf), put into effect on the VE's cgroup at
//! start and by `vzctl set`, and measured back for vzlist and vzubc.
//!
//! vz-ctl owns the cgroup ([`VeCgroup`]); this module only hands its directories to the
//! subsystems. The IPC sysctls of `shmpages` live in the VE's IPC namespace: they are written
//! by a short-lived host thread that joins only that namespace (the VE's mount namespace
//! mounts `/proc/sys` read-only, and host writes through `/proc/<pid>/root` would follow
//! paths the VE controls).
//!
//! # Privileges
//! Root: cgroup files, `setns` into the VE's IPC namespace.

use vz_sched::{CpuLimit, CpuMask, CpuSettings, CpuUnits, Cpus};
use vz_ubc::{BarrierLimit, Beancounter, Resource, UbcSet, Usage};

use crate::cgroup::VeCgroup;
use crate::error::{CtlError, Result};

/// `CPUUNITS` when neither the VE's config nor vz.conf sets it (OpenVZ's `DEF_CPUUNITS`).
pub const DEFAULT_CPUUNITS: u32 = 1000;

/// Resource changes asked for on the command line (`vzctl set`), already parsed by the
/// subsystems' own parsers, with the forms to save in CTID.conf.
#[derive(Debug, Clone, Default)]
pub struct ResourceChanges {
    /// Beancounter values (`--ram`/`--swap` already turned into physpages/swappages).
    pub ubc: UbcSet,
    /// CPU values; `None` fields are not changed.
    pub cpu: CpuSettings,
    /// `(KEY, value)` pairs to save, in the order given.
    pub saved: Vec<(&'static str, String)>,
}

impl ResourceChanges {
    /// Whether nothing is changed.
    pub fn is_empty(&self) -> bool {
        self.ubc.is_empty() && self.cpu == CpuSettings::default()
    }

    /// Records one beancounter value.
    pub fn set_ubc(&mut self, resource: Resource, value: BarrierLimit) {
        self.ubc.set(resource, value);
        self.saved.retain(|(k, _)| *k != resource.key());
        self.saved.push((resource.key(), value.to_string()));
    }

    /// Records one CPU key with its saved form.
    fn save(&mut self, key: &'static str, value: String) {
        self.saved.retain(|(k, _)| *k != key);
        self.saved.push((key, value));
    }

    /// Parses the value of a command-line option for a resource; `Ok(false)` when `option`
    /// is not a resource option.
    ///
    /// # Errors
    /// [`CtlError::BadParameter`] naming the option and value, with the subsystem's reason.
    pub fn parse_option(&mut self, option: &str, value: &str) -> Result<bool> {
        let bad = |reason: String| CtlError::BadParameter {
            option: option.to_owned(),
            value: value.to_owned(),
            reason,
        };
        match option {
            "ram" | "swap" => {
                let resource =
                    if option == "ram" { Resource::PhysPages } else { Resource::SwapPages };
                let bytes = BarrierLimit::parse_with_page_size(resource, value, 1)
                    .map_err(|e| bad(e.to_string()))?;
                if bytes.barrier != bytes.limit {
                    return Err(bad("expected one size in bytes".into()));
                }
                self.set_ubc(resource, vz_ubc::vswap_pages(bytes.limit));
            }
            "vm_overcommit" => {
                // Config only: it scales the privvmpages a VSwap config derives at start.
                let ratio = value.trim();
                if !ratio.parse::<f64>().is_ok_and(|f| f.is_finite() && f >= 0.0) {
                    return Err(bad("expected a number, 0 or more".into()));
                }
                self.save("VM_OVERCOMMIT", ratio.to_owned());
            }
            "cpuunits" => {
                let units: CpuUnits =
                    value.parse().map_err(|e: vz_sched::SchedError| bad(e.to_string()))?;
                self.cpu.units = Some(units);
                self.save("CPUUNITS", units.to_string());
            }
            "cpuweight" => {
                let weight = value.trim().parse::<u32>().ok().filter(|w| *w > 0);
                let weight = weight.ok_or_else(|| bad("expected a weight, 1 or more".into()))?;
                // As OpenVZ's vps_set_cpu: --cpuunits of the same command wins.
                if !self.saved.iter().any(|(k, _)| *k == "CPUUNITS") {
                    self.cpu.units = Some(units_of_weight(weight));
                }
                self.save(CPU_WEIGHT_KEY, weight.to_string());
            }
            "cpulimit" => {
                let limit: CpuLimit =
                    value.parse().map_err(|e: vz_sched::SchedError| bad(e.to_string()))?;
                self.cpu.limit = Some(limit);
                self.save("CPULIMIT", limit.to_string());
            }
            "cpus" => {
                let cpus: Cpus =
                    value.parse().map_err(|e: vz_sched::SchedError| bad(e.to_string()))?;
                self.cpu.cpus = Some(cpus);
                self.save("CPUS", cpus.get().to_string());
            }
            "cpumask" => {
                // `auto` (the CPUs of NODEMASK's nodes) is resolved where the node list is
                // known: `cpu_config` at start, `resolve_auto_mask` for a live set.
                let mask: CpuMask =
                    value.parse().map_err(|e: vz_sched::SchedError| bad(e.to_string()))?;
                self.cpu.mask = Some(mask);
                self.save("CPUMASK", value.trim().to_owned());
            }
            name => {
                let Some(resource) = Resource::ALL.into_iter().find(|r| r.option() == name) else {
                    return Ok(false);
                };
                let parsed =
                    BarrierLimit::parse(resource, value).map_err(|e| bad(e.to_string()))?;
                self.set_ubc(resource, parsed);
            }
        }
        Ok(true)
    }
}

/// Whether `option` (without dashes) is a resource option of `vzctl set`.
pub fn is_resource_option(option: &str) -> bool {
    matches!(
        option,
        "ram"
            | "swap"
            | "vm_overcommit"
            | "cpuunits"
            | "cpuweight"
            | "cpulimit"
            | "cpus"
            | "cpumask"
    ) || Resource::ALL.into_iter().any(|r| r.option() == option)
}

/// The beancounter values of a config: every parameter key that is set (empty values are
/// unset), without the VSwap defaults.
///
/// # Errors
/// [`CtlError::Ubc`] naming the first bad key and value.
pub fn ubc_config<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<UbcSet> {
    let mut set = UbcSet::new();
    for resource in Resource::ALL {
        if let Some(text) = get(resource.key()).filter(|v| !v.trim().is_empty()) {
            set.set(resource, BarrierLimit::parse(resource, text).map_err(CtlError::Ubc)?);
        }
    }
    Ok(set)
}

/// OpenVZ's VSwap check: a config whose PHYSPAGES has a finite limit needs SWAPPAGES too.
///
/// # Errors
/// [`CtlError::SwapNotSet`] (exit 28).
pub fn check_vswap(set: &UbcSet) -> Result<()> {
    if set.is_vswap() && set.get(Resource::SwapPages).is_none() {
        return Err(CtlError::SwapNotSet);
    }
    Ok(())
}

/// The per-process limits of a VE's beancounters (lockedpages, numsiginfo, numfile) in
/// vz-ns's form: set on the VE's init and on every process entered into the VE.
pub fn ve_rlimits(set: &UbcSet) -> Vec<vz_ns::Rlimit> {
    vz_ubc::rlimits(set)
        .into_iter()
        .filter_map(|limit| {
            let resource = match limit.kind {
                vz_ubc::RlimitKind::MemLock => vz_ns::RlimitResource::MemLock,
                vz_ubc::RlimitKind::SigPending => vz_ns::RlimitResource::SigPending,
                vz_ubc::RlimitKind::NoFile => vz_ns::RlimitResource::NoFile,
                _ => return None,
            };
            let value = |v: Option<u64>| v.unwrap_or(vz_ns::Rlimit::UNLIMITED);
            Some(vz_ns::Rlimit { resource, soft: value(limit.soft), hard: value(limit.hard) })
        })
        .collect()
}

/// The beancounter values a VE starts with: [`ubc_in_force`], checked by [`check_vswap`].
///
/// # Errors
/// As [`ubc_in_force`]; [`CtlError::SwapNotSet`] for a VSwap config without SWAPPAGES.
pub fn ubc_at_start<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<UbcSet> {
    let set = ubc_in_force(get)?;
    check_vswap(&set)?;
    Ok(set)
}

/// The beancounter values of a config as a start applies them: [`ubc_config`] with
/// [`with_vswap_defaults`] (a running VE's bounds; entering it uses them unchecked).
///
/// # Errors
/// [`CtlError::Ubc`] for a bad parameter value, [`CtlError::BadParameter`] for a bad
/// `VM_OVERCOMMIT`.
pub fn ubc_in_force<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<UbcSet> {
    with_vswap_defaults(ubc_config(&get)?, get)
}

/// `set` (a config's values) plus the values vzctl derives for a VSwap config
/// (`VM_OVERCOMMIT` scales privvmpages): what a start applies, and so a running VE's bounds.
///
/// # Errors
/// [`CtlError::BadParameter`] for a bad `VM_OVERCOMMIT`.
pub fn with_vswap_defaults<'a>(
    mut set: UbcSet,
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<UbcSet> {
    let overcommit = get("VM_OVERCOMMIT")
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            v.trim().parse::<f64>().map_err(|_| CtlError::BadParameter {
                option: "vm_overcommit".into(),
                value: v.to_owned(),
                reason: "expected a number".into(),
            })
        })
        .transpose()?;
    set.fill_vswap_defaults(overcommit);
    Ok(set)
}

/// OpenVZ's raw CPU weight key (`--cpuweight`; the reference's spelling).
pub const CPU_WEIGHT_KEY: &str = "CPUUWEIGHT";

/// OpenVZ's `MAXCPUUNITS`: fairsched's weight is `MAXCPUUNITS / CPUUNITS` (vzctl's cpu.c).
const MAX_CPUUNITS: u32 = 500_000;

/// The CPUUNITS a raw fairsched weight stands for (a lower weight gets more CPU), within
/// CPUUNITS' range 8–500000.
fn units_of_weight(weight: u32) -> CpuUnits {
    CpuUnits::from_shares(u64::from(MAX_CPUUNITS / weight.max(1)))
}

/// The CPU settings of a config: `CPUUNITS` (else the units of a raw `CPUUWEIGHT`, else
/// [`DEFAULT_CPUUNITS`], as OpenVZ's units win over its weight), `CPULIMIT`, `CPUS`,
/// `CPUMASK`.
///
/// # Errors
/// [`CtlError::Sched`] naming the bad key and value.
pub fn cpu_config<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<CpuSettings> {
    let value = |key: &str| get(key).map(str::trim).filter(|v| !v.is_empty());
    let weight = value(CPU_WEIGHT_KEY).and_then(|w| w.parse::<u32>().ok()).filter(|w| *w > 0);
    let units = match (value("CPUUNITS"), weight) {
        (Some(v), _) => v.parse().map_err(CtlError::Sched)?,
        (None, Some(weight)) => units_of_weight(weight),
        (None, None) => CpuUnits::new(DEFAULT_CPUUNITS).map_err(CtlError::Sched)?,
    };
    let mask = value("CPUMASK").map(str::parse).transpose().map_err(CtlError::Sched)?;
    Ok(CpuSettings {
        units: Some(units),
        limit: value("CPULIMIT").map(str::parse).transpose().map_err(CtlError::Sched)?,
        cpus: value("CPUS").map(str::parse).transpose().map_err(CtlError::Sched)?,
        mask: mask.map(|m| resolve_auto_mask(m, value("NODEMASK"))).transpose()?,
    })
}

/// `CPUMASK=auto` as the CPUs of the NUMA nodes of `nodemask` (`/sys/devices/system/node/
/// node<N>/cpulist`); every CPU when there is no node list (`all` or unset). Other masks
/// are returned as they are.
///
/// # Errors
/// [`CtlError::Sched`] when a node's CPU list cannot be read or parsed.
pub fn resolve_auto_mask(mask: CpuMask, nodemask: Option<&str>) -> Result<CpuMask> {
    let Some(nodes) = nodemask.map(str::trim).filter(|n| *n != "all" && !n.is_empty()) else {
        return Ok(if mask == CpuMask::Auto { CpuMask::All } else { mask });
    };
    if mask != CpuMask::Auto {
        return Ok(mask);
    }
    let mut cpus = Vec::new();
    for part in nodes.split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let bad = || {
            CtlError::Sched(vz_sched::SchedError::InvalidValue {
                key: "NODEMASK",
                value: nodes.to_owned(),
                reason: "expected a node list".into(),
            })
        };
        let (lo, hi): (u32, u32) = (lo.parse().map_err(|_| bad())?, hi.parse().map_err(|_| bad())?);
        for node in lo..=hi.min(lo.saturating_add(4096)) {
            let path = format!("/sys/devices/system/node/node{node}/cpulist");
            let list = std::fs::read_to_string(&path).map_err(|_| bad())?;
            cpus.extend(list.trim().split(',').filter(|c| !c.is_empty()).map(str::to_owned));
        }
    }
    cpus.join(",").parse().map_err(CtlError::Sched)
}

/// What to write on a running VE for a `set`: the changed fields, with `limit` and `cpus`
/// both filled (from the config) when either changes, since they make one CFS quota.
pub fn cpu_live(changes: &CpuSettings, config: &CpuSettings) -> CpuSettings {
    let mut out = changes.clone();
    if changes.limit.is_some() || changes.cpus.is_some() {
        out.limit = changes.limit.or(config.limit).or(Some(CpuLimit::UNLIMITED));
        out.cpus = changes.cpus.or(config.cpus).or(Some(Cpus::ALL));
    }
    out
}

/// The VE's directories for vz-ubc: v2's one directory, or v1's memory and pids ones (and
/// the cgroup2 one of a hybrid host);
/// `None` without a memory controller.
pub fn ubc_dirs(cgroup: &VeCgroup) -> Option<vz_ubc::CgroupDirs> {
    let memory = cgroup.dir_of("memory")?;
    Some(if cgroup.is_v2() {
        vz_ubc::CgroupDirs::V2 { dir: memory }
    } else {
        vz_ubc::CgroupDirs::V1 {
            memory,
            pids: cgroup.dir_of("pids"),
            unified: cgroup.dir_of(crate::cgroup::UNIFIED),
        }
    })
}

/// The VE's directories for vz-sched; `None` without a cpu controller.
pub fn sched_dirs(cgroup: &VeCgroup) -> Option<vz_sched::CgroupDirs> {
    let cpu = cgroup.dir_of("cpu")?;
    Some(if cgroup.is_v2() {
        vz_sched::CgroupDirs::V2 { dir: cpu }
    } else {
        let cpuacct = cgroup.dir_of("cpuacct").filter(|d| *d != cpu);
        vz_sched::CgroupDirs::V1 { cpu, cpuacct, cpuset: cgroup.dir_of("cpuset") }
    })
}

/// Puts beancounter values into effect on the VE's cgroup (all of them at start, the
/// changed ones on `set`); `init_pid` also sets the shmpages sysctls in its IPC namespace.
///
/// # Errors
/// [`CtlError::Ubc`] when the kernel refuses a value.
pub fn apply_ubc(ctid: u32, cgroup: &VeCgroup, set: &UbcSet, init_pid: Option<i32>) -> Result<()> {
    if set.is_empty() {
        return Ok(());
    }
    let Some(dirs) = ubc_dirs(cgroup) else {
        tracing::warn!(ctid, "no memory cgroup: beancounters not applied");
        return Ok(());
    };
    let report = Beancounter::new(ctid, dirs).apply(set).map_err(CtlError::Ubc)?;
    tracing::info!(
        ctid,
        enforced = ?report.enforced(),
        at_start = ?report.at_start(),
        accounted = ?report.accounted(),
        unsupported = ?report.unsupported(),
        "beancounters applied"
    );
    if let Some(pid) = init_pid {
        set_ipc_sysctls(pid, &vz_ubc::shm_sysctls(set))?;
    }
    Ok(())
}

/// Puts CPU settings into effect on the VE's cgroup.
///
/// # Errors
/// [`CtlError::Sched`] when the kernel refuses a value.
pub fn apply_cpu(ctid: u32, cgroup: &VeCgroup, settings: &CpuSettings) -> Result<()> {
    let Some(dirs) = sched_dirs(cgroup) else {
        tracing::warn!(ctid, "no cpu cgroup: CPU parameters not applied");
        return Ok(());
    };
    vz_sched::apply(&dirs, settings).map_err(CtlError::Sched)?;
    tracing::info!(ctid, ?settings, "CPU parameters applied");
    Ok(())
}

/// Writes `(path under /proc/sys, value)` pairs in the IPC namespace of `pid`, as the VE's
/// root (see [`vz_ns::set_ipc_sysctls`]).
///
/// # Errors
/// [`CtlError::Ubc`] with the files, values and the reason when a write fails.
pub fn set_ipc_sysctls(pid: i32, sysctls: &[(&'static str, String)]) -> Result<()> {
    vz_ns::set_ipc_sysctls(pid, sysctls).map_err(|e| {
        let values = sysctls.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>();
        CtlError::Ubc(vz_ubc::UbcError::Io {
            op: "write the VE's IPC sysctls",
            path: format!("/proc/sys/kernel ({})", values.join(" ")).into(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// Measured beancounters of a running VE, with the configured bounds where the kernel holds
/// none; `None` without a memory cgroup.
///
/// # Errors
/// [`CtlError::Ubc`] when a cgroup file cannot be read.
pub fn ubc_usage(ctid: u32, cgroup: &VeCgroup, config: UbcSet) -> Result<Option<Vec<Usage>>> {
    let Some(dirs) = ubc_dirs(cgroup) else { return Ok(None) };
    Beancounter::new(ctid, dirs).with_config(config).usage().map(Some).map_err(CtlError::Ubc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    #[test]
    fn a_raw_cpu_weight_stands_for_units_and_units_win() {
        let units = |pairs: &[(&str, &str)]| cpu_config(lookup(pairs)).unwrap().units.unwrap();
        assert_eq!(units(&[("CPUUWEIGHT", "250")]).get(), 2000);
        assert_eq!(units(&[("CPUUWEIGHT", "250"), ("CPUUNITS", "300")]).get(), 300);
        assert_eq!(units(&[("CPUUWEIGHT", "1")]).get(), 500_000);
        assert_eq!(units(&[("CPUUWEIGHT", "400000")]).get(), 8, "clamped to CPUUNITS' range");
        let mut c = ResourceChanges::default();
        assert!(c.parse_option("cpuunits", "300").unwrap());
        assert!(c.parse_option("cpuweight", "250").unwrap());
        assert_eq!(c.cpu.units.unwrap().get(), 300, "--cpuunits of the same command wins");
        assert!(c.parse_option("cpuweight", "0").is_err());
    }

    #[test]
    fn options_parse_with_the_subsystem_parsers_and_keep_saved_forms() {
        let mut c = ResourceChanges::default();
        assert!(c.parse_option("numproc", "20:20").unwrap());
        assert!(c.parse_option("privvmpages", "5M:6M").unwrap());
        assert!(c.parse_option("cpuunits", "500").unwrap());
        assert!(c.parse_option("cpulimit", "50").unwrap());
        assert!(!c.parse_option("hostname", "x").unwrap());
        assert_eq!(c.ubc.get(Resource::NumProc), Some(BarrierLimit::both(20)));
        let page = vz_ubc::page_size();
        let privvm = c.ubc.get(Resource::PrivvmPages).unwrap();
        assert_eq!((privvm.barrier, privvm.limit), ((5 << 20) / page, (6 << 20) / page));
        assert_eq!(
            c.saved,
            vec![
                ("NUMPROC", "20".to_owned()),
                ("PRIVVMPAGES", format!("{}:{}", (5 << 20) / page, (6 << 20) / page)),
                ("CPUUNITS", "500".to_owned()),
                ("CPULIMIT", "50".to_owned()),
            ]
        );
    }

    #[test]
    fn vm_overcommit_is_a_saved_ratio() {
        let mut c = ResourceChanges::default();
        c.parse_option("vm_overcommit", "1.5").unwrap();
        assert_eq!(c.saved, [("VM_OVERCOMMIT", "1.5".to_owned())]);
        for bad in ["x", "-1", "inf"] {
            let err = c.parse_option("vm_overcommit", bad).unwrap_err();
            assert_eq!(err.exit_code(), 21, "{bad}");
        }
    }

    #[test]
    fn ram_and_swap_are_bytes_turned_into_vswap_pages() {
        let mut c = ResourceChanges::default();
        c.parse_option("ram", "64M").unwrap();
        c.parse_option("swap", "0").unwrap();
        let page = vz_ubc::page_size();
        assert_eq!(c.ubc.get(Resource::PhysPages), Some(BarrierLimit::new(0, (64 << 20) / page)));
        assert_eq!(c.ubc.get(Resource::SwapPages), Some(BarrierLimit::new(0, 0)));
        assert_eq!(c.saved[0], ("PHYSPAGES", format!("0:{}", (64 << 20) / page)));
    }

    #[test]
    fn bad_values_name_the_option_and_value() {
        let mut c = ResourceChanges::default();
        for (opt, val) in [
            ("numproc", "10M"),
            ("kmemsize", "1:2:3"),
            ("cpuunits", "5"),
            ("cpulimit", "x"),
            ("ram", "1G:2G"),
        ] {
            let e = c.parse_option(opt, val).unwrap_err();
            assert_eq!(e.exit_code(), 21, "{opt}");
            assert!(e.to_string().starts_with(&format!("Bad parameter for --{opt}: {val}")), "{e}");
        }
        assert!(c.is_empty() && c.saved.is_empty());
    }

    #[test]
    fn config_maps_to_sets_with_defaults() {
        let pairs = [("NUMPROC", "240:240"), ("PHYSPAGES", "0:256M"), ("SWAPPAGES", "0:128M")];
        let set = ubc_at_start(lookup(&pairs)).unwrap();
        assert_eq!(set.get(Resource::NumProc), Some(BarrierLimit::both(240)));
        // VSwap defaults: lockedpages = ram, oomguarpages = ram:unlimited.
        let ram = (256 << 20) / vz_ubc::page_size();
        assert_eq!(set.get(Resource::LockedPages), Some(BarrierLimit::both(ram)));
        assert_eq!(ubc_config(lookup(&pairs)).unwrap().len(), 3);
        let cpu = cpu_config(lookup(&[("CPULIMIT", "25")])).unwrap();
        assert_eq!(cpu.units.map(CpuUnits::get), Some(DEFAULT_CPUUNITS));
        assert_eq!(cpu.limit, Some(CpuLimit::percent(25)));
        assert_eq!(cpu_config(lookup(&[("CPUUNITS", "7")])).unwrap_err().exit_code(), 2);
        assert_eq!(ubc_config(lookup(&[("NUMPROC", "1K")])).unwrap_err().exit_code(), 1);
    }

    #[test]
    fn live_cpu_quota_keeps_the_configured_other_half() {
        let config = CpuSettings { cpus: Some(Cpus::new(1)), ..Default::default() };
        let change = CpuSettings { limit: Some(CpuLimit::percent(50)), ..Default::default() };
        let live = cpu_live(&change, &config);
        assert_eq!((live.limit, live.cpus, live.units), (change.limit, config.cpus, None));
        let units = CpuSettings { units: Some(CpuUnits::new(500).unwrap()), ..Default::default() };
        assert_eq!(cpu_live(&units, &config), units);
    }

    #[test]
    fn every_ubc_option_is_known() {
        for r in Resource::ALL {
            assert!(is_resource_option(r.option()), "{r}");
        }
        assert!(is_resource_option("ram") && !is_resource_option("hostname"));
    }
}
