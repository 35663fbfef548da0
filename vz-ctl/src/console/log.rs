//! A VE's console log: the last [`LOG_KEEP`] bytes of what its console printed, in
//! `<VZ_RUN_DIR>/<CTID>.console.log` (root's, 0600). The file holds at most twice that and is
//! trimmed by writing its last [`LOG_KEEP`] bytes to a new file renamed over it; nothing of
//! it is kept in memory (the console server holds the logs of every VE of a tree).

use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::LOG_KEEP;
use crate::error::{IoContext, Result};

/// The bounded log file of one VE's console.
#[derive(Debug)]
pub(crate) struct Log {
    path: PathBuf,
    file: std::fs::File,
    written: usize,
}

impl Log {
    /// A new, empty log at `path`: a new file renamed over an old one, which the VE's
    /// previous run may have left.
    pub(crate) fn create(path: PathBuf) -> Result<Log> {
        let temp = path.with_extension("log.new");
        let file = open_new(&temp)?;
        std::fs::rename(&temp, &path).op("rename", &temp)?;
        Ok(Log { path, file, written: 0 })
    }

    /// Appends `data`, trimming the file when it has grown past twice [`LOG_KEEP`]. A
    /// failure (a full disk) is logged, not returned: the console is read on regardless.
    pub(crate) fn append(&mut self, data: &[u8]) {
        if let Err(e) = self.file.write_all(data) {
            tracing::warn!(error = %e, path = %self.path.display(), "console log: write");
            return;
        }
        self.written += data.len();
        if self.written > 2 * LOG_KEEP
            && let Err(e) = self.rewrite()
        {
            tracing::warn!(error = %e, "console log: trimming");
        }
    }

    /// Replaces the file with its last [`LOG_KEEP`] bytes: a new file renamed over it.
    fn rewrite(&mut self) -> Result<()> {
        let from = self.written.saturating_sub(LOG_KEEP);
        let mut keep = vec![0_u8; self.written - from];
        self.file.read_exact_at(&mut keep, from as u64).op("read", &self.path)?;
        let temp = self.path.with_extension("log.new");
        let mut file = open_new(&temp)?;
        file.write_all(&keep).op("write", &temp)?;
        std::fs::rename(&temp, &self.path).op("rename", &temp)?;
        self.file = file;
        self.written = keep.len();
        Ok(())
    }
}

/// Creates (or empties) `path` for reading and writing, 0600, never through a link.
fn open_new(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .op("create", path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_stays_bounded_and_keeps_the_latest_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("1.console.log");
        let mut log = Log::create(path.clone()).expect("log");
        for n in 0..20_000 {
            log.append(format!("line {n}\n").as_bytes());
        }
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.len() <= 2 * LOG_KEEP, "{}", text.len());
        assert!(text.len() >= LOG_KEEP / 2, "{}", text.len());
        assert!(text.ends_with("line 19999\n"));
        // What was kept is the file's end, whole lines after the first cut.
        let after_cut = text.split_once('\n').expect("lines").1;
        assert!(after_cut.lines().all(|l| l.starts_with("line ")), "{after_cut:.200}");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("stat").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
