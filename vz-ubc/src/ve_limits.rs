//! Values for the limits that live in the VE's own namespaces, applied by vz-ns when the VE
//! starts: IPC sysctls in the VE's IPC namespace (shmpages), the `max=` option of the VE's
//! devpts instance (numpty), and resource limits of the VE's init (lockedpages, numsiginfo,
//! numfile), which every process of the VE inherits.

use crate::param::BarrierLimit;
use crate::resource::Resource;
use crate::set::UbcSet;

/// `(sysctl path, value)` pairs to write inside the VE's IPC namespace for `shmpages`:
/// `kernel.shmall` (pages) = shmpages limit, `kernel.shmmax` (bytes) = the same in bytes, so no
/// segment and no sum of segments exceeds the limit. Empty when shmpages is unset or unlimited.
pub fn shm_sysctls(set: &UbcSet) -> Vec<(&'static str, String)> {
    let Some(v) = set.get(Resource::ShmPages).filter(|v| !v.limit_unlimited()) else {
        return Vec::new();
    };
    let bytes = v.limit.saturating_mul(crate::page_size());
    vec![
        ("/proc/sys/kernel/shmall", v.limit.to_string()),
        ("/proc/sys/kernel/shmmax", bytes.to_string()),
    ]
}

/// The `max=` mount option of the VE's devpts (the number of ptys the instance may hold),
/// from the numpty limit; `None` when unset or unlimited.
pub fn pty_max(set: &UbcSet) -> Option<u64> {
    set.get(Resource::NumPty).filter(|v| !v.limit_unlimited()).map(|v| v.limit)
}

/// A resource limit for the VE's init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RlimitKind {
    /// `RLIMIT_MEMLOCK` (bytes) from lockedpages.
    MemLock,
    /// `RLIMIT_SIGPENDING` (signals) from numsiginfo.
    SigPending,
    /// `RLIMIT_NOFILE` (descriptors) from numfile.
    NoFile,
}

/// One resource limit; `None` is `RLIM_INFINITY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// Which limit.
    pub kind: RlimitKind,
    /// Soft limit.
    pub soft: Option<u64>,
    /// Hard limit.
    pub hard: Option<u64>,
}

/// The resource limits for the VE's init. They bound each process, never the VE as a whole,
/// so they only enforce the part of a beancounter one process can exceed alone; both soft
/// and hard come from the beancounter's limit (numfile's barrier 0 means "no precharge",
/// not "no files"). Raising `RLIMIT_NOFILE` past the host's hard limit needs CAP_SYS_RESOURCE.
pub fn rlimits(set: &UbcSet) -> Vec<Rlimit> {
    let page = crate::page_size();
    let limit =
        |v: BarrierLimit, mul: u64| (!v.limit_unlimited()).then(|| v.limit.saturating_mul(mul));
    [
        (Resource::LockedPages, RlimitKind::MemLock, page),
        (Resource::NumSiginfo, RlimitKind::SigPending, 1),
        (Resource::NumFile, RlimitKind::NoFile, 1),
    ]
    .into_iter()
    .filter_map(|(r, kind, mul)| {
        let v = set.get(r)?;
        Some(Rlimit { kind, soft: limit(v, mul), hard: limit(v, mul) })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> UbcSet {
        UbcSet::from_config_pairs(pairs).unwrap()
    }

    #[test]
    fn shm_values_follow_shmpages() {
        let page = crate::page_size();
        let s = set(&[("SHMPAGES", "21504:21504")]);
        assert_eq!(
            shm_sysctls(&s),
            vec![
                ("/proc/sys/kernel/shmall", "21504".to_owned()),
                ("/proc/sys/kernel/shmmax", (21504 * page).to_string())
            ]
        );
        assert!(shm_sysctls(&set(&[("SHMPAGES", "unlimited")])).is_empty());
        assert!(shm_sysctls(&UbcSet::new()).is_empty());
    }

    #[test]
    fn pty_and_rlimits() {
        let s = set(&[
            ("NUMPTY", "16"),
            ("LOCKEDPAGES", "2048:4096"),
            ("NUMFILE", "0:9312"),
            ("NUMSIGINFO", "unlimited"),
        ]);
        assert_eq!(pty_max(&s), Some(16));
        assert_eq!(pty_max(&set(&[("NUMPTY", "unlimited")])), None);
        let page = crate::page_size();
        assert_eq!(
            rlimits(&s),
            vec![
                Rlimit {
                    kind: RlimitKind::MemLock,
                    soft: Some(4096 * page),
                    hard: Some(4096 * page)
                },
                Rlimit { kind: RlimitKind::SigPending, soft: None, hard: None },
                Rlimit { kind: RlimitKind::NoFile, soft: Some(9312), hard: Some(9312) },
            ]
        );
    }
}
