//! `CPUMASK`: the kernel's CPU list grammar (`0-2,7`) plus OpenVZ's `all` and `auto`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::error::SchedError;

/// The highest CPU number accepted in a list (the kernel's `NR_CPUS` ceiling).
pub const MAX_CPU: u32 = 8191;

/// A set of CPU numbers in the kernel's list form (`cpuset.cpus`, `/sys/devices/system/cpu/online`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuList(BTreeSet<u32>);

impl CpuList {
    /// Parses `0-2,7`; `key` names the parameter in the error. Empty text is the empty set.
    ///
    /// # Errors
    /// [`SchedError::InvalidValue`] for a malformed item, a reversed range or a CPU above
    /// [`MAX_CPU`].
    pub fn parse(key: &'static str, text: &str) -> Result<Self, SchedError> {
        let mut set = BTreeSet::new();
        let text = text.trim();
        if text.is_empty() {
            return Ok(CpuList(set));
        }
        for item in text.split(',') {
            let item = item.trim();
            let (lo, hi) = match item.split_once('-') {
                Some((lo, hi)) => (cpu_number(key, text, lo)?, cpu_number(key, text, hi)?),
                None => {
                    let n = cpu_number(key, text, item)?;
                    (n, n)
                }
            };
            if lo > hi {
                return Err(SchedError::invalid(key, text, format!("range {item:?} is reversed")));
            }
            set.extend(lo..=hi);
        }
        Ok(CpuList(set))
    }

    /// The CPU numbers, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// How many CPUs the list names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the list names no CPU.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<u32> for CpuList {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        CpuList(iter.into_iter().collect())
    }
}

fn cpu_number(key: &'static str, whole: &str, item: &str) -> Result<u32, SchedError> {
    let item = item.trim();
    if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SchedError::invalid(key, whole, format!("{item:?} is not a CPU number")));
    }
    match item.parse::<u32>() {
        Ok(n) if n <= MAX_CPU => Ok(n),
        _ => Err(SchedError::invalid(key, whole, format!("CPU {item} is above {MAX_CPU}"))),
    }
}

/// The canonical form: ascending, ranges of three or more as `a-b`, pairs as `a-b` too.
impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut iter = self.0.iter().copied().peekable();
        while let Some(lo) = iter.next() {
            let mut hi = lo;
            while iter.peek() == Some(&(hi + 1)) {
                hi += 1;
                iter.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if lo == hi { write!(f, "{lo}")? } else { write!(f, "{lo}-{hi}")? }
        }
        Ok(())
    }
}

/// `CPUMASK`: which CPUs the VE may run on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CpuMask {
    /// Every CPU the parent cgroup allows (`all`).
    All,
    /// `auto`: OpenVZ derives the CPUs from `NODEMASK`. This crate has no NUMA node setting,
    /// so `auto` behaves as [`CpuMask::All`]; vz-ctl refuses `auto` without `--nodemask`
    /// as vzctl does.
    Auto,
    /// An explicit, non-empty list (`0-2,7`).
    List(CpuList),
}

impl CpuMask {
    /// The list to write, or `None` for "every CPU of the parent".
    pub fn list(&self) -> Option<&CpuList> {
        match self {
            CpuMask::List(list) => Some(list),
            CpuMask::All | CpuMask::Auto => None,
        }
    }
}

impl FromStr for CpuMask {
    type Err = SchedError;

    fn from_str(s: &str) -> Result<Self, SchedError> {
        match s.trim() {
            "all" => Ok(CpuMask::All),
            "auto" => Ok(CpuMask::Auto),
            text => {
                let list = CpuList::parse("CPUMASK", text)?;
                if list.is_empty() {
                    return Err(SchedError::invalid("CPUMASK", s, "names no CPU"));
                }
                Ok(CpuMask::List(list))
            }
        }
    }
}

impl fmt::Display for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuMask::All => f.write_str("all"),
            CpuMask::Auto => f.write_str("auto"),
            CpuMask::List(list) => list.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lists_parse_and_print_canonically() {
        let list = CpuList::parse("CPUMASK", "7,0-2, 3").unwrap();
        assert_eq!(list.iter().collect::<Vec<_>>(), vec![0, 1, 2, 3, 7]);
        assert_eq!(list.to_string(), "0-3,7");
        assert_eq!(CpuList::parse("X", "5-6").unwrap().to_string(), "5-6");
        assert_eq!(CpuList::parse("X", "\n").unwrap().to_string(), "");
        assert_eq!("all".parse::<CpuMask>().unwrap(), CpuMask::All);
        assert_eq!("auto".parse::<CpuMask>().unwrap(), CpuMask::Auto);
        assert_eq!("0-2,7".parse::<CpuMask>().unwrap().to_string(), "0-2,7");
    }

    #[test]
    fn bad_lists_are_refused_naming_key_and_value() {
        for bad in ["", "x", "1-", "-1", "3-1", "1,,2", "9000", "1.5", "0-99999999999"] {
            let err = bad.parse::<CpuMask>().unwrap_err().to_string();
            assert!(err.starts_with("invalid CPUMASK value"), "{bad}: {err}");
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    proptest! {
        #[test]
        fn list_round_trips(cpus in proptest::collection::btree_set(0u32..=MAX_CPU, 1..40)) {
            let list: CpuList = cpus.iter().copied().collect();
            let text = list.to_string();
            let mask: CpuMask = text.parse().unwrap();
            prop_assert_eq!(mask.list(), Some(&list));
            prop_assert_eq!(mask.to_string(), text);
        }
    }
}
