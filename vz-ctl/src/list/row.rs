//! One VE's data for vzlist: its configuration and what the kernel says about it.

use crate::config::{GlobalConfig, VeConfig, expand_veid};
use crate::ve::{Ve, VeStatus};

/// What vzlist knows about one VE.
#[derive(Debug)]
pub struct Row {
    /// The CTID.
    pub ctid: u32,
    /// Its state.
    pub status: VeStatus,
    /// CTID.conf, if present.
    pub config: Option<VeConfig>,
    /// The global config, for defaults.
    global: GlobalConfig,
    /// Tasks in its cgroup (running VEs only).
    pub nproc: Option<i64>,
    /// Seconds since its init started (running VEs only).
    pub uptime: Option<u64>,
}

impl Row {
    /// Reads the row of a loaded VE.
    ///
    /// # Errors
    /// When its state cannot be read.
    pub fn read(ve: Ve) -> crate::Result<Row> {
        let status = ve.status()?;
        let (nproc, uptime) = if status.running {
            let pids = ve.cgroup()?.pids();
            let uptime = ve.init_pid().ok().and_then(init_uptime);
            (i64::try_from(pids.len()).ok(), uptime)
        } else {
            (None, None)
        };
        Ok(Row { ctid: ve.ctid.get(), status, config: ve.config, global: ve.global, nproc, uptime })
    }

    /// A config value: CTID.conf, then vz.conf.
    pub fn get(&self, key: &str) -> Option<&str> {
        match &self.config {
            Some(c) => c.get(key),
            None => self.global.get(key),
        }
    }

    /// VE_PRIVATE, expanded.
    pub fn private(&self) -> Option<String> {
        self.get("VE_PRIVATE").map(|v| expand_veid(v, self.ctid))
    }

    /// VE_ROOT, expanded.
    pub fn root(&self) -> Option<String> {
        self.get("VE_ROOT").map(|v| expand_veid(v, self.ctid))
    }

    /// `running`, `suspended`, `mounted` or `stopped`.
    pub fn status_word(&self) -> &'static str {
        match self.status {
            VeStatus { running: true, .. } => "running",
            VeStatus { suspended: true, .. } => "suspended",
            VeStatus { mounted: true, .. } => "mounted",
            _ => "stopped",
        }
    }
}

/// Seconds since `pid` started, from `/proc/<pid>/stat` field 22 and `/proc/uptime`.
fn init_uptime(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = stat.rsplit_once(')')?.1;
    let start_ticks: u64 = after_comm.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 =
        std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    let ticks = u64::try_from(ticks).ok()?;
    let started = start_ticks / ticks.max(1);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "uptime is positive and far below 2^53"
    )]
    let now = uptime as u64;
    Some(now.saturating_sub(started))
}
