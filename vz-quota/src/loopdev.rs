//! Loop devices: attach an image with auto-clear, find the devices backed by an image, wait for
//! them to detach.
//!
//! An image is attached with `LOOP_CTL_GET_FREE` + `LOOP_CONFIGURE` and `LO_FLAGS_AUTOCLEAR`, so
//! the device detaches by itself when its last user goes: the mount after `mount`, or the
//! [`LoopDevice`] handle itself when mounting failed. Nothing is left to detach by hand.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{QuotaError, Result};
use crate::sys;

/// How long an attach goes on taking the next free device while other attaches take them.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

/// An attached loop device, held open. Dropping the handle of an unmounted device detaches it.
#[derive(Debug)]
pub(crate) struct LoopDevice {
    /// Held open so that the auto-clearing device stays attached until mounted.
    _file: File,
    path: PathBuf,
}

impl LoopDevice {
    /// Attaches `image` to a free loop device (direct I/O when the backing filesystem allows).
    pub(crate) fn attach(image: &Path) -> Result<Self> {
        Self::attach_with(image, false)
    }

    /// Attaches `image` read-only: the device refuses writes and the file is opened for
    /// reading only.
    pub(crate) fn attach_read_only(image: &Path) -> Result<Self> {
        Self::attach_with(image, true)
    }

    fn attach_with(image: &Path, read_only: bool) -> Result<Self> {
        let backing = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(image)
            .map_err(|e| QuotaError::io("open image", image, e))?;
        let control_path = Path::new("/dev/loop-control");
        let control = OpenOptions::new()
            .read(true)
            .write(true)
            .open(control_path)
            .map_err(|e| QuotaError::io("open", control_path, e))?;
        let name = image.as_os_str().as_bytes();
        // Another process may take the same free device between GET_FREE and CONFIGURE: the
        // next GET_FREE gives another. Of N attaching at once, one wins each round, so the
        // retries are bounded by time, not by a count below N (100 parallel creates lost
        // 32 rounds in a row).
        let mut last = io::Error::from_raw_os_error(libc::EBUSY);
        let deadline = Instant::now() + ATTACH_TIMEOUT;
        while Instant::now() < deadline {
            let n = sys::loop_ctl_get_free(&control)
                .map_err(|e| QuotaError::io("LOOP_CTL_GET_FREE", control_path, e))?;
            let path = PathBuf::from(format!("/dev/loop{n}"));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| QuotaError::io("open loop device", &path, e))?;
            let flags =
                sys::LO_FLAGS_AUTOCLEAR | if read_only { sys::LO_FLAGS_READ_ONLY } else { 0 };
            let mut result =
                sys::loop_configure(&file, &backing, flags | sys::LO_FLAGS_DIRECT_IO, name);
            if result.as_ref().is_err_and(|e| e.raw_os_error() == Some(libc::EINVAL)) {
                result = sys::loop_configure(&file, &backing, flags, name);
            }
            match result {
                Ok(()) => {
                    tracing::debug!(device = %path.display(), image = %image.display(), "attached");
                    return Ok(LoopDevice { _file: file, path });
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = e,
                Err(e) => return Err(QuotaError::io("LOOP_CONFIGURE", path, e)),
            }
        }
        Err(QuotaError::io("LOOP_CONFIGURE", image, last))
    }

    /// `/dev/loopN`.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Re-reads the size of the backing file of the loop device at `device`.
pub(crate) fn set_capacity(device: &Path) -> Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .open(device)
        .map_err(|e| QuotaError::io("open loop device", device, e))?;
    sys::loop_set_capacity(&file).map_err(|e| QuotaError::io("LOOP_SET_CAPACITY", device, e))
}

/// The loop devices (`/dev/loopN`) whose backing file is `image`.
pub(crate) fn devices_backed_by(image: &Path) -> Result<Vec<PathBuf>> {
    let image = image.canonicalize().map_err(|e| QuotaError::io("resolve", image, e))?;
    let sys_block = Path::new("/sys/block");
    let entries = std::fs::read_dir(sys_block).map_err(|e| QuotaError::io("read", sys_block, e))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.as_bytes().starts_with(b"loop") {
            continue;
        }
        let Ok(backing) = std::fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue;
        };
        if Path::new(backing.trim_end_matches('\n')) == image {
            found.push(Path::new("/dev").join(name));
        }
    }
    found.sort();
    Ok(found)
}

/// Waits up to `timeout` until no loop device is backed by `image`; returns those still there.
pub(crate) fn wait_detached(image: &Path, timeout: Duration) -> Result<Vec<PathBuf>> {
    let start = Instant::now();
    loop {
        let left = devices_backed_by(image)?;
        if left.is_empty() || start.elapsed() >= timeout {
            return Ok(left);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to `timeout` until the loop device `device` is no longer backed by `image` (it
/// auto-detaches when its last user, the unmounted file system, lets go); whether it did.
/// Only that device is read: a scan of every loop device costs a failed open per free device
/// (500 on a host that once ran 500 VEs).
pub(crate) fn wait_device_detached(device: &Path, image: &Path, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        if backing_file(device).as_deref() != Some(image) {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The backing file of `/dev/loopN`, if `device` is an attached loop device.
pub(crate) fn backing_file(device: &Path) -> Option<PathBuf> {
    let name = device.file_name()?.to_str()?;
    if !name.starts_with("loop") {
        return None;
    }
    let text = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
    Some(PathBuf::from(text.trim_end_matches('\n')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loop_devices_have_no_backing_file() {
        assert_eq!(backing_file(Path::new("/dev/sda")), None);
        assert_eq!(backing_file(Path::new("/")), None);
    }
}
