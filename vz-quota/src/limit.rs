//! The settings of a private area and their text forms: VE_LAYOUT, DISKSPACE, DISKINODES.
//!
//! Values follow vzctl's parser (reference §3.2): `soft[:hard]`, a single value sets both;
//! each side a decimal number, optionally with a fraction (`2.2G`), and an optional one-letter
//! binary suffix `T G M K P B` (either case; `P` is the page size), or `unlimited`
//! (= `LONG_MAX`). Suffixed values are converted to the parameter's unit by dividing: DISKSPACE
//! by 1024 (it is kept in 1K blocks), DISKINODES by 1. Fractions are truncated, as vzctl does.

use std::fmt;
use std::str::FromStr;

use crate::error::QuotaError;

/// `unlimited`: vzctl's `LONG_MAX` on 64-bit.
pub const UNLIMITED: u64 = i64::MAX as u64;

/// How a VE's files are kept (`VE_LAYOUT`, `--layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layout {
    /// A plain directory, bind-mounted at the VE root. Its limits are held by the host file
    /// system's project quota where that file system has it; elsewhere usage is accounted and
    /// nothing is enforced.
    Simfs,
    /// An ext4 filesystem in a sparse file on a loop device: DISKSPACE's hard limit is its
    /// size, and the kernel enforces it. Shown as `ploop`, the name OpenVZ users know.
    Image,
}

impl FromStr for Layout {
    type Err = QuotaError;

    fn from_str(s: &str) -> Result<Self, QuotaError> {
        match s.trim() {
            "simfs" => Ok(Layout::Simfs),
            "ploop" | "ploop:raw" | "ploop:plain" | "ploop:expanded" | "image" => Ok(Layout::Image),
            other => Err(QuotaError::BadValue {
                key: "VE_LAYOUT",
                value: other.to_owned(),
                reason: "expected simfs, ploop[:expanded|plain|raw] or image".to_owned(),
            }),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Simfs => "simfs",
            Layout::Image => "ploop",
        })
    }
}

/// DISKSPACE: soft and hard limits in 1K blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DiskSpace {
    /// Soft limit, KB: may be exceeded for the grace period (QUOTATIME).
    pub soft_kb: u64,
    /// Hard limit, KB: never exceeded; the size of an image.
    pub hard_kb: u64,
}

/// DISKINODES: soft and hard limits on the number of inodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DiskInodes {
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

impl FromStr for DiskSpace {
    type Err = QuotaError;

    fn from_str(s: &str) -> Result<Self, QuotaError> {
        let (soft_kb, hard_kb) = parse_pair("DISKSPACE", s, 1024)?;
        Ok(DiskSpace { soft_kb, hard_kb })
    }
}

impl FromStr for DiskInodes {
    type Err = QuotaError;

    fn from_str(s: &str) -> Result<Self, QuotaError> {
        let (soft, hard) = parse_pair("DISKINODES", s, 1)?;
        Ok(DiskInodes { soft, hard })
    }
}

impl fmt::Display for DiskSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.soft_kb, self.hard_kb)
    }
}

impl fmt::Display for DiskInodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.soft, self.hard)
    }
}

/// Parses `soft[:hard]` in the unit obtained by dividing suffixed byte counts by `div`.
fn parse_pair(key: &'static str, text: &str, div: u64) -> Result<(u64, u64), QuotaError> {
    let bad = |reason: &str| QuotaError::BadValue {
        key,
        value: text.to_owned(),
        reason: reason.to_owned(),
    };
    let mut parts = text.trim().split(':');
    let soft = parse_one(parts.next().unwrap_or_default(), div).map_err(|r| bad(&r))?;
    let hard = match parts.next() {
        Some(h) => parse_one(h, div).map_err(|r| bad(&r))?,
        None => soft,
    };
    if parts.next().is_some() {
        return Err(bad("expected soft[:hard]"));
    }
    if soft > hard {
        return Err(bad(&format!("soft limit {soft} exceeds hard limit {hard}")));
    }
    Ok((soft, hard))
}

/// One side of a pair: number with optional fraction and suffix, or `unlimited`.
fn parse_one(text: &str, div: u64) -> Result<u64, String> {
    let text = text.trim();
    if text == "unlimited" {
        return Ok(UNLIMITED);
    }
    let (number, mul) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mul = match c.to_ascii_uppercase() {
                'T' => 1u128 << 40,
                'G' => 1 << 30,
                'M' => 1 << 20,
                'K' => 1 << 10,
                'B' => 1,
                'P' => u128::from(page_size()),
                _ => return Err(format!("unknown suffix {c:?} (use T, G, M, K, P or B)")),
            };
            (&text[..i], Some(mul))
        }
        _ => (text, None),
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || (!frac.is_empty() && !digits(frac)) || number.ends_with('.') {
        return Err(
            "expected a number, optionally with a fraction and a suffix, or unlimited".to_owned()
        );
    }
    // Exact arithmetic in u128: (int.frac × mul) / div, truncated like vzctl's double → long.
    let frac = &frac[..frac.len().min(18)];
    let scale = 10u128.pow(u32::try_from(frac.len()).unwrap_or(18));
    let too_big = || "value too large".to_owned();
    let int: u128 = int.parse().map_err(|_| too_big())?;
    let frac_v: u128 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| too_big())? };
    let scaled = int.checked_mul(scale).and_then(|v| v.checked_add(frac_v)).ok_or_else(too_big)?;
    let value = match mul {
        Some(mul) => scaled.checked_mul(mul).ok_or_else(too_big)? / (scale * u128::from(div)),
        None => scaled / scale,
    };
    if value > u128::from(UNLIMITED) {
        tracing::warn!(value = %text, "value exceeds LONG_MAX, truncated to LONG_MAX");
        return Ok(UNLIMITED);
    }
    u64::try_from(value).map_err(|_| too_big())
}

fn page_size() -> u64 {
    procfs::page_size()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_parse_and_display() {
        assert_eq!("simfs".parse::<Layout>().unwrap(), Layout::Simfs);
        for s in ["ploop", "ploop:raw", "ploop:plain", "ploop:expanded", "image"] {
            assert_eq!(s.parse::<Layout>().unwrap(), Layout::Image, "{s}");
        }
        assert_eq!(Layout::Image.to_string(), "ploop");
        assert_eq!(Layout::Simfs.to_string(), "simfs");
        let err = "zfs".parse::<Layout>().unwrap_err().to_string();
        assert!(err.contains("VE_LAYOUT") && err.contains("zfs"), "{err}");
    }

    #[test]
    fn diskspace_follows_the_reference_example() {
        let d: DiskSpace = "2G:2.2G".parse().unwrap();
        assert_eq!((d.soft_kb, d.hard_kb), (2_097_152, 2_306_867));
        assert_eq!(d.to_string(), "2097152:2306867");
    }

    #[test]
    fn diskspace_units_and_forms() {
        let p = |s: &str| s.parse::<DiskSpace>().unwrap();
        assert_eq!(p("1000"), DiskSpace { soft_kb: 1000, hard_kb: 1000 });
        assert_eq!(p("1M:2m").hard_kb, 2048);
        assert_eq!(p("1T").soft_kb, 1 << 30);
        assert_eq!(p("10k").soft_kb, 10);
        assert_eq!(p("4096B").soft_kb, 4);
        assert_eq!(p("1.5").soft_kb, 1);
        assert_eq!(p("0.5K").soft_kb, 0);
        assert_eq!(p(" 100:unlimited ").hard_kb, UNLIMITED);
        assert_eq!(p("unlimited").to_string(), "9223372036854775807:9223372036854775807");
        assert_eq!(p("99999999999999999999T").hard_kb, UNLIMITED);
    }

    #[test]
    fn diskinodes_take_suffixes_as_plain_multiples() {
        let d: DiskInodes = "200000:220000".parse().unwrap();
        assert_eq!((d.soft, d.hard), (200_000, 220_000));
        assert_eq!("1K".parse::<DiskInodes>().unwrap().hard, 1024);
        assert_eq!(d.to_string(), "200000:220000");
    }

    #[test]
    fn bad_values_name_key_and_value() {
        for bad in ["", "abc", "1:2:3", "-5", "1.", ".5", "5X", "10:5", "1:", "1e3"] {
            let err = bad.parse::<DiskSpace>().unwrap_err().to_string();
            assert!(err.contains("DISKSPACE"), "{bad}: {err}");
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        let err = "x".parse::<DiskInodes>().unwrap_err().to_string();
        assert!(err.contains("DISKINODES"), "{err}");
    }

    #[test]
    fn display_round_trips() {
        for s in ["0:0", "1:2", "2097152:2306867", "5:9223372036854775807"] {
            assert_eq!(s.parse::<DiskSpace>().unwrap().to_string(), s);
            assert_eq!(s.parse::<DiskInodes>().unwrap().to_string(), s);
        }
    }
}
