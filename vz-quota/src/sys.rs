//! The only file of vz-quota with `unsafe`: the loop device ioctls, which no safe wrapper covers.
//!
//! Layouts from `<linux/loop.h>`. Everything else (mount, umount, statvfs) goes through nix.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `LOOP_CTL_GET_FREE`: on `/dev/loop-control`, returns the number of a free device.
const LOOP_CTL_GET_FREE: libc::Ioctl = 0x4C82;
/// `LOOP_CONFIGURE`: binds a backing file and sets flags in one step (Linux 5.8+).
const LOOP_CONFIGURE: libc::Ioctl = 0x4C0A;
/// `LOOP_SET_CAPACITY`: re-reads the backing file's size.
const LOOP_SET_CAPACITY: libc::Ioctl = 0x4C07;
/// `LO_FLAGS_AUTOCLEAR`: detach when the last user closes the device.
pub(crate) const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// `LO_FLAGS_DIRECT_IO`: bypass the page cache of the backing file.
pub(crate) const LO_FLAGS_DIRECT_IO: u32 = 16;

const LO_NAME_SIZE: usize = 64;
const LO_KEY_SIZE: usize = 32;

/// `struct loop_info64`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; LO_KEY_SIZE],
    lo_init: [u64; 2],
}

/// `struct loop_config`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Asks `/dev/loop-control` for a free loop device number (creating the device if needed).
pub(crate) fn loop_ctl_get_free(control: &File) -> io::Result<u32> {
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and only returns an int; the fd is open.
    let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
    u32::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Binds `backing` to the loop device `device` with `flags`, recording `name` (truncated to
/// 63 bytes) as the file name the kernel shows.
pub(crate) fn loop_configure(
    device: &File,
    backing: &File,
    flags: u32,
    name: &[u8],
) -> io::Result<()> {
    let fd = u32::try_from(backing.as_raw_fd())
        .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    let mut file_name = [0u8; LO_NAME_SIZE];
    let len = name.len().min(LO_NAME_SIZE - 1);
    file_name[..len].copy_from_slice(&name[..len]);
    let config = LoopConfig {
        fd,
        block_size: 0,
        info: LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: flags,
            lo_file_name: file_name,
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; LO_KEY_SIZE],
            lo_init: [0; 2],
        },
        reserved: [0; 8],
    };
    // SAFETY: `config` is a fully initialised `struct loop_config` that outlives the call; the
    // kernel only reads it. Both fds are open for the duration of the call.
    let rc = unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE, &raw const config) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Makes the loop device `device` pick up a new size of its backing file.
pub(crate) fn loop_set_capacity(device: &File) -> io::Result<()> {
    // SAFETY: LOOP_SET_CAPACITY takes no argument; the fd is an open loop device.
    let rc = unsafe { libc::ioctl(device.as_raw_fd(), LOOP_SET_CAPACITY, 0) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel_headers() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }
}
