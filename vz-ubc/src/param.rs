//! A parameter's value, `barrier:limit`, in OpenVZ's text syntax (reference §3.2): decimal
//! numbers with an optional fraction, the binary suffixes `T G M K P B` (`P` = page size),
//! `unlimited`, and the saved form written back to `CTID.conf`.

use crate::error::{Result, UbcError};
use crate::resource::{Resource, UbUnit};

/// `LONG_MAX` on 64-bit Linux: OpenVZ's "unlimited".
pub const UNLIMITED: u64 = i64::MAX.unsigned_abs();

/// A barrier and a limit, in the parameter's unit (bytes, pages or items).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BarrierLimit {
    /// The soft bound (for most parameters equal to the limit).
    pub barrier: u64,
    /// The hard bound; [`UNLIMITED`] for none.
    pub limit: u64,
}

impl BarrierLimit {
    /// Both bounds [`UNLIMITED`].
    pub const UNLIMITED: BarrierLimit = BarrierLimit { barrier: UNLIMITED, limit: UNLIMITED };

    /// A value with barrier and limit.
    pub fn new(barrier: u64, limit: u64) -> Self {
        BarrierLimit { barrier, limit }
    }

    /// The same value for barrier and limit.
    pub fn both(value: u64) -> Self {
        BarrierLimit { barrier: value, limit: value }
    }

    /// Parses `value` or `barrier:limit` for `resource`, with the host's page size.
    ///
    /// # Errors
    /// [`UbcError::InvalidValue`] naming the parameter's key and the text: not a number, an
    /// unknown suffix, a suffix on a `num*` parameter, more than two parts.
    pub fn parse(resource: Resource, text: &str) -> Result<Self> {
        Self::parse_with_page_size(resource, text, crate::page_size())
    }

    /// [`parse`](Self::parse) with an explicit page size (for tests and foreign hosts).
    ///
    /// # Errors
    /// As [`parse`](Self::parse).
    pub fn parse_with_page_size(resource: Resource, text: &str, page_size: u64) -> Result<Self> {
        let text = text.trim();
        let mut parts = text.split(':');
        let first = parts.next().unwrap_or_default();
        let second = parts.next();
        if parts.next().is_some() {
            return Err(UbcError::invalid(resource.key(), text, "expected value or barrier:limit"));
        }
        let barrier = parse_one(resource, text, first, page_size)?;
        let limit = match second {
            Some(s) => parse_one(resource, text, s, page_size)?,
            None => barrier,
        };
        Ok(BarrierLimit { barrier, limit })
    }

    /// Whether the limit is [`UNLIMITED`].
    pub fn limit_unlimited(&self) -> bool {
        self.limit >= UNLIMITED
    }

    /// Whether the barrier is [`UNLIMITED`].
    pub fn barrier_unlimited(&self) -> bool {
        self.barrier >= UNLIMITED
    }
}

/// The VSwap shortcuts `--ram`/`--swap`: barrier 0, limit `ceil(bytes / page size)` pages.
pub fn vswap_pages(bytes: u64) -> BarrierLimit {
    let page = crate::page_size();
    BarrierLimit { barrier: 0, limit: bytes.div_ceil(page).min(UNLIMITED) }
}

fn number(v: u64) -> String {
    if v >= UNLIMITED { "unlimited".to_owned() } else { v.to_string() }
}

impl std::fmt::Display for BarrierLimit {
    /// The form vzctl saves: `bar:lim`, or `bar` when both are equal, `unlimited` for LONG_MAX.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if number(self.barrier) == number(self.limit) {
            f.write_str(&number(self.barrier))
        } else {
            write!(f, "{}:{}", number(self.barrier), number(self.limit))
        }
    }
}

fn multiplier(suffix: char, page_size: u64) -> Option<u64> {
    Some(match suffix {
        'T' | 't' => 1 << 40,
        'G' | 'g' => 1 << 30,
        'M' | 'm' => 1 << 20,
        'K' | 'k' => 1 << 10,
        'P' | 'p' => page_size,
        'B' | 'b' => 1,
        _ => return None,
    })
}

/// One side of a value. Exact rational arithmetic: `digits × mul / (10^frac × divisor)`,
/// rounded down like vzctl; values above LONG_MAX are truncated to it with a warning.
fn parse_one(resource: Resource, whole: &str, part: &str, page_size: u64) -> Result<u64> {
    let key = resource.key();
    if part == "unlimited" {
        return Ok(UNLIMITED);
    }
    if part.is_empty() {
        return Err(UbcError::invalid(key, whole, "empty value"));
    }
    let (num, suffix) = match part.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&part[..i], Some(c)),
        _ => (part, None),
    };
    let (mul, divisor) = match suffix {
        None => (1u128, 1u128),
        Some(_) if resource.unit() == UbUnit::Items => {
            return Err(UbcError::invalid(
                key,
                whole,
                "suffixes are not allowed for num* parameters",
            ));
        }
        Some(c) => {
            let mul = multiplier(c, page_size).ok_or_else(|| {
                UbcError::invalid(
                    key,
                    whole,
                    format!("unknown suffix {c:?} (use T, G, M, K, P or B)"),
                )
            })?;
            let divisor = if resource.unit() == UbUnit::Pages { page_size } else { 1 };
            (u128::from(mul), u128::from(divisor.max(1)))
        }
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(UbcError::invalid(key, whole, "not a number"));
    }
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let frac_len = u32::try_from(frac.len()).unwrap_or(u32::MAX);
    let truncated = || {
        tracing::warn!(key, value = whole, "value exceeds LONG_MAX, truncated to LONG_MAX");
        Ok(UNLIMITED)
    };
    if digits.len() > 30 || frac_len > 30 {
        // More digits than u128 arithmetic holds; such a value is far above LONG_MAX unless it
        // is mostly fraction, which vzctl's long double would not represent either.
        return if digits.len().saturating_sub(frac.len()) > 19 {
            truncated()
        } else {
            Err(UbcError::invalid(key, whole, "too many digits"))
        };
    }
    let value: u128 = if digits.is_empty() { 0 } else { digits.parse().unwrap_or(u128::MAX) };
    let scale = 10u128.pow(frac_len);
    let result = value.checked_mul(mul).map(|v| v / (scale * divisor));
    match result {
        Some(v) if v <= u128::from(UNLIMITED) => Ok(u64::try_from(v).unwrap_or(UNLIMITED)),
        _ => truncated(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(r: Resource, s: &str) -> BarrierLimit {
        BarrierLimit::parse_with_page_size(r, s, 4096).unwrap()
    }

    #[test]
    fn reference_examples() {
        assert_eq!(p(Resource::PrivvmPages, "5M:6M"), BarrierLimit::new(1280, 1536));
        assert_eq!(p(Resource::KmemSize, "10M"), BarrierLimit::both(10_485_760));
        assert_eq!(p(Resource::PhysPages, "0:256M"), BarrierLimit::new(0, 65536));
        assert_eq!(p(Resource::KmemSize, "2.2G"), BarrierLimit::both(2_362_232_012));
        assert_eq!(p(Resource::NumProc, "240:240"), BarrierLimit::both(240));
        assert_eq!(p(Resource::NumProc, "unlimited"), BarrierLimit::UNLIMITED);
        assert_eq!(p(Resource::SwapPages, "0:1P"), BarrierLimit::new(0, 1));
        assert_eq!(p(Resource::KmemSize, "4p"), BarrierLimit::both(16384));
        assert_eq!(p(Resource::KmemSize, "100b"), BarrierLimit::both(100));
        assert_eq!(p(Resource::TcpSndBuf, "1.5K:unlimited"), BarrierLimit::new(1536, UNLIMITED));
        assert_eq!(p(Resource::PhysPages, "1000"), BarrierLimit::both(1000));
    }

    #[test]
    fn huge_values_are_truncated_to_long_max() {
        assert_eq!(p(Resource::KmemSize, "9223372036854775808"), BarrierLimit::UNLIMITED);
        assert_eq!(p(Resource::KmemSize, "100000000T"), BarrierLimit::UNLIMITED);
        assert_eq!(p(Resource::KmemSize, "9223372036854775807"), BarrierLimit::UNLIMITED);
        assert_eq!(p(Resource::KmemSize, &"9".repeat(40)), BarrierLimit::UNLIMITED);
    }

    #[test]
    fn bad_values_name_the_key_and_the_value() {
        for (r, s) in [
            (Resource::NumProc, "10K"),
            (Resource::NumFile, "1M:2M"),
            (Resource::AvNumProc, "1G"),
            (Resource::KmemSize, "10X"),
            (Resource::KmemSize, "abc"),
            (Resource::KmemSize, "1:2:3"),
            (Resource::KmemSize, ""),
            (Resource::KmemSize, "5:"),
            (Resource::KmemSize, "-5"),
            (Resource::KmemSize, "."),
            (Resource::KmemSize, "1.2.3"),
            (Resource::KmemSize, "10MB"),
            (Resource::KmemSize, "Unlimited"),
        ] {
            let err = BarrierLimit::parse_with_page_size(r, s, 4096).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(r.key()) && msg.contains(&format!("{s:?}")), "{msg}");
        }
        let msg = BarrierLimit::parse(Resource::NumProc, "10K").unwrap_err().to_string();
        assert!(msg.contains("suffixes are not allowed"), "{msg}");
    }

    #[test]
    fn saved_form() {
        assert_eq!(BarrierLimit::both(240).to_string(), "240");
        assert_eq!(BarrierLimit::new(0, UNLIMITED).to_string(), "0:unlimited");
        assert_eq!(BarrierLimit::UNLIMITED.to_string(), "unlimited");
        assert_eq!(BarrierLimit::new(188, 206).to_string(), "188:206");
        assert_eq!(BarrierLimit::new(u64::MAX, UNLIMITED).to_string(), "unlimited");
    }

    #[test]
    fn vswap_shortcut_rounds_up() {
        let page = crate::page_size();
        assert_eq!(vswap_pages(256 << 20), BarrierLimit::new(0, (256 << 20) / page));
        assert_eq!(vswap_pages(1), BarrierLimit::new(0, 1));
        assert_eq!(vswap_pages(0), BarrierLimit::new(0, 0));
    }

    fn any_side() -> impl Strategy<Value = u64> {
        prop_oneof![0..=UNLIMITED, Just(UNLIMITED), 0u64..100_000]
    }

    proptest! {
        #[test]
        fn display_round_trips(b in any_side(), l in any_side(), r in 0usize..22) {
            let r = Resource::ALL[r];
            let v = BarrierLimit::new(b, l);
            prop_assert_eq!(BarrierLimit::parse_with_page_size(r, &v.to_string(), 4096).unwrap(), v);
        }

        #[test]
        fn suffixes_scale_exactly(n in 0u64..1_000_000, s in 0usize..5) {
            let (suffix, mul) = [("K", 1u64 << 10), ("M", 1 << 20), ("G", 1 << 30), ("P", 4096), ("B", 1)][s];
            let bytes = p(Resource::KmemSize, &format!("{n}{suffix}"));
            prop_assert_eq!(bytes, BarrierLimit::both(n * mul));
            let pages = p(Resource::ShmPages, &format!("{n}{suffix}"));
            prop_assert_eq!(pages, BarrierLimit::both(n * mul / 4096));
        }

        #[test]
        fn fractions_round_down(n in 0u64..10_000, f in 0u64..10) {
            let v = p(Resource::DcacheSize, &format!("{n}.{f}K"));
            prop_assert_eq!(v.barrier, (n * 10 + f) * 1024 / 10);
        }

        #[test]
        fn garbage_never_panics(s in "\\PC{0,24}") {
            let _ = BarrierLimit::parse_with_page_size(Resource::KmemSize, &s, 4096);
            let _ = BarrierLimit::parse_with_page_size(Resource::NumProc, &s, 4096);
        }
    }
}
