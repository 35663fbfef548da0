//! The errors of cgroup file access: each names the file (and the value written); the
//! kernel's answer is the source, printed once by whoever prints the chain.

use std::path::PathBuf;

/// What went wrong with a cgroup file or directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// Reading, listing, making or removing failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done (`read`, `list`, `create`, `remove`).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
    /// Writing a value into a control file failed (e.g. `EBUSY` when lowering a memory limit
    /// below what the group holds).
    #[error("cannot write {value:?} to {}", path.display())]
    Write {
        /// The control file.
        path: PathBuf,
        /// The value written.
        value: String,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
    /// A control file whose content is not in the expected format.
    #[error("unexpected content in {}: {content:?}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// The offending text.
        content: String,
    },
    /// Some task did not stop within the freezer's wait (the cgroup was thawed again).
    #[error("the tasks of {} did not freeze within {waited_ms} ms (state {state})", path.display())]
    FreezeTimeout {
        /// The cgroup directory.
        path: PathBuf,
        /// The last state seen.
        state: String,
        /// How long it waited.
        waited_ms: u128,
    },
}

impl CgroupError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CgroupError::Io { op, path: path.into(), source }
    }
}

/// This crate's result.
pub type Result<T, E = CgroupError> = std::result::Result<T, E>;
