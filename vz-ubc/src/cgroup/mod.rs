//! The beancounter of one VE on its cgroups: [`Beancounter::apply`] writes each parameter
//! through the strongest kernel mechanism of the running hierarchy (v1 or v2) and says what it
//! did in an [`AppliedReport`]; [`Beancounter::usage`] reads held/maxheld/failcnt back.
//!
//! vz-ubc never creates or removes cgroups: vz-ctl hands over the directories.

mod v1;
mod v2;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::param::UNLIMITED;
use crate::resource::Resource;
use crate::set::UbcSet;
use crate::usage::Usage;

/// The cgroup directories of one VE.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CgroupDirs {
    /// cgroup v1: the VE's directory in the memory hierarchy and, if mounted, in the pids one.
    V1 {
        /// e.g. `/sys/fs/cgroup/memory/vz/101`.
        memory: PathBuf,
        /// e.g. `/sys/fs/cgroup/pids/vz/101`.
        pids: Option<PathBuf>,
        /// On a hybrid host, the VE's directory in the cgroup2 tree (e.g.
        /// `/sys/fs/cgroup/unified/vz/101`), where the socket limits attach.
        unified: Option<PathBuf>,
    },
    /// cgroup v2: the VE's directory in the unified tree (with `memory` and `pids` enabled in
    /// the parent's `cgroup.subtree_control`).
    V2 {
        /// e.g. `/sys/fs/cgroup/vz/101`.
        dir: PathBuf,
    },
}

/// How one parameter is put into effect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Enforcement {
    /// Written to a kernel file that the kernel enforces (and read back).
    Enforced {
        /// The file written, with the value (e.g. `pids.max = 240`).
        mechanism: String,
    },
    /// Enforced inside the VE's namespaces when the VE starts, by vz-ns with the values of
    /// [`crate::shm_sysctls`], [`crate::pty_max`] or [`crate::rlimits`]; usage is accounted.
    AtStart {
        /// What is set and how far it reaches.
        mechanism: &'static str,
    },
    /// Not enforced: the kernel offers no such limit, but usage is measured.
    Accounted {
        /// Where `held` comes from.
        source: &'static str,
    },
    /// Neither enforced nor measured on this kernel.
    Unsupported {
        /// Why.
        reason: String,
    },
    /// A config-only value (`avnumproc`), used by the validation formulas.
    ConfigOnly,
}

/// One line of an [`AppliedReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The parameter.
    pub resource: Resource,
    /// What happened to it.
    pub enforcement: Enforcement,
}

/// What [`Beancounter::apply`] did for every parameter of the set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedReport {
    /// One entry per parameter of the set, in kernel index order.
    pub entries: Vec<Applied>,
}

impl AppliedReport {
    fn push(&mut self, resource: Resource, enforcement: Enforcement) {
        self.entries.push(Applied { resource, enforcement });
    }

    /// What happened to one parameter.
    pub fn get(&self, resource: Resource) -> Option<&Enforcement> {
        self.entries.iter().find(|a| a.resource == resource).map(|a| &a.enforcement)
    }

    fn having(&self, pred: impl Fn(&Enforcement) -> bool) -> Vec<Resource> {
        self.entries.iter().filter(|a| pred(&a.enforcement)).map(|a| a.resource).collect()
    }

    /// Parameters the kernel now enforces.
    pub fn enforced(&self) -> Vec<Resource> {
        self.having(|e| matches!(e, Enforcement::Enforced { .. }))
    }

    /// Parameters that are enforced at start inside the VE.
    pub fn at_start(&self) -> Vec<Resource> {
        self.having(|e| matches!(e, Enforcement::AtStart { .. }))
    }

    /// Parameters only accounted.
    pub fn accounted(&self) -> Vec<Resource> {
        self.having(|e| matches!(e, Enforcement::Accounted { .. }))
    }

    /// Parameters with no mechanism on this kernel.
    pub fn unsupported(&self) -> Vec<Resource> {
        self.having(|e| matches!(e, Enforcement::Unsupported { .. }))
    }
}

/// The beancounter of one VE.
#[derive(Debug, Clone)]
pub struct Beancounter {
    id: u32,
    dirs: CgroupDirs,
    config: Option<UbcSet>,
}

impl Beancounter {
    /// The beancounter `id` (the CTID) on the given cgroup directories.
    pub fn new(id: u32, dirs: CgroupDirs) -> Self {
        Beancounter { id, dirs, config: None }
    }

    /// Lets [`usage`](Self::usage) report the configured barrier and limit for parameters whose
    /// bounds the kernel does not hold.
    #[must_use]
    pub fn with_config(mut self, set: UbcSet) -> Self {
        self.config = Some(set);
        self
    }

    /// The beancounter id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Puts every parameter of `set` into effect on the VE's cgroups, at once (on a running VE
    /// too), and reports per parameter whether it is enforced, left for start, only accounted
    /// or unsupported on this kernel. Parameters not in `set` are not touched.
    ///
    /// # Errors
    /// [`UbcError::Cgroup`](crate::UbcError::Cgroup) when the kernel refuses a value (e.g. `EBUSY` when a memory limit
    /// is below what the VE holds) or a file cannot be read.
    ///
    /// # Privileges
    /// Write access to the cgroup directories (root).
    pub fn apply(&self, set: &UbcSet) -> Result<AppliedReport> {
        tracing::debug!(id = self.id, params = set.len(), "applying beancounter");
        let mut report = AppliedReport::default();
        match &self.dirs {
            CgroupDirs::V1 { memory, pids, .. } => {
                v1::apply(memory, pids.as_deref(), set, &mut report)?
            }
            CgroupDirs::V2 { dir } => v2::apply(dir, set, &mut report)?,
        }
        apply_socket_limits(self.dirs.cgroup2_dir(), set, &mut report);
        report.entries.sort_by_key(|a| a.resource);
        for a in &report.entries {
            tracing::debug!(id = self.id, resource = %a.resource, enforcement = ?a.enforcement);
        }
        Ok(report)
    }

    /// Measures every kernel parameter (all but `avnumproc`) from the cgroups and `/proc`.
    ///
    /// # Errors
    /// [`UbcError::Cgroup`](crate::UbcError::Cgroup) when a cgroup file that must exist cannot be read.
    pub fn usage(&self) -> Result<Vec<Usage>> {
        let (mut rows, mut kernel_limits) = match &self.dirs {
            CgroupDirs::V1 { memory, pids, .. } => v1::usage(memory, pids.as_deref())?,
            CgroupDirs::V2 { dir } => v2::usage(dir)?,
        };
        if let Some(sockets) = self.dirs.cgroup2_dir().and_then(crate::sock_limit::state) {
            for row in &mut rows {
                let class = match row.resource {
                    Resource::NumTcpSock => sockets.tcp,
                    Resource::NumOtherSock => sockets.other,
                    _ => continue,
                };
                (row.barrier, row.limit, row.failcnt) = (class.limit, class.limit, class.refused);
                kernel_limits.push(row.resource);
            }
        }
        if let Some(set) = &self.config {
            for row in rows.iter_mut().filter(|r| !kernel_limits.contains(&r.resource)) {
                if let Some(v) = set.get(row.resource) {
                    row.barrier = v.barrier;
                    row.limit = v.limit;
                }
            }
        }
        rows.sort_by_key(|u| u.resource);
        Ok(rows)
    }
}

impl CgroupDirs {
    /// The VE's directory in a cgroup2 tree, where cgroup programs attach.
    fn cgroup2_dir(&self) -> Option<&Path> {
        match self {
            CgroupDirs::V1 { unified, .. } => unified.as_deref(),
            CgroupDirs::V2 { dir } => Some(dir),
        }
    }
}

/// numtcpsock and numothersock: the socket programs of [`crate::sock_limit`] on the VE's
/// cgroup2 directory. Without one, or where the kernel refuses the programs, the parameters
/// stay accounted and the report says why.
fn apply_socket_limits(dir: Option<&Path>, set: &UbcSet, report: &mut AppliedReport) {
    let tcp = set.get(Resource::NumTcpSock).map(|v| v.limit);
    let other = set.get(Resource::NumOtherSock).map(|v| v.limit);
    if tcp.is_none() && other.is_none() {
        return;
    }
    let outcome = match dir {
        Some(dir) => crate::sock_limit::apply(dir, tcp, other).map_err(|e| {
            tracing::warn!(dir = %dir.display(), error = %e, "socket limits not attached");
            format!("socket programs not attached ({e}); accounted from /proc")
        }),
        None => Err("no cgroup2 directory for socket programs; accounted from /proc".to_owned()),
    };
    for (resource, limit) in [(Resource::NumTcpSock, tcp), (Resource::NumOtherSock, other)] {
        let Some(limit) = limit else { continue };
        let e = match &outcome {
            Ok(()) => Enforcement::Enforced {
                mechanism: format!(
                    "cgroup socket programs (inet_sock_create/release): at most {} inet sockets",
                    crate::sock_limit::limit_of(limit)
                        .map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
                ),
            },
            Err(reason) => Enforcement::Unsupported { reason: reason.clone() },
        };
        report.push(resource, e);
    }
}

/// The outcome for parameters without a cgroup mechanism (same on v1 and v2, except
/// `dcachesize`, which only v2's memory.stat counts, and `vmguarpages`, which only v2's
/// memory.min holds). The socket counts are [`apply_socket_limits`]'s.
pub(crate) fn outside_cgroup(resource: Resource, v2: bool) -> Option<Enforcement> {
    use Enforcement::{Accounted, AtStart, ConfigOnly, Unsupported};
    Some(match resource {
        Resource::LockedPages => AtStart {
            mechanism: "RLIMIT_MEMLOCK of the VE's processes (per process); VmLck accounted",
        },
        Resource::NumSiginfo => AtStart {
            mechanism: "RLIMIT_SIGPENDING of the VE's processes (the kernel counts per user); not accounted",
        },
        Resource::NumFile => AtStart {
            mechanism: "RLIMIT_NOFILE of the VE's processes (per process); open fds accounted",
        },
        Resource::ShmPages => AtStart {
            mechanism: "kernel.shmall/shmmax in the VE's IPC namespace; memory.stat shmem accounted",
        },
        Resource::NumPty => AtStart {
            mechanism: "max= of the VE's devpts instance; ptys open by the VE's processes accounted",
        },
        Resource::PrivvmPages => Accounted { source: "VmData+VmStk of the VE's processes" },
        Resource::NumFlock => Accounted { source: "/proc/locks entries of the VE's processes" },
        Resource::OtherSockBuf => Accounted { source: "UDP send queues of the VE's sockets" },
        Resource::DgramRcvBuf => Accounted { source: "UDP receive queues of the VE's sockets" },
        Resource::DcacheSize if v2 => Accounted { source: "memory.stat slab_reclaimable" },
        Resource::DcacheSize => Unsupported {
            reason: "cgroup v1 memory.stat has no slab counters; not enforced".to_owned(),
        },
        Resource::VmGuarPages if !v2 => Unsupported {
            reason: "cgroup v1 has no memory.min to guarantee memory; not enforced".to_owned(),
        },
        Resource::NumIptent => Accounted {
            source: "nftables rules and legacy iptables entries of the VE's network namespaces",
        },
        Resource::AvNumProc => ConfigOnly,
        _ => return None,
    })
}

/// Pages to bytes for a cgroup file; `None` means unlimited.
pub(crate) fn page_bytes(pages: u64) -> Option<u64> {
    let page = crate::page_size();
    if pages >= UNLIMITED / page { None } else { Some(pages * page) }
}

/// Bytes from a cgroup file to pages, with v1's rounded "unlimited" mapped back to LONG_MAX.
pub(crate) fn bytes_pages(bytes: u64) -> u64 {
    let page = crate::page_size();
    if bytes >= UNLIMITED - page { UNLIMITED } else { bytes / page }
}

/// Bytes with v1's page-rounded "unlimited" (and v2's `max`) mapped to LONG_MAX.
pub(crate) fn bytes_or_unlimited(bytes: u64) -> u64 {
    if bytes >= UNLIMITED - crate::page_size() { UNLIMITED } else { bytes }
}

/// A number file; `max` reads as LONG_MAX.
pub(crate) fn read_u64(path: &Path) -> Result<u64> {
    Ok(vz_cgroup::knob::read_u64(path)?.unwrap_or(UNLIMITED))
}

/// A number file that may be absent on this kernel.
pub(crate) fn read_opt(path: &Path) -> Option<u64> {
    if path.exists() { read_u64(path).ok() } else { None }
}

/// `key value` lines (memory.stat, memory.events, pids.events); none when the file is absent.
pub(crate) fn read_keyed(path: &Path) -> HashMap<String, u64> {
    vz_cgroup::knob::keyed(&fs::read_to_string(path).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_non_cgroup_parameter_is_classified() {
        let cgroup = [
            Resource::KmemSize,
            Resource::NumProc,
            Resource::PhysPages,
            Resource::SwapPages,
            Resource::OomGuarPages,
            Resource::TcpSndBuf,
            Resource::TcpRcvBuf,
            Resource::NumTcpSock,
            Resource::NumOtherSock,
        ];
        for r in Resource::ALL {
            for v2 in [false, true] {
                let by_cgroup = cgroup.contains(&r) || (v2 && r == Resource::VmGuarPages);
                assert_eq!(outside_cgroup(r, v2).is_none(), by_cgroup, "{r}");
            }
        }
    }

    #[test]
    fn unit_conversions_keep_unlimited() {
        let page = crate::page_size();
        assert_eq!(page_bytes(UNLIMITED), None);
        assert_eq!(page_bytes(3), Some(3 * page));
        assert_eq!(bytes_pages(9_223_372_036_854_771_712), UNLIMITED);
        assert_eq!(bytes_pages(page * 5 + 1), 5);
        assert_eq!(bytes_or_unlimited(9_223_372_036_854_771_712), UNLIMITED);
    }

    #[test]
    fn keyed_files_and_numbers_parse() {
        let dir = std::env::temp_dir().join(format!("vz-ubc-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("events"), "low 0\nmax 17\noom 2\n").unwrap();
        fs::write(dir.join("max"), "max\n").unwrap();
        fs::write(dir.join("bad"), "12x\n").unwrap();
        assert_eq!(read_keyed(&dir.join("events")).get("max"), Some(&17));
        assert_eq!(read_u64(&dir.join("max")).unwrap(), UNLIMITED);
        let err = read_u64(&dir.join("bad")).unwrap_err().to_string();
        assert!(err.contains("bad") && err.contains("12x"), "{err}");
        let err = read_u64(&dir.join("missing")).unwrap_err().to_string();
        assert!(err.contains("cannot read") && err.contains("missing"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
