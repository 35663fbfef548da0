//! Control files: one read and one write each, with errors that name the file.
//!
//! A control file is written with a single `write(2)` of the whole value (the kernel parses
//! each write on its own), through `O_WRONLY|O_TRUNC` without creating anything.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use crate::error::{CgroupError, Result};

/// The content of a control file.
///
/// # Errors
/// [`CgroupError::Io`] (`read`).
pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| CgroupError::io("read", path, e))
}

/// A file holding one number, or `max` (`None`).
///
/// # Errors
/// [`CgroupError::Io`]; [`CgroupError::Format`] for anything but a number or `max`.
pub fn read_u64(path: &Path) -> Result<Option<u64>> {
    let text = read(path)?;
    match text.trim() {
        "max" => Ok(None),
        word => word
            .parse()
            .map(Some)
            .map_err(|_| CgroupError::Format { path: path.into(), content: word.to_owned() }),
    }
}

/// Writes `value` into the control file `path`.
///
/// # Errors
/// [`CgroupError::Write`] with the kernel's answer (`EINVAL` for a value it refuses, `EBUSY`
/// for a limit below usage, `ENOENT` for a knob this kernel lacks).
pub fn write(path: &Path, value: &str) -> Result<()> {
    tracing::debug!(path = %path.display(), value, "cgroup write");
    let err = |source| CgroupError::Write { path: path.into(), value: value.to_owned(), source };
    let mut file =
        std::fs::OpenOptions::new().write(true).truncate(true).open(path).map_err(err)?;
    file.write_all(value.as_bytes()).map_err(err)
}

/// The `key value` lines of a flat-keyed file (`memory.stat`, `cpu.stat`, `pids.events`);
/// lines that are not a key and a number are left out.
pub fn keyed(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_max_and_keyed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pids.max");
        std::fs::write(&file, "max\n").unwrap();
        assert_eq!(read_u64(&file).unwrap(), None);
        write(&file, "42").unwrap();
        assert_eq!(read_u64(&file).unwrap(), Some(42));
        write(&file, "4k").unwrap();
        let e = read_u64(&file).unwrap_err();
        assert!(e.to_string().contains("pids.max") && e.to_string().contains("4k"), "{e}");
        let keys = keyed("usage_usec 10\nnr_periods 3\nbroken\nname x\n");
        assert_eq!((keys["usage_usec"], keys["nr_periods"], keys.len()), (10, 3, 2));
    }

    #[test]
    fn errors_name_the_file_and_value_and_chain_the_cause_once() {
        let e = write(Path::new("/nonexistent-vz-cgroup/pids.max"), "5").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("pids.max") && text.contains("\"5\""), "{text}");
        assert!(!text.contains("No such file"), "the errno is the source's: {text}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
