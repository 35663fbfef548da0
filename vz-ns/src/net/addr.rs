//! A VE's IP address, `IP[/mask]` as in `IP_ADDRESS` and `--ipadd`, and the list form.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::{NsError, Result};

/// One address of a VE: `IP_ADDRESS="192.0.2.10 2001:db8::10/64"` in `CTID.conf`,
/// `--ipadd IP[/mask]` for `vzctl set`. The mask is kept only if it was given, so the text
/// form round-trips the way vzctl writes it; without one the address is a host address
/// (/32 or /128), which is what venet uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VeAddr {
    ip: IpAddr,
    mask: Option<u8>,
}

impl VeAddr {
    /// An address with an optional prefix length.
    ///
    /// # Errors
    /// [`NsError::BadAddress`] if the mask is longer than the family allows (32 or 128).
    pub fn new(ip: IpAddr, mask: Option<u8>) -> Result<Self> {
        if let Some(m) = mask
            && m > max_prefix(ip)
        {
            return Err(NsError::BadAddress {
                value: format!("{ip}/{m}"),
                reason: format!("mask must be 0-{}", max_prefix(ip)),
            });
        }
        Ok(VeAddr { ip, mask })
    }

    /// The address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The mask as given, if any.
    pub fn mask(&self) -> Option<u8> {
        self.mask
    }

    /// The prefix length put on the VE's device: the mask, or 32 / 128 without one.
    pub fn prefix_len(&self) -> u8 {
        self.mask.unwrap_or(max_prefix(self.ip))
    }

    /// Whether this is the unspecified address (`0.0.0.0`, `::`), which vzctl ignores.
    pub fn is_unspecified(&self) -> bool {
        self.ip.is_unspecified()
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

impl FromStr for VeAddr {
    type Err = NsError;

    /// Parses `IP[/mask]`; the mask is a prefix length (0–32, 0–128).
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| NsError::BadAddress { value: s.to_owned(), reason: reason.into() };
        let (ip, mask) = match s.split_once('/') {
            Some((ip, mask)) => (ip, Some(mask)),
            None => (s, None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| bad("not an IPv4 or IPv6 address"))?;
        let mask = match mask {
            None => None,
            Some(m) if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) || m.len() > 3 => {
                return Err(bad("the mask is not a prefix length"));
            }
            Some(m) => Some(m.parse::<u8>().map_err(|_| bad("the mask is not a prefix length"))?),
        };
        VeAddr::new(ip, mask).map_err(|_| bad(&format!("mask must be 0-{}", max_prefix(ip))))
    }
}

impl fmt::Display for VeAddr {
    /// The canonical form (std's, which is `inet_ntop`'s), with `/mask` if one was given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mask {
            Some(m) => write!(f, "{}/{m}", self.ip),
            None => write!(f, "{}", self.ip),
        }
    }
}

/// Parses an `IP_ADDRESS` value: addresses separated by blanks, the unspecified ones
/// (`0.0.0.0`, `::`, `::0`) dropped as vzctl does, duplicates (same IP) kept once, the last
/// mask winning (vzctl: re-adding an IP with a new mask replaces it).
///
/// # Errors
/// [`NsError::BadAddress`] naming the first bad entry.
pub fn parse_address_list(value: &str) -> Result<Vec<VeAddr>> {
    let mut out: Vec<VeAddr> = Vec::new();
    for word in value.split_whitespace() {
        let addr: VeAddr = word.parse()?;
        if addr.is_unspecified() {
            continue;
        }
        match out.iter_mut().find(|a| a.ip == addr.ip) {
            Some(old) => *old = addr,
            None => out.push(addr),
        }
    }
    Ok(out)
}

/// The `IP_ADDRESS` text of a list (blank-separated canonical forms).
pub fn format_address_list(addrs: &[VeAddr]) -> String {
    addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonical_forms() {
        assert_eq!("192.0.2.10".parse::<VeAddr>().unwrap().to_string(), "192.0.2.10");
        assert_eq!("2001:DB8:0:0::10/64".parse::<VeAddr>().unwrap().to_string(), "2001:db8::10/64");
        let a: VeAddr = "192.0.2.1/24".parse().unwrap();
        assert_eq!((a.mask(), a.prefix_len()), (Some(24), 24));
        assert_eq!("2001:db8::1".parse::<VeAddr>().unwrap().prefix_len(), 128);
        assert_eq!("192.0.2.1".parse::<VeAddr>().unwrap().prefix_len(), 32);
    }

    #[test]
    fn bad_addresses_name_the_value() {
        for bad in
            ["", "1.2.3", "192.0.2.1/33", "2001:db8::1/129", "192.0.2.1/", "a/b", "1.2.3.4/+1"]
        {
            let e = bad.parse::<VeAddr>().unwrap_err();
            assert!(matches!(&e, NsError::BadAddress { value, .. } if value == bad), "{bad}: {e}");
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn list_drops_unspecified_and_merges_masks() {
        let l = parse_address_list(" 0.0.0.0 192.0.2.1 :: ::0  2001:db8::1 192.0.2.1/24 ").unwrap();
        assert_eq!(format_address_list(&l), "192.0.2.1/24 2001:db8::1");
        assert!(parse_address_list("192.0.2.1 nope").is_err());
        assert!(parse_address_list("").unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn text_round_trip(ip in any::<IpAddr>(), mask in proptest::option::of(0u8..=128)) {
            let mask = mask.map(|m| m.min(max_prefix(ip)));
            let a = VeAddr::new(ip, mask).unwrap();
            let back: VeAddr = a.to_string().parse().unwrap();
            prop_assert_eq!(a, back);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<VeAddr>();
        }
    }
}
