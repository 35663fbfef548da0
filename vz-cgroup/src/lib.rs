//! vz's cgroup file layer: the one place that reads and writes cgroup directories.
//!
//! Every crate that touches a VE's cgroups goes through here: vz-ctl (which makes, delegates
//! and removes the VE's cgroup), vz-ubc (memory and pids knobs), vz-sched (cpu, cpuacct and
//! cpuset knobs), vz-ns (the v1 devices allowlist) and vz-cpt (the freezer, the tasks to
//! dump). It knows nothing of VEs, only of cgroup directories and their files, on cgroup v1
//! and v2 alike:
//!
//! - [`knob`]: reading and writing control files with errors that name the file and value;
//! - [`tree`]: the tasks of a cgroup and every cgroup below it, making a path level by
//!   level with the v1 cpuset filled ([`tree::make_path`]: a new v1 cpuset cgroup with
//!   empty sets refuses tasks), removal deepest first;
//! - [`Freezer`]: suspend and resume (v1 `freezer.state`, v2 `cgroup.freeze`).
//!
//! Which hierarchies exist and where a VE's directories are is vz-ctl's (`cgroup.rs`), the
//! meaning of each knob the subsystem crate's. docs/architecture.md explains why this is a
//! crate of vz's own rather than `cgroups-rs`.

mod error;
mod freezer;
pub mod knob;
pub mod tree;

pub use error::{CgroupError, Result};
pub use freezer::{Freezer, FreezerState};
