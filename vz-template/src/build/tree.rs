//! Archiving a root tree from disk (the debootstrap builder's output) in sorted order with its
//! numeric owners, modes, mtimes, symlinks, hard links, device nodes and fifos.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, BufReader};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{major, minor};
use tar::{EntryType, Header};

use crate::build::PendingCache;
use crate::error::{IoContext, Result};

/// Appends everything under `root` (and `root` itself as `./`) to `cache`. Sockets are
/// skipped (they are runtime objects), and so are device nodes (a VE's `/dev` is made by vz
/// at start, and unpacking never creates them); the walk stays on `root`'s filesystem (a mount point's
/// directory is archived, not what is mounted on it). Sparse files are stored in full and
/// xattrs are not stored.
/// `progress` is called every few thousand entries with the entries and bytes so far.
pub(crate) fn append_tree(
    cache: &mut PendingCache,
    root: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64> {
    let meta = fs::symlink_metadata(root).op("stat", root)?;
    let mut walk =
        TreeWalk { cache, dev: meta.dev(), links: HashMap::new(), count: 0, bytes: 0, progress };
    walk.entry(root, Path::new("./"), &meta)?;
    walk.dir(root, Path::new(""))?;
    (walk.progress)(walk.count, walk.bytes);
    Ok(walk.count)
}

struct TreeWalk<'a> {
    cache: &'a mut PendingCache,
    dev: u64,
    links: HashMap<(u64, u64), PathBuf>,
    count: u64,
    bytes: u64,
    progress: &'a mut dyn FnMut(u64, u64),
}

impl TreeWalk<'_> {
    fn dir(&mut self, dir: &Path, rel: &Path) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .op("read directory", dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .op("read directory", dir)?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let rel = rel.join(&name);
            let meta = fs::symlink_metadata(&path).op("stat", &path)?;
            let ft = meta.file_type();
            if ft.is_socket() || ft.is_block_device() || ft.is_char_device() {
                continue;
            }
            self.entry(&path, &rel, &meta)?;
            if meta.is_dir() && meta.dev() == self.dev {
                self.dir(&path, &rel)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, rel: &Path, meta: &Metadata) -> Result<()> {
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            EntryType::Directory
        } else if ft.is_symlink() {
            EntryType::Symlink
        } else if ft.is_char_device() {
            EntryType::Char
        } else if ft.is_block_device() {
            EntryType::Block
        } else if ft.is_fifo() {
            EntryType::Fifo
        } else {
            EntryType::Regular
        };
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(u64::from(meta.uid()));
        h.set_gid(u64::from(meta.gid()));
        h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        h.set_size(0);
        self.count += 1;
        if self.count.is_multiple_of(2000) {
            (self.progress)(self.count, self.bytes);
        }
        match kind {
            EntryType::Symlink => {
                let target = fs::read_link(path).op("read link", path)?;
                self.cache.append_link(&mut h, rel, &target)
            }
            EntryType::Char | EntryType::Block => {
                let rdev = meta.rdev();
                let (ma, mi) = (u32::try_from(major(rdev)), u32::try_from(minor(rdev)));
                let (Ok(ma), Ok(mi)) = (ma, mi) else {
                    let e = io::Error::other("device number out of range");
                    return Err(crate::error::TemplateError::io("archive", path, e));
                };
                h.set_device_major(ma).op("archive", path)?;
                h.set_device_minor(mi).op("archive", path)?;
                self.cache.append(&mut h, rel, io::empty())
            }
            EntryType::Regular if meta.nlink() > 1 => {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key).cloned() {
                    h.set_entry_type(EntryType::Link);
                    return self.cache.append_link(&mut h, rel, &first);
                }
                self.links.insert(key, rel.to_owned());
                self.regular(h, path, rel, meta)
            }
            EntryType::Regular => self.regular(h, path, rel, meta),
            _ => self.cache.append(&mut h, rel, io::empty()),
        }
    }

    fn regular(&mut self, mut h: Header, path: &Path, rel: &Path, meta: &Metadata) -> Result<()> {
        let file = File::open(path).op("open", path)?;
        h.set_size(meta.len());
        self.bytes += meta.len();
        self.cache.append(&mut h, rel, BufReader::with_capacity(1 << 20, file))
    }
}
