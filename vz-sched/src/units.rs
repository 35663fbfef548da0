//! OpenVZ's CPU parameters (`CPUUNITS`, `CPULIMIT`, `CPUS`), their text forms, and the
//! conversions to cgroup knob values.
//!
//! Conversions (documented in the crate root as well):
//! * cgroup v1 `cpu.shares = CPUUNITS`, as vzctl 4.x's upstream-kernel backend did, clamped
//!   to the kernel's range 2..=262144 (so 262144..=500000 units all give 262144);
//! * cgroup v2 `cpu.weight = CPUUNITS / 10` (OpenVZ 7), clamped to 1..=10000, so the default
//!   1000 units is the kernel's default weight 100;
//! * CFS bandwidth `quota = period × min(CPULIMIT, CPUS × 100) / 100`, where a zero or absent
//!   `CPULIMIT`/`CPUS` does not limit; no limit at all is `-1` (v1) or `max` (v2).

use std::fmt;
use std::str::FromStr;

use crate::error::SchedError;

/// `CPUUNITS`: the VE's relative CPU weight, 8..=500000, default 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuUnits(u32);

impl CpuUnits {
    /// The smallest accepted value.
    pub const MIN: u32 = 8;
    /// The largest accepted value.
    pub const MAX: u32 = 500_000;
    /// OpenVZ's `DEF_CPUUNITS`.
    pub const DEFAULT: CpuUnits = CpuUnits(1000);

    /// Checks the range.
    ///
    /// # Errors
    /// [`SchedError::InvalidValue`] naming `CPUUNITS` and the value when out of 8..=500000.
    pub fn new(units: u32) -> Result<Self, SchedError> {
        if (Self::MIN..=Self::MAX).contains(&units) {
            Ok(CpuUnits(units))
        } else {
            Err(SchedError::invalid(
                "CPUUNITS",
                &units.to_string(),
                format!("must be between {} and {}", Self::MIN, Self::MAX),
            ))
        }
    }

    /// The number of units.
    pub fn get(self) -> u32 {
        self.0
    }

    /// cgroup v1 `cpu.shares`: the units themselves, clamped to the kernel's 2..=262144.
    pub fn to_shares(self) -> u64 {
        u64::from(self.0).clamp(2, 262_144)
    }

    /// cgroup v1 `cpu.shares` back to units (exact below 262144).
    pub fn from_shares(shares: u64) -> Self {
        CpuUnits(clamp_units(shares))
    }

    /// cgroup v2 `cpu.weight`: units / 10 (OpenVZ 7), clamped to the kernel's 1..=10000.
    pub fn to_weight(self) -> u64 {
        (u64::from(self.0) / 10).clamp(1, 10_000)
    }

    /// cgroup v2 `cpu.weight` back to units (weight × 10).
    pub fn from_weight(weight: u64) -> Self {
        CpuUnits(clamp_units(weight.saturating_mul(10)))
    }
}

fn clamp_units(units: u64) -> u32 {
    let clamped = units.clamp(u64::from(CpuUnits::MIN), u64::from(CpuUnits::MAX));
    u32::try_from(clamped).unwrap_or(CpuUnits::MAX)
}

impl Default for CpuUnits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl FromStr for CpuUnits {
    type Err = SchedError;

    fn from_str(s: &str) -> Result<Self, SchedError> {
        let n = plain_number("CPUUNITS", s)?;
        CpuUnits::new(n).map_err(|_| {
            SchedError::invalid(
                "CPUUNITS",
                s,
                format!("must be between {} and {}", Self::MIN, Self::MAX),
            )
        })
    }
}

impl fmt::Display for CpuUnits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `CPULIMIT`: a cap in percent of one CPU (100 = one full CPU, 200 = two), 0 = unlimited;
/// or OpenVZ 7's MHz form.
///
/// Text forms (vzctl's `parse_cpulimit`): `N` is N percent of one CPU; `N%` (N ≤ 100) is N
/// percent of the whole node and is stored as `N × number of CPUs`; `Nm` is N MHz (OpenVZ 7),
/// turned into percent of one CPU with the CPU's clock when applied. [`Display`](fmt::Display)
/// prints the stored form (`N` or `Nm`), as vzctl writes it to the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CpuLimit(Limit);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
enum Limit {
    #[default]
    Unlimited,
    Percent(u32),
    Mhz(u32),
}

impl CpuLimit {
    /// No limit (`0`).
    pub const UNLIMITED: CpuLimit = CpuLimit(Limit::Unlimited);

    /// `percent` of one CPU; 0 is no limit.
    pub fn percent(percent: u32) -> Self {
        if percent == 0 { Self::UNLIMITED } else { CpuLimit(Limit::Percent(percent)) }
    }

    /// `mhz` MHz of CPU time (OpenVZ 7's `Nm`); 0 is no limit.
    pub fn mhz(mhz: u32) -> Self {
        if mhz == 0 { Self::UNLIMITED } else { CpuLimit(Limit::Mhz(mhz)) }
    }

    /// Parses the text form with `ncpus` CPUs on the node (used by the `N%` form).
    ///
    /// # Errors
    /// [`SchedError::InvalidValue`] naming `CPULIMIT` and the text.
    pub fn parse_with_cpus(s: &str, ncpus: u32) -> Result<Self, SchedError> {
        if let Some(n) = s.strip_suffix('%') {
            let n = plain_number("CPULIMIT", n).map_err(|_| bad_limit(s))?;
            if n > 100 {
                return Err(SchedError::invalid(
                    "CPULIMIT",
                    s,
                    "a node percentage must be at most 100%",
                ));
            }
            return n.checked_mul(ncpus).map(Self::percent).ok_or_else(|| bad_limit(s));
        }
        if let Some(n) = s.strip_suffix('m') {
            return plain_number("CPULIMIT", n).map(Self::mhz).map_err(|_| bad_limit(s));
        }
        plain_number("CPULIMIT", s).map(Self::percent).map_err(|_| bad_limit(s))
    }

    /// Whether this is "no limit".
    pub fn is_unlimited(self) -> bool {
        self.0 == Limit::Unlimited
    }

    /// The limit in percent of one CPU, 0 for none; the MHz form is converted with
    /// `cpu_mhz`, the clock of one CPU, rounding up (`None` when the clock is unknown).
    pub fn to_percent(self, cpu_mhz: Option<u32>) -> Option<u32> {
        match self.0 {
            Limit::Unlimited => Some(0),
            Limit::Percent(p) => Some(p),
            Limit::Mhz(mhz) => {
                let clock = u64::from(cpu_mhz.filter(|&c| c > 0)?);
                let percent = (u64::from(mhz) * 100).div_ceil(clock);
                Some(u32::try_from(percent).unwrap_or(u32::MAX))
            }
        }
    }

    /// Whether the value is in MHz (needs the CPU clock to apply).
    pub fn is_mhz(self) -> bool {
        matches!(self.0, Limit::Mhz(_))
    }
}

fn bad_limit(s: &str) -> SchedError {
    SchedError::invalid(
        "CPULIMIT",
        s,
        "expected N (percent of one CPU), N% (of the node) or Nm (MHz)",
    )
}

/// Parses with the number of online CPUs of this machine for the `N%` form.
impl FromStr for CpuLimit {
    type Err = SchedError;

    fn from_str(s: &str) -> Result<Self, SchedError> {
        CpuLimit::parse_with_cpus(s, crate::host::online_cpus())
    }
}

impl fmt::Display for CpuLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Limit::Unlimited => f.write_str("0"),
            Limit::Percent(p) => write!(f, "{p}"),
            Limit::Mhz(m) => write!(f, "{m}m"),
        }
    }
}

/// `CPUS`: how many CPUs' worth of time the VE may use; 0 (or unset) = all.
///
/// On upstream kernels it is folded into the CFS quota as `CPUS × 100` percent, as vzctl
/// 4.x's upstream backend does; the VE still sees and may run on every CPU of its cpuset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Cpus(u32);

impl Cpus {
    /// No cap.
    pub const ALL: Cpus = Cpus(0);

    /// `n` CPUs; 0 is all.
    pub fn new(n: u32) -> Self {
        Cpus(n)
    }

    /// The number, 0 for all.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl FromStr for Cpus {
    type Err = SchedError;

    fn from_str(s: &str) -> Result<Self, SchedError> {
        if s == "unlimited" {
            return Ok(Cpus::ALL);
        }
        plain_number("CPUS", s)
            .map(Cpus)
            .map_err(|_| SchedError::invalid("CPUS", s, "expected a number of CPUs (0 = all)"))
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The CFS period this crate writes, in microseconds (the kernel's default).
pub const CFS_PERIOD_US: u64 = 100_000;

/// The effective cap in percent of one CPU from `CPULIMIT` (already in percent) and `CPUS`;
/// `None` when neither limits.
pub(crate) fn effective_percent(limit_percent: u32, cpus: Cpus) -> Option<u64> {
    let by_cpus = u64::from(cpus.get()) * 100;
    match (u64::from(limit_percent), by_cpus) {
        (0, 0) => None,
        (l, 0) => Some(l),
        (0, c) => Some(c),
        (l, c) => Some(l.min(c)),
    }
}

/// The CFS quota in microseconds for `percent` of one CPU over [`CFS_PERIOD_US`].
pub(crate) fn quota_us(percent: u64) -> u64 {
    CFS_PERIOD_US.saturating_mul(percent) / 100
}

fn plain_number(key: &'static str, s: &str) -> Result<u32, SchedError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SchedError::invalid(key, s, "expected a decimal number"));
    }
    s.parse().map_err(|_| SchedError::invalid(key, s, "number too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn units_range_and_default() {
        assert_eq!(CpuUnits::default().get(), 1000);
        assert_eq!("8".parse::<CpuUnits>().unwrap().get(), 8);
        assert_eq!("500000".parse::<CpuUnits>().unwrap().get(), 500_000);
        for bad in ["7", "500001", "", "-5", "1e3", " 100", "99999999999"] {
            let err = bad.parse::<CpuUnits>().unwrap_err().to_string();
            assert!(err.contains("CPUUNITS") && err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn units_convert_to_shares_and_weight() {
        let u = |n| CpuUnits::new(n).unwrap();
        assert_eq!(u(1000).to_shares(), 1000);
        assert_eq!(u(8).to_shares(), 8);
        assert_eq!(u(500_000).to_shares(), 262_144);
        assert_eq!(u(1000).to_weight(), 100);
        assert_eq!(u(8).to_weight(), 1);
        assert_eq!(u(3000).to_weight(), 300);
        assert_eq!(u(500_000).to_weight(), 10_000);
        assert_eq!(CpuUnits::from_shares(2).get(), 8);
        assert_eq!(CpuUnits::from_weight(100).get(), 1000);
    }

    #[test]
    fn cpulimit_forms() {
        assert_eq!(CpuLimit::parse_with_cpus("50", 4).unwrap(), CpuLimit::percent(50));
        assert_eq!(CpuLimit::parse_with_cpus("50%", 4).unwrap(), CpuLimit::percent(200));
        assert_eq!(CpuLimit::parse_with_cpus("100%", 2).unwrap().to_string(), "200");
        assert!(CpuLimit::parse_with_cpus("0", 2).unwrap().is_unlimited());
        assert!(CpuLimit::parse_with_cpus("0%", 2).unwrap().is_unlimited());
        let mhz = CpuLimit::parse_with_cpus("1300m", 2).unwrap();
        assert_eq!(mhz.to_string(), "1300m");
        assert_eq!(mhz.to_percent(Some(2600)), Some(50));
        assert_eq!(CpuLimit::mhz(1).to_percent(Some(2600)), Some(1));
        assert_eq!(mhz.to_percent(None), None);
        for bad in ["101%", "x", "", "5%%", "-1", "12.5", "%", "m"] {
            let err = CpuLimit::parse_with_cpus(bad, 2).unwrap_err().to_string();
            assert!(err.contains("CPULIMIT") && err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn quota_is_the_tighter_of_cpulimit_and_cpus() {
        assert_eq!(effective_percent(0, Cpus::ALL), None);
        assert_eq!(effective_percent(50, Cpus::ALL), Some(50));
        assert_eq!(effective_percent(0, Cpus::new(2)), Some(200));
        assert_eq!(effective_percent(300, Cpus::new(2)), Some(200));
        assert_eq!(effective_percent(150, Cpus::new(2)), Some(150));
        assert_eq!(quota_us(50), 50_000);
        assert_eq!(quota_us(1), 1_000);
        assert_eq!("unlimited".parse::<Cpus>().unwrap(), Cpus::ALL);
        assert!("two".parse::<Cpus>().unwrap_err().to_string().contains("CPUS"));
    }

    proptest! {
        #[test]
        fn units_round_trip(n in CpuUnits::MIN..=CpuUnits::MAX) {
            let units: CpuUnits = n.to_string().parse().unwrap();
            prop_assert_eq!(units.get(), n);
            prop_assert_eq!(units.to_string(), n.to_string());
            if n <= 262_144 { prop_assert_eq!(CpuUnits::from_shares(units.to_shares()), units); }
            prop_assert!((1..=10_000).contains(&units.to_weight()));
        }

        #[test]
        fn weight_is_monotonic(a in CpuUnits::MIN..=CpuUnits::MAX, b in CpuUnits::MIN..=CpuUnits::MAX) {
            let (ua, ub) = (CpuUnits::new(a).unwrap(), CpuUnits::new(b).unwrap());
            if a <= b {
                prop_assert!(ua.to_weight() <= ub.to_weight());
                prop_assert!(ua.to_shares() <= ub.to_shares());
            }
        }

        #[test]
        fn cpulimit_round_trips(n in 0u32..=1_000_000, mhz in proptest::bool::ANY) {
            let text = if mhz && n > 0 { format!("{n}m") } else { n.to_string() };
            let limit = CpuLimit::parse_with_cpus(&text, 3).unwrap();
            prop_assert_eq!(limit.to_string(), text.clone());
            prop_assert_eq!(CpuLimit::parse_with_cpus(&limit.to_string(), 3).unwrap(), limit);
        }

        #[test]
        fn node_percent_scales_by_cpus(n in 0u32..=100, ncpus in 1u32..=512) {
            let limit = CpuLimit::parse_with_cpus(&format!("{n}%"), ncpus).unwrap();
            prop_assert_eq!(limit.to_percent(None), Some(n * ncpus));
        }
    }
}
