//! `ConfigError`, the ways reading or writing an OpenVZ configuration file fails, and
//! `ConfigWarning`, the lines a parse skipped or ignored (reported, never fatal).

use std::fmt;
use std::path::PathBuf;

/// Result of a configuration operation.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// An error reading or writing `vz.conf`, `CTID.conf` or a sample config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An I/O operation on a configuration file or directory failed.
    #[error("{op} {}", .path.display())]
    Io {
        /// What was being done (`read`, `rename`, `fsync`…).
        op: &'static str,
        /// The file or directory it was done on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file does not exist.
    #[error("configuration file {} not found", .path.display())]
    Missing {
        /// The path looked at.
        path: PathBuf,
    },
    /// A key has a value that cannot be used.
    #[error("invalid value {value:?} for {key}: {reason}")]
    BadValue {
        /// The configuration key (`ONBOOT`, `STOP_TIMEOUT`…).
        key: String,
        /// The value found.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The file cannot be parsed at all (it is not text: invalid UTF-8).
    #[error("{}:{line}: {reason}", .path.display())]
    Unparsable {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong there.
        reason: String,
    },
    /// A symbolic link chain that does not end (a loop, or more than 40 links).
    #[error("too many levels of symbolic links at {}", .path.display())]
    SymlinkLoop {
        /// The path whose links were being followed.
        path: PathBuf,
    },
}

/// Attaches an operation and a path to an `io::Error` (house style: every I/O error carries
/// both).
pub(crate) trait IoContext<T> {
    /// Wraps the error as [`ConfigError::Io`].
    fn op(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
    fn op(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| ConfigError::Io { op, path: path.into(), source })
    }
}

/// What is wrong with a configuration line that [`ConfigFile::parse`](super::ConfigFile::parse)
/// skipped or ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarningKind {
    /// The line has no `=` (OpenVZ: `can't parse … ('=' not found)`); it is kept, unused.
    NoEquals,
    /// The text before `=` is not a valid key name; the line is kept, unused.
    BadKey,
    /// A quoted value has no closing `"`; the rest of the line is the value.
    Unterminated,
    /// A first-wins key appears again; this occurrence is ignored (OpenVZ: `duplicate …
    /// ignored`).
    Duplicate {
        /// The repeated key.
        key: String,
    },
}

/// A line of a configuration file that was skipped, or read with a caveat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The 1-based line number.
    pub line: usize,
    /// The line as written (without its newline).
    pub text: String,
    /// What is wrong with it.
    pub kind: WarningKind,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (line, text) = (self.line, self.text.trim());
        match &self.kind {
            WarningKind::NoEquals => write!(f, "can't parse line {line}: {text} ('=' not found)"),
            WarningKind::BadKey => write!(f, "can't parse line {line}: {text} (bad key name)"),
            WarningKind::Unterminated => {
                write!(f, "line {line}: {text}: closing '\"' not found, value runs to line end")
            }
            WarningKind::Duplicate { key } => {
                write!(f, "line {line}: duplicate {key} ignored: {text}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_names_op_and_path() {
        let err: Result<()> = Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
            .op("read", "/etc/vz/vz.conf");
        let err = err.unwrap_err();
        assert_eq!(err.to_string(), "read /etc/vz/vz.conf");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn warnings_name_line_and_text() {
        let w = ConfigWarning { line: 3, text: "  garbage ".into(), kind: WarningKind::NoEquals };
        assert_eq!(w.to_string(), "can't parse line 3: garbage ('=' not found)");
        let w = ConfigWarning {
            line: 7,
            text: "HOSTNAME=\"b\"".into(),
            kind: WarningKind::Duplicate { key: "HOSTNAME".into() },
        };
        assert_eq!(w.to_string(), "line 7: duplicate HOSTNAME ignored: HOSTNAME=\"b\"");
    }

    #[test]
    fn bad_value_names_key_and_value() {
        let err = ConfigError::BadValue {
            key: "ONBOOT".into(),
            value: "maybe".into(),
            reason: "expected yes or no".into(),
        };
        assert_eq!(err.to_string(), "invalid value \"maybe\" for ONBOOT: expected yes or no");
    }
}
