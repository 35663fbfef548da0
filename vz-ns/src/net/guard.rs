//! What a VE may send as its source on the host end of its pair, beyond IPv4's reverse
//! path filter: a venet VE's IPv6 source must be one of its addresses (or link-local, or
//! unspecified for duplicate address detection), and a veth VE with `mac_filter=on` may send
//! only from its own MAC. Each guard is an nftables table of the netdev family bound to the
//! host end (`vz_<ifname>`, ingress hook, before the host routes or bridges the frame),
//! replaced as a whole in one transaction by `nft -f -`; the kernel has no per-device switch
//! for either. A venet VE without IPv6 addresses gets no table: IPv6 is off on its host end.

use std::io::Write;
use std::net::Ipv6Addr;
use std::process::{Command, Stdio};

use super::write_sysctl;
use crate::error::{NsError, Result};

/// The guard table's name for the host end `ifname` (nft identifiers: letters, digits, `_`).
fn table(ifname: &str) -> String {
    let safe: String =
        ifname.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("vz_{safe}")
}

/// Lets the host end of a venet take only IPv6 packets from `allowed` (the VE's addresses),
/// link-local or unspecified sources; with none allowed, IPv6 is off on it.
///
/// # Errors
/// [`NsError::Io`] when the sysctl or nft fails (nft's message in the error).
pub(crate) fn venet_ipv6(ifname: &str, allowed: &[Ipv6Addr]) -> Result<()> {
    let sysctl = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    if allowed.is_empty() {
        write_sysctl(&sysctl, "1")?;
        return remove(ifname);
    }
    let sources: Vec<String> = ["fe80::/10".to_owned(), "::/128".to_owned()]
        .into_iter()
        .chain(allowed.iter().map(Ipv6Addr::to_string))
        .collect();
    let rule = format!("ip6 saddr != {{ {} }} drop", sources.join(", "));
    // The guard before IPv6 comes on: no moment without it.
    replace(ifname, &rule)?;
    write_sysctl(&sysctl, "0")
}

/// Lets the host end of a bridged veth take only frames from `mac` (OpenVZ's
/// `mac_filter=on`).
///
/// # Errors
/// [`NsError::Io`] when nft fails.
pub(crate) fn veth_mac(ifname: &str, mac: &str) -> Result<()> {
    replace(ifname, &format!("ether saddr != {mac} drop"))
}

/// Removes the guard of `ifname`, if any.
///
/// # Errors
/// [`NsError::Io`] when nft fails for another reason than a missing table.
pub(crate) fn remove(ifname: &str) -> Result<()> {
    let t = table(ifname);
    // Declaring the table first makes the delete succeed whether it existed or not.
    nft(&format!("table netdev {t} {{}}\ndelete table netdev {t}\n"))
}

/// Replaces the guard table of `ifname` by one whose ingress chain holds `rule`.
fn replace(ifname: &str, rule: &str) -> Result<()> {
    let t = table(ifname);
    nft(&format!(
        "table netdev {t} {{}}\ndelete table netdev {t}\n\
         table netdev {t} {{\n  chain source {{\n    \
         type filter hook ingress device \"{ifname}\" priority -500; policy accept;\n    \
         {rule}\n  }}\n}}\n"
    ))
}

fn nft(script: &str) -> Result<()> {
    let fail = |e: std::io::Error| NsError::io("run", "nft -f - (the VE's source guard)", e);
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(fail)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(fail)?;
    }
    let out = child.wait_with_output().map_err(fail)?;
    if out.status.success() {
        return Ok(());
    }
    let message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    Err(fail(std::io::Error::other(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_nft_identifiers() {
        assert_eq!(table("venet101"), "vz_venet101");
        assert_eq!(table("veth101.0"), "vz_veth101_0");
    }
}
