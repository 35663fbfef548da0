//! A VE's /dev across a checkpoint. CRIU cannot restore the VE's /dev tmpfs (it holds
//! device nodes a user namespace may not make), so a restore binds a fresh skeleton instead
//! ([`super::mount_skeleton`]). What the VE made on its /dev since it started — directories,
//! symlinks such as journald's `/dev/log`, small files, the mount points of its own mounts
//! (systemd's `/dev/mqueue`, `/dev/hugepages`) — is saved beside CRIU's images as a tar
//! archive and made again on that skeleton before CRIU mounts the VE's mounts on it.
//!
//! Both sides go through directory fds with `O_NOFOLLOW`: a name or link the VE controls
//! never leads outside its /dev. Owners are kept as the VE's own ids.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, fchownat, symlinkat};

use crate::error::{NsError, Result};
use crate::userns::IdMap;

/// Most bytes of file content saved (the VE's /dev tmpfs holds 256 KiB).
const CONTENT_LIMIT: u64 = 256 << 10;

/// Saves what the VE of `init_pid` made on its /dev (see the module documentation) to the
/// tar archive `archive`. Call while the VE's tasks are frozen or before they are dumped.
///
/// # Errors
/// [`NsError::Io`] naming the path that could not be read or written.
///
/// # Privileges
/// Root in the host's namespaces (reads the VE's /dev through `/proc/<pid>/root`).
pub fn save_dev_tree(init_pid: i32, id_map: Option<&IdMap>, archive: &Path) -> Result<()> {
    save_tree(&PathBuf::from(format!("/proc/{init_pid}/root/dev")), id_map, archive)
}

fn save_tree(dev: &Path, id_map: Option<&IdMap>, archive: &Path) -> Result<()> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(dev, flags, Mode::empty()).map_err(|e| sys_io("open", dev, e))?;
    let dev_id = fstat(&fd).map_err(|e| sys_io("stat", dev, e))?.st_dev;
    // Only root reads it: it holds what the VE wrote on its /dev.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(archive)
        .map_err(|e| io("create", archive, e))?;
    let mut saver = Saver {
        tar: tar::Builder::new(file),
        dev_id,
        ids: IdView { map: id_map.copied() },
        budget: CONTENT_LIMIT,
        dev,
    };
    saver.walk(fd, Path::new(""))?;
    let mut file = saver.tar.into_inner().map_err(|e| io("write", archive, e))?;
    file.flush().and_then(|()| file.sync_all()).map_err(|e| io("write", archive, e))
}

/// Makes the entries of `archive` (written by [`save_dev_tree`]) on the skeleton mounted at
/// `dev`, skipping what the skeleton already has. Owners become the host ids of `id_map`.
///
/// # Errors
/// [`NsError::Io`] naming the entry that could not be made; [`NsError::Setup`] for an entry
/// whose path leaves the directory.
///
/// # Privileges
/// Root in the host's namespaces.
pub fn restore_dev_tree(archive: &Path, id_map: Option<&IdMap>, dev: &Path) -> Result<()> {
    let file = File::open(archive).map_err(|e| io("open", archive, e))?;
    let mut tar = tar::Archive::new(file);
    let ids = IdView { map: id_map.copied() };
    let root = open_dir_at(None::<&OwnedFd>, dev).map_err(|e| sys_io("open", dev, e))?;
    for entry in tar.entries().map_err(|e| io("read", archive, e))? {
        let mut entry = entry.map_err(|e| io("read", archive, e))?;
        let rel = entry.path().map_err(|e| io("read", archive, e))?.into_owned();
        let (parent, name) = split_entry(&rel)?;
        let at = dev.join(&rel);
        let dir = match walk_to(&root, parent) {
            Ok(dir) => dir,
            // A parent the skeleton has as something else (or a link): nothing to make.
            Err(Errno::ENOTDIR | Errno::ELOOP) => continue,
            Err(e) => return Err(sys_io("open", &dev.join(parent), e)),
        };
        let header = entry.header();
        let mode = Mode::from_bits_truncate(header.mode().map_err(|e| io("read", &at, e))?);
        let uid = ids.host_uid(header.uid().map_err(|e| io("read", &at, e))?);
        let gid = ids.host_gid(header.gid().map_err(|e| io("read", &at, e))?);
        let kind = header.entry_type();
        let made = if kind.is_dir() {
            exists_ok(mkdirat(&dir, name, mode), &at)?
        } else if kind.is_symlink() {
            let target = entry.link_name().map_err(|e| io("read", &at, e))?;
            let target = target.ok_or_else(|| NsError::Setup {
                message: format!("{}: a link without a target", at.display()),
            })?;
            exists_ok(symlinkat(target.as_ref(), dir.as_fd(), name), &at)?
        } else if kind.is_file() {
            write_new(&dir, name, mode, &mut entry, &at)?
        } else {
            false
        };
        if made {
            fchownat(&dir, name, Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| sys_io("chown", &at, e))?;
            if kind.is_dir() {
                let fd =
                    open_dir_at(Some(&dir), Path::new(name)).map_err(|e| sys_io("open", &at, e))?;
                fchmod(&fd, mode).map_err(|e| sys_io("chmod", &at, e))?;
            }
        }
    }
    Ok(())
}

/// The walk of [`save_dev_tree`].
struct Saver<'a> {
    tar: tar::Builder<File>,
    /// The device of the VE's /dev tmpfs: anything else is a mount on it.
    dev_id: u64,
    ids: IdView,
    /// File content bytes still allowed.
    budget: u64,
    /// The walked directory, for messages.
    dev: &'a Path,
}

impl Saver<'_> {
    fn walk(&mut self, dir: OwnedFd, rel: &Path) -> Result<()> {
        let path = self.dev.join(rel);
        let mut listing = Dir::from_fd(dir).map_err(|e| sys_io("list", &path, e))?;
        let names: Vec<PathBuf> = listing
            .iter()
            .flatten()
            .map(|e| PathBuf::from(OsStr::from_bytes(e.file_name().to_bytes())))
            .filter(|n| n.as_os_str() != "." && n.as_os_str() != "..")
            .collect();
        for name in names {
            let at = rel.join(&name);
            let st = match fstatat(&listing, &name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(sys_io("stat", &self.dev.join(&at), e)),
            };
            self.entry(&listing, &name, &at, &st)?;
        }
        Ok(())
    }

    fn entry(&mut self, dir: &Dir, name: &Path, at: &Path, st: &FileStat) -> Result<()> {
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        let full = self.dev.join(at);
        let mut header = tar::Header::new_gnu();
        header.set_mode(st.st_mode & 0o7777);
        header.set_uid(self.ids.ve_id(st.st_uid).into());
        header.set_gid(self.ids.ve_gid(st.st_gid).into());
        header.set_mtime(0);
        let write = |e| io("write", &full, e);
        if st.st_dev != self.dev_id {
            // A mount on the VE's /dev: only its mount point is made again.
            if kind == SFlag::S_IFDIR {
                header.set_entry_type(tar::EntryType::Directory);
            } else {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
            }
            header.set_size(0);
            return self.tar.append_data(&mut header, at, std::io::empty()).map_err(write);
        }
        match kind {
            SFlag::S_IFDIR => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                self.tar.append_data(&mut header, at, std::io::empty()).map_err(write)?;
                let fd = open_dir_at(Some(dir), name).map_err(|e| sys_io("open", &full, e))?;
                self.walk(fd, at)
            }
            SFlag::S_IFLNK => {
                let target = readlinkat(dir, name).map_err(|e| sys_io("readlink", &full, e))?;
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                self.tar.append_link(&mut header, at, target).map_err(write)
            }
            SFlag::S_IFREG => {
                let flags =
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
                let fd = openat(dir, name, flags, Mode::empty())
                    .map_err(|e| sys_io("open", &full, e))?;
                let mut content = Vec::new();
                File::from(fd)
                    .take(self.budget + 1)
                    .read_to_end(&mut content)
                    .map_err(|e| io("read", &full, e))?;
                let len = content.len() as u64;
                if len > self.budget {
                    return Err(NsError::Setup {
                        message: format!(
                            "the VE's /dev holds more than {CONTENT_LIMIT} bytes of files ({})",
                            full.display()
                        ),
                    });
                }
                self.budget -= len;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(len);
                self.tar.append_data(&mut header, at, content.as_slice()).map_err(write)
            }
            // Device nodes (the skeleton makes its own), sockets and FIFOs (their users are
            // restored by CRIU from elsewhere, and nothing in a VE's /dev needs them).
            _ => Ok(()),
        }
    }
}

/// Host ids and the VE's own, through the VE's map (identity for a privileged VE).
#[derive(Clone, Copy)]
struct IdView {
    map: Option<IdMap>,
}

impl IdView {
    fn ve_id(self, host: u32) -> u32 {
        self.map
            .map_or(host, |m| host.checked_sub(m.uid_base).filter(|id| *id < m.count).unwrap_or(0))
    }

    fn ve_gid(self, host: u32) -> u32 {
        self.map
            .map_or(host, |m| host.checked_sub(m.gid_base).filter(|id| *id < m.count).unwrap_or(0))
    }

    fn host_uid(self, ve: u64) -> Uid {
        let id = u32::try_from(ve).unwrap_or(0);
        Uid::from_raw(self.map.filter(|m| id < m.count).map_or(id, |m| m.host_uid(id)))
    }

    fn host_gid(self, ve: u64) -> Gid {
        let id = u32::try_from(ve).unwrap_or(0);
        Gid::from_raw(self.map.filter(|m| id < m.count).map_or(id, |m| m.host_gid(id)))
    }
}

/// An archive entry's parent directory and name, refusing anything but plain names.
fn split_entry(rel: &Path) -> Result<(&Path, &OsStr)> {
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    match (plain, rel.parent(), rel.file_name()) {
        (true, Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(NsError::Setup {
            message: format!("a /dev archive entry that leaves the directory: {}", rel.display()),
        }),
    }
}

/// Opens `rel` (plain names) below `root` one directory at a time, following no link.
fn walk_to(root: &OwnedFd, rel: &Path) -> nix::Result<OwnedFd> {
    let mut dir = root.try_clone().map_err(|_| Errno::EMFILE)?;
    for part in rel.components() {
        dir = open_dir_at(Some(&dir), Path::new(part.as_os_str()))?;
    }
    Ok(dir)
}

fn open_dir_at(dir: Option<&impl AsFd>, path: &Path) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match dir {
        Some(dir) => openat(dir, path, flags, Mode::empty()),
        None => nix::fcntl::open(path, flags, Mode::empty()),
    }
}

/// Creates the file `name` in `dir` with `content`; `false` if it exists already.
fn write_new(
    dir: &OwnedFd,
    name: &OsStr,
    mode: Mode,
    content: &mut impl Read,
    at: &Path,
) -> Result<bool> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match openat(dir, name, flags, mode) {
        Ok(fd) => fd,
        Err(Errno::EEXIST) => return Ok(false),
        Err(e) => return Err(sys_io("create", at, e)),
    };
    fchmod(&fd, mode).map_err(|e| sys_io("chmod", at, e))?;
    std::io::copy(content, &mut File::from(fd)).map_err(|e| io("write", at, e))?;
    Ok(true)
}

/// `true` when made, `false` when it existed already.
fn exists_ok(made: nix::Result<()>, at: &Path) -> Result<bool> {
    match made {
        Ok(()) => Ok(true),
        Err(Errno::EEXIST) => Ok(false),
        Err(e) => Err(sys_io("create", at, e)),
    }
}

fn io(op: &'static str, path: &Path, source: std::io::Error) -> NsError {
    NsError::Io { op, path: path.to_owned(), source }
}

fn sys_io(op: &'static str, path: &Path, e: Errno) -> NsError {
    io(op, path, std::io::Error::from(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_comes_back_with_links_files_and_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let (from, to, archive) =
            (tmp.path().join("from"), tmp.path().join("to"), tmp.path().join("dev.tar"));
        std::fs::create_dir_all(from.join("mqueue")).unwrap();
        std::fs::create_dir_all(from.join("a/b")).unwrap();
        std::os::unix::fs::symlink("/run/systemd/journal/dev-log", from.join("log")).unwrap();
        std::os::unix::fs::symlink("/", from.join("a/up")).unwrap();
        std::fs::write(from.join("a/b/note"), "kept").unwrap();
        std::fs::create_dir(&to).unwrap();
        std::fs::write(to.join("log"), "the skeleton's").unwrap();

        save_tree(&from, None, &archive).unwrap();
        restore_dev_tree(&archive, None, &to).unwrap();
        assert_eq!(std::fs::read_link(to.join("a/up")).unwrap(), Path::new("/"));
        assert_eq!(std::fs::read_to_string(to.join("a/b/note")).unwrap(), "kept");
        assert!(to.join("mqueue").is_dir());
        assert_eq!(std::fs::read_to_string(to.join("log")).unwrap(), "the skeleton's");
    }

    #[test]
    fn an_entry_below_a_link_is_not_made_through_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (to, outside, archive) =
            (tmp.path().join("to"), tmp.path().join("outside"), tmp.path().join("evil.tar"));
        std::fs::create_dir(&to).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let mut tar = tar::Builder::new(File::create(&archive).unwrap());
        let header = |kind, size| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(size);
            h
        };
        tar.append_link(&mut header(tar::EntryType::Symlink, 0), "esc", &outside).unwrap();
        let planted = &b"bad"[..];
        tar.append_data(&mut header(tar::EntryType::Regular, 3), "esc/planted", planted).unwrap();
        tar.into_inner().unwrap();

        restore_dev_tree(&archive, None, &to).unwrap();
        assert!(std::fs::symlink_metadata(to.join("esc")).unwrap().file_type().is_symlink());
        assert!(!outside.join("planted").exists(), "written through the VE's link");
    }
}
