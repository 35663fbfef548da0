//! The consistency rules of `vzcfgvalidate` (reference §3.4): per-parameter rules, the
//! formulas between parameters, the VSwap rules, severities and repairs.

use crate::param::{BarrierLimit, UNLIMITED};
use crate::resource::Resource;
use crate::set::UbcSet;

/// How bad a finding is. Errors and Warnings fail validation; Recommendations do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Severity {
    /// A broken configuration.
    Error,
    /// A configuration that may misbehave.
    Warning,
    /// Advice only.
    Recommendation,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Error => "Error",
            Severity::Warning => "Warning",
            Severity::Recommendation => "Recommendation",
        })
    }
}

/// Which rule set to apply (`vzcfgvalidate -v yes|no`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ValidateMode {
    /// VSwap iff the physpages limit is not unlimited.
    #[default]
    Auto,
    /// `-v yes`.
    VSwap,
    /// `-v no`.
    NonVSwap,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// The parameter the message is about.
    pub resource: Resource,
    /// The message, without the severity prefix.
    pub message: String,
    /// The value that fixes it (what `vzcfgvalidate -r` saves), when one exists.
    pub repair: Option<BarrierLimit>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.severity, self.message)
    }
}

/// The host's memory in pages, for the VSwap limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostMemory {
    /// MemTotal in pages.
    pub ram_pages: u64,
    /// SwapTotal in pages.
    pub swap_pages: u64,
}

impl HostMemory {
    /// Reads `/proc/meminfo`.
    ///
    /// # Errors
    /// [`UbcError::Io`](crate::UbcError::Io) when it cannot be read.
    pub fn read() -> crate::Result<HostMemory> {
        let text = crate::cgroup::read_text(std::path::Path::new("/proc/meminfo"))?;
        let kb = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let page_kb = (crate::sys::page_size() / 1024).max(1);
        Ok(HostMemory {
            ram_pages: kb("MemTotal:") / page_kb,
            swap_pages: kb("SwapTotal:") / page_kb,
        })
    }
}

/// Whether findings let validation succeed (no Error and no Warning).
pub fn passes(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.severity == Severity::Recommendation)
}

/// Checks `set` with vzcfgvalidate's rules, against this host's memory for the VSwap limits.
pub fn validate(set: &UbcSet, mode: ValidateMode) -> Vec<Finding> {
    validate_with_host(set, mode, HostMemory::read().ok())
}

/// [`validate`] with the host's memory given (`None`: skip the host-size rules).
pub fn validate_with_host(
    set: &UbcSet,
    mode: ValidateMode,
    host: Option<HostMemory>,
) -> Vec<Finding> {
    let vswap = match mode {
        ValidateMode::Auto => set.is_vswap(),
        ValidateMode::VSwap => true,
        ValidateMode::NonVSwap => false,
    };
    let mut out = Vec::new();
    if vswap {
        check_vswap(set, host, &mut out)
    } else {
        check_classic(set, &mut out)
    }
    out
}

/// Applies the repairs of Errors and Warnings until none is left (`vzcfgvalidate -r`); returns
/// the repaired set and what could not be repaired.
pub fn repair(
    set: &UbcSet,
    mode: ValidateMode,
    host: Option<HostMemory>,
) -> (UbcSet, Vec<Finding>) {
    let mut set = set.clone();
    for _ in 0..16 {
        let findings = validate_with_host(&set, mode, host);
        let fixes: Vec<_> = findings
            .iter()
            .filter(|f| f.severity != Severity::Recommendation)
            .filter_map(|f| Some((f.resource, f.repair?)))
            .collect();
        if fixes.is_empty() {
            return (set, findings);
        }
        for (r, v) in fixes {
            set.set(r, v);
        }
    }
    let findings = validate_with_host(&set, mode, host);
    (set, findings)
}

const REQUIRED: [Resource; 15] = [
    Resource::NumProc,
    Resource::NumTcpSock,
    Resource::NumOtherSock,
    Resource::OomGuarPages,
    Resource::VmGuarPages,
    Resource::KmemSize,
    Resource::TcpSndBuf,
    Resource::TcpRcvBuf,
    Resource::OtherSockBuf,
    Resource::DgramRcvBuf,
    Resource::PrivvmPages,
    Resource::NumFile,
    Resource::DcacheSize,
    Resource::PhysPages,
    Resource::NumPty,
];

const EQUAL: [Resource; 8] = [
    Resource::NumProc,
    Resource::NumTcpSock,
    Resource::NumOtherSock,
    Resource::ShmPages,
    Resource::NumFile,
    Resource::NumPty,
    Resource::NumSiginfo,
    Resource::NumIptent,
];

const ORDERED: [Resource; 9] = [
    Resource::KmemSize,
    Resource::TcpSndBuf,
    Resource::TcpRcvBuf,
    Resource::OtherSockBuf,
    Resource::DgramRcvBuf,
    Resource::PrivvmPages,
    Resource::LockedPages,
    Resource::NumFlock,
    Resource::DcacheSize,
];

fn finding(
    severity: Severity,
    resource: Resource,
    message: String,
    repair: Option<BarrierLimit>,
) -> Finding {
    Finding { severity, resource, message, repair }
}

fn check_classic(set: &UbcSet, out: &mut Vec<Finding>) {
    use Severity::{Error, Recommendation, Warning};
    for r in REQUIRED {
        if set.get(r).is_none() {
            out.push(finding(Error, r, format!("parameter {} not found", r.key()), None));
        }
    }
    for (r, v) in set.iter() {
        if EQUAL.contains(&r) && v.barrier != v.limit {
            let msg = format!("barrier should be equal to limit for {} (currently, {v})", r.key());
            out.push(finding(Error, r, msg, Some(BarrierLimit::both(v.limit))));
        }
        if ORDERED.contains(&r) && v.barrier > v.limit {
            let msg = format!(
                "barrier should be less than or equal to limit for {} (currently, {v})",
                r.key()
            );
            out.push(finding(Error, r, msg, Some(BarrierLimit::both(v.barrier))));
        }
        if matches!(r, Resource::VmGuarPages | Resource::OomGuarPages) && !v.limit_unlimited() {
            let msg = format!("limit should be unlimited for {} (currently, {v})", r.key());
            out.push(finding(Error, r, msg, Some(BarrierLimit::new(v.barrier, UNLIMITED))));
        }
        if r == Resource::PhysPages && (v.barrier != 0 || !v.limit_unlimited()) {
            let msg = format!("PHYSPAGES should be 0:unlimited (currently, {v})");
            out.push(finding(Error, r, msg, Some(BarrierLimit::new(0, UNLIMITED))));
        }
    }
    let g = |r: Resource| set.get(r);
    let num = |r: Resource| g(r).map(|v| v.barrier);
    let avnumproc =
        g(Resource::AvNumProc).map(|v| v.barrier).or(num(Resource::NumProc).map(|n| n / 2));

    if let (Some(dc), Some(nf)) = (g(Resource::DcacheSize), num(Resource::NumFile)) {
        let need = nf.saturating_mul(384);
        if dc.limit < need {
            let msg = format!(
                "DCACHESIZE.lim should be > {need} (NUMFILE.bar * 384; currently, {})",
                dc.limit
            );
            out.push(finding(
                Warning,
                Resource::DcacheSize,
                msg,
                Some(BarrierLimit::new(dc.barrier.min(need), need)),
            ));
        }
    }
    if let (Some(km), Some(av), Some(dc)) =
        (g(Resource::KmemSize), avnumproc, g(Resource::DcacheSize))
    {
        let need = av.saturating_mul(40 * 1024).saturating_add(dc.limit).min(UNLIMITED);
        if km.barrier < need {
            let gap = km.limit.saturating_sub(km.barrier);
            let msg = format!(
                "KMEMSIZE.bar should be > {need} (40 KB * AVNUMPROC + DCACHESIZE.lim; currently, {})",
                km.barrier
            );
            let fix = BarrierLimit::new(need, need.saturating_add(gap).min(UNLIMITED));
            out.push(finding(Error, Resource::KmemSize, msg, Some(fix)));
        }
    }
    if let (Some(pv), Some(vg)) = (g(Resource::PrivvmPages), g(Resource::VmGuarPages))
        && pv.barrier < vg.barrier
    {
        {
            let msg = format!(
                "PRIVVMPAGES.bar should be >= VMGUARPAGES.bar (currently, {} < {})",
                pv.barrier, vg.barrier
            );
            out.push(finding(
                Warning,
                Resource::VmGuarPages,
                msg,
                Some(BarrierLimit::new(pv.barrier, vg.limit)),
            ));
        }
    }
    for (buf, socks, severity) in [
        (Resource::TcpSndBuf, Resource::NumTcpSock, Error),
        (Resource::OtherSockBuf, Resource::NumOtherSock, Error),
        (Resource::TcpRcvBuf, Resource::NumTcpSock, Warning),
    ] {
        if let (Some(b), Some(n)) = (g(buf), num(socks)) {
            let need = n.saturating_mul(2560);
            if b.limit.saturating_sub(b.barrier) < need && !b.limit_unlimited() {
                let msg = format!(
                    "{}.lim-{}.bar should be > {need} (2.5 KB * {}.bar; currently, {})",
                    buf.key(),
                    buf.key(),
                    socks.key(),
                    b.limit.saturating_sub(b.barrier)
                );
                let fix =
                    BarrierLimit::new(b.barrier, b.barrier.saturating_add(need).min(UNLIMITED));
                out.push(finding(severity, buf, msg, Some(fix)));
            }
        }
    }
    for (r, min, recommended) in [
        (Resource::TcpRcvBuf, 64 * 1024, None),
        (Resource::TcpSndBuf, 64 * 1024, None),
        (Resource::DgramRcvBuf, 32 * 1024, Some(129 * 1024)),
        (Resource::OtherSockBuf, 32 * 1024, Some(129 * 1024)),
    ] {
        let Some(v) = g(r) else { continue };
        let raise = |to: u64| BarrierLimit::new(to, v.limit.max(to));
        if v.barrier < min {
            let msg = format!("{}.bar should be > {min} (currently, {})", r.key(), v.barrier);
            out.push(finding(Warning, r, msg, Some(raise(min))));
        } else if let Some(rec) = recommended.filter(|rec| v.barrier < *rec) {
            let msg =
                format!("{}.bar is recommended to be > {rec} (currently, {})", r.key(), v.barrier);
            out.push(finding(Recommendation, r, msg, Some(raise(rec))));
        }
    }
    if let (Some(nf), Some(av)) = (g(Resource::NumFile), avnumproc) {
        let socks = [Resource::NumTcpSock, Resource::NumOtherSock, Resource::NumPty]
            .into_iter()
            .map(|r| num(r).unwrap_or(0))
            .fold(0u64, u64::saturating_add);
        let need = av.saturating_mul(32).max(socks).min(UNLIMITED);
        if nf.barrier < need {
            let msg = format!(
                "NUMFILE should be > {need} (max(32 * AVNUMPROC, NUMTCPSOCK + NUMOTHERSOCK + NUMPTY); currently, {})",
                nf.barrier
            );
            out.push(finding(Warning, Resource::NumFile, msg, Some(BarrierLimit::both(need))));
        }
    }
}

fn check_vswap(set: &UbcSet, host: Option<HostMemory>, out: &mut Vec<Finding>) {
    for (r, host_pages) in [
        (Resource::PhysPages, host.map(|h| h.ram_pages)),
        (Resource::SwapPages, host.map(|h| h.swap_pages)),
    ] {
        let Some(v) = set.get(r) else {
            out.push(finding(Severity::Error, r, format!("parameter {} not found", r.key()), None));
            continue;
        };
        if v.barrier != 0 {
            let msg = format!("barrier should be 0 for {} (currently, {v})", r.key());
            out.push(finding(Severity::Error, r, msg, Some(BarrierLimit::new(0, v.limit))));
        }
        if let Some(max) = host_pages.filter(|max| v.limit > *max) {
            let msg = format!(
                "{}.lim should be <= {max} (the host's size in pages; currently, {})",
                r.key(),
                v.limit
            );
            out.push(finding(Severity::Warning, r, msg, Some(BarrierLimit::new(0, max))));
        }
    }
}
