//! Building template caches: the deterministic tar writer and the atomic cache file shared by
//! the builders ([`busybox`], [`debootstrap`]).

mod apt;
pub(crate) mod busybox;
pub(crate) mod debootstrap;
pub(crate) mod dnf;
mod elf;
mod run;
mod tree;
mod vefix;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use tar::{EntryType, Header};

use crate::compression::Compression;
use crate::error::{IoContext, Result};
use crate::name::TemplateName;
use crate::store::CacheStore;

/// A long step of a build, reported through [`BuildEvent::Step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildStep {
    /// A metadata hook runs (`install-pre`, `install-post`).
    Hook(&'static str),
    /// Packages and indexes are downloaded and verified.
    Download,
    /// Packages are unpacked, installed and configured.
    Install,
    /// The tree is edited to boot as a VE.
    Prepare,
    /// The tree is archived into the cache file.
    Pack,
}

/// What a build reports while it runs (for a progress display; a library never prints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildEvent<'a> {
    /// A new step begins.
    Step(BuildStep),
    /// A line the bootstrap tool printed (`I: Retrieving …`).
    Output(&'a str),
    /// Packing progress: entries and content bytes archived so far.
    Packed {
        /// Entries written.
        entries: u64,
        /// Bytes of file content written.
        bytes: u64,
    },
}

/// The directory a cache's tree is built in, beside the cache (`.<name>.root-<pid>`), removed
/// when dropped, also when the build failed.
pub(crate) struct WorkDir(pub(crate) PathBuf);

impl WorkDir {
    /// Makes an empty work directory (0755) for `name` in the store's cache directory.
    pub(crate) fn create(store: &CacheStore, name: &TemplateName) -> Result<WorkDir> {
        let cache_dir = store.cache_dir();
        fs::create_dir_all(cache_dir).op("create directory", cache_dir)?;
        let work = WorkDir(cache_dir.join(format!(".{name}.root-{}", std::process::id())));
        let _ = fs::remove_dir_all(&work.0);
        fs::create_dir(&work.0).op("create directory", &work.0)?;
        fs::set_permissions(&work.0, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .op("chmod", &work.0)?;
        Ok(work)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot remove work directory");
        }
    }
}

/// Archives the tree at `root` into `<cache>/<name>.tar.gz`, atomically, reporting progress.
pub(crate) fn pack_tree(
    store: &CacheStore,
    name: &TemplateName,
    root: &Path,
    progress: &mut dyn FnMut(BuildEvent<'_>),
) -> Result<PathBuf> {
    progress(BuildEvent::Step(BuildStep::Pack));
    let mut cache = PendingCache::create(&store.path_for(name, Compression::Gzip))?;
    tree::append_tree(&mut cache, root, &mut |entries, bytes| {
        progress(BuildEvent::Packed { entries, bytes });
    })?;
    cache.commit()
}

/// gzip level of built caches: 6 is gzip's default, a good size/speed balance.
const GZIP_LEVEL: u32 = 6;

/// A cache file being written: a temporary file next to its final name, renamed into place by
/// [`commit`](Self::commit) and removed if dropped before.
pub(crate) struct PendingCache {
    tmp: PathBuf,
    dest: PathBuf,
    tar: Option<tar::Builder<GzEncoder<BufWriter<File>>>>,
}

impl PendingCache {
    /// Starts `dest` (creating its directory): a gzip-compressed tar written to
    /// `.<file name>.tmp-<pid>` beside it.
    pub(crate) fn create(dest: &Path) -> Result<PendingCache> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).op("create directory", dir)?;
        let file_name = dest.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
        // A leftover from a crashed build of the same pid is garbage.
        let _ = fs::remove_file(&tmp);
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp).op("create", &tmp)?;
        let gz = GzEncoder::new(
            BufWriter::with_capacity(1 << 20, file),
            flate2::Compression::new(GZIP_LEVEL),
        );
        let mut tar = tar::Builder::new(gz);
        tar.mode(tar::HeaderMode::Complete);
        tar.follow_symlinks(false);
        Ok(PendingCache { tmp, dest: dest.to_owned(), tar: Some(tar) })
    }

    fn tar(&mut self) -> &mut tar::Builder<GzEncoder<BufWriter<File>>> {
        self.tar.as_mut().expect("the builder is only taken by commit, which consumes self")
    }

    /// Appends an entry with the given header (path set here) and data.
    pub(crate) fn append(
        &mut self,
        header: &mut Header,
        path: &Path,
        data: impl Read,
    ) -> Result<()> {
        let tmp = self.tmp.clone();
        self.tar().append_data(header, path, data).op("write", &tmp)
    }

    /// Appends a header as it is (a pax extension header) and its data.
    pub(crate) fn append_raw(&mut self, header: &Header, data: impl Read) -> Result<()> {
        let tmp = self.tmp.clone();
        self.tar().append(header, data).op("write", &tmp)
    }

    /// Appends a symlink or hard link entry.
    pub(crate) fn append_link(
        &mut self,
        header: &mut Header,
        path: &Path,
        target: &Path,
    ) -> Result<()> {
        let tmp = self.tmp.clone();
        self.tar().append_link(header, path, target).op("write", &tmp)
    }

    /// A directory owned by root.
    pub(crate) fn dir(&mut self, path: &str, mode: u32, mtime: u64) -> Result<()> {
        let mut h = root_header(EntryType::Directory, mode, mtime, 0);
        self.append(&mut h, Path::new(path), io::empty())
    }

    /// A regular file owned by root.
    pub(crate) fn file(&mut self, path: &str, mode: u32, mtime: u64, data: &[u8]) -> Result<()> {
        let mut h = root_header(EntryType::Regular, mode, mtime, data.len() as u64);
        self.append(&mut h, Path::new(path), data)
    }

    /// A symlink owned by root.
    pub(crate) fn symlink(&mut self, path: &str, target: &str, mtime: u64) -> Result<()> {
        let mut h = root_header(EntryType::Symlink, 0o777, mtime, 0);
        self.append_link(&mut h, Path::new(path), Path::new(target))
    }

    /// Finishes the archive, syncs it and renames it to its final name.
    pub(crate) fn commit(mut self) -> Result<PathBuf> {
        let tmp = self.tmp.clone();
        let tar = self.tar.take().expect("commit is called once");
        let gz = tar.into_inner().op("write", &tmp)?;
        let buf = gz.finish().op("write", &tmp)?;
        let file = buf.into_inner().map_err(|e| e.into_error()).op("write", &tmp)?;
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .op("chmod", &tmp)?;
        file.sync_all().op("sync", &tmp)?;
        drop(file);
        fs::rename(&tmp, &self.dest).op("rename into place", &self.dest)?;
        if let Some(dir) = self.dest.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(self.dest.clone())
    }
}

impl Drop for PendingCache {
    fn drop(&mut self) {
        if self.tar.is_some() {
            drop(self.tar.take());
            if let Err(e) = fs::remove_file(&self.tmp) {
                tracing::warn!(path = %self.tmp.display(), error = %e, "cannot remove temporary cache");
            }
        }
    }
}

impl std::fmt::Debug for PendingCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCache").field("tmp", &self.tmp).field("dest", &self.dest).finish()
    }
}

/// A GNU header for an entry owned by 0:0 (`root`/`root` by name too).
pub(crate) fn root_header(kind: EntryType, mode: u32, mtime: u64, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    // Names are informative only: unpacking uses the numeric ids.
    let _ = h.set_username("root");
    let _ = h.set_groupname("root");
    h.set_mtime(mtime);
    h.set_size(size);
    h
}
