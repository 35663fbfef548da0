//! `cargo xtask install-check`: is everything scripts/install-deps installs present? Lists
//! every missing piece at once and names the fix.

use crate::{initramfs, lab};
use anyhow::{Result, bail};
use std::path::Path;
use std::process::Command;

/// Programs the tests and the lab run, with the Debian package that has them.
const PROGRAMS: &[(&str, &str)] = &[
    ("/bin/busybox", "busybox-static"),
    ("/usr/bin/lxcfs", "lxcfs"),
    ("/sbin/mkfs.ext4", "e2fsprogs"),
    ("/sbin/ip", "iproute2"),
    ("/usr/bin/qemu-system-x86_64", "qemu-system-x86"),
    ("/usr/bin/cpio", "cpio"),
    ("/sbin/depmod", "kmod"),
    ("/usr/sbin/debootstrap", "debootstrap"),
    ("/usr/bin/xz", "xz-utils"),
    ("/bin/bzip2", "bzip2"),
    ("/usr/bin/iperf3", "iperf3"),
    ("/usr/sbin/setquota", "quota"),
    ("/usr/bin/curl", "curl"),
    ("/usr/sbin/iptables-nft", "iptables"),
    ("/usr/bin/nsenter", "util-linux"),
    ("/usr/sbin/capsh", "libcap2-bin"),
    ("/usr/bin/python3", "python3"),
    ("/usr/bin/watch", "procps"),
    ("/usr/local/bin/promtool", "prometheus, its promtool only: scripts/install-deps"),
];

/// The oldest CRIU that works on this kind of host (design.md).
const CRIU_MIN: (u32, u32) = (4, 2);

/// Checks the installed dependencies; fails with the list of what is missing.
pub(crate) fn check() -> Result<()> {
    let mut missing = Vec::new();
    for (path, package) in PROGRAMS {
        if !Path::new(path).exists() {
            missing.push(format!("{path} (Debian package {package})"));
        }
    }
    if Path::new("/bin/busybox").exists() && !initramfs::is_static_elf(Path::new("/bin/busybox"))? {
        missing.push("a static /bin/busybox (Debian package busybox-static)".to_owned());
    }
    match criu_version() {
        Some(version) if version >= CRIU_MIN => {}
        Some((major, minor)) => missing.push(format!(
            "CRIU >= {}.{} (found {major}.{minor}; ../shared/tools/install-criu)",
            CRIU_MIN.0, CRIU_MIN.1
        )),
        None => missing.push("criu on PATH (../shared/tools/install-criu)".to_owned()),
    }
    if !Command::new("cargo-nextest")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        missing.push("cargo-nextest (cargo install --locked cargo-nextest)".to_owned());
    }
    match lab::Kernel::find(&lab::cache_dir()) {
        Ok(kernel) => {
            if let Err(err) = kernel.modules() {
                missing.push(format!("the lab kernel's modules: {err:#}"));
            }
        }
        Err(err) => missing.push(format!("{err:#}")),
    }
    if missing.is_empty() {
        println!("install-check: every dependency of the tests and the kernel lab is present");
        return Ok(());
    }
    println!("install-check: missing:");
    for item in &missing {
        println!("  {item}");
    }
    bail!("{} dependenc(ies) missing; run scripts/install-deps as root", missing.len())
}

/// `criu --version`'s `Version: 4.2.1` as (4, 2).
fn criu_version() -> Option<(u32, u32)> {
    let out = Command::new("criu").arg("--version").output().ok()?;
    parse_criu_version(&String::from_utf8_lossy(&out.stdout))
}

fn parse_criu_version(text: &str) -> Option<(u32, u32)> {
    let version = text.lines().find_map(|l| l.strip_prefix("Version:"))?.trim();
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_versions_parse() {
        assert_eq!(parse_criu_version("Version: 4.2.1\nGitID: v4.2\n"), Some((4, 2)));
        assert_eq!(parse_criu_version("Version: 3.17\n"), Some((3, 17)));
        assert_eq!(parse_criu_version("Version: 5\n"), Some((5, 0)));
        assert_eq!(parse_criu_version("nothing"), None);
        assert!((3, 17) < CRIU_MIN && (4, 2) >= CRIU_MIN && (10, 0) >= CRIU_MIN);
    }
}
