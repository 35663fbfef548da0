//! [`CacheStore`] (the directory `$TEMPLATE/cache`) and [`Cache`] (one cache file in it):
//! OpenVZ's lookup order, listing, and unpacking a cache into a private area.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::compression::{Compression, Decoded};
use crate::error::{IoContext, Result, TemplateError};
use crate::name::TemplateName;
use crate::unpack::{UnpackStats, unpack};

/// The template caches under `$TEMPLATE/cache`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheStore {
    cache_dir: PathBuf,
}

impl CacheStore {
    /// The store of the template directory `template_dir` (vz.conf's `TEMPLATE`, default
    /// `/vz/template`); the caches live in `template_dir/cache`.
    pub fn new(template_dir: &Path) -> Self {
        CacheStore { cache_dir: template_dir.join("cache") }
    }

    /// The directory holding the cache files.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The path a cache of `name` with `compression` has in this store (it may not exist).
    pub fn path_for(&self, name: &TemplateName, compression: Compression) -> PathBuf {
        self.cache_dir.join(format!("{name}{}", compression.suffix()))
    }

    /// Finds the cache of `name`: the first of `<name>.tar`, `.tar.gz`, `.tar.bz2`, `.tar.xz`
    /// that exists (reference §7.1). Its compression is read from its magic bytes.
    ///
    /// # Errors
    /// [`TemplateError::NotFound`] with OpenVZ's message (`Cached OS template
    /// $TEMPLATE/cache/<name>.tar[.gz|.bz2|.xz] not found`) when none exists;
    /// [`TemplateError::Io`] if a candidate cannot be examined or read.
    pub fn find(&self, name: &TemplateName) -> Result<Cache> {
        for suffix in Compression::LOOKUP_ORDER {
            let path = self.path_for(name, suffix);
            match fs::metadata(&path) {
                Ok(m) if m.is_file() => {
                    let compression = Compression::of_file(&path)?;
                    tracing::debug!(path = %path.display(), ?compression, "template cache found");
                    return Ok(Cache { path, name: name.clone(), compression });
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(TemplateError::io("stat", &path, e)),
            }
        }
        Err(TemplateError::NotFound {
            name: name.to_string(),
            base: self.cache_dir.join(name.as_str()),
        })
    }

    /// Every template in the store, sorted by name, each as [`find`](Self::find) would pick
    /// it (when a name has several files, the first in lookup order). Files whose name is not
    /// `<valid name>.tar[.gz|.bz2|.xz]` are ignored; a missing cache directory is an empty
    /// store.
    ///
    /// # Errors
    /// [`TemplateError::Io`] if the directory or a cache file cannot be read.
    pub fn list(&self) -> Result<Vec<Cache>> {
        let entries = match fs::read_dir(&self.cache_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(TemplateError::io("read directory", &self.cache_dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.op("read directory", &self.cache_dir)?;
            let Some(file) = entry.file_name().to_str().map(str::to_owned) else { continue };
            let stem = Compression::LOOKUP_ORDER
                .iter()
                .find_map(|c| file.strip_suffix(c.suffix()))
                .and_then(|stem| stem.parse::<TemplateName>().ok());
            if let Some(name) = stem {
                names.push(name);
            }
        }
        names.sort();
        names.dedup();
        let mut caches = Vec::with_capacity(names.len());
        for name in &names {
            match self.find(name) {
                Ok(cache) => caches.push(cache),
                // A directory or a file removed meanwhile: not a cache.
                Err(TemplateError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(caches)
    }
}

/// One template cache file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    path: PathBuf,
    name: TemplateName,
    compression: Compression,
}

impl Cache {
    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The template's name (the `OSTEMPLATE` value).
    pub fn name(&self) -> &TemplateName {
        &self.name
    }

    /// The compression, detected from the file's magic bytes (not from its suffix).
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Unpacks the cache into `dest`, an existing empty directory, like
    /// `tar --numeric-owner -xSpf`: numeric uid/gid, modes with setuid/setgid/sticky, mtimes,
    /// symlinks, hard links, sparse files, xattrs of regular files (pax `SCHILY.xattr.*`) and
    /// fifos. Block and character device nodes are not created (a VE's `/dev` is made by vz at
    /// start); they are counted in [`UnpackStats::skipped_devices`]. The archive's `./` entry, if any, gives `dest` its own owner,
    /// mode and mtime.
    ///
    /// Entries with an absolute path or a `..` component, entries whose path passes through a
    /// symlink, relative symlinks pointing above the root, and hard links to such paths are
    /// refused: nothing is ever written outside
    /// `dest`. On error, what was already unpacked stays in `dest` for the caller to remove.
    ///
    /// # Privileges
    /// Root (CAP_CHOWN, CAP_FOWNER, CAP_MKNOD for fifos) to preserve owners and modes.
    ///
    /// # Errors
    /// [`TemplateError::DestNotEmpty`]; [`TemplateError::PathEscape`];
    /// [`TemplateError::Archive`] for a corrupt stream; [`TemplateError::Command`] if
    /// `bzip2`/`xz` fails; [`TemplateError::Io`] for a failed file operation.
    pub fn unpack_to(&self, dest: &Path) -> Result<UnpackStats> {
        let mut entries = fs::read_dir(dest).op("read directory", dest)?;
        if entries.next().is_some() {
            return Err(TemplateError::DestNotEmpty { path: dest.to_owned() });
        }
        let started = std::time::Instant::now();
        let mut source = Decoded::open(&self.path, self.compression)?;
        let stats = unpack(&self.path, &mut source, dest)?;
        source.finish()?;
        tracing::debug!(
            cache = %self.path.display(),
            dest = %dest.display(),
            files = stats.files,
            bytes = stats.bytes,
            elapsed_ms = started.elapsed().as_millis(),
            "template cache unpacked"
        );
        Ok(stats)
    }
}
