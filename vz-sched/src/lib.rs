//! Two-level fair CPU scheduler on the VE's cgroup: OpenVZ's `CPUUNITS`, `CPULIMIT`, `CPUS`
//! and `CPUMASK` on stock Linux, cgroup v1 and v2.
//!
//! The first level (between VEs) is the kernel's CFS group scheduling driven through the
//! VE's cgroup; the second level (inside a VE) is the ordinary Linux scheduler, so `nice`
//! and priorities behave inside a VE as on a server.
//!
//! # Kernel interfaces
//! * cgroup v1: `cpu.shares`, `cpu.cfs_period_us`, `cpu.cfs_quota_us`, `cpu.stat`,
//!   `cpuacct.usage`, `cpuset.cpus`, `cpuset.mems`;
//! * cgroup v2: `cpu.weight`, `cpu.max`, `cpu.stat`, `cpuset.cpus`;
//! * `/proc/cpuinfo` and `/sys/devices/system/cpu/online` for `vzcpucheck` and `N%`.
//!
//! # Conversions
//! * v1: `cpu.shares = CPUUNITS`, as vzctl 4.x's upstream-kernel backend did (OpenVZ's
//!   default 1000 units is close to the kernel's 1024), clamped to the kernel's 2..=262144;
//! * v2: `cpu.weight = CPUUNITS / 10`, OpenVZ 7's conversion, clamped to 1..=10000;
//! * `cpu.cfs_quota_us` / `cpu.max` = `100000 × min(CPULIMIT, CPUS × 100) / 100` per period
//!   of 100000 µs, a zero `CPULIMIT` or `CPUS` not limiting.
//!
//! # Privileges
//! Write access to the VE's cgroup files (root).
//!
//! # Invariants
//! vz-sched never creates or removes a cgroup: vz-ctl makes the VE's cgroup and hands its
//! directories over as [`CgroupDirs`].
//!
//! # Example
//! ```no_run
//! use vz_sched::{CgroupDirs, CpuSettings};
//! # fn main() -> Result<(), vz_sched::SchedError> {
//! let dirs = CgroupDirs::V2 { dir: "/sys/fs/cgroup/vz/101".into() };
//! let settings = CpuSettings { units: Some("2000".parse()?), limit: Some("50".parse()?), ..Default::default() };
//! vz_sched::apply(&dirs, &settings)?;
//! let usage = vz_sched::read(&dirs)?;
//! assert_eq!(usage.limit_percent(), 50);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod cgroup;
mod error;
mod host;
mod mask;
mod units;

pub use cgroup::{CgroupDirs, CpuSettings, CpuUsage, apply, read, set_host_units};
pub use error::{Result, SchedError};
pub use host::{CpuCheck, cpu_mhz, online_cpus, vzcpucheck};
pub use mask::{CpuList, CpuMask, MAX_CPU};
pub use units::{CFS_PERIOD_US, CpuLimit, CpuUnits, Cpus};
