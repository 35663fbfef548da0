//! The error type of vz-ubc: bad parameter values (naming the key and the value) and failed
//! kernel file operations (naming the operation and the path).

use std::path::PathBuf;

/// Everything that can go wrong in vz-ubc.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UbcError {
    /// A beancounter value that does not follow OpenVZ's syntax.
    #[error("invalid value for {key}: {value:?}: {reason}")]
    InvalidValue {
        /// The parameter (config key, e.g. `KMEMSIZE`).
        key: String,
        /// The text as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A name that is not a beancounter parameter.
    #[error("unknown beancounter parameter {key:?}")]
    UnknownParameter {
        /// The name as given.
        key: String,
    },
    /// Reading, listing or opening a kernel file failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done (`read`, `list`, …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
    /// A cgroup file of the VE could not be read or written (e.g. `EBUSY` when lowering a
    /// memory limit below what the group holds and reclaim cannot free enough).
    #[error(transparent)]
    Cgroup(#[from] vz_cgroup::CgroupError),
}

impl UbcError {
    pub(crate) fn invalid(key: &str, value: &str, reason: impl Into<String>) -> Self {
        UbcError::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Result with [`UbcError`].
pub type Result<T, E = UbcError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_key_value_and_path() {
        let e = UbcError::invalid("NUMPROC", "10M", "suffixes are not allowed");
        assert_eq!(e.to_string(), "invalid value for NUMPROC: \"10M\": suffixes are not allowed");
        let e = UbcError::Io {
            op: "read",
            path: "/proc/meminfo".into(),
            source: std::io::Error::from_raw_os_error(libc::EBUSY),
        };
        assert!(e.to_string().contains("/proc/meminfo"), "{e}");
        assert!(!e.to_string().contains("busy"), "the errno is the source's: {e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
