//! What snapshots, compaction and conversion of a private area need from the kernel:
//! freezing a mounted file system (FIFREEZE/FITHAW) so that a copy of its image is
//! crash-consistent, giving its free blocks back to the host (FITRIM: the loop device punches
//! holes in the image file), a sparse or reflinked copy of an image or a tree, a read-only
//! mount of an image copy, and the space a file takes on the host.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::MsFlags;

use crate::error::{QuotaError, Result};
use crate::loopdev::LoopDevice;
use crate::sys;

/// A file system frozen with FIFREEZE; dropping the guard thaws it.
#[derive(Debug)]
pub struct FrozenFs {
    dir: Option<File>,
    root: PathBuf,
}

/// Freezes the file system mounted at `root`: writes to it wait until [`FrozenFs::thaw`]
/// (or the guard's drop), and its data and journal are on disk, so a copy of its image is
/// what a crash at this moment would leave (and mounts without a journal replay).
///
/// # Errors
/// [`QuotaError::Io`] when `root` cannot be opened or the kernel refuses (EBUSY: already
/// frozen).
///
/// # Privileges
/// CAP_SYS_ADMIN.
pub fn freeze(root: &Path) -> Result<FrozenFs> {
    let dir = File::open(root).map_err(|e| QuotaError::io("open", root, e))?;
    sys::fs_freeze(&dir).map_err(|e| QuotaError::io("FIFREEZE", root, e))?;
    tracing::debug!(root = %root.display(), "file system frozen");
    Ok(FrozenFs { dir: Some(dir), root: root.to_owned() })
}

impl FrozenFs {
    /// Thaws the file system.
    ///
    /// # Errors
    /// [`QuotaError::Io`] when the kernel refuses.
    pub fn thaw(mut self) -> Result<()> {
        self.thaw_now()
    }

    fn thaw_now(&mut self) -> Result<()> {
        let Some(dir) = self.dir.take() else { return Ok(()) };
        sys::fs_thaw(&dir).map_err(|e| QuotaError::io("FITHAW", &self.root, e))?;
        tracing::debug!(root = %self.root.display(), "file system thawed");
        Ok(())
    }
}

impl Drop for FrozenFs {
    fn drop(&mut self) {
        if let Err(e) = self.thaw_now() {
            tracing::warn!(error = %e, "thaw");
        }
    }
}

/// Thaws the file system mounted at `root` if it is frozen (the repair of a process killed
/// while it held a [`FrozenFs`]); whether it was.
///
/// # Errors
/// [`QuotaError::Io`] when `root` cannot be opened or the kernel refuses for another reason
/// than "not frozen".
pub fn thaw(root: &Path) -> Result<bool> {
    let dir = File::open(root).map_err(|e| QuotaError::io("open", root, e))?;
    match sys::fs_thaw(&dir) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(QuotaError::io("FITHAW", root, e)),
    }
}

/// Discards the free blocks of the file system mounted at `root` (FITRIM); on an image on a
/// loop device the kernel punches them out of the image file. Returns the bytes the file
/// system trimmed (ext4 skips groups trimmed since the mount with nothing freed since).
///
/// # Errors
/// [`QuotaError::Io`] (EOPNOTSUPP when the device below does not discard).
///
/// # Privileges
/// CAP_SYS_ADMIN.
pub fn trim(root: &Path) -> Result<u64> {
    let dir = File::open(root).map_err(|e| QuotaError::io("open", root, e))?;
    sys::fs_trim(&dir).map_err(|e| QuotaError::io("FITRIM", root, e))
}

/// The bytes `path` takes on the host's disk (`st_blocks` × 512), holes not counted.
///
/// # Errors
/// [`QuotaError::Io`] when it cannot be read.
pub fn allocated_bytes(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| QuotaError::io("stat", path, e))?;
    Ok(meta.blocks() * 512)
}

/// Copies the file `from` to `to` (which must not exist): a reflink where the host's file
/// system can (`cp --reflink=auto`), else a copy of its data that keeps holes
/// (`--sparse=always`).
///
/// # Errors
/// [`QuotaError::Tool`] when cp fails (the partial copy is removed).
pub fn copy_image(from: &Path, to: &Path) -> Result<()> {
    let args = ["--reflink=auto", "--sparse=always", "--"];
    let copied = run_cp(&args, from, to);
    if copied.is_err() {
        let _ = std::fs::remove_file(to);
    }
    copied
}

/// Copies the tree `from` into the existing directory `to`, keeping ownership (ids as they
/// are on disk), modes, times, hard links, ACLs and extended attributes (`cp -a`), holes
/// kept.
///
/// # Errors
/// [`QuotaError::Tool`] when cp fails.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let mut source = from.as_os_str().to_owned();
    source.push("/.");
    let args = ["-a", "--preserve=all", "--sparse=always", "--"];
    run_cp(&args, Path::new(&source), to)
}

fn run_cp(args: &[&str], from: &Path, to: &Path) -> Result<()> {
    let all = format!("{} {} {}", args.join(" "), from.display(), to.display());
    let out =
        Command::new("cp").args(args).arg(from).arg(to).output().map_err(|e| QuotaError::Tool {
            program: "cp",
            args: all.clone(),
            status: e.to_string(),
            stderr: "".into(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(QuotaError::Tool {
        program: "cp",
        args: all,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// Mounts the ext4 image `image` read-only at `target` (an existing directory): a read-only,
/// auto-clearing loop device, `ro,noload` (no journal replay: nothing is written), `nosuid`,
/// `nodev`. [`crate::PrivateArea::umount`] unmounts it; the device detaches by itself.
///
/// # Errors
/// [`QuotaError::AlreadyMounted`]; [`QuotaError::Io`] for the loop device or the mount.
///
/// # Privileges
/// CAP_SYS_ADMIN.
pub fn mount_read_only(image: &Path, target: &Path) -> Result<()> {
    if crate::mount::mount_at(target)?.is_some() {
        return Err(QuotaError::AlreadyMounted { root: target.to_owned() });
    }
    let device = LoopDevice::attach_read_only(image)?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    nix::mount::mount(Some(device.path()), target, Some("ext4"), flags, Some("noload"))
        .map_err(|e| QuotaError::errno("mount ext4 read-only", target, e))
}

/// The mount points where the image file `image` is mounted through a loop device.
///
/// # Errors
/// When the mount table or the loop devices cannot be read.
pub fn mounts_of_image(image: &Path) -> Result<Vec<PathBuf>> {
    let devices = crate::loopdev::devices_backed_by(image)?;
    let mounts = crate::mount::mounts()?;
    Ok(mounts
        .into_iter()
        .filter(|m| devices.iter().any(|d| Path::new(&m.source) == d))
        .map(|m| m.mount_point)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_copy_keeps_holes_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a.img");
        let file = File::create(&from).unwrap();
        file.set_len(64 << 20).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&from)
            .and_then(|mut f| {
                use std::io::{Seek, Write};
                f.seek(std::io::SeekFrom::Start(32 << 20))?;
                f.write_all(&[7u8; 4096])
            })
            .unwrap();
        let to = dir.path().join("b.img");
        copy_image(&from, &to).unwrap();
        assert_eq!(std::fs::metadata(&to).unwrap().len(), 64 << 20);
        assert!(allocated_bytes(&to).unwrap() < 1 << 20, "the copy is sparse");
        assert_eq!(std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap());
        assert!(copy_image(&dir.path().join("missing"), &dir.path().join("c")).is_err());
        assert!(!dir.path().join("c").exists());
    }
}
