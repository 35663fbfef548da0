//! The VE's cgroup directories as handed over by vz-ctl, and [`apply`]/[`read`]/
//! [`set_host_units`] dispatching to the v1 or v2 backend.

mod v1;
mod v2;

use std::path::{Path, PathBuf};

use vz_cgroup::knob;

use crate::error::{Result, SchedError};
use crate::mask::{CpuList, CpuMask};
use crate::units::{CpuLimit, CpuUnits, Cpus};

/// The VE's cgroup, made by vz-ctl: this crate writes knobs in it, never creates or removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupDirs {
    /// Hybrid or legacy host: one directory per v1 hierarchy.
    V1 {
        /// The VE's directory in the `cpu` hierarchy.
        cpu: PathBuf,
        /// The VE's directory in the `cpuacct` hierarchy when it is mounted separately;
        /// `None` when cpuacct is co-mounted with cpu (`cpu,cpuacct`).
        cpuacct: Option<PathBuf>,
        /// The VE's directory in the `cpuset` hierarchy, if the VE has one.
        cpuset: Option<PathBuf>,
    },
    /// Unified hierarchy: the VE's one directory (`cpu` and `cpuset` enabled by its parent's
    /// `cgroup.subtree_control`).
    V2 {
        /// The VE's directory.
        dir: PathBuf,
    },
}

/// The CPU parameters of a VE. `None` leaves the kernel's current value alone (what
/// `vzctl set` needs for a running VE); vz-ctl passes every configured value at start.
///
/// `limit` and `cpus` make one CFS quota: when either is `Some`, the quota is recomputed
/// from both, an absent one counting as "no limit", so pass both when either changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuSettings {
    /// `CPUUNITS`: the weight against other VEs.
    pub units: Option<CpuUnits>,
    /// `CPULIMIT`: the cap in percent of one CPU (or MHz).
    pub limit: Option<CpuLimit>,
    /// `CPUS`: a cap of N CPUs' worth of time.
    pub cpus: Option<Cpus>,
    /// `CPUMASK`: the CPUs the VE may run on.
    pub mask: Option<CpuMask>,
}

/// What [`read`] reports: the VE's CPU time and the values the kernel holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CpuUsage {
    /// CPU time used by the VE's tasks since the cgroup was made, in nanoseconds
    /// (`cpuacct.usage` on v1, `usage_usec` of `cpu.stat` on v2).
    pub usage_ns: u64,
    /// The weight knob as read: `cpu.shares` (v1) or `cpu.weight` (v2); `None` when the cpu
    /// controller is not enabled (v2).
    pub raw_weight: Option<u64>,
    /// [`raw_weight`](Self::raw_weight) converted back to units.
    pub units: Option<CpuUnits>,
    /// The CFS quota in µs per period, `None` for no limit.
    pub quota_us: Option<u64>,
    /// The CFS period in µs.
    pub period_us: u64,
    /// `cpuset.cpus` as read (`None` without a cpuset; empty on v2 means "the parent's").
    pub cpus: Option<CpuList>,
    /// Periods with runnable tasks (`nr_periods`).
    pub nr_periods: u64,
    /// Periods in which the VE was throttled (`nr_throttled`).
    pub nr_throttled: u64,
    /// Total time throttled, in nanoseconds.
    pub throttled_ns: u64,
}

impl CpuUsage {
    /// The quota as percent of one CPU, rounded up; 0 for no limit.
    pub fn limit_percent(&self) -> u64 {
        match self.quota_us {
            Some(q) if self.period_us > 0 => (q * 100).div_ceil(self.period_us),
            _ => 0,
        }
    }
}

/// Writes `settings` into the VE's cgroup; takes effect at once on running tasks.
///
/// * v1: `cpu.shares = CPUUNITS` (clamped to 2..=262144), `cpu.cfs_period_us = 100000` and
///   `cpu.cfs_quota_us = 100000 × min(CPULIMIT, CPUS × 100) / 100` (`-1` for none);
///   `cpuset.cpus` from `CPUMASK` (`all`/`auto`: the parent's list), and, when the VE's
///   cpuset is still empty, `cpuset.mems`/`cpuset.cpus` copied from the parent so that
///   tasks can join it.
/// * v2: `cpu.weight = CPUUNITS / 10` (clamped to 1..=10000), `cpu.max = "quota 100000"`
///   (`max` for none), `cpuset.cpus` from `CPUMASK` (empty, i.e. the parent's, for
///   `all`/`auto`).
///
/// # Errors
/// [`SchedError::Cgroup`] naming the knob; [`SchedError::NoController`]
/// when a setting needs a controller the cgroup lacks; [`SchedError::InvalidValue`] for a
/// MHz `CPULIMIT` on a node whose clock is unknown.
///
/// # Privileges
/// Write access to the cgroup's files (root).
pub fn apply(dirs: &CgroupDirs, settings: &CpuSettings) -> Result<()> {
    let limit_percent = match settings.limit {
        Some(limit) => Some(limit.to_percent(crate::host::cpu_mhz()).ok_or_else(|| {
            SchedError::invalid(
                "CPULIMIT",
                &limit.to_string(),
                "the CPU clock of this node is unknown",
            )
        })?),
        None => None,
    };
    let percent = (limit_percent.is_some() || settings.cpus.is_some()).then(|| {
        crate::units::effective_percent(
            limit_percent.unwrap_or(0),
            settings.cpus.unwrap_or_default(),
        )
    });
    match dirs {
        CgroupDirs::V1 { cpu, cpuset, .. } => v1::apply(cpu, cpuset.as_deref(), settings, percent),
        CgroupDirs::V2 { dir } => v2::apply(dir, settings, percent),
    }
}

/// Reads the VE's CPU usage and the current weight, quota and CPU list.
///
/// # Errors
/// [`SchedError::Cgroup`] or [`SchedError::Parse`] naming the file.
pub fn read(dirs: &CgroupDirs) -> Result<CpuUsage> {
    match dirs {
        CgroupDirs::V1 { cpu, cpuacct, cpuset } => {
            v1::read(cpu, cpuacct.as_deref(), cpuset.as_deref())
        }
        CgroupDirs::V2 { dir } => v2::read(dir),
    }
}

/// `VE0CPUUNITS`: sets the weight of the cgroup that holds the host's own services.
///
/// Stock kernels have no "VE0": the root cgroup has no weight knob on v1 or v2, and tasks
/// in it compete one by one (weight 1024 / 100 each) with the VEs' groups. The clean
/// mechanism is to run the host's services in a cgroup of their own (systemd's
/// `system.slice`, or one vz-ctl makes) and give that cgroup the units: `cpu.shares` on
/// v1, `cpu.weight` on v2, with the same conversions as [`apply`].
///
/// # Errors
/// [`SchedError::NoWeightKnob`] when `dirs` is a root cgroup (or v2 without the cpu
/// controller); [`SchedError::Cgroup`] naming the knob.
pub fn set_host_units(dirs: &CgroupDirs, units: CpuUnits) -> Result<()> {
    let (knob, value, is_root) = match dirs {
        // A v1 root shows a `cpu.shares` that refuses writes; only roots have `cgroup.sane_behavior`.
        CgroupDirs::V1 { cpu, .. } => {
            (cpu.join("cpu.shares"), units.to_shares(), cpu.join("cgroup.sane_behavior").exists())
        }
        CgroupDirs::V2 { dir } => (dir.join("cpu.weight"), units.to_weight(), false),
    };
    if is_root || !knob.exists() {
        return Err(SchedError::NoWeightKnob { path: knob });
    }
    Ok(knob::write(&knob, &value.to_string())?)
}

/// A file holding one number (`max` is not one here).
pub(crate) fn read_u64(path: &Path) -> Result<u64> {
    knob::read_u64(path)?
        .ok_or_else(|| SchedError::Parse { path: path.to_owned(), content: "max".to_owned() })
}

/// The value of `key` in the flat-keyed text of `cpu.stat`, 0 when absent.
pub(crate) fn stat_value(text: &str, key: &str) -> u64 {
    knob::keyed(text).get(key).copied().unwrap_or(0)
}

pub(crate) fn read_list(path: &Path) -> Result<CpuList> {
    let text = knob::read(path)?;
    CpuList::parse("cpuset", &text)
        .map_err(|_| SchedError::Parse { path: path.to_owned(), content: text })
}

#[cfg(test)]
mod tests;
