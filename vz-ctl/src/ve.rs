//! One VE as vz-ctl sees it: its CTID, the global and CT configuration, where its files are,
//! its cgroup, and its state as read from the kernel.

use std::path::PathBuf;

use crate::cgroup::{Hierarchy, VeCgroup};
use crate::config::{GlobalConfig, VeConfig};
use crate::ctid::Ctid;
use crate::error::{CtlError, Result};

/// A VE: configuration plus the kernel objects it is made of.
#[derive(Debug)]
pub struct Ve {
    /// The VE's id.
    pub ctid: Ctid,
    /// The global configuration (vz.conf).
    pub global: GlobalConfig,
    /// `CTID.conf`, if it exists.
    pub config: Option<VeConfig>,
}

/// The state `vzctl status` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VeStatus {
    /// Private area and config both exist.
    pub exists: bool,
    /// VE_ROOT is a mount point.
    pub mounted: bool,
    /// The VE's cgroup has tasks.
    pub running: bool,
    /// Not running, and a dump file exists.
    pub suspended: bool,
}

impl Ve {
    /// Loads the VE `ctid` (its config may be missing).
    ///
    /// # Errors
    /// [`CtlError::Config`] when CTID.conf exists but cannot be read.
    pub fn load(global: GlobalConfig, ctid: Ctid) -> Result<Ve> {
        let config = VeConfig::load(&global, ctid.get()).map_err(CtlError::Config)?;
        Ok(Ve { ctid, global, config })
    }

    /// The CT config, or [`CtlError::NoConfig`].
    ///
    /// # Errors
    /// [`CtlError::NoConfig`] when CTID.conf does not exist.
    pub fn config(&self) -> Result<&VeConfig> {
        self.config.as_ref().ok_or(CtlError::NoConfig)
    }

    /// Looks a key up in CTID.conf, then vz.conf.
    pub fn get(&self, key: &str) -> Option<&str> {
        match &self.config {
            Some(config) => config.get(key),
            None => self.global.get(key),
        }
    }

    /// The path of CTID.conf.
    pub fn config_path(&self) -> PathBuf {
        VeConfig::path_for(&self.global, self.ctid.get())
    }

    /// VE_ROOT, expanded.
    ///
    /// # Errors
    /// [`CtlError::KeyNotSet`] (exit 22) when unset, [`CtlError::NotAbsolute`] (22) when
    /// relative.
    pub fn root(&self) -> Result<PathBuf> {
        self.expanded("VE_ROOT", 22)
    }

    /// VE_PRIVATE, expanded.
    ///
    /// # Errors
    /// [`CtlError::KeyNotSet`] (exit 23) when unset, [`CtlError::NotAbsolute`] (23) when
    /// relative.
    pub fn private(&self) -> Result<PathBuf> {
        self.expanded("VE_PRIVATE", 23)
    }

    fn expanded(&self, key: &'static str, code: u8) -> Result<PathBuf> {
        let value =
            self.get(key).filter(|v| !v.is_empty()).ok_or(CtlError::KeyNotSet { key, code })?;
        let path = PathBuf::from(crate::config::expand_veid(value, self.ctid.get()));
        if !path.is_absolute() {
            return Err(CtlError::NotAbsolute { key, path: path.display().to_string(), code });
        }
        Ok(path)
    }

    /// The VE's cgroup (whether or not it exists now).
    ///
    /// # Errors
    /// [`CtlError::Cgroup`] when the host has no cgroup hierarchy.
    pub fn cgroup(&self) -> Result<VeCgroup> {
        Ok(VeCgroup::new(Hierarchy::detect()?, &self.global.cgroup_parent(), self.ctid.get()))
    }

    /// The default dump file, `$DUMPDIR/Dump.<CTID>`.
    pub fn dump_file(&self) -> PathBuf {
        self.global.dump_dir().join(format!("Dump.{}", self.ctid))
    }

    /// The VE's state, read from the file system and the kernel.
    ///
    /// # Errors
    /// [`CtlError::Cgroup`] when the cgroup hierarchy cannot be read.
    pub fn status(&self) -> Result<VeStatus> {
        let exists = self.config.is_some() && self.private().map(|p| p.exists()).unwrap_or(false);
        let mounted = self.root().is_ok() && self.is_mounted()?;
        let running = self.cgroup()?.has_tasks();
        let suspended = exists && !running && self.dump_file().exists();
        Ok(VeStatus { exists, mounted, running, suspended })
    }

    /// Whether VE_ROOT is a mount point (false when it does not exist).
    ///
    /// # Errors
    /// 22 when VE_ROOT is unset; [`CtlError::Mount`] when the mount table cannot be read.
    pub fn is_mounted(&self) -> Result<bool> {
        let root = self.root()?;
        if !root.exists() {
            return Ok(false);
        }
        vz_quota::PrivateArea::is_mounted(&root).map_err(CtlError::Mount)
    }

    /// The host pid of the VE's init: the task of its cgroup that is pid 1 of its own pid
    /// namespace.
    ///
    /// # Errors
    /// [`CtlError::NotRunning`] when there is none.
    pub fn init_pid(&self) -> Result<i32> {
        let cgroup = self.cgroup()?;
        // A walk of the cgroups can race an init inside moving tasks between its own
        // sub-cgroups: one that missed the init while the VE has tasks is made again.
        for _ in 0..INIT_LOOKUPS {
            if let Some(pid) = cgroup.pids().into_iter().find(|pid| is_ns_init(*pid)) {
                return Ok(pid);
            }
            if !cgroup.has_tasks() {
                break;
            }
        }
        Err(CtlError::NotRunning)
    }
}

/// How many walks of a VE's cgroups [`Ve::init_pid`] makes before it calls the VE's init gone.
const INIT_LOOKUPS: usize = 3;

/// Whether `/proc/<pid>/status` says the task is pid 1 of a child pid namespace.
fn is_ns_init(pid: i32) -> bool {
    procfs::process::Process::new(pid)
        .and_then(|p| p.status())
        .ok()
        .and_then(|status| status.nspid)
        .is_some_and(|ids| ids.len() >= 2 && ids.last() == Some(&1))
}
