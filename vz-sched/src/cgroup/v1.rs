//! cgroup v1 backend: `cpu.shares`, `cpu.cfs_{quota,period}_us`, `cpuset.{cpus,mems}`,
//! `cpuacct.usage`.

use std::path::Path;

use vz_cgroup::knob::{read as read_knob, write as write_knob};

use super::{CpuSettings, CpuUsage, read_list, read_u64, stat_value};
use crate::error::{Result, SchedError};
use crate::mask::CpuMask;
use crate::units::{CFS_PERIOD_US, CpuUnits, quota_us};

pub(super) fn apply(
    cpu: &Path,
    cpuset: Option<&Path>,
    settings: &CpuSettings,
    percent: Option<Option<u64>>,
) -> Result<()> {
    if let Some(units) = settings.units {
        write_knob(&cpu.join("cpu.shares"), &units.to_shares().to_string())?;
    }
    if let Some(percent) = percent {
        let period_knob = cpu.join("cpu.cfs_period_us");
        let quota_knob = cpu.join("cpu.cfs_quota_us");
        // Lift the quota first: a new period with the old quota may break the parent's bound.
        if percent.is_none() || read_u64(&period_knob)? != CFS_PERIOD_US {
            write_knob(&quota_knob, "-1")?;
        }
        if read_u64(&period_knob)? != CFS_PERIOD_US {
            write_knob(&period_knob, &CFS_PERIOD_US.to_string())?;
        }
        if let Some(percent) = percent {
            write_knob(&quota_knob, &quota_us(percent).to_string())?;
        }
    }
    match cpuset {
        Some(dir) => apply_cpuset(dir, settings.mask.as_ref()),
        None if settings.mask.is_some() => Err(SchedError::NoController {
            setting: "CPUMASK",
            controller: "cpuset",
            path: cpu.to_owned(),
        }),
        None => Ok(()),
    }
}

/// The VE's CPUs: the mask, or the parent's CPUs for "all" (vz-ctl filled `cpus` and
/// `mems` when it made the cgroup, see `vz_cgroup::tree::make_path`).
fn apply_cpuset(dir: &Path, mask: Option<&CpuMask>) -> Result<()> {
    let value = match mask.map(CpuMask::list) {
        Some(Some(list)) => list.to_string(),
        Some(None) => {
            read_knob(&dir.parent().unwrap_or(dir).join("cpuset.cpus"))?.trim().to_owned()
        }
        None => return Ok(()),
    };
    Ok(write_knob(&dir.join("cpuset.cpus"), &value)?)
}

pub(super) fn read(cpu: &Path, cpuacct: Option<&Path>, cpuset: Option<&Path>) -> Result<CpuUsage> {
    let usage_ns = read_u64(&cpuacct.unwrap_or(cpu).join("cpuacct.usage"))?;
    let raw_weight = read_u64(&cpu.join("cpu.shares"))?;
    let quota_knob = cpu.join("cpu.cfs_quota_us");
    let quota_text = read_knob(&quota_knob)?;
    let quota: i64 = quota_text
        .trim()
        .parse()
        .map_err(|_| SchedError::Parse { path: quota_knob.clone(), content: quota_text.clone() })?;
    let stat_knob = cpu.join("cpu.stat");
    let stat = read_knob(&stat_knob)?;
    Ok(CpuUsage {
        usage_ns,
        raw_weight: Some(raw_weight),
        units: Some(CpuUnits::from_shares(raw_weight)),
        quota_us: u64::try_from(quota).ok(),
        period_us: read_u64(&cpu.join("cpu.cfs_period_us"))?,
        cpus: cpuset.map(|dir| read_list(&dir.join("cpuset.cpus"))).transpose()?,
        nr_periods: stat_value(&stat, "nr_periods"),
        nr_throttled: stat_value(&stat, "nr_throttled"),
        throttled_ns: stat_value(&stat, "throttled_time"),
    })
}
