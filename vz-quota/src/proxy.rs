//! quotactl(2) on behalf of root in a VE: the second-level tools (setquota, edquota,
//! repquota, `quota -u other`) need CAP_SYS_ADMIN in the host's user namespace for
//! Q_SETQUOTA, Q_SETINFO and for reading other ids' quota, which a VE's root does not have.
//! A host process that intercepts the VE's quotactl calls (vz-ns's seccomp listener) asks
//! [`QuotactlProxy::answer`] what to do with each.
//!
//! The proxy acts only when all of these hold, and otherwise lets the kernel run the call
//! with the caller's own privileges (which refuses what a VE's root may not do):
//! - the subcommand is Q_GETQUOTA, Q_GETNEXTQUOTA, Q_SETQUOTA or Q_SETINFO;
//! - the quota type is user or group, never project (the project quota is the VE's own
//!   first-level limit: its root must not raise it);
//! - the caller's effective uid, as the VE numbers it, is 0 — or the call reads the quota
//!   of the caller's own effective uid or gid (Q_GETQUOTA): in a VE with its own user
//!   namespace the kernel would look that id up shifted by the VE's map, while the image
//!   keeps the VE's ids as they are;
//! - the path resolves, in the caller's root, to the block device of this VE's image.
//!
//! Then it runs the same call on the host's node of that device, with the structure copied
//! from and back to the caller's memory. Turning quota on or off, other file systems and the
//! XFS subcommands stay the kernel's, as for any unprivileged caller.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::{QuotaError, Result};
use crate::sys;

/// `USRQUOTA` and `GRPQUOTA`, the quota types the proxy acts on.
const USER_AND_GROUP: [u32; 2] = [0, 1];
/// The longest special path read from a caller.
const PATH_MAX: usize = 4096;

/// The calling process of an intercepted quotactl, as the proxy needs to see it.
pub trait QuotactlCaller {
    /// Its effective uid and gid as the VE numbers them (through its user namespace's map).
    ///
    /// # Errors
    /// When it is gone.
    fn ids(&self) -> io::Result<(u32, u32)>;
    /// The device number (`st_rdev`) of the block device `path` names, resolved in the
    /// caller's root and working directory; `None` when it is not a block device.
    ///
    /// # Errors
    /// When the path does not resolve.
    fn block_device(&self, path: &[u8]) -> io::Result<Option<u64>>;
    /// A NUL-terminated string of its memory, at most `max` bytes.
    ///
    /// # Errors
    /// When the memory is not readable.
    fn read_c_string(&self, addr: u64, max: usize) -> io::Result<Vec<u8>>;
    /// `len` bytes of its memory.
    ///
    /// # Errors
    /// When the memory is not readable.
    fn read(&self, addr: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Writes into its memory.
    ///
    /// # Errors
    /// When the memory is not writable.
    fn write(&self, addr: u64, data: &[u8]) -> io::Result<()>;
}

/// What to do with an intercepted quotactl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotactlAnswer {
    /// The proxy ran it: the call returns 0.
    Done,
    /// The call fails with this errno.
    Failed(i32),
    /// Not the proxy's: the kernel runs it as the caller.
    AsCaller,
}

/// Runs the privileged quotactl calls of one VE's root on that VE's image.
#[derive(Debug, Clone)]
pub struct QuotactlProxy {
    device: PathBuf,
    rdev: u64,
}

impl QuotactlProxy {
    /// A proxy for the file system on the host's block device node `device` (the VE's
    /// mounted image).
    ///
    /// # Errors
    /// [`QuotaError::Io`] when `device` is not a block device.
    pub fn new(device: &Path) -> Result<Self> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let meta = std::fs::metadata(device).map_err(|e| QuotaError::io("stat", device, e))?;
        if !meta.file_type().is_block_device() {
            let e = io::Error::from_raw_os_error(libc::ENOTBLK);
            return Err(QuotaError::io("use as the quota device", device, e));
        }
        Ok(QuotactlProxy { device: device.to_owned(), rdev: meta.rdev() })
    }

    /// The VE's device number (`st_rdev`).
    pub fn rdev(&self) -> u64 {
        self.rdev
    }

    /// Decides on, and where it is the proxy's runs, the quotactl call with the raw
    /// arguments `args` (cmd, special, id, addr) of `caller`.
    pub fn answer(&self, args: [u64; 6], caller: &dyn QuotactlCaller) -> QuotactlAnswer {
        let cmd = low32(args[0]);
        let subcmd = libc::c_int::try_from(cmd >> 8).unwrap_or(-1);
        // The subcommands that need privilege the VE's root lacks.
        let Some(len) = sys::quotactl_data_len(subcmd) else {
            return QuotactlAnswer::AsCaller;
        };
        if !USER_AND_GROUP.contains(&(cmd & 0xff)) {
            return QuotactlAnswer::AsCaller;
        }
        let (id, addr) = (low32(args[2]), args[3]);
        let Ok((euid, egid)) = caller.ids() else {
            return QuotactlAnswer::AsCaller;
        };
        let own_id = subcmd == libc::Q_GETQUOTA && id == [euid, egid][(cmd & 1) as usize];
        if (euid != 0 && !own_id) || args[1] == 0 {
            return QuotactlAnswer::AsCaller;
        }
        let Ok(path) = caller.read_c_string(args[1], PATH_MAX) else {
            return QuotactlAnswer::Failed(libc::EFAULT);
        };
        if !matches!(caller.block_device(&path), Ok(Some(rdev)) if rdev == self.rdev) {
            return QuotactlAnswer::AsCaller;
        }
        let writes_back = matches!(subcmd, libc::Q_GETQUOTA | sys::Q_GETNEXTQUOTA);
        let mut data = if writes_back {
            vec![0_u8; len]
        } else {
            match caller.read(addr, len) {
                Ok(data) => data,
                Err(_) => return QuotactlAnswer::Failed(libc::EFAULT),
            }
        };
        if let Err(e) = sys::quotactl_buffer(cmd, &self.device, id, &mut data) {
            return QuotactlAnswer::Failed(e.raw_os_error().unwrap_or(libc::EIO));
        }
        if writes_back && caller.write(addr, &data).is_err() {
            return QuotactlAnswer::Failed(libc::EFAULT);
        }
        QuotactlAnswer::Done
    }
}

/// A 32-bit argument (cmd, id) of a system call's 64-bit register.
fn low32(arg: u64) -> u32 {
    u32::try_from(arg & u64::from(u32::MAX)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// A caller whose memory holds a path at 0x1000 and a structure at 0x2000.
    struct Caller {
        euid: u32,
        egid: u32,
        path: &'static [u8],
        rdev: Option<u64>,
        reads: RefCell<Vec<u64>>,
    }

    impl QuotactlCaller for Caller {
        fn ids(&self) -> io::Result<(u32, u32)> {
            Ok((self.euid, self.egid))
        }
        fn block_device(&self, path: &[u8]) -> io::Result<Option<u64>> {
            assert_eq!(path, self.path);
            Ok(self.rdev)
        }
        fn read_c_string(&self, addr: u64, _: usize) -> io::Result<Vec<u8>> {
            self.reads.borrow_mut().push(addr);
            Ok(self.path.to_vec())
        }
        fn read(&self, addr: u64, len: usize) -> io::Result<Vec<u8>> {
            self.reads.borrow_mut().push(addr);
            Ok(vec![0; len])
        }
        fn write(&self, _: u64, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
    }

    /// A proxy for a device number no real file has, so nothing here reaches the kernel.
    fn proxy() -> QuotactlProxy {
        QuotactlProxy { device: PathBuf::from("/nonexistent/vz-test-dev"), rdev: 0xdead_beef }
    }

    fn root_caller(rdev: Option<u64>) -> Caller {
        Caller { euid: 0, egid: 0, path: b"/dev/loop7", rdev, reads: RefCell::new(Vec::new()) }
    }

    fn args(subcmd: libc::c_int, qtype: u32) -> [u64; 6] {
        let cmd = (u32::from_ne_bytes(subcmd.to_ne_bytes()) << 8) | qtype;
        [u64::from(cmd), 0x1000, 1000, 0x2000, 0, 0]
    }

    #[test]
    fn project_quota_and_unprivileged_subcommands_stay_the_kernels() {
        let caller = root_caller(Some(0xdead_beef));
        assert_eq!(proxy().answer(args(libc::Q_SETQUOTA, 2), &caller), QuotactlAnswer::AsCaller);
        for subcmd in [libc::Q_QUOTAON, libc::Q_QUOTAOFF, libc::Q_GETINFO, libc::Q_SYNC] {
            assert_eq!(proxy().answer(args(subcmd, 0), &caller), QuotactlAnswer::AsCaller);
        }
        assert!(caller.reads.borrow().is_empty(), "nothing read for calls left to the kernel");
    }

    #[test]
    fn only_root_on_the_ves_own_device_is_served() {
        let user = Caller { euid: 1000, ..root_caller(Some(0xdead_beef)) };
        assert_eq!(proxy().answer(args(libc::Q_SETQUOTA, 0), &user), QuotactlAnswer::AsCaller);
        let other_device = root_caller(Some(0x0801));
        let answer = proxy().answer(args(libc::Q_SETQUOTA, 1), &other_device);
        assert_eq!(answer, QuotactlAnswer::AsCaller);
        let not_a_device = root_caller(None);
        let answer = proxy().answer(args(libc::Q_GETQUOTA, 0), &not_a_device);
        assert_eq!(answer, QuotactlAnswer::AsCaller);
    }

    #[test]
    fn a_user_reading_their_own_quota_is_served_other_ids_are_not() {
        // args() asks about id 1000: user 1000's own user quota, group 1000's own group quota.
        let user = Caller { euid: 1000, egid: 50, ..root_caller(Some(0xdead_beef)) };
        let own = proxy().answer(args(libc::Q_GETQUOTA, 0), &user);
        assert_eq!(own, QuotactlAnswer::Failed(libc::ENOENT), "served on the host's node");
        let group = Caller { euid: 7, egid: 1000, ..root_caller(Some(0xdead_beef)) };
        let own_group = proxy().answer(args(libc::Q_GETQUOTA, 1), &group);
        assert_eq!(own_group, QuotactlAnswer::Failed(libc::ENOENT));
        let other = Caller { euid: 1001, egid: 50, ..root_caller(Some(0xdead_beef)) };
        assert_eq!(proxy().answer(args(libc::Q_GETQUOTA, 0), &other), QuotactlAnswer::AsCaller);
        assert_eq!(proxy().answer(args(libc::Q_SETQUOTA, 0), &user), QuotactlAnswer::AsCaller);
    }

    #[test]
    fn a_served_call_reaches_the_hosts_device_node() {
        // The proxy's device node does not exist: the host-side quotactl fails with ENOENT,
        // which shows the call went to the host's path, not the caller's.
        let caller = root_caller(Some(0xdead_beef));
        let answer = proxy().answer(args(libc::Q_SETQUOTA, 0), &caller);
        assert_eq!(answer, QuotactlAnswer::Failed(libc::ENOENT));
        assert_eq!(*caller.reads.borrow(), [0x1000, 0x2000], "path, then the if_dqblk");
    }
}
