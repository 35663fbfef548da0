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
