//! Unpacking a cache's tar stream into an empty directory, as `tar --numeric-owner -xSpf`
//! would (reference §1.4 step 7), refusing every entry that would land outside it.
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

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
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
                walk.clear(&raw, &target)?;
                entry.unpack(&target).map_err(|e| TemplateError::io("symlink", &target, e))?;
            }
            EntryType::Link => {
                let link = entry.link_name().map_err(bad_archive)?.unwrap_or_default();
                let link_raw = link.to_string_lossy().into_owned();
                let link_rel = walk.relative(&link_raw, &link)?;
                walk.existing_parents(&link_raw, &link_rel)?;
                walk.clear(&raw, &target)?;
                let src = dest.join(&link_rel);
                fs::hard_link(&src, &target).op("hard link", &target)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                walk.clear(&raw, &target)?;
                make_node(&target, &header, kind)
                    .map_err(|e| TemplateError::io("mknod", &target, e))?;
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

fn make_node(target: &Path, header: &Header, kind: EntryType) -> io::Result<()> {
    let sflag = match kind {
        EntryType::Char => SFlag::S_IFCHR,
        EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    let dev = match kind {
        EntryType::Fifo => 0,
        _ => makedev(
            u64::from(header.device_major()?.unwrap_or(0)),
            u64::from(header.device_minor()?.unwrap_or(0)),
        ),
    };
    let mode = header.mode()? & 0o7777;
    mknod(target, sflag, Mode::empty(), dev)?;
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
        assert_escape(r, "its path passes through a symlink");
        victim_intact(&tmp);
        // The same with an absolute symlink to the parent directory.
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
        let (r, tmp) = run(&[
            Raw { link: "../victim", ..raw("f", EntryType::Symlink) },
            Raw { data: b"new", ..raw("f", EntryType::Regular) },
        ]);
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
        let (r, tmp) = run(&[
            Raw { link: "..", ..raw("up", EntryType::Symlink) },
            Raw { link: "up/victim", ..raw("h", EntryType::Link) },
        ]);
        assert_escape(r, "its path passes through a symlink");
        victim_intact(&tmp);
        assert_eq!(fs::metadata(tmp.path().join("victim")).unwrap().nlink(), 1);
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
        assert_eq!(stats, UnpackStats { files: 4, bytes: 7, dirs: 1 });
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
    fn a_truncated_archive_is_an_error() {
        let bytes = archive(&[Raw { data: &[7u8; 2000], ..raw("f", EntryType::Regular) }]);
        let tmp = tempfile::tempdir().unwrap();
        let err = unpack(Path::new("t.tar"), &bytes[..1200], tmp.path()).unwrap_err();
        assert!(matches!(err, TemplateError::Io { .. } | TemplateError::Archive { .. }), "{err:?}");
    }
}
