//! The crate's error type, [`TemplateError`], and the helper that attaches an operation and a
//! path to every I/O failure.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

/// Result with [`TemplateError`] as the default error.
pub type Result<T, E = TemplateError> = std::result::Result<T, E>;

/// Everything that can go wrong with template caches.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// A template name that cannot be a cache file's basename.
    #[error("invalid template name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// No cache file for the name; the message is OpenVZ's (reference §1.4 step 6).
    #[error("Cached OS template {}.tar[.gz|.bz2|.xz] not found", base.display())]
    NotFound {
        /// The name looked up.
        name: String,
        /// `$TEMPLATE/cache/<name>`, the path without its suffix.
        base: PathBuf,
    },
    /// A system call or file operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done (`"open"`, `"create directory"`, …).
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The archive is not a readable tar stream (corrupt, truncated, bad decompression).
    #[error("read archive {}", path.display())]
    Archive {
        /// The cache file.
        path: PathBuf,
        /// What the tar or decompression layer reported.
        #[source]
        source: io::Error,
    },
    /// An archive entry would be written outside the destination directory.
    #[error("archive entry {entry:?} escapes {}: {reason}", dest.display())]
    PathEscape {
        /// The entry's path as stored in the archive.
        entry: String,
        /// The destination directory.
        dest: PathBuf,
        /// Why it is refused (`".." component"`, `"absolute path"`, `"passes a symlink"`…).
        reason: &'static str,
    },
    /// An archive entry of a kind that cannot be unpacked.
    #[error("archive entry {entry:?} has an unsupported type {kind:?}")]
    UnsupportedEntry {
        /// The entry's path.
        entry: String,
        /// The tar type flag.
        kind: char,
    },
    /// `unpack_to` was given a destination that is not an empty directory.
    #[error("destination {} is not an empty directory", path.display())]
    DestNotEmpty {
        /// The destination.
        path: PathBuf,
    },
    /// The busybox binary is not a statically linked ELF executable.
    #[error(
        "{} is not a statically linked busybox ({reason}); install Debian's busybox-static",
        path.display()
    )]
    NotStatic {
        /// The binary.
        path: PathBuf,
        /// What was found instead.
        reason: &'static str,
    },
    /// An external program (bzip2, xz, busybox, debootstrap) exited unsuccessfully.
    #[error("{program} exited with {status}: {stderr}")]
    Command {
        /// The program and its main arguments.
        program: String,
        /// Its exit status.
        status: ExitStatus,
        /// The end of what it wrote to stderr.
        stderr: String,
    },
    /// No template metadata answers to the name (reference §7.2 layout under `dir`).
    #[error("no template metadata for {name:?} under {}", dir.display())]
    NoMetadata {
        /// The name asked for.
        name: String,
        /// The template directory searched.
        dir: PathBuf,
    },
    /// The archive's `Release` file has no valid signature by a key of the keyring.
    #[error("the signature of {mirror} {suite} cannot be verified with {}: {detail}", keyring.display())]
    BadSignature {
        /// The repository.
        mirror: String,
        /// The suite.
        suite: String,
        /// The keyring used.
        keyring: PathBuf,
        /// What debootstrap said.
        detail: String,
    },
    /// Something an input file or program output said that cannot be used.
    #[error("bad {what}: {value:?}")]
    BadValue {
        /// What the value is (`"busybox applet path"`, `"debootstrap suite"`…).
        what: &'static str,
        /// The value.
        value: String,
    },
}

impl TemplateError {
    /// An [`TemplateError::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io { op, path: path.to_owned(), source }
    }
}

/// Attaches an operation and a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Converts the error into [`TemplateError::Io`] naming `op` and `path`.
    fn op(self, op: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn op(self, op: &'static str, path: &Path) -> Result<T> {
        self.map_err(|source| TemplateError::io(op, path, source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_message_is_openvz_s() {
        let err = TemplateError::NotFound {
            name: "centos-7-x86_64".into(),
            base: PathBuf::from("/vz/template/cache/centos-7-x86_64"),
        };
        assert_eq!(
            err.to_string(),
            "Cached OS template /vz/template/cache/centos-7-x86_64.tar[.gz|.bz2|.xz] not found"
        );
    }

    #[test]
    fn io_errors_name_op_and_path() {
        let err: Result<()> =
            Err(io::Error::from(io::ErrorKind::NotFound)).op("open", Path::new("/x/y"));
        let err = err.unwrap_err();
        assert_eq!(err.to_string(), "open /x/y");
        assert!(std::error::Error::source(&err).is_some());
    }
}
