//! Unpacking a cache's tar stream into an empty directory, as `tar --numeric-owner -xSpf`
//! would (reference §1.4 step 7), refusing every entry that would land outside it.
//!
//! What a distribution needs is kept: numeric owners, modes with set-uid/set-gid/sticky bits
//! (the host mounts VE_ROOT and VE_PRIVATE `nosuid,nodev` under 0700 directories, so a set-uid
//! file there gives no host user anything), symlinks, hard links, fifos, xattrs. What would
//! give a host user a way in is not: block and character device nodes are skipped (a VE's
//! `/dev` is made by vz at start; a node in a private area would be a door to a host device
//! wherever that area is mounted without `nodev`), and so are hard links to them.
//!
//! Safety of the paths does not rely on canonicalisation: an entry's path must be relative and
//! free of `..`; every directory on the way to it must be a real directory (never a symlink),
//! created by this unpack or checked with `lstat`; directories are never replaced, so a
//! directory once checked stays one; files are created with `O_EXCL` after unlinking what was
//! there, so a symlink planted by an earlier entry is replaced, never followed. Symlinks are
//! created with whatever target the archive says (absolute targets are normal in a root tree:
//! they point inside the VE once it runs).

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, lchown};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;
use tar::{Archive, EntryType, Header};

use crate::error::{IoContext, Result, TemplateError};

/// What an unpack wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnpackStats {
    /// Non-directory entries created: regular files, symlinks, hard links, device nodes, fifos.
    pub files: u64,
    /// Bytes of regular-file content (apparent size: holes of sparse files count).
    pub bytes: u64,
    /// Directories created or given their archived metadata.
    pub dirs: u64,
    /// Block and character device nodes (and hard links to them) left out.
    pub skipped_devices: u64,
}

/// Metadata applied to a directory after everything below it was written.
struct DirMeta {
    path: PathBuf,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

/// Unpacks the tar stream `source` (read from `archive` — named in errors) into `dest`.
pub(crate) fn unpack(archive: &Path, source: impl Read, dest: &Path) -> Result<UnpackStats> {
    let bad_archive =
        |source: io::Error| TemplateError::Archive { path: archive.to_owned(), source };
    let mut tar = Archive::new(source);
    tar.set_preserve_permissions(true);
    tar.set_preserve_ownerships(true);
    tar.set_preserve_mtime(true);
    tar.set_unpack_xattrs(true);
    tar.set_overwrite(false);
    tar.set_mask(0);
    let mut walk = Walk { dest, known_dirs: HashSet::new() };
    let mut skipped: HashSet<PathBuf> = HashSet::new();
    let mut dirs = Vec::new();
    let mut stats = UnpackStats::default();
    for entry in tar.entries().map_err(bad_archive)? {
        let mut entry = entry.map_err(bad_archive)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel = walk.relative(&raw, &entry.path().map_err(bad_archive)?)?;
        let header = entry.header().clone();
        let kind = header.entry_type();
        if rel.as_os_str().is_empty() {
            // The archive's "./": its metadata is the destination's own.
            if kind.is_dir() {
                dirs.push(dir_meta(dest, &header).map_err(bad_archive)?);
                continue;
            }
            return Err(walk.escape(&raw, "a non-directory entry for the destination itself"));
        }
        walk.parents(&raw, &rel)?;
        let target = dest.join(&rel);
        match kind {
            EntryType::Directory => {
                walk.mkdir(&target)?;
                dirs.push(dir_meta(&target, &header).map_err(bad_archive)?);
                stats.dirs += 1;
                continue;
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                walk.clear(&raw, &target)?;
                stats.bytes += entry.size();
                entry.unpack(&target).map_err(|e| TemplateError::io("write", &target, e))?;
            }
            EntryType::Symlink => {
                let link = entry.link_name().map_err(bad_archive)?.unwrap_or_default();
                if climbs_out(&rel, &link) {
                    return Err(walk.escape(&raw, "a relative symlink pointing above the root"));
                }
                walk.clear(&raw, &target)?;
                entry.unpack(&target).map_err(|e| TemplateError::io("symlink", &target, e))?;
            }
            EntryType::Link => {
                let link = entry.link_name().map_err(bad_archive)?.unwrap_or_default();
                let link_raw = link.to_string_lossy().into_owned();
                let link_rel = walk.relative(&link_raw, &link)?;
                if skipped.contains(&link_rel) {
                    skipped.insert(rel);
                    stats.skipped_devices += 1;
                    continue;
                }
                walk.existing_parents(&link_raw, &link_rel)?;
                walk.clear(&raw, &target)?;
                let src = dest.join(&link_rel);
                fs::hard_link(&src, &target).op("hard link", &target)?;
            }
            EntryType::Char | EntryType::Block => {
                tracing::debug!(entry = %raw, "device node not unpacked");
                skipped.insert(rel);
                stats.skipped_devices += 1;
                continue;
            }
            EntryType::Fifo => {
                walk.clear(&raw, &target)?;
                make_fifo(&target, &header).map_err(|e| TemplateError::io("mknod", &target, e))?;
            }
            EntryType::XGlobalHeader | EntryType::XHeader => continue,
            other => {
                return Err(TemplateError::UnsupportedEntry {
                    entry: raw,
                    kind: char::from(other.as_byte()),
                });
            }
        }
        stats.files += 1;
    }
    // Deepest first, so that setting a parent's mtime comes after its children are written.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
    for d in &dirs {
        lchown(&d.path, Some(d.uid), Some(d.gid)).op("chown", &d.path)?;
        fs::set_permissions(&d.path, fs::Permissions::from_mode(d.mode)).op("chmod", &d.path)?;
        set_mtime(&d.path, d.mtime).op("set mtime of", &d.path)?;
    }
    Ok(stats)
}

/// Whether the relative symlink at `rel` (a path under the destination) with target `link`
/// resolves, lexically, above the destination.
fn climbs_out(rel: &Path, link: &Path) -> bool {
    if link.is_absolute() {
        return false;
    }
    // The depth of the directory holding the link.
    let mut depth = rel.components().count().saturating_sub(1);
    for c in link.components() {
        match c {
            Component::ParentDir if depth == 0 => return true,
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}

/// The destination and the directories under it known to be real directories.
struct Walk<'a> {
    dest: &'a Path,
    known_dirs: HashSet<PathBuf>,
}

impl Walk<'_> {
    fn escape(&self, entry: &str, reason: &'static str) -> TemplateError {
        TemplateError::PathEscape { entry: entry.to_owned(), dest: self.dest.to_owned(), reason }
    }

    /// The entry's path as plain components under the destination.
    fn relative(&self, raw: &str, path: &Path) -> Result<PathBuf> {
        let mut rel = PathBuf::new();
        for c in path.components() {
            match c {
                Component::Normal(part) => rel.push(part),
                Component::CurDir => {}
                Component::ParentDir => return Err(self.escape(raw, "a \"..\" component")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.escape(raw, "an absolute path"));
                }
            }
        }
        Ok(rel)
    }

    /// Makes sure every parent of `rel` is a real directory, creating missing ones (0755).
    fn parents(&mut self, raw: &str, rel: &Path) -> Result<()> {
        self.walk_parents(raw, rel, true)
    }

    /// Like [`Self::parents`] for a hard link's target: the parents must already exist.
    fn existing_parents(&mut self, raw: &str, rel: &Path) -> Result<()> {
        self.walk_parents(raw, rel, false)
    }

    fn walk_parents(&mut self, raw: &str, rel: &Path, create: bool) -> Result<()> {
        let Some(parent) = rel.parent() else { return Ok(()) };
        let mut at = self.dest.to_path_buf();
        for part in parent.components() {
            at.push(part);
            if self.known_dirs.contains(&at) {
                continue;
            }
            match fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.escape(raw, "its path passes through a symlink"));
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    let e = io::Error::from(io::ErrorKind::NotADirectory);
                    return Err(TemplateError::io("create directory", &at, e));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::DirBuilder::new().mode(0o755).create(&at).op("create directory", &at)?;
                }
                Err(e) => return Err(TemplateError::io("stat", &at, e)),
            }
            self.known_dirs.insert(at.clone());
        }
        Ok(())
    }

    /// Creates the directory `target` unless it is one already; a non-directory is replaced.
    fn mkdir(&mut self, target: &Path) -> Result<()> {
        if !self.known_dirs.contains(target) {
            match fs::symlink_metadata(target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    fs::remove_file(target).op("remove", target)?;
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(target)
                        .op("create directory", target)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(target)
                        .op("create directory", target)?;
                }
                Err(e) => return Err(TemplateError::io("stat", target, e)),
            }
            self.known_dirs.insert(target.to_owned());
        }
        Ok(())
    }

    /// Unlinks a non-directory at `target` (a later entry replaces an earlier one, as GNU tar
    /// does); refuses to replace a directory.
    fn clear(&self, raw: &str, target: &Path) -> Result<()> {
        if self.known_dirs.contains(target) {
            return Err(self.escape(raw, "a non-directory entry would replace a directory"));
        }
        match fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() => {
                Err(self.escape(raw, "a non-directory entry would replace a directory"))
            }
            Ok(_) => fs::remove_file(target).op("remove", target),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(TemplateError::io("stat", target, e)),
        }
    }
}

fn dir_meta(path: &Path, header: &Header) -> io::Result<DirMeta> {
    Ok(DirMeta {
        path: path.to_owned(),
        mode: header.mode()? & 0o7777,
        uid: id(header.uid()?)?,
        gid: id(header.gid()?)?,
        mtime: i64::try_from(header.mtime()?).unwrap_or(i64::MAX),
    })
}

fn id(value: u64) -> io::Result<u32> {
    u32::try_from(value).map_err(|_| io::Error::other(format!("owner id {value} out of range")))
}

/// Makes a fifo (the only node kind unpacked) with the header's owner, mode and mtime.
fn make_fifo(target: &Path, header: &Header) -> io::Result<()> {
    let mode = header.mode()? & 0o7777;
    mknod(target, SFlag::S_IFIFO, Mode::empty(), 0)?;
    lchown(target, Some(id(header.uid()?)?), Some(id(header.gid()?)?))?;
    fs::set_permissions(target, fs::Permissions::from_mode(mode))?;
    set_mtime(target, i64::try_from(header.mtime()?).unwrap_or(i64::MAX))
}

/// Sets atime and mtime of `path` itself (never a symlink's target).
fn set_mtime(path: &Path, mtime: i64) -> io::Result<()> {
    let t = TimeSpec::new(mtime, 0);
    utimensat(nix::fcntl::AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use tar::{Builder, EntryType, Header};

    use super::*;

    /// A tar entry whose name is written raw (the tar crate's builder refuses `..` and `/`).
    struct Raw<'a> {
        name: &'a str,
        kind: EntryType,
        link: &'a str,
        data: &'a [u8],
    }

    fn raw(name: &str, kind: EntryType) -> Raw<'_> {
        Raw { name, kind, link: "", data: b"" }
    }

    fn archive(entries: &[Raw<'_>]) -> Vec<u8> {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let mut b = Builder::new(Vec::new());
        for e in entries {
            let mut h = Header::new_gnu();
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
            gnu.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
            h.set_entry_type(e.kind);
            h.set_mode(if e.kind.is_dir() { 0o755 } else { 0o644 });
            h.set_uid(u64::from(uid));
            h.set_gid(u64::from(gid));
            h.set_mtime(1_000_000_000);
            h.set_size(e.data.len() as u64);
            h.set_cksum();
            b.append(&h, e.data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// Unpacks into `<tmp>/dest`; returns the result and the tempdir (whose other contents
    /// must stay untouched).
    fn run(entries: &[Raw<'_>]) -> (Result<UnpackStats>, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        fs::write(tmp.path().join("victim"), b"original").unwrap();
        let bytes = archive(entries);
        (unpack(Path::new("t.tar"), &bytes[..], &dest), tmp)
    }

    fn assert_escape(result: Result<UnpackStats>, expected: &str) {
        match result {
            Err(TemplateError::PathEscape { reason, .. }) => assert_eq!(reason, expected),
            other => panic!("expected an escape ({expected}), got {other:?}"),
        }
    }

    fn victim_intact(tmp: &tempfile::TempDir) {
        assert_eq!(fs::read(tmp.path().join("victim")).unwrap(), b"original");
        let names: Vec<_> =
            fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "something was written beside dest: {names:?}");
    }

    #[test]
    fn dot_dot_is_refused() {
        let (r, tmp) = run(&[Raw { data: b"pwned", ..raw("a/../../victim", EntryType::Regular) }]);
        assert_escape(r, "a \"..\" component");
        victim_intact(&tmp);
    }

    #[test]
    fn absolute_paths_are_refused() {
        let (r, tmp) = run(&[raw("/tmp/vz-test-absolute", EntryType::Regular)]);
        assert_escape(r, "an absolute path");
        victim_intact(&tmp);
        assert!(!Path::new("/tmp/vz-test-absolute").exists());
    }

    #[test]
    fn writing_through_a_symlink_is_refused() {
        let (r, tmp) = run(&[
            Raw { link: "..", ..raw("up", EntryType::Symlink) },
            Raw { data: b"pwned", ..raw("up/victim", EntryType::Regular) },
        ]);
        // Refused already at the link, which points above the root.
        assert_escape(r, "a relative symlink pointing above the root");
        victim_intact(&tmp);
        // With an absolute symlink to the parent directory: refused at the write.
        let (r, tmp) = run(&[raw("d", EntryType::Directory)]);
        r.unwrap();
        let parent = tmp.path().to_str().unwrap().to_owned();
        let (r, tmp2) = run(&[
            Raw { link: &parent, ..raw("abs", EntryType::Symlink) },
            Raw { data: b"pwned", ..raw("abs/victim", EntryType::Regular) },
        ]);
        assert_escape(r, "its path passes through a symlink");
        victim_intact(&tmp);
        victim_intact(&tmp2);
    }

    #[test]
    fn a_file_replaces_a_planted_symlink_instead_of_following_it() {
        let probe = tempfile::tempdir().unwrap();
        // run() makes a new tempdir: plant an absolute link to a victim of our own.
        let victim = probe.path().join("victim");
        fs::write(&victim, b"original").unwrap();
        let target = victim.to_str().unwrap().to_owned();
        let (r, tmp) = run(&[
            Raw { link: &target, ..raw("f", EntryType::Symlink) },
            Raw { data: b"new", ..raw("f", EntryType::Regular) },
        ]);
        assert_eq!(fs::read(&victim).unwrap(), b"original");
        r.unwrap();
        victim_intact(&tmp);
        let f = tmp.path().join("dest/f");
        assert!(fs::symlink_metadata(&f).unwrap().is_file());
        assert_eq!(fs::read(f).unwrap(), b"new");
    }

    #[test]
    fn hard_links_out_of_dest_are_refused() {
        let (r, tmp) = run(&[Raw { link: "../victim", ..raw("h", EntryType::Link) }]);
        assert_escape(r, "a \"..\" component");
        victim_intact(&tmp);
        let probe = tempfile::tempdir().unwrap();
        fs::write(probe.path().join("victim"), b"original").unwrap();
        let up = probe.path().to_str().unwrap().to_owned();
        let (r, tmp) = run(&[
            Raw { link: &up, ..raw("up", EntryType::Symlink) },
            Raw { link: "up/victim", ..raw("h", EntryType::Link) },
        ]);
        assert_escape(r, "its path passes through a symlink");
        victim_intact(&tmp);
        assert_eq!(fs::metadata(probe.path().join("victim")).unwrap().nlink(), 1);
    }

    #[test]
    fn a_file_cannot_replace_a_directory() {
        let (r, _tmp) = run(&[raw("d", EntryType::Directory), raw("d", EntryType::Regular)]);
        assert_escape(r, "a non-directory entry would replace a directory");
    }

    #[test]
    fn a_plain_archive_unpacks_with_links_and_stats() {
        let (r, tmp) = run(&[
            raw("./", EntryType::Directory),
            raw("./etc/", EntryType::Directory),
            Raw { data: b"hello\n", ..raw("./etc/motd", EntryType::Regular) },
            Raw { link: "motd", ..raw("./etc/motd.link", EntryType::Symlink) },
            Raw { link: "etc/motd", ..raw("./etc/motd.hard", EntryType::Link) },
            Raw { data: b"x", ..raw("deep/er/file", EntryType::Regular) },
        ]);
        let stats = r.unwrap();
        assert_eq!(stats, UnpackStats { files: 4, bytes: 7, dirs: 1, skipped_devices: 0 });
        let dest = tmp.path().join("dest");
        assert_eq!(fs::read(dest.join("etc/motd.hard")).unwrap(), b"hello\n");
        assert_eq!(fs::read_link(dest.join("etc/motd.link")).unwrap(), Path::new("motd"));
        assert_eq!(fs::metadata(dest.join("etc/motd")).unwrap().nlink(), 2);
        let etc = fs::metadata(dest.join("etc")).unwrap();
        assert_eq!((etc.mode() & 0o7777, etc.mtime()), (0o755, 1_000_000_000));
        assert_eq!(fs::metadata(&dest).unwrap().mtime(), 1_000_000_000);
        assert_eq!(fs::read(dest.join("deep/er/file")).unwrap(), b"x");
    }

    #[test]
    fn device_nodes_are_skipped_and_fifos_and_setuid_kept() {
        let (r, tmp) = run(&[
            raw("dev", EntryType::Directory),
            raw("dev/sda", EntryType::Block),
            raw("dev/mem", EntryType::Char),
            Raw { link: "dev/mem", ..raw("mem-again", EntryType::Link) },
            raw("run-fifo", EntryType::Fifo),
            raw("su", EntryType::Regular),
        ]);
        let stats = r.unwrap();
        assert_eq!(stats.skipped_devices, 3, "{stats:?}");
        let dest = tmp.path().join("dest");
        for gone in ["dev/sda", "dev/mem", "mem-again"] {
            assert!(fs::symlink_metadata(dest.join(gone)).is_err(), "{gone} exists");
        }
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::symlink_metadata(dest.join("run-fifo")).unwrap().file_type().is_fifo());
        // A set-uid root file keeps its bit (the raw() header has mode 0644: make one 4755).
        let mut b = Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o4755);
        h.set_uid(u64::from(nix::unistd::getuid().as_raw()));
        h.set_gid(u64::from(nix::unistd::getgid().as_raw()));
        h.set_size(2);
        h.set_cksum();
        b.append_data(&mut h, "usr/bin/su", &b"#!"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let dest2 = tmp.path().join("dest2");
        fs::create_dir(&dest2).unwrap();
        unpack(Path::new("t.tar"), &bytes[..], &dest2).unwrap();
        let mode = fs::metadata(dest2.join("usr/bin/su")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o4755);
    }

    #[test]
    fn relative_symlinks_above_the_root_are_refused() {
        let (r, tmp) = run(&[Raw { link: "../victim", ..raw("evil", EntryType::Symlink) }]);
        assert_escape(r, "a relative symlink pointing above the root");
        victim_intact(&tmp);
        let (r, _tmp) =
            run(&[Raw { link: "../../../../etc/shadow", ..raw("a/b/evil", EntryType::Symlink) }]);
        assert_escape(r, "a relative symlink pointing above the root");
        // Inside the root, and absolute targets (they resolve in the VE): kept.
        let (r, tmp) = run(&[
            Raw { link: "../../bin/x", ..raw("usr/lib/x", EntryType::Symlink) },
            Raw { link: "/etc/shadow", ..raw("abs", EntryType::Symlink) },
            Raw { link: "a/../../x", ..raw("odd", EntryType::Symlink) },
        ]);
        // "a/../../x" from the root climbs out after "a/..": refused too.
        assert_escape(r, "a relative symlink pointing above the root");
        let (r, tmp2) = run(&[
            Raw { link: "../../bin/x", ..raw("usr/lib/x", EntryType::Symlink) },
            Raw { link: "/etc/shadow", ..raw("abs", EntryType::Symlink) },
        ]);
        r.unwrap();
        let dest = tmp2.path().join("dest");
        assert_eq!(fs::read_link(dest.join("usr/lib/x")).unwrap(), Path::new("../../bin/x"));
        assert_eq!(fs::read_link(dest.join("abs")).unwrap(), Path::new("/etc/shadow"));
        drop(tmp);
    }

    #[test]
    fn climbing_is_measured_from_the_link_s_directory() {
        assert!(!climbs_out(Path::new("a/b/l"), Path::new("../../x")));
        assert!(climbs_out(Path::new("a/b/l"), Path::new("../../../x")));
        assert!(climbs_out(Path::new("l"), Path::new("..")));
        assert!(!climbs_out(Path::new("l"), Path::new("./x/..")));
        assert!(!climbs_out(Path::new("l"), Path::new("/..")));
    }

    #[test]
    fn a_truncated_archive_is_an_error() {
        let bytes = archive(&[Raw { data: &[7u8; 2000], ..raw("f", EntryType::Regular) }]);
        let tmp = tempfile::tempdir().unwrap();
        let err = unpack(Path::new("t.tar"), &bytes[..1200], tmp.path()).unwrap_err();
        assert!(matches!(err, TemplateError::Io { .. } | TemplateError::Archive { .. }), "{err:?}");
    }
}
