//! The only file of vz-quota with `unsafe`: the loop device ioctls, the inode attribute ioctls
//! that carry an ext4 project id, quotactl, and statx's mount attributes, which no safe
//! wrapper covers.
//!
//! Layouts from `<linux/loop.h>`, `<linux/fs.h>` and `<linux/quota.h>`. Everything else (mount,
//! umount, statvfs) goes through nix.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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

/// `FS_IOC_FSGETXATTR`: `_IOR('X', 31, struct fsxattr)`.
const FS_IOC_FSGETXATTR: libc::Ioctl = 0x801C_581F;
/// `FS_IOC_FSSETXATTR`: `_IOW('X', 32, struct fsxattr)`.
const FS_IOC_FSSETXATTR: libc::Ioctl = 0x401C_5820;
/// `FS_XFLAG_PROJINHERIT`: new inodes in this directory take its project id.
pub(crate) const FS_XFLAG_PROJINHERIT: u32 = 0x200;

/// `struct fsxattr`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

/// The project id of the open file or directory `file`, and whether it has PROJINHERIT.
pub(crate) fn project_of(file: &File) -> io::Result<(u32, bool)> {
    let attr = get_fsxattr(file)?;
    Ok((attr.projid, attr.xflags & FS_XFLAG_PROJINHERIT != 0))
}

/// Puts `file` in project `projid`; `inherit` sets PROJINHERIT too (directories only: the
/// kernel refuses it on other files).
pub(crate) fn set_project(file: &File, projid: u32, inherit: bool) -> io::Result<()> {
    let mut attr = get_fsxattr(file)?;
    attr.projid = projid;
    if inherit {
        attr.xflags |= FS_XFLAG_PROJINHERIT;
    }
    // SAFETY: `attr` is a fully initialised `struct fsxattr` that outlives the call; the kernel
    // only reads it. The fd is open.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FSSETXATTR, &raw const attr) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn get_fsxattr(file: &File) -> io::Result<FsXattr> {
    let mut attr = FsXattr::default();
    // SAFETY: `attr` is a writable `struct fsxattr` that outlives the call; the kernel fills
    // it in. The fd is open.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FSGETXATTR, &raw mut attr) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(attr) }
}

/// `LO_FLAGS_READ_ONLY`: the device refuses writes (a snapshot's image).
pub(crate) const LO_FLAGS_READ_ONLY: u32 = 1;

/// `FIFREEZE`: `_IOWR('X', 119, int)`.
const FIFREEZE: libc::Ioctl = 0xC004_5877;
/// `FITHAW`: `_IOWR('X', 120, int)`.
const FITHAW: libc::Ioctl = 0xC004_5878;
/// `FITRIM`: `_IOWR('X', 121, struct fstrim_range)`.
const FITRIM: libc::Ioctl = 0xC018_5879;

/// Freezes the file system of the open directory `dir` (FIFREEZE): its writes wait, its
/// dirty data and journal are on disk.
pub(crate) fn fs_freeze(dir: &File) -> io::Result<()> {
    // SAFETY: FIFREEZE takes an (ignored) int argument; the fd is open.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), FIFREEZE, 0) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Thaws the file system of the open directory `dir` (FITHAW); EINVAL when not frozen.
pub(crate) fn fs_thaw(dir: &File) -> io::Result<()> {
    // SAFETY: FITHAW takes an (ignored) int argument; the fd is open.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), FITHAW, 0) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// What statx says of `path` as a mount point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MountStat {
    /// Whether it is the root of a mount (`STATX_ATTR_MOUNT_ROOT`, Linux 5.8+), if the
    /// kernel says.
    pub(crate) is_root: Option<bool>,
    /// The id of the mount it is on: the never-reused `STATX_MNT_ID_UNIQUE` (Linux 6.8+), else
    /// `STATX_MNT_ID` (5.8+), if the kernel says.
    pub(crate) mount_id: Option<u64>,
    /// The device of its file system (`st_dev`).
    pub(crate) dev: u64,
}

/// `STATX_MNT_ID`.
const STATX_MNT_ID: u32 = 0x1000;
/// `STATX_MNT_ID_UNIQUE`.
const STATX_MNT_ID_UNIQUE: u32 = 0x4000;

/// statx of `path` as a mount point. Symlinks are not followed, and the file system is not
/// asked for fresh attributes (`AT_STATX_DONT_SYNC`: a FUSE mount whose server is stopped
/// does not block the call).
pub(crate) fn mount_stat(path: &Path) -> io::Result<MountStat> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    let flags = libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_DONT_SYNC;
    let mask = STATX_MNT_ID | STATX_MNT_ID_UNIQUE;
    // SAFETY: `path` is a NUL-terminated string and `stx` a writable `struct statx` that
    // outlive the call; the kernel fills `stx` on success.
    let rc = unsafe { libc::statx(libc::AT_FDCWD, path.as_ptr(), flags, mask, stx.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statx succeeded and filled the zeroed struct.
    let stx = unsafe { stx.assume_init() };
    let attribute = libc::STATX_ATTR_MOUNT_ROOT as u64;
    Ok(MountStat {
        is_root: (stx.stx_attributes_mask & attribute != 0)
            .then_some(stx.stx_attributes & attribute != 0),
        mount_id: (stx.stx_mask & mask != 0).then_some(stx.stx_mnt_id),
        dev: libc::makedev(stx.stx_dev_major, stx.stx_dev_minor),
    })
}

/// `struct fstrim_range`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct FstrimRange {
    start: u64,
    len: u64,
    minlen: u64,
}

/// Discards every free block of the file system of the open directory `dir` (FITRIM);
/// returns the bytes the file system trimmed.
pub(crate) fn fs_trim(dir: &File) -> io::Result<u64> {
    let mut range = FstrimRange { start: 0, len: u64::MAX, minlen: 0 };
    // SAFETY: `range` is a fully initialised `struct fstrim_range` that outlives the call;
    // the kernel reads it and writes the trimmed length back. The fd is open.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), FITRIM, &raw mut range) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(range.len) }
}

/// The quota types of quotactl: `USRQUOTA`, `GRPQUOTA`, `PRJQUOTA`.
pub(crate) const USRQUOTA: libc::c_int = 0;
pub(crate) const GRPQUOTA: libc::c_int = 1;
pub(crate) const PRJQUOTA: libc::c_int = 2;
/// `IIF_BGRACE | IIF_IGRACE`: which fields of `struct if_dqinfo` Q_SETINFO sets.
const IIF_GRACE: u32 = 1 | 2;

/// `struct if_dqinfo`.
#[repr(C)]
#[derive(Debug, Default)]
struct IfDqinfo {
    bgrace: u64,
    igrace: u64,
    flags: u32,
    valid: u32,
}

/// Limits and usage of one quota id (a project, user or group): limits in 1K blocks and
/// inodes (0 = none), usage in bytes and inodes, and the Unix times the grace periods end
/// (0 = not over the soft limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct IdQuota {
    pub(crate) blocks_soft: u64,
    pub(crate) blocks_hard: u64,
    pub(crate) inodes_soft: u64,
    pub(crate) inodes_hard: u64,
    pub(crate) space_bytes: u64,
    pub(crate) inodes: u64,
    pub(crate) blocks_grace_end: u64,
    pub(crate) inodes_grace_end: u64,
}

fn special(device: &Path) -> io::Result<CString> {
    CString::new(device.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// quotactl with a whole command (`QCMD(subcmd, type)`) on the file system of block device
/// `device`.
///
/// # Safety
/// `data` must point to a live structure of the kind the subcommand reads or writes
/// (`struct if_dqblk` for Q_GETQUOTA/Q_SETQUOTA, `struct if_dqinfo` for Q_SETINFO).
unsafe fn raw_quotactl(
    cmd: libc::c_int,
    device: &Path,
    id: u32,
    data: *mut libc::c_char,
) -> io::Result<()> {
    let special = special(device)?;
    // quotactl's id is a qid_t (u32) the C prototype spells int.
    let id = libc::c_int::from_ne_bytes(id.to_ne_bytes());
    // SAFETY: `special` is a NUL-terminated path that outlives the call; the caller vouches
    // for `data`.
    let rc = unsafe { libc::quotactl(cmd, special.as_ptr(), id, data) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Reads project `id`'s limits and usage on the filesystem of block device `device`.
pub(crate) fn project_quota(device: &Path, id: u32) -> io::Result<IdQuota> {
    // SAFETY: `dqblk` is plain integers; all zeroes is a valid value.
    let mut q: libc::dqblk = unsafe { std::mem::zeroed() };
    // SAFETY: Q_GETQUOTA writes a `struct if_dqblk`, which `q` is.
    unsafe {
        raw_quotactl(libc::QCMD(libc::Q_GETQUOTA, PRJQUOTA), device, id, (&raw mut q).cast())
    }?;
    Ok(id_quota(&q))
}

/// Sets the limits of `id` in quota `qtype` ([`USRQUOTA`], [`GRPQUOTA`], [`PRJQUOTA`]); the
/// usage fields of `limits` are ignored.
pub(crate) fn set_limits(
    device: &Path,
    qtype: libc::c_int,
    id: u32,
    limits: &IdQuota,
) -> io::Result<()> {
    let mut q = dqblk_limits(limits);
    // SAFETY: Q_SETQUOTA reads a `struct if_dqblk`, which `q` is.
    unsafe { raw_quotactl(libc::QCMD(libc::Q_SETQUOTA, qtype), device, id, (&raw mut q).cast()) }
}

/// Sets the grace periods (seconds) of project quota on the filesystem of `device`.
pub(crate) fn set_project_grace(device: &Path, blocks: u64, inodes: u64) -> io::Result<()> {
    let mut info = IfDqinfo { bgrace: blocks, igrace: inodes, flags: 0, valid: IIF_GRACE };
    // SAFETY: Q_SETINFO reads a `struct if_dqinfo`, which `info` is.
    unsafe {
        raw_quotactl(libc::QCMD(libc::Q_SETINFO, PRJQUOTA), device, 0, (&raw mut info).cast())
    }
}

/// quotactl_fd(2) (Linux 5.14+): quotactl on the file system of the open file `file`, with
/// a whole command (`QCMD(subcmd, type)`); no block device node is needed (XFS, or an ext4
/// whose device the caller does not know).
///
/// # Safety
/// `data` must point to a live structure of the kind the subcommand reads or writes.
unsafe fn raw_quotactl_fd(
    file: &File,
    cmd: libc::c_int,
    id: u32,
    data: *mut libc::c_char,
) -> io::Result<()> {
    let cmd = libc::c_uint::from_ne_bytes(cmd.to_ne_bytes());
    // SAFETY: the fd is open for the duration of the call; the caller vouches for `data`.
    let rc = unsafe { libc::syscall(libc::SYS_quotactl_fd, file.as_raw_fd(), cmd, id, data) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `Q_XGETQSTAT`: `XQM_CMD(5)`, the quota state of a file system (`struct fs_quota_stat`).
const Q_XGETQSTAT: libc::c_int = (b'X' as libc::c_int) << 8 | 5;
/// `FS_QUOTA_PDQ_ACCT`: project quota usage is accounted.
pub(crate) const FS_QUOTA_PDQ_ACCT: u16 = 1 << 4;
/// `FS_QUOTA_PDQ_ENFD`: project quota limits are enforced.
pub(crate) const FS_QUOTA_PDQ_ENFD: u16 = 1 << 5;

/// The quota state flags (`qs_flags`: `FS_QUOTA_*`) of the file system holding `file`.
pub(crate) fn quota_state_flags(file: &File) -> io::Result<u16> {
    // `struct fs_quota_stat` is 80 bytes; qs_flags is the u16 at offset 2.
    let mut buf = [0u8; 128];
    // SAFETY: Q_XGETQSTAT writes a `struct fs_quota_stat`, which fits in `buf`.
    unsafe {
        raw_quotactl_fd(file, libc::QCMD(Q_XGETQSTAT, PRJQUOTA), 0, buf.as_mut_ptr().cast())
    }?;
    Ok(u16::from_ne_bytes([buf[2], buf[3]]))
}

/// Reads project `id`'s limits and usage on the file system holding `file`.
pub(crate) fn project_quota_fd(file: &File, id: u32) -> io::Result<IdQuota> {
    // SAFETY: `dqblk` is plain integers; all zeroes is a valid value.
    let mut q: libc::dqblk = unsafe { std::mem::zeroed() };
    // SAFETY: Q_GETQUOTA writes a `struct if_dqblk`, which `q` is.
    unsafe {
        raw_quotactl_fd(file, libc::QCMD(libc::Q_GETQUOTA, PRJQUOTA), id, (&raw mut q).cast())
    }?;
    Ok(id_quota(&q))
}

/// Sets project `id`'s limits on the file system holding `file`; the usage fields of
/// `limits` are ignored.
pub(crate) fn set_project_limits_fd(file: &File, id: u32, limits: &IdQuota) -> io::Result<()> {
    let mut q = dqblk_limits(limits);
    // SAFETY: Q_SETQUOTA reads a `struct if_dqblk`, which `q` is.
    unsafe {
        raw_quotactl_fd(file, libc::QCMD(libc::Q_SETQUOTA, PRJQUOTA), id, (&raw mut q).cast())
    }
}

/// The project quota grace periods (blocks, inodes; seconds) of the file system holding
/// `file`: one pair per file system, shared by every project on it.
pub(crate) fn project_grace_fd(file: &File) -> io::Result<(u64, u64)> {
    let mut info = IfDqinfo::default();
    // SAFETY: Q_GETINFO writes a `struct if_dqinfo`, which `info` is.
    unsafe {
        raw_quotactl_fd(file, libc::QCMD(libc::Q_GETINFO, PRJQUOTA), 0, (&raw mut info).cast())
    }?;
    Ok((info.bgrace, info.igrace))
}

/// Sets the project quota grace periods (seconds) of the file system holding `file`.
pub(crate) fn set_project_grace_fd(file: &File, blocks: u64, inodes: u64) -> io::Result<()> {
    let mut info = IfDqinfo { bgrace: blocks, igrace: inodes, flags: 0, valid: IIF_GRACE };
    // SAFETY: Q_SETINFO reads a `struct if_dqinfo`, which `info` is.
    unsafe {
        raw_quotactl_fd(file, libc::QCMD(libc::Q_SETINFO, PRJQUOTA), 0, (&raw mut info).cast())
    }
}

fn id_quota(q: &libc::dqblk) -> IdQuota {
    IdQuota {
        blocks_soft: q.dqb_bsoftlimit,
        blocks_hard: q.dqb_bhardlimit,
        inodes_soft: q.dqb_isoftlimit,
        inodes_hard: q.dqb_ihardlimit,
        space_bytes: q.dqb_curspace,
        inodes: q.dqb_curinodes,
        blocks_grace_end: q.dqb_btime,
        inodes_grace_end: q.dqb_itime,
    }
}

fn dqblk_limits(limits: &IdQuota) -> libc::dqblk {
    // SAFETY: `dqblk` is plain integers; all zeroes is a valid value.
    let mut q: libc::dqblk = unsafe { std::mem::zeroed() };
    q.dqb_bsoftlimit = limits.blocks_soft;
    q.dqb_bhardlimit = limits.blocks_hard;
    q.dqb_isoftlimit = limits.inodes_soft;
    q.dqb_ihardlimit = limits.inodes_hard;
    q.dqb_valid = libc::QIF_LIMITS;
    q
}

/// `Q_GETNEXTQUOTA` (not in libc).
pub(crate) const Q_GETNEXTQUOTA: libc::c_int = 0x80_0009;

/// The size of the structure quotactl's `subcmd` reads or writes through its `addr`, for
/// the subcommands that need CAP_SYS_ADMIN (for other ids than the caller's): the ones
/// [`quotactl_buffer`] runs.
pub(crate) fn quotactl_data_len(subcmd: libc::c_int) -> Option<usize> {
    match subcmd {
        // `struct if_nextdqblk` is `struct if_dqblk` with the id in its tail padding.
        libc::Q_GETQUOTA | libc::Q_SETQUOTA | Q_GETNEXTQUOTA => Some(size_of::<libc::dqblk>()),
        libc::Q_SETINFO => Some(size_of::<IfDqinfo>()),
        _ => None,
    }
}

/// quotactl with a whole command (`QCMD(subcmd, type)`) on the file system of block device
/// `device`; `data` is the structure the subcommand reads or writes, as bytes.
///
/// # Errors
/// EINVAL for a subcommand [`quotactl_data_len`] does not know or a short `data`; the
/// kernel's error otherwise.
pub(crate) fn quotactl_buffer(cmd: u32, device: &Path, id: u32, data: &mut [u8]) -> io::Result<()> {
    let subcmd = libc::c_int::try_from(cmd >> 8).unwrap_or(-1);
    if quotactl_data_len(subcmd).is_none_or(|len| data.len() < len) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let cmd = libc::c_int::from_ne_bytes(cmd.to_ne_bytes());
    // SAFETY: `data` is at least as long as the structure `subcmd` reads or writes (checked
    // above), and any bytes are a valid value of those plain-integer structures.
    unsafe { raw_quotactl(cmd, device, id, data.as_mut_ptr().cast()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel_headers() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
        assert_eq!(std::mem::size_of::<FsXattr>(), 28);
        assert_eq!(std::mem::size_of::<FstrimRange>(), 24);
        assert_eq!(std::mem::size_of::<IfDqinfo>(), 24);
        assert_eq!(std::mem::size_of::<libc::dqblk>(), 72);
    }
}
