//! Archiving a root tree from disk (the debootstrap builder's output) in sorted order with its
//! numeric owners, modes, mtimes, symlinks, hard links, fifos and file capabilities.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, BufReader};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{major, minor};
use tar::{EntryType, Header};

use crate::build::PendingCache;
use crate::error::{IoContext, Result};

/// The xattrs a root tree needs kept: file capabilities (`security.capability`, e.g. ping's
/// `cap_net_raw`) and `user.*`; others (`security.selinux`, `trusted.*`) belong to the host.
fn keep_xattr(name: &str) -> bool {
    name == "security.capability" || name.starts_with("user.")
}

/// The pax records `SCHILY.xattr.<name>=<value>` of the xattrs of `path` worth keeping.
fn xattr_records(path: &Path) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.kind() == io::ErrorKind::Unsupported => return Ok(out),
        Err(e) => return Err(crate::error::TemplateError::io("list xattrs of", path, e)),
    };
    for name in names {
        let Some(name) = name.to_str().filter(|n| keep_xattr(n)) else { continue };
        let Some(value) = xattr::get(path, name).op("read xattr of", path)? else { continue };
        out.extend(pax_record(&format!("SCHILY.xattr.{name}"), &value));
    }
    Ok(out)
}

/// One pax record, `<len> <key>=<value>\n`, where `<len>` counts the whole record.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut rec = format!("{len} {key}=").into_bytes();
    rec.extend_from_slice(value);
    rec.push(b'\n');
    rec
}

/// Appends everything under `root` (and `root` itself as `./`) to `cache`. Sockets are
/// skipped (they are runtime objects), and so are device nodes (a VE's `/dev` is made by vz
/// at start, and unpacking never creates them); the walk stays on `root`'s filesystem (a mount point's
/// directory is archived, not what is mounted on it). Sparse files are stored in full;
/// of the xattrs, file capabilities and `user.*` of regular files are stored (pax records).
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
        let records = xattr_records(path)?;
        if !records.is_empty() {
            // A pax extended header for the next entry: its xattrs (GNU tar's SCHILY.xattr).
            let mut x = Header::new_ustar();
            x.set_entry_type(EntryType::XHeader);
            x.set_mode(0o644);
            x.set_size(records.len() as u64);
            let name = rel.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
            let short: String = name.chars().take(80).collect();
            x.set_path(format!("PaxHeaders/{short}")).op("archive", path)?;
            x.set_cksum();
            self.cache.append_raw(&x, &records[..])?;
        }
        let file = File::open(path).op("open", path)?;
        h.set_size(meta.len());
        self.bytes += meta.len();
        self.cache.append(&mut h, rel, BufReader::with_capacity(1 << 20, file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        for (key, value, expect) in [
            ("a", &b"b"[..], "6 a=b\n"),
            ("SCHILY.xattr.user.x", &b"12345678"[..], "32 SCHILY.xattr.user.x=12345678\n"),
        ] {
            let rec = pax_record(key, value);
            assert_eq!(String::from_utf8(rec.clone()).unwrap(), expect);
            let len: usize = expect.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(rec.len(), len);
        }
        // " k=1234\n" is 8 bytes: one digit makes 9. " k=12345\n" is 9: one digit would make
        // 10, which has two digits, so 11.
        assert_eq!(pax_record("k", b"1234"), b"9 k=1234\n");
        assert_eq!(pax_record("k", b"12345"), b"11 k=12345\n");
    }

    #[test]
    fn xattrs_survive_pack_and_unpack() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("bin")).unwrap();
        let file = root.join("bin/ping");
        fs::write(&file, b"elf").unwrap();
        if let Err(e) = xattr::set(&file, "user.vz-test", b"kept") {
            panic!("this file system refuses user xattrs: {e}");
        }
        let store = crate::store::CacheStore::new(dir.path());
        let name: crate::name::TemplateName = "x".parse().unwrap();
        let mut cache =
            PendingCache::create(&store.path_for(&name, crate::compression::Compression::Gzip))
                .unwrap();
        append_tree(&mut cache, &root, &mut |_, _| {}).unwrap();
        cache.commit().unwrap();
        let dest = dir.path().join("dest");
        fs::create_dir(&dest).unwrap();
        store.find(&name).unwrap().unpack_to(&dest).unwrap();
        let got = xattr::get(dest.join("bin/ping"), "user.vz-test").unwrap();
        assert_eq!(got.as_deref(), Some(&b"kept"[..]));
        assert_eq!(fs::read(dest.join("bin/ping")).unwrap(), b"elf");
    }

    #[test]
    fn only_capabilities_and_user_xattrs_are_kept() {
        assert!(keep_xattr("security.capability"));
        assert!(keep_xattr("user.mime_type"));
        assert!(!keep_xattr("security.selinux"));
        assert!(!keep_xattr("trusted.overlay.opaque"));
    }
}
