//! Per-process resource limits of the VE's processes ([`Rlimit`]): given to the VE's init
//! before exec (and so inherited by everything it starts) and to every entered process.
//!
//! The limits are checked and fitted to what this host allows in the parent, before fork
//! (where logging is safe); the child only calls setrlimit. A hard limit above the caller's
//! own hard limit can only be set with CAP_SYS_RESOURCE (and `RLIMIT_NOFILE` never above
//! `fs.nr_open`): without it the limit is lowered to the caller's hard limit, with a warning,
//! rather than failing the VE's start.

use std::collections::HashSet;
use std::fmt;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::error::{NsError, Result};
use crate::rootfs::StepResult;

/// A per-process resource a VE's processes are limited in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RlimitResource {
    /// `RLIMIT_MEMLOCK`: bytes of memory locked with mlock (OpenVZ's lockedpages).
    MemLock,
    /// `RLIMIT_SIGPENDING`: queued signals (OpenVZ's numsiginfo).
    SigPending,
    /// `RLIMIT_NOFILE`: open file descriptors (OpenVZ's numfile).
    NoFile,
}

impl RlimitResource {
    fn kernel(self) -> Resource {
        match self {
            RlimitResource::MemLock => Resource::RLIMIT_MEMLOCK,
            RlimitResource::SigPending => Resource::RLIMIT_SIGPENDING,
            RlimitResource::NoFile => Resource::RLIMIT_NOFILE,
        }
    }
}

impl fmt::Display for RlimitResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RlimitResource::MemLock => "RLIMIT_MEMLOCK",
            RlimitResource::SigPending => "RLIMIT_SIGPENDING",
            RlimitResource::NoFile => "RLIMIT_NOFILE",
        })
    }
}

/// One resource limit: soft and hard value, [`Rlimit::UNLIMITED`] for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// Which limit.
    pub resource: RlimitResource,
    /// The soft limit (what the kernel enforces); at most `hard`.
    pub soft: u64,
    /// The hard limit (the ceiling an unprivileged process may raise its soft limit to).
    pub hard: u64,
}

impl Rlimit {
    /// The value meaning "no limit" (`RLIM_INFINITY`).
    pub const UNLIMITED: u64 = u64::MAX;
}

/// Limits checked and fitted to the host, ready for [`apply`] in a child.
#[derive(Debug, Clone, Default)]
pub(crate) struct RlimitPlan {
    limits: Vec<Rlimit>,
}

/// Where the host's ceilings come from (separate for the unit tests).
#[derive(Debug, Clone, Copy)]
struct Ceilings {
    /// Whether the caller has CAP_SYS_RESOURCE in its effective set.
    sys_resource: bool,
    /// `fs.nr_open`, the kernel's ceiling for `RLIMIT_NOFILE`.
    nr_open: u64,
}

impl RlimitPlan {
    /// Checks `limits` (no resource twice, soft ≤ hard) and lowers hard limits the caller
    /// could not set to its own hard limit, with a warning.
    ///
    /// # Errors
    /// [`NsError::BadSpec`] (field `rlimits`) for a repeated resource or soft above hard;
    /// [`NsError::Sys`] if the caller's own limits cannot be read.
    pub(crate) fn new(limits: &[Rlimit]) -> Result<Self> {
        if limits.is_empty() {
            return Ok(RlimitPlan::default());
        }
        let ceilings = Ceilings { sys_resource: has_cap_sys_resource(), nr_open: nr_open() };
        Self::with(limits, ceilings, |r| {
            getrlimit(r.kernel())
                .map(|(_, hard)| hard)
                .map_err(|e| NsError::sys("read the caller's resource limits", e))
        })
    }

    fn with(
        limits: &[Rlimit],
        ceilings: Ceilings,
        current_hard: impl Fn(RlimitResource) -> Result<u64>,
    ) -> Result<Self> {
        let mut seen = HashSet::new();
        let mut fitted = Vec::with_capacity(limits.len());
        for limit in limits {
            if !seen.insert(limit.resource) {
                return Err(NsError::BadSpec {
                    field: "rlimits",
                    reason: format!("{} given more than once", limit.resource),
                });
            }
            if limit.soft > limit.hard {
                return Err(NsError::BadSpec {
                    field: "rlimits",
                    reason: format!(
                        "{}: soft limit {} above hard limit {}",
                        limit.resource,
                        show(limit.soft),
                        show(limit.hard)
                    ),
                });
            }
            let mut ceiling = if ceilings.sys_resource {
                Rlimit::UNLIMITED
            } else {
                current_hard(limit.resource)?
            };
            if limit.resource == RlimitResource::NoFile {
                ceiling = ceiling.min(ceilings.nr_open);
            }
            let mut fit = *limit;
            if fit.hard > ceiling {
                // Stricter than configured, never looser: worth a note, not a warning on every
                // `vzctl exec`.
                tracing::info!(
                    resource = %limit.resource,
                    wanted = %show(limit.hard),
                    allowed = %show(ceiling),
                    "hard limit above what the host allows; lowered"
                );
                fit.hard = ceiling;
                fit.soft = fit.soft.min(ceiling);
            }
            fitted.push(fit);
        }
        Ok(RlimitPlan { limits: fitted })
    }

    /// Sets the limits on the calling process (run in the child, before exec).
    pub(crate) fn apply(&self) -> StepResult {
        for limit in &self.limits {
            setrlimit(limit.resource.kernel(), limit.soft, limit.hard).map_err(|e| {
                format!(
                    "setrlimit {} {}:{}: {e}",
                    limit.resource,
                    show(limit.soft),
                    show(limit.hard)
                )
            })?;
        }
        Ok(())
    }
}

/// A limit value as text.
fn show(value: u64) -> String {
    if value == Rlimit::UNLIMITED { "unlimited".to_owned() } else { value.to_string() }
}

/// Whether CAP_SYS_RESOURCE is in our effective set.
fn has_cap_sys_resource() -> bool {
    crate::caps::bit_of("SYS_RESOURCE").is_some_and(crate::sys::has_effective_cap)
}

/// `fs.nr_open` (the kernel's default, 1048576, if unreadable).
fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(resource: RlimitResource, soft: u64, hard: u64) -> Rlimit {
        Rlimit { resource, soft, hard }
    }

    #[test]
    fn cap_sys_resource_is_what_proc_shows() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap();
        let effective = u64::from_str_radix(hex.trim(), 16).unwrap();
        assert_eq!(has_cap_sys_resource(), effective & (1 << 24) != 0);
    }

    const PLAIN: Ceilings = Ceilings { sys_resource: false, nr_open: 1 << 20 };

    #[test]
    fn limits_below_the_ceiling_are_kept() {
        let wanted = [
            lim(RlimitResource::NoFile, 100, 200),
            lim(RlimitResource::MemLock, 65536, Rlimit::UNLIMITED),
        ];
        let plan = RlimitPlan::with(&wanted, PLAIN, |_| Ok(Rlimit::UNLIMITED)).expect("valid");
        assert_eq!(plan.limits, wanted);
    }

    #[test]
    fn hard_limits_above_the_callers_are_lowered_without_cap_sys_resource() {
        let wanted = [lim(RlimitResource::NoFile, 30000, 50000)];
        let plan = RlimitPlan::with(&wanted, PLAIN, |_| Ok(20000)).expect("valid");
        assert_eq!(plan.limits, [lim(RlimitResource::NoFile, 20000, 20000)]);
        let wanted = [lim(RlimitResource::NoFile, 1000, 50000)];
        let plan = RlimitPlan::with(&wanted, PLAIN, |_| Ok(20000)).expect("valid");
        assert_eq!(plan.limits, [lim(RlimitResource::NoFile, 1000, 20000)]);
    }

    #[test]
    fn with_cap_sys_resource_only_nr_open_bounds_nofile() {
        let caps = Ceilings { sys_resource: true, nr_open: 1 << 20 };
        let wanted = [
            lim(RlimitResource::NoFile, Rlimit::UNLIMITED, Rlimit::UNLIMITED),
            lim(RlimitResource::SigPending, 500_000, 500_000),
        ];
        let plan = RlimitPlan::with(&wanted, caps, |_| Ok(10)).expect("valid");
        assert_eq!(
            plan.limits,
            [
                lim(RlimitResource::NoFile, 1 << 20, 1 << 20),
                lim(RlimitResource::SigPending, 500_000, 500_000)
            ]
        );
    }

    #[test]
    fn soft_above_hard_and_repeats_are_errors_naming_the_resource() {
        let bad = [lim(RlimitResource::MemLock, 10, 5)];
        let err = RlimitPlan::with(&bad, PLAIN, |_| Ok(100)).expect_err("soft > hard");
        let text = err.to_string();
        assert!(text.contains("rlimits") && text.contains("RLIMIT_MEMLOCK"), "{text}");
        assert!(text.contains("10") && text.contains('5'), "{text}");
        let twice = [lim(RlimitResource::NoFile, 1, 1), lim(RlimitResource::NoFile, 2, 2)];
        let err = RlimitPlan::with(&twice, PLAIN, |_| Ok(100)).expect_err("repeated");
        assert!(err.to_string().contains("RLIMIT_NOFILE given more than once"), "{err}");
    }

    #[test]
    fn unlimited_shows_as_a_word() {
        assert_eq!(show(Rlimit::UNLIMITED), "unlimited");
        assert_eq!(show(42), "42");
    }
}
