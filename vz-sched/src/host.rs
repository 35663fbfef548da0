//! Facts of the node (online CPUs, CPU clock) and `vzcpucheck`'s data and text.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Result, SchedError};
use crate::mask::CpuList;
use crate::units::CpuUnits;

const ONLINE: &str = "/sys/devices/system/cpu/online";
const CPUINFO: &str = "/proc/cpuinfo";
const MAX_FREQ: &str = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq";

/// The number of online CPUs (`/sys/devices/system/cpu/online`), at least 1: what vzctl's
/// `get_num_cpu` gives for the `N%` form of `CPULIMIT`.
pub fn online_cpus() -> u32 {
    std::fs::read_to_string(ONLINE)
        .ok()
        .and_then(|text| CpuList::parse("online CPUs", &text).ok())
        .and_then(|list| u32::try_from(list.len()).ok())
        .filter(|&n| n > 0)
        .or_else(|| {
            std::thread::available_parallelism().ok().and_then(|n| u32::try_from(n.get()).ok())
        })
        .unwrap_or(1)
}

/// The clock of one CPU in MHz: `cpufreq/cpuinfo_max_freq` when present, else the first
/// `cpu MHz` line of `/proc/cpuinfo`; `None` when neither is known. Used for `CPULIMIT=Nm`.
pub fn cpu_mhz() -> Option<u32> {
    if let Ok(khz) = std::fs::read_to_string(MAX_FREQ)
        && let Ok(khz) = khz.trim().parse::<u64>()
    {
        return u32::try_from(khz / 1000).ok().filter(|&m| m > 0);
    }
    let cpuinfo = <procfs::CpuInfo as procfs::Current>::current().ok()?;
    let mhz: f64 = cpuinfo.get_field(0, "cpu MHz")?.trim().parse().ok()?;
    let mhz = mhz.round();
    (mhz >= 1.0 && mhz <= f64::from(u32::MAX)).then(|| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "range checked")]
        let m = mhz as u32;
        m
    })
}

/// What `vzcpucheck` reports: the units promised to the host and the running VEs against
/// the node's power.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CpuCheck {
    /// Sum of the units of every entry ("Current CPU utilization").
    pub utilization: u64,
    /// Σ bogomips of every CPU × 25, truncated ("Power of the node").
    pub power: u64,
    /// The entries, `(VEID, units)`, VEID 0 being the host (`VE0CPUUNITS`).
    pub ves: Vec<(u32, CpuUnits)>,
}

impl CpuCheck {
    /// Computes the check from the text of `/proc/cpuinfo` and the units of the host
    /// (VEID 0) and each running VE.
    ///
    /// OpenVZ read the units from `/proc/fairsched`; stock kernels have no such file, so
    /// the caller (vz-ctl) passes the units it configured or [`read`](crate::read) back.
    pub fn new(cpuinfo: &str, ves: &[(u32, CpuUnits)]) -> Self {
        // As the awk script: a line whose first field is "bogomips" (any case) adds its
        // third field.
        let bogomips: f64 = cpuinfo
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let first = fields.next()?;
                if !first.eq_ignore_ascii_case("bogomips") {
                    return None;
                }
                fields.nth(1)?.parse::<f64>().ok()
            })
            .sum();
        let power = (bogomips * 25.0).trunc();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "non-negative, truncated"
        )]
        let power = if power > 0.0 { power as u64 } else { 0 };
        let utilization = ves.iter().map(|(_, units)| u64::from(units.get())).sum();
        CpuCheck { utilization, power, ves: ves.to_vec() }
    }

    /// Whether more units are promised than the node has ("overcommitted").
    pub fn overcommitted(&self) -> bool {
        self.utilization > self.power
    }

    /// The text `vzcpucheck` prints; `verbose` adds the `-v` table of units per VE.
    pub fn render(&self, verbose: bool) -> String {
        let mut out = String::new();
        if verbose {
            out.push_str("VEID\t\tCPUUNITS\n-------------------------\n");
            for (id, units) in &self.ves {
                let _ = writeln!(out, "{id}\t\t{units}");
            }
        }
        let _ = writeln!(out, "Current CPU utilization: {}", self.utilization);
        let _ = writeln!(out, "Power of the node: {}", self.power);
        if self.overcommitted() {
            out.push_str("Warning: hardware node is overcommitted\n");
        }
        out
    }
}

/// `vzcpucheck`'s data for this node: reads `/proc/cpuinfo` and sums `ves` (host as VEID 0).
///
/// # Errors
/// [`SchedError::Read`] when `/proc/cpuinfo` cannot be read.
pub fn vzcpucheck(ves: &[(u32, CpuUnits)]) -> Result<CpuCheck> {
    let path = Path::new(CPUINFO);
    let cpuinfo = std::fs::read_to_string(path)
        .map_err(|source| SchedError::Read { path: path.to_owned(), source })?;
    Ok(CpuCheck::new(&cpuinfo, ves))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO_X86: &str =
        "processor\t: 0\nbogomips\t: 5192.29\n\nprocessor\t: 1\nbogomips\t: 5192.29\n";

    #[test]
    fn power_and_utilization_as_the_script() {
        let u = |n| CpuUnits::new(n).unwrap();
        let check = CpuCheck::new(CPUINFO_X86, &[(0, u(1000)), (101, u(250)), (102, u(1000))]);
        assert_eq!(check.power, 259_614); // int(10384.58 * 25)
        assert_eq!(check.utilization, 2250);
        assert_eq!(
            check.render(false),
            "Current CPU utilization: 2250\nPower of the node: 259614\n"
        );
        assert_eq!(
            check.render(true),
            "VEID\t\tCPUUNITS\n-------------------------\n0\t\t1000\n101\t\t250\n102\t\t1000\n\
             Current CPU utilization: 2250\nPower of the node: 259614\n"
        );
    }

    #[test]
    fn overcommit_warns_and_arm_spelling_counts() {
        let check = CpuCheck::new(
            "BogoMIPS\t: 50.00\nBogoMIPS\t: 50.00\n",
            &[(0, CpuUnits::new(3000).unwrap())],
        );
        assert_eq!(check.power, 2500);
        assert!(check.overcommitted());
        assert!(check.render(false).ends_with("Warning: hardware node is overcommitted\n"));
    }

    #[test]
    fn this_node_has_cpus_and_power() {
        assert!(online_cpus() >= 1);
        let check = vzcpucheck(&[]).unwrap();
        assert_eq!(check.utilization, 0);
        if std::fs::read_to_string(CPUINFO).unwrap().to_ascii_lowercase().contains("bogomips") {
            assert!(check.power > 0);
        }
    }
}
