//! A set of beancounter values (what `CTID.conf` holds), VSwap detection and the implicit
//! VSwap values vzctl fills in (reference §3.5).

use std::collections::BTreeMap;

use crate::error::Result;
use crate::param::{BarrierLimit, UNLIMITED};
use crate::resource::Resource;

/// Beancounter values by parameter; parameters not in the set are not touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UbcSet {
    values: BTreeMap<Resource, BarrierLimit>,
}

impl UbcSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one parameter.
    pub fn set(&mut self, resource: Resource, value: BarrierLimit) {
        self.values.insert(resource, value);
    }

    /// Removes one parameter.
    pub fn remove(&mut self, resource: Resource) -> Option<BarrierLimit> {
        self.values.remove(&resource)
    }

    /// The value of one parameter, if set.
    pub fn get(&self, resource: Resource) -> Option<BarrierLimit> {
        self.values.get(&resource).copied()
    }

    /// The parameters that are set, in kernel index order.
    pub fn iter(&self) -> impl Iterator<Item = (Resource, BarrierLimit)> + '_ {
        self.values.iter().map(|(r, v)| (*r, *v))
    }

    /// Number of parameters set.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no parameter is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Builds a set from the `(KEY, value)` pairs of a config file. Keys that are not
    /// beancounter parameters belong to other subsystems and are ignored; a repeated key keeps
    /// its last value (as vzctl does).
    ///
    /// # Errors
    /// [`UbcError::InvalidValue`](crate::UbcError::InvalidValue) naming the first bad key and value.
    pub fn from_config_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Result<UbcSet> {
        let mut set = UbcSet::new();
        for (key, value) in pairs {
            let Ok(resource) = Resource::from_name(key.as_ref()) else { continue };
            if key.as_ref() != resource.key() {
                continue;
            }
            set.set(resource, BarrierLimit::parse(resource, value.as_ref())?);
        }
        Ok(set)
    }

    /// The `(KEY, saved value)` pairs to write into a config file.
    pub fn to_config_pairs(&self) -> Vec<(&'static str, String)> {
        self.iter().map(|(r, v)| (r.key(), v.to_string())).collect()
    }

    /// Whether this is a VSwap config: `PHYSPAGES` is set and its limit is neither LONG_MAX
    /// nor INT_MAX (vzctl's `is_vswap_config`).
    pub fn is_vswap(&self) -> bool {
        self.get(Resource::PhysPages)
            .is_some_and(|v| v.limit < UNLIMITED && v.limit != u64::from(i32::MAX.unsigned_abs()))
    }

    /// Fills the values vzctl derives for a VSwap config when they are missing
    /// (`fill_vswap_ub`): `lockedpages = ram`, `oomguarpages = ram:unlimited`,
    /// `vmguarpages = (ram+swap):unlimited`, `privvmpages = (ram+swap) × vm_overcommit`, or
    /// unlimited when `vm_overcommit` is `None` or 0. Does nothing for a non-VSwap set.
    pub fn fill_vswap_defaults(&mut self, vm_overcommit: Option<f64>) {
        if !self.is_vswap() {
            return;
        }
        let ram = self.get(Resource::PhysPages).map_or(0, |v| v.limit);
        let swap = self.get(Resource::SwapPages).map_or(0, |v| v.limit.min(UNLIMITED));
        let total = ram.saturating_add(swap).min(UNLIMITED);
        let privvm = match vm_overcommit {
            Some(f) if f > 0.0 => scale(total, f),
            _ => UNLIMITED,
        };
        let defaults = [
            (Resource::LockedPages, BarrierLimit::both(ram)),
            (Resource::OomGuarPages, BarrierLimit::new(ram, UNLIMITED)),
            (Resource::VmGuarPages, BarrierLimit::new(total, UNLIMITED)),
            (Resource::PrivvmPages, BarrierLimit::both(privvm)),
        ];
        for (resource, value) in defaults {
            self.values.entry(resource).or_insert(value);
        }
    }
}

/// `ceil(pages × factor)`, capped at LONG_MAX, in floating point like vzctl.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "the product is positive and checked against LONG_MAX before the cast"
)]
fn scale(pages: u64, factor: f64) -> u64 {
    let v = (pages as f64 * factor).ceil();
    if v >= UNLIMITED as f64 { UNLIMITED } else { v as u64 }
}

impl FromIterator<(Resource, BarrierLimit)> for UbcSet {
    fn from_iter<T: IntoIterator<Item = (Resource, BarrierLimit)>>(iter: T) -> Self {
        UbcSet { values: iter.into_iter().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_pairs_parse_and_ignore_other_keys() {
        let set = UbcSet::from_config_pairs(&[
            ("NUMPROC", "240:240"),
            ("HOSTNAME", "ct.example"),
            ("KMEMSIZE", "14372700:14790164"),
            ("NUMPROC", "100"),
        ])
        .unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.get(Resource::NumProc), Some(BarrierLimit::both(100)));
        assert_eq!(set.get(Resource::KmemSize), Some(BarrierLimit::new(14_372_700, 14_790_164)));
        assert_eq!(
            set.to_config_pairs(),
            vec![("KMEMSIZE", "14372700:14790164".to_owned()), ("NUMPROC", "100".to_owned())]
        );
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let err = UbcSet::from_config_pairs(&[("NUMFILE", "9K")]).unwrap_err().to_string();
        assert!(err.contains("NUMFILE") && err.contains("9K"), "{err}");
    }

    #[test]
    fn vswap_detection_and_defaults() {
        let page = crate::page_size();
        let mut set =
            UbcSet::from_config_pairs(&[("PHYSPAGES", "0:256M"), ("SWAPPAGES", "0:512M")]).unwrap();
        assert!(set.is_vswap());
        let ram = (256 << 20) / page;
        let swap = (512 << 20) / page;
        set.fill_vswap_defaults(Some(1.5));
        assert_eq!(set.get(Resource::LockedPages), Some(BarrierLimit::both(ram)));
        assert_eq!(set.get(Resource::OomGuarPages), Some(BarrierLimit::new(ram, UNLIMITED)));
        assert_eq!(set.get(Resource::VmGuarPages), Some(BarrierLimit::new(ram + swap, UNLIMITED)));
        assert_eq!(set.get(Resource::PrivvmPages), Some(BarrierLimit::both((ram + swap) * 3 / 2)));

        let mut set =
            UbcSet::from_config_pairs(&[("PHYSPAGES", "0:1G"), ("PRIVVMPAGES", "7")]).unwrap();
        set.fill_vswap_defaults(None);
        assert_eq!(set.get(Resource::PrivvmPages), Some(BarrierLimit::both(7)));

        for old in ["0:unlimited", "0:2147483647"] {
            let mut set = UbcSet::from_config_pairs(&[("PHYSPAGES", old)]).unwrap();
            assert!(!set.is_vswap());
            set.fill_vswap_defaults(None);
            assert_eq!(set.len(), 1);
        }
    }
}
