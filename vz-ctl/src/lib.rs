//! The vz front end as a library: CTIDs, configuration files, locking, VE state and the
//! operations behind `vzctl`, `vzlist` and `vzpkg`.
//!
//! vz-ctl is the only crate that knows every subsystem (design.md): it reads vz.conf and
//! CTID.conf, creates and removes the VE's cgroup, and orchestrates vz-ns (namespaces and
//! init), vz-quota (private areas), vz-template (caches) and the resource subsystems. There
//! is no daemon: a VE runs iff its cgroup has tasks (the console server of a tree,
//! [`consoled`], runs only while VEs do, and only for their consoles and sysinfo).
//!
//! # Privileges
//! Everything but parsing needs root: mounts, cgroups, namespaces.
#![deny(unsafe_code)]

pub mod budget;
pub mod cgroup;
mod cgroup_mount;
pub mod cli;
pub mod config;
pub mod console;
pub mod consoled;
pub mod ctid;
pub mod disk;
pub mod error;
pub mod idmap;
pub mod intent;
pub mod layout;
pub mod list;
pub mod lock;
pub mod logging;
pub mod ops;
pub mod output;
pub mod procview;
pub mod quotactl;
pub mod resources;
pub mod scripts;
pub mod setup;
mod sys;
pub mod sysinfo;
pub mod undo;
pub mod ve;

pub use ctid::Ctid;
pub use error::{CtlError, Result};
pub use ve::{Ve, VeStatus};

/// The version vzctl reports (`vzctl --version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
