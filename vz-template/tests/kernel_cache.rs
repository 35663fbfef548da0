//! Kernel tests of cache lookup and unpacking: caches made with the system's GNU tar, gzip,
//! bzip2 and xz are found in OpenVZ's order and unpacked with owners, modes, times, links,
//! fifos and holes intact, and without the device node the archive holds.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, ensure};
use vz_template::{CacheStore, Compression, TemplateError, TemplateName};
use vz_tests::Need;

/// `vz_tests::require!` for tests returning `anyhow::Result`.
macro_rules! require {
    ($test:literal, $($need:expr),+ $(,)?) => {
        if !vz_tests::check_needs($test, &[$($need),+]) {
            return Ok(());
        }
    };
}

const SPARSE_SIZE: u64 = 64 << 20;

/// A source tree with every kind of entry, owned by assorted ids.
fn make_tree(root: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(root.join("etc/sub"))?;
    fs::write(root.join("etc/file"), b"content\n")?;
    fs::hard_link(root.join("etc/file"), root.join("etc/sub/hard"))?;
    symlink("../file", root.join("etc/sub/rel-link"))?;
    symlink("/etc/file", root.join("abs-link"))?;
    fs::write(root.join("suid"), b"#!/bin/sh\n")?;
    std::os::unix::fs::chown(root.join("suid"), Some(0), Some(0))?;
    fs::set_permissions(root.join("suid"), fs::Permissions::from_mode(0o4755))?;
    std::os::unix::fs::chown(root.join("etc/sub"), Some(1234), Some(5678))?;
    fs::set_permissions(root.join("etc/sub"), fs::Permissions::from_mode(0o2750))?;
    std::os::unix::fs::lchown(root.join("abs-link"), Some(42), Some(43))?;
    nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o620))?;
    nix::sys::stat::mknod(
        &root.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )?;
    let sparse = fs::File::create(root.join("sparse"))?;
    sparse.set_len(SPARSE_SIZE)?;
    std::os::unix::fs::FileExt::write_at(&sparse, b"end", SPARSE_SIZE - 3)?;
    Command::new("touch")
        .args(["-h", "-d", "2001-02-03 04:05:06"])
        .arg(root.join("abs-link"))
        .status()?;
    Command::new("touch").args(["-d", "2002-03-04 05:06:07"]).arg(root.join("etc/sub")).status()?;
    Ok(())
}

/// `tar --numeric-owner -cS -C src .` piped through `filter` (if any) into `out`.
fn gnu_tar(src: &Path, out: &Path, filter: Option<&str>) -> anyhow::Result<()> {
    let file = fs::File::create(out)?;
    let mut tar = Command::new("tar")
        .args(["--numeric-owner", "-cSf", "-", "-C"])
        .arg(src)
        .arg(".")
        .stdout(if filter.is_some() { Stdio::piped() } else { Stdio::from(file.try_clone()?) })
        .spawn()?;
    if let Some(filter) = filter {
        let stdout = tar.stdout.take().context("tar stdout")?;
        let status = Command::new(filter).arg("-c").stdin(stdout).stdout(file).status()?;
        ensure!(status.success(), "{filter} failed");
    }
    ensure!(tar.wait()?.success(), "tar failed");
    Ok(())
}

/// Every path under `root`, relative, sorted.
fn walk(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(root.join(&rel))? {
            let e = e?;
            let r = rel.join(e.file_name());
            if e.file_type()?.is_dir() {
                stack.push(r.clone());
            }
            out.push(r);
        }
    }
    out.sort();
    Ok(out)
}

fn assert_same_tree(src: &Path, dest: &Path) -> anyhow::Result<()> {
    // The character device is left out: a VE's /dev is made at start.
    let a: Vec<PathBuf> = walk(src)?.into_iter().filter(|p| p != Path::new("null")).collect();
    let b = walk(dest)?;
    ensure!(a == b, "trees differ:\n{a:?}\n{b:?}");
    ensure!(fs::symlink_metadata(dest.join("null")).is_err(), "a device node was unpacked");
    for rel in std::iter::once(PathBuf::new()).chain(a) {
        let (s, d) =
            (fs::symlink_metadata(src.join(&rel))?, fs::symlink_metadata(dest.join(&rel))?);
        let what = rel.display().to_string();
        ensure!(s.file_type() == d.file_type(), "{what}: type");
        ensure!(s.mode() == d.mode(), "{what}: mode {:o} vs {:o}", s.mode(), d.mode());
        ensure!((s.uid(), s.gid()) == (d.uid(), d.gid()), "{what}: owner");
        ensure!(s.mtime() == d.mtime(), "{what}: mtime {} vs {}", s.mtime(), d.mtime());
        ensure!(s.len() == d.len() || s.is_dir(), "{what}: size");
        if s.file_type().is_symlink() {
            ensure!(
                fs::read_link(src.join(&rel))? == fs::read_link(dest.join(&rel))?,
                "{what}: target"
            );
        } else if s.is_file() {
            ensure!(fs::read(src.join(&rel))? == fs::read(dest.join(&rel))?, "{what}: content");
        }
    }
    let (h1, h2) = (fs::metadata(dest.join("etc/file"))?, fs::metadata(dest.join("etc/sub/hard"))?);
    ensure!(h1.ino() == h2.ino() && h1.nlink() == 2, "hard link lost");
    let sparse = fs::metadata(dest.join("sparse"))?;
    ensure!(
        sparse.blocks() * 512 < SPARSE_SIZE / 8,
        "sparse file filled: {} blocks",
        sparse.blocks()
    );
    Ok(())
}

#[test]
fn xz_bzip2_gzip_and_plain_caches_unpack_faithfully() -> anyhow::Result<()> {
    require!(
        "xz_bzip2_gzip_and_plain_caches_unpack_faithfully",
        Need::Root,
        Need::Program("/usr/bin/tar"),
        Need::Program("/usr/bin/xz"),
        Need::Program("/usr/bin/bzip2"),
        Need::Program("/usr/bin/gzip"),
    );
    let tmp = tempfile::Builder::new().prefix(&vz_tests::unique_name("cache")).tempdir()?;
    let src = tmp.path().join("src");
    make_tree(&src)?;
    let store = CacheStore::new(&tmp.path().join("template"));
    fs::create_dir_all(store.cache_dir())?;
    for (name, filter, expected) in [
        ("t-xz", Some("xz"), Compression::Xz),
        ("t-bz2", Some("bzip2"), Compression::Bzip2),
        ("t-gz", Some("gzip"), Compression::Gzip),
        ("t-plain", None, Compression::None),
    ] {
        let name: TemplateName = name.parse()?;
        gnu_tar(&src, &store.path_for(&name, expected), filter)?;
        let cache = store.find(&name)?;
        assert_eq!(cache.compression(), expected, "{name}");
        assert_eq!(cache.path(), store.path_for(&name, expected));
        let dest = tmp.path().join(format!("dest-{name}"));
        fs::create_dir(&dest)?;
        let stats = cache.unpack_to(&dest)?;
        assert_eq!((stats.files, stats.skipped_devices), (7, 1), "{name}: {stats:?}");
        assert_same_tree(&src, &dest).with_context(|| name.to_string())?;
        // A second unpack into the now non-empty directory is refused.
        let err = cache.unpack_to(&dest).unwrap_err();
        assert!(matches!(err, TemplateError::DestNotEmpty { .. }), "{err:?}");
    }
    Ok(())
}

#[test]
fn lookup_follows_openvz_order_and_magic_beats_suffix() -> anyhow::Result<()> {
    require!("lookup_follows_openvz_order_and_magic_beats_suffix", Need::Program("/usr/bin/xz"));
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("d"))?;
    fs::write(src.join("d/f"), b"x")?;
    let store = CacheStore::new(tmp.path());
    fs::create_dir_all(store.cache_dir())?;
    let name: TemplateName = "centos-7-x86_64".parse()?;
    let path = |c: Compression| store.path_for(&name, c);

    // An xz stream under the .gz name: found as .tar.gz, detected as xz, unpacks.
    gnu_tar(&src, &path(Compression::Xz), Some("xz"))?;
    fs::copy(path(Compression::Xz), path(Compression::Gzip))?;
    let found = store.find(&name)?;
    assert_eq!(found.path(), path(Compression::Gzip));
    assert_eq!(found.compression(), Compression::Xz);
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest)?;
    found.unpack_to(&dest)?;
    assert_eq!(fs::read(dest.join("d/f"))?, b"x");

    gnu_tar(&src, &path(Compression::Bzip2), None)?;
    assert_eq!(store.find(&name)?.path(), path(Compression::Gzip));
    gnu_tar(&src, &path(Compression::None), None)?;
    assert_eq!(store.find(&name)?.path(), path(Compression::None));
    fs::remove_file(path(Compression::None))?;
    fs::remove_file(path(Compression::Gzip))?;
    assert_eq!(store.find(&name)?.path(), path(Compression::Bzip2));

    // list: one cache per name, the one find picks; junk ignored.
    fs::write(store.cache_dir().join("notes.txt"), b"")?;
    fs::write(store.cache_dir().join(".hidden.tar.gz"), b"")?;
    fs::create_dir(store.cache_dir().join("dir.tar"))?;
    gnu_tar(&src, &store.cache_dir().join("busybox.tar"), None)?;
    let listed: Vec<(String, PathBuf)> =
        store.list()?.iter().map(|c| (c.name().to_string(), c.path().to_owned())).collect();
    assert_eq!(
        listed,
        vec![
            ("busybox".to_owned(), store.cache_dir().join("busybox.tar")),
            ("centos-7-x86_64".to_owned(), path(Compression::Bzip2)),
        ]
    );
    // A directory named like a cache is not a cache.
    let err = store.find(&"dir".parse()?).unwrap_err();
    assert!(matches!(err, TemplateError::NotFound { .. }));
    Ok(())
}

#[test]
fn missing_template_gives_openvz_s_message() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = CacheStore::new(&tmp.path().join("template"));
    let err = store.find(&"debian-12-x86_64-minimal".parse()?).unwrap_err();
    let expected = format!(
        "Cached OS template {}/template/cache/debian-12-x86_64-minimal.tar[.gz|.bz2|.xz] not found",
        tmp.path().display()
    );
    assert_eq!(err.to_string(), expected);
    assert!(store.list()?.is_empty(), "a missing cache dir is an empty store");
    Ok(())
}

#[test]
fn a_corrupt_xz_cache_reports_the_decompressor() -> anyhow::Result<()> {
    require!("a_corrupt_xz_cache_reports_the_decompressor", Need::Program("/usr/bin/xz"));
    let tmp = tempfile::tempdir()?;
    let store = CacheStore::new(tmp.path());
    fs::create_dir_all(store.cache_dir())?;
    let name: TemplateName = "broken".parse()?;
    let mut bytes = vec![0xfd, b'7', b'z', b'X', b'Z', 0];
    bytes.extend_from_slice(&[0x55; 4096]);
    fs::write(store.path_for(&name, Compression::Xz), bytes)?;
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest)?;
    let err = store.find(&name)?.unpack_to(&dest).unwrap_err();
    let msg = format!("{err}");
    assert!(msg.starts_with("xz -dc ") || matches!(err, TemplateError::Archive { .. }), "{msg}");
    Ok(())
}
