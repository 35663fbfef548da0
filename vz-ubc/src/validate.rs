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
            out.push(finding(Error, r, format!("parameter {} not found", r.option()), None));
        }
    }
    for (r, v) in set.iter() {
        if EQUAL.contains(&r) && v.barrier != v.limit {
            let msg =
                format!("barrier should be equal to limit for {} (currently, {v})", r.option());
            out.push(finding(Error, r, msg, Some(BarrierLimit::both(v.limit))));
        }
        if ORDERED.contains(&r) && v.barrier > v.limit {
            let msg = format!(
                "barrier should be less than or equal to limit for {} (currently, {v})",
                r.option()
            );
            out.push(finding(Error, r, msg, Some(BarrierLimit::both(v.barrier))));
        }
        if matches!(r, Resource::VmGuarPages | Resource::OomGuarPages) && !v.limit_unlimited() {
            let msg = format!("limit should be unlimited for {} (currently, {v})", r.option());
            out.push(finding(Error, r, msg, Some(BarrierLimit::new(v.barrier, UNLIMITED))));
        }
        if r == Resource::PhysPages && (v.barrier != 0 || !v.limit_unlimited()) {
            let msg = format!("physpages should be 0:unlimited (currently, {v})");
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
                "dcachesize.lim should be > {need} (numfile.bar * 384; currently, {})",
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
                "kmemsize.bar should be > {need} (40 KB * avnumproc + dcachesize.lim; currently, {})",
                km.barrier
            );
            let fix = BarrierLimit::new(need, need.saturating_add(gap).min(UNLIMITED));
            out.push(finding(Error, Resource::KmemSize, msg, Some(fix)));
        }
    }
    if let (Some(pv), Some(vg)) = (g(Resource::PrivvmPages), g(Resource::VmGuarPages))
        && pv.barrier < vg.barrier
    {
        let msg = format!(
            "privvmpages.bar should be >= vmguarpages.bar (currently, {} < {})",
            pv.barrier, vg.barrier
        );
        out.push(finding(
            Warning,
            Resource::VmGuarPages,
            msg,
            Some(BarrierLimit::new(pv.barrier, vg.limit)),
        ));
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
                    buf.option(),
                    buf.option(),
                    socks.option(),
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
            let msg = format!("{}.bar should be > {min} (currently, {})", r.option(), v.barrier);
            out.push(finding(Warning, r, msg, Some(raise(min))));
        } else if let Some(rec) = recommended.filter(|rec| v.barrier < *rec) {
            let msg = format!(
                "{}.bar is recommended to be > {rec} (currently, {})",
                r.option(),
                v.barrier
            );
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
                "numfile should be > {need} (max(32 * avnumproc, numtcpsock + numothersock + numpty); currently, {})",
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
            out.push(finding(
                Severity::Error,
                r,
                format!("parameter {} not found", r.option()),
                None,
            ));
            continue;
        };
        if v.barrier != 0 {
            let msg = format!("barrier should be 0 for {} (currently, {v})", r.option());
            out.push(finding(Severity::Error, r, msg, Some(BarrierLimit::new(0, v.limit))));
        }
        if let Some(max) = host_pages.filter(|max| v.limit > *max) {
            let msg = format!(
                "{}.lim should be <= {max} (the host's size in pages; currently, {})",
                r.option(),
                v.limit
            );
            out.push(finding(Severity::Warning, r, msg, Some(BarrierLimit::new(0, max))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> UbcSet {
        let pairs: Vec<(&str, &str)> = text
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        UbcSet::from_config_pairs(&pairs).unwrap()
    }

    const VE_BASIC: &str = r#"KMEMSIZE="14372700:14790164" LOCKEDPAGES="2048:2048"
        PRIVVMPAGES="65536:69632" SHMPAGES="21504:21504" NUMPROC="240:240" PHYSPAGES="0:unlimited"
        VMGUARPAGES="33792:unlimited" OOMGUARPAGES="26112:unlimited" NUMTCPSOCK="360:360"
        NUMFLOCK="188:206" NUMPTY="16:16" NUMSIGINFO="256:256" TCPSNDBUF="1720320:2703360"
        TCPRCVBUF="1720320:2703360" OTHERSOCKBUF="1126080:2097152" DGRAMRCVBUF="262144:262144"
        NUMOTHERSOCK="360:360" DCACHESIZE="3409920:3624960" NUMFILE="9312:9312" AVNUMPROC="180:180"
        NUMIPTENT="128:128""#;

    const VE_LIGHT: &str = r#"AVNUMPROC="15:15" NUMPROC="40:40" NUMTCPSOCK="40:40"
        NUMOTHERSOCK="40:40" VMGUARPAGES="1725:unlimited" KMEMSIZE="1740800:1847296"
        TCPSNDBUF="159744:262144" TCPRCVBUF="159744:262144" OTHERSOCKBUF="135168:237568"
        DGRAMRCVBUF="135168:196608" OOMGUARPAGES="1725:unlimited" LOCKEDPAGES="4:4"
        SHMPAGES="1152:1152" PRIVVMPAGES="7680:8448" NUMFILE="512:512" NUMFLOCK="50:60"
        NUMPTY="4:4" NUMSIGINFO="256:256" DCACHESIZE="196608:202752" PHYSPAGES="0:unlimited"
        NUMIPTENT="16:16""#;

    #[test]
    fn shipped_samples_pass() {
        for sample in [VE_BASIC, VE_LIGHT] {
            let findings = validate_with_host(&conf(sample), ValidateMode::Auto, None);
            assert!(passes(&findings), "{findings:#?}");
        }
        let host = HostMemory { ram_pages: 1 << 20, swap_pages: 1 << 20 };
        let vswap = conf(r#"PHYSPAGES="0:256M" SWAPPAGES="0:512M""#);
        assert!(validate_with_host(&vswap, ValidateMode::Auto, Some(host)).is_empty());
    }

    #[test]
    fn broken_values_are_found_with_severity_and_repaired() {
        let mut set = conf(VE_BASIC);
        set.set(Resource::NumProc, BarrierLimit::new(240, 250));
        set.set(Resource::KmemSize, BarrierLimit::new(100, 50));
        set.set(Resource::VmGuarPages, BarrierLimit::both(33792));
        set.set(Resource::TcpSndBuf, BarrierLimit::new(1_720_320, 1_720_321));
        set.set(Resource::DgramRcvBuf, BarrierLimit::both(1000));
        set.remove(Resource::NumPty);
        let findings = validate_with_host(&set, ValidateMode::NonVSwap, None);
        let text: Vec<String> = findings.iter().map(ToString::to_string).collect();
        let has = |s: &str| text.iter().any(|t| t.contains(s));
        assert!(has("Error: parameter numpty not found"), "{text:#?}");
        assert!(has("Error: barrier should be equal to limit for numproc (currently, 240:250)"));
        assert!(has("Error: barrier should be less than or equal to limit for kmemsize"));
        assert!(has("Error: limit should be unlimited for vmguarpages"));
        assert!(has("Error: tcpsndbuf.lim-tcpsndbuf.bar should be > 921600"));
        assert!(has("Warning: dgramrcvbuf.bar should be > 32768"));
        assert!(!passes(&findings));

        let (fixed, left) = repair(&set, ValidateMode::NonVSwap, None);
        // Only the missing parameter cannot be repaired.
        assert_eq!(
            left.iter().filter(|f| f.severity != Severity::Recommendation).count(),
            1,
            "{left:#?}"
        );
        assert_eq!(fixed.get(Resource::NumProc), Some(BarrierLimit::both(250)));
        assert_eq!(fixed.get(Resource::VmGuarPages), Some(BarrierLimit::new(33792, UNLIMITED)));
        let snd = fixed.get(Resource::TcpSndBuf).unwrap();
        assert!(snd.limit - snd.barrier >= 921_600);
        let km = fixed.get(Resource::KmemSize).unwrap();
        assert!(km.barrier >= 180 * 40 * 1024 + 3_624_960 && km.barrier <= km.limit, "{km:?}");
    }

    #[test]
    fn recommendations_do_not_fail() {
        let mut set = conf(VE_BASIC);
        set.set(Resource::DgramRcvBuf, BarrierLimit::both(64 * 1024));
        let findings = validate_with_host(&set, ValidateMode::Auto, None);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert_eq!(findings[0].severity, Severity::Recommendation);
        assert!(passes(&findings));
    }

    #[test]
    fn vswap_rules() {
        let host = HostMemory { ram_pages: 1000, swap_pages: 0 };
        let set = conf(r#"PHYSPAGES="5:2000""#);
        let findings = validate_with_host(&set, ValidateMode::Auto, Some(host));
        let text: Vec<String> = findings.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "Error: barrier should be 0 for physpages (currently, 5:2000)",
                "Warning: physpages.lim should be <= 1000 (the host's size in pages; currently, 2000)",
                "Error: parameter swappages not found",
            ]
        );
        // -v no forces the classic rules on the same set.
        let classic = validate_with_host(&set, ValidateMode::NonVSwap, Some(host));
        assert!(classic.iter().any(|f| f.message.starts_with("physpages should be 0:unlimited")));
    }
}
