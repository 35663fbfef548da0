//! SLOW kernel test (about 2 minutes, needs the Debian archive over the network): builds a
//! Debian minbase cache with sysvinit with `DebootstrapBuilder` (the Release verified with
//! Debian's keyring), then finds, unpacks and runs it. The systemd variant is built by vzpkg
//! from the shipped metadata in tests/tests/template.rs.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, ensure};
use vz_template::{CacheStore, DebootstrapBuilder, TemplateName};
use vz_tests::Need;

#[test]
fn debootstrap_builds_a_bootable_debian_cache() -> anyhow::Result<()> {
    if !vz_tests::check_needs(
        "debootstrap_builds_a_bootable_debian_cache",
        &[
            Need::Root,
            Need::Program(DebootstrapBuilder::DEFAULT_DEBOOTSTRAP),
            Need::Program("/usr/sbin/chroot"),
            Need::Program("/usr/bin/gpgv"),
        ],
    ) {
        return Ok(());
    }
    let os_release = fs::read_to_string("/etc/os-release")?;
    let suite = os_release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .context("no VERSION_CODENAME in /etc/os-release")?
        .trim_matches('"')
        .to_owned();
    let mirror = DebootstrapBuilder::mirror_from_apt(Path::new("/etc/apt"), &suite)
        .with_context(|| format!("no apt mirror for {suite}"))?;
    let tmp =
        tempfile::Builder::new().prefix(&vz_tests::unique_name("deb")).tempdir_in("/var/tmp")?;
    let store = CacheStore::new(tmp.path());
    let name: TemplateName = "debian-12-x86_64-sysv".parse()?;
    let keyring = Path::new(DebootstrapBuilder::DEBIAN_KEYRING);
    let built = DebootstrapBuilder::new(&suite, &mirror, keyring)
        .variant("minbase")
        .include(&["sysvinit-core"])
        .build(&store, &name)?;
    // Only the cache is left in the cache directory: the work tree is gone.
    let left: Vec<_> = fs::read_dir(store.cache_dir())?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    ensure!(left.len() == 1, "cache dir holds {left:?}");

    let cache = store.find(&name)?;
    ensure!(cache.path() == built);
    let root = tmp.path().join("root");
    fs::create_dir(&root)?;
    let stats = cache.unpack_to(&root)?;
    ensure!(stats.files > 3000, "{stats:?}");
    let inittab = fs::read_to_string(root.join("etc/inittab"))?;
    ensure!(inittab.contains("vz:2345:once:"), "{inittab}");
    ensure!(!inittab.lines().any(|l| l.contains("getty") && !l.starts_with('#')), "{inittab}");
    ensure!(root.join("sbin/init").exists(), "no /sbin/init");
    ensure!(fs::read_to_string(root.join("etc/hostname"))? == "localhost\n");
    let out = Command::new("/usr/sbin/chroot")
        .arg(&root)
        .args([
            "/bin/sh",
            "-c",
            "echo ok; dpkg -s sysvinit-core | grep -c '^Status: install ok installed'",
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()?;
    ensure!(out.status.success(), "{out:?}");
    ensure!(String::from_utf8(out.stdout)? == "ok\n1\n");
    Ok(())
}
