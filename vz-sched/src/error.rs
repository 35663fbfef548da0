//! The crate's one error type, [`SchedError`], and the `Result` alias.

use std::path::PathBuf;

/// What can go wrong when parsing, applying or reading CPU scheduler settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedError {
    /// A value given for a parameter (`CPUUNITS`, `CPULIMIT`, `CPUS`, `CPUMASK`) is invalid.
    #[error("invalid {key} value {value:?}: {reason}")]
    InvalidValue {
        /// The parameter's name as in the VE config (`CPUUNITS`…).
        key: &'static str,
        /// The text that was given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// Reading a kernel file failed.
    #[error("read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
    /// A cgroup knob could not be read or written (the kernel refused a value).
    #[error(transparent)]
    Cgroup(#[from] vz_cgroup::CgroupError),
    /// A kernel file held something this crate does not understand.
    #[error("unexpected content {content:?} in {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Its content (or the offending part).
        content: String,
    },
    /// A setting needs a controller that the VE's cgroup lacks: no directory of that v1
    /// hierarchy was handed over, or (v2) the controller is not enabled for the cgroup.
    #[error("{setting} needs the {controller} controller, which {path} lacks")]
    NoController {
        /// The setting (`CPUMASK`…).
        setting: &'static str,
        /// The controller (`cpuset`…).
        controller: &'static str,
        /// The cgroup directory that lacks it.
        path: PathBuf,
    },
    /// The cgroup has no weight knob (the root cgroup): its share cannot be set.
    #[error("{path} has no CPU weight knob (a root cgroup's share cannot be set)")]
    NoWeightKnob {
        /// The knob that is missing.
        path: PathBuf,
    },
}

/// Result with [`SchedError`] as the default error.
pub type Result<T, E = SchedError> = std::result::Result<T, E>;

impl SchedError {
    pub(crate) fn invalid(key: &'static str, value: &str, reason: impl Into<String>) -> Self {
        SchedError::InvalidValue { key, value: value.to_owned(), reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_key_the_value_and_the_path() {
        let e = SchedError::invalid("CPUUNITS", "7", "must be between 8 and 500000");
        assert_eq!(e.to_string(), "invalid CPUUNITS value \"7\": must be between 8 and 500000");
        let e = SchedError::Parse { path: PathBuf::from("/x/cpu.max"), content: "9 x".into() };
        assert_eq!(e.to_string(), "unexpected content \"9 x\" in /x/cpu.max");
    }
}
