//! User beancounters (UBC) on cgroups: OpenVZ's resource parameters (`kmemsize` … `swappages`),
//! their text form, their enforcement on a VE's cgroups (v1 and v2, detected by which
//! [`CgroupDirs`] vz-ctl hands over), their measurement, the `/proc/user_beancounters` view
//! and the `vzcfgvalidate` rules.
//!
//! Invariants: vz-ubc never creates or removes cgroups (vz-ctl does); every parameter is either
//! enforced by the kernel, enforced at start inside the VE's namespaces ([`shm_sysctls`],
//! [`pty_max`], [`rlimits`]), only accounted, or reported unsupported — [`AppliedReport`] says
//! which, and the crate README's table documents the mechanism of each one.
//!
//! ```no_run
//! use vz_ubc::{Beancounter, CgroupDirs, UbcSet};
//! # fn main() -> Result<(), vz_ubc::UbcError> {
//! let set = UbcSet::from_config_pairs(&[("NUMPROC", "240"), ("PHYSPAGES", "0:256M")])?;
//! let bc = Beancounter::new(101, CgroupDirs::V2 { dir: "/sys/fs/cgroup/vz/101".into() });
//! let report = bc.apply(&set)?;
//! assert!(report.enforced().contains(&vz_ubc::Resource::NumProc));
//! let text = vz_ubc::render_proc_view(&[(101, bc.usage()?)]);
//! # let _ = text; Ok(()) }
//! ```
#![deny(unsafe_code)]

mod cgroup;
mod error;
mod iptent;
mod param;
mod proc_view;
mod resource;
mod set;
mod sock_limit;
mod sys;
mod usage;
mod validate;
mod ve_limits;

pub use cgroup::{Applied, AppliedReport, Beancounter, CgroupDirs, Enforcement};
pub use error::{Result, UbcError};
pub use param::{BarrierLimit, UNLIMITED, vswap_pages};
pub use proc_view::{parse_proc_view, render_proc_view};
pub use resource::{PROC_ROWS, Resource, UbUnit};
pub use set::UbcSet;
pub use usage::Usage;
pub use validate::{
    Finding, HostMemory, Severity, ValidateMode, passes, repair, validate, validate_with_host,
};
pub use ve_limits::{Rlimit, RlimitKind, pty_max, rlimits, shm_sysctls};

/// The host's page size in bytes (the unit of `*pages` parameters).
pub fn page_size() -> u64 {
    sys::page_size()
}
