//! Crash-safe replacement of a configuration file: write `<file>.tmp` beside it, fsync,
//! `rename()` over the file, fsync the directory (reference §2.1, `vps_save_config`).
//! A symbolic link is followed first, so the link stays and its target is replaced.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::{ConfigError, IoContext, Result};

/// How many links [`resolve_symlinks`] follows before giving up (Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Follows `path` while it is a symbolic link and returns the final, non-link path (which
/// need not exist: a dangling link resolves to its target). Relative targets are taken
/// relative to the link's directory.
///
/// # Errors
/// [`ConfigError::Io`] when a link cannot be read, [`ConfigError::SymlinkLoop`] after
/// 40 links.
pub(crate) fn resolve_symlinks(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&current).op("readlink", &current)?;
                current = match current.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(e).op("stat", &current),
        }
    }
    Err(ConfigError::SymlinkLoop { path: path.to_path_buf() })
}

/// Replaces the file at `path` (after [`resolve_symlinks`]) with `contents`, mode `mode`,
/// atomically: a reader sees the old file or the new one, never a mix, also after a crash.
///
/// # Errors
/// [`ConfigError::Io`] naming the step (`create`, `write`, `fsync`, `rename`…) and its path;
/// the temporary file is removed on failure.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let target = resolve_symlinks(path)?;
    let mut tmp_name = target.clone().into_os_string();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let written = write_tmp(&tmp, contents, mode)
        .and_then(|()| fs::rename(&tmp, &target).op("rename", &target));
    if let Err(err) = written {
        if let Err(e) = fs::remove_file(&tmp)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %tmp.display(), error = %e, "cannot remove temporary file");
        }
        return Err(err);
    }
    sync_dir(&target)
}

/// Writes and fsyncs the temporary file, with exactly `mode` (not subject to the umask).
fn write_tmp(tmp: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(tmp)
        .op("create", tmp)?;
    file.set_permissions(fs::Permissions::from_mode(mode)).op("chmod", tmp)?;
    file.write_all(contents).op("write", tmp)?;
    file.sync_all().op("fsync", tmp)
}

/// Fsyncs the directory holding `file`, so the rename itself is durable.
fn sync_dir(file: &Path) -> Result<()> {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let handle = fs::File::open(dir).op("open", dir)?;
    handle.sync_all().op("fsync", dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_new_and_replaces_existing_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("101.conf");
        write_atomic(&path, b"A=\"1\"\n", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "A=\"1\"\n");
        write_atomic(&path, b"A=\"2\"\n", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "A=\"2\"\n");
        assert_eq!(names(dir.path()), ["101.conf"]);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn symlink_is_kept_and_its_target_written() {
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("real");
        fs::create_dir(&real_dir).unwrap();
        let target = real_dir.join("101.conf");
        fs::write(&target, "OLD=\"1\"\n").unwrap();
        let link = dir.path().join("link.conf");
        std::os::unix::fs::symlink("real/101.conf", &link).unwrap();
        let link2 = dir.path().join("link2.conf");
        std::os::unix::fs::symlink(&link, &link2).unwrap();

        write_atomic(&link2, b"NEW=\"2\"\n", 0o644).unwrap();
        assert!(fs::symlink_metadata(&link2).unwrap().file_type().is_symlink());
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_to_string(&target).unwrap(), "NEW=\"2\"\n");
        assert_eq!(names(&real_dir), ["101.conf"]);
    }

    #[test]
    fn dangling_symlink_creates_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link.conf");
        std::os::unix::fs::symlink("made.conf", &link).unwrap();
        write_atomic(&link, b"X=\"1\"\n", 0o644).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("made.conf")).unwrap(), "X=\"1\"\n");
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::os::unix::fs::symlink("b", &a).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("b")).unwrap();
        let err = write_atomic(&a, b"", 0o644).unwrap_err();
        assert!(matches!(err, ConfigError::SymlinkLoop { .. }), "{err}");
    }

    #[test]
    fn missing_directory_is_an_io_error_naming_the_tmp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nodir/101.conf");
        let err = write_atomic(&path, b"", 0o644).unwrap_err();
        match err {
            ConfigError::Io { op, path, .. } => {
                assert_eq!(op, "create");
                assert!(path.ends_with("nodir/101.conf.tmp"), "{}", path.display());
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn failed_rename_leaves_no_tmp_file() {
        // Renaming a file over a non-empty directory fails after the temporary was written.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("101.conf");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), "x").unwrap();
        let err = write_atomic(&path, b"A=\"1\"\n", 0o644).unwrap_err();
        assert!(matches!(err, ConfigError::Io { op: "rename", .. }), "{err}");
        assert_eq!(names(dir.path()), ["101.conf"]);
    }
}
