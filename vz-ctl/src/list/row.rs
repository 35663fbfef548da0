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
    /// Its 1, 5 and 15 minute load averages (running VEs only), see [`load`].
    pub laverage: Option<[f64; 3]>,
    /// Measured beancounters (running VEs only).
    pub ubc: Option<Vec<vz_ubc::Usage>>,
    /// The beancounters of its config (barrier/limit of a stopped VE).
    pub ubc_config: vz_ubc::UbcSet,
    /// Its disk quota, read on first use (only the disk fields need it).
    quota: std::cell::OnceCell<Option<vz_quota::QuotaStat>>,
}

impl Row {
    /// Reads the row of a loaded VE.
    ///
    /// # Errors
    /// When its state cannot be read.
    pub fn read(ve: Ve) -> crate::Result<Row> {
        let status = ve.status()?;
        let ubc_config = crate::resources::ubc_config(|k| ve.get(k)).unwrap_or_else(|e| {
            tracing::warn!(ctid = ve.ctid.get(), "beancounters of the config: {e}");
            vz_ubc::UbcSet::new()
        });
        let (nproc, uptime, ubc, laverage) = if status.running {
            let cgroup = ve.cgroup()?;
            let pids = cgroup.pids();
            let uptime = ve.init_pid().ok().and_then(init_uptime);
            // A running VE's bounds are those its start applied (VSwap's derived ones too).
            let in_force = crate::resources::with_vswap_defaults(ubc_config.clone(), |k| ve.get(k))
                .unwrap_or_else(|_| ubc_config.clone());
            let ubc =
                crate::resources::ubc_usage(ve.ctid.get(), &cgroup, in_force).unwrap_or_else(|e| {
                    tracing::warn!(ctid = ve.ctid.get(), "beancounters: {e}");
                    None
                });
            // The console server's averages; the count now when it does not answer.
            let laverage = crate::sysinfo::query_load(&ve).unwrap_or_else(|| [load(&pids); 3]);
            (i64::try_from(pids.len()).ok(), uptime, ubc, Some(laverage))
        } else {
            (None, None, None, None)
        };
        Ok(Row {
            ctid: ve.ctid.get(),
            status,
            config: ve.config,
            global: ve.global,
            nproc,
            uptime,
            laverage,
            ubc,
            ubc_config,
            quota: std::cell::OnceCell::new(),
        })
    }

    /// A config value: CTID.conf, then vz.conf.
    pub fn get(&self, key: &str) -> Option<&str> {
        match &self.config {
            Some(c) => c.get(key),
            None => self.global.get(key),
        }
    }

    /// Usage and limits of its disk (`vzquota stat`), or `None` when its private area cannot
    /// be read.
    pub fn quota(&self) -> Option<&vz_quota::QuotaStat> {
        self.quota
            .get_or_init(|| {
                let (private, root) = (self.private()?, self.root()?);
                let area = vz_quota::PrivateArea::open(std::path::Path::new(&private)).ok()?;
                area.stat(std::path::Path::new(&root))
                    .inspect_err(|e| tracing::warn!(ctid = self.ctid, "disk quota: {e}"))
                    .ok()
            })
            .as_ref()
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

/// The VE's uptime in seconds: its own CLOCK_BOOTTIME (the host's plus the boottime offset
/// of the VE's time namespace, which CRIU carries over a checkpoint or a migration), or on a
/// kernel without time namespaces the age of its init.
fn init_uptime(pid: i32) -> Option<u64> {
    use procfs::Current as _;
    // The host's CLOCK_BOOTTIME, as vzlist's own /proc/uptime shows it.
    let now = procfs::Uptime::current().ok()?.uptime_duration();
    let offsets = std::fs::read_to_string(format!("/proc/{pid}/timens_offsets")).ok();
    if let Some(offset) = offsets.as_deref().and_then(boottime_offset).filter(|o| *o != 0) {
        return u64::try_from((i128::try_from(now.as_nanos()).ok()? + offset) / 1_000_000_000).ok();
    }
    let started = procfs::process::Process::new(pid).ok()?.stat().ok()?.starttime;
    Some(now.as_secs().saturating_sub(started / procfs::ticks_per_second().max(1)))
}

/// The `boottime` offset of a `timens_offsets` text, in nanoseconds.
pub(crate) fn boottime_offset(text: &str) -> Option<i128> {
    let line = text.lines().find(|l| l.split_whitespace().next() == Some("boottime"))?;
    let mut fields = line.split_whitespace().skip(1).map(str::parse::<i128>);
    let (secs, nanos) = (fields.next()?.ok()?, fields.next()?.ok()?);
    Some(secs * 1_000_000_000 + nanos)
}

/// The VE's load: its threads that are runnable or in uninterruptible sleep (states `R` and
/// `D` in `/proc/<pid>/task/<tid>/stat`), the quantity the kernel's load average averages.
///
/// OpenVZ's kernel kept 1, 5 and 15 minute averages per VE; a stock kernel keeps them only
/// for the whole host. The VE's console server samples this count every 5 s and keeps the
/// averages ([`crate::sysinfo::LoadAvg`]); vzlist shows them, or this count now for all
/// three when the server does not answer.
pub fn load(pids: &[i32]) -> f64 {
    f64::from(active_threads(pids))
}

/// The number [`load`] gives, as a count.
pub fn active_threads(pids: &[i32]) -> u32 {
    let mut n = 0u32;
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
            if matches!(state, Some("R" | "D")) {
                n += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boottime_offset_is_read_in_nanoseconds() {
        let text = "monotonic -5 0\nboottime        -26255 100000000\n";
        assert_eq!(boottime_offset(text), Some(-26_254_900_000_000));
        assert_eq!(boottime_offset("monotonic 0 0\n"), None);
    }
}
