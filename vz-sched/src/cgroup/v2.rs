//! cgroup v2 backend: `cpu.weight`, `cpu.max`, `cpuset.cpus`, `cpu.stat`.

use std::path::Path;

use vz_cgroup::knob::{read as read_knob, write as write_knob};

use super::{CpuSettings, CpuUsage, read_list, stat_value};
use crate::error::{Result, SchedError};
use crate::units::{CFS_PERIOD_US, CpuUnits, quota_us};

pub(super) fn apply(
    dir: &Path,
    settings: &CpuSettings,
    percent: Option<Option<u64>>,
) -> Result<()> {
    if let Some(units) = settings.units {
        write_knob(&knob(dir, "cpu.weight", "CPUUNITS", "cpu")?, &units.to_weight().to_string())?;
    }
    if let Some(percent) = percent {
        let value = match percent {
            Some(p) => format!("{} {CFS_PERIOD_US}", quota_us(p)),
            None => format!("max {CFS_PERIOD_US}"),
        };
        let setting = if settings.limit.is_some() { "CPULIMIT" } else { "CPUS" };
        write_knob(&knob(dir, "cpu.max", setting, "cpu")?, &value)?;
    }
    if let Some(mask) = &settings.mask {
        // An empty cpuset.cpus on v2 means "the parent's effective CPUs".
        let value = mask.list().map_or_else(|| "\n".to_owned(), ToString::to_string);
        write_knob(&knob(dir, "cpuset.cpus", "CPUMASK", "cpuset")?, &value)?;
    }
    Ok(())
}

/// The knob's path, or the error that the controller is not enabled for this cgroup.
fn knob(
    dir: &Path,
    name: &str,
    setting: &'static str,
    controller: &'static str,
) -> Result<std::path::PathBuf> {
    let path = dir.join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(SchedError::NoController { setting, controller, path: dir.to_owned() })
    }
}

pub(super) fn read(dir: &Path) -> Result<CpuUsage> {
    let stat_knob = dir.join("cpu.stat");
    let stat = read_knob(&stat_knob)?;
    let weight_knob = dir.join("cpu.weight");
    let raw_weight = if weight_knob.exists() { Some(super::read_u64(&weight_knob)?) } else { None };
    let (quota_us, period_us) = if dir.join("cpu.max").exists() {
        parse_max(&dir.join("cpu.max"))?
    } else {
        (None, CFS_PERIOD_US)
    };
    let cpus_knob = dir.join("cpuset.cpus");
    Ok(CpuUsage {
        usage_ns: stat_value(&stat, "usage_usec").saturating_mul(1000),
        raw_weight,
        units: raw_weight.map(CpuUnits::from_weight),
        quota_us,
        period_us,
        cpus: if cpus_knob.exists() { Some(read_list(&cpus_knob)?) } else { None },
        nr_periods: stat_value(&stat, "nr_periods"),
        nr_throttled: stat_value(&stat, "nr_throttled"),
        throttled_ns: stat_value(&stat, "throttled_usec").saturating_mul(1000),
    })
}

/// `cpu.max`: `"max 100000"` or `"50000 100000"`.
fn parse_max(path: &Path) -> Result<(Option<u64>, u64)> {
    let text = read_knob(path)?;
    let bad = || SchedError::Parse { path: path.to_owned(), content: text.clone() };
    let mut fields = text.split_whitespace();
    let quota = match fields.next().ok_or_else(bad)? {
        "max" => None,
        q => Some(q.parse().map_err(|_| bad())?),
    };
    let period = fields.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    Ok((quota, period))
}
