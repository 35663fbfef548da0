//! The ext4 superblock of an image, read directly (1 KiB at offset 1024) instead of running
//! `dumpe2fs -h` at every mount: the fields of [`FsInfo`], same values as dumpe2fs prints.
//! Layout: the kernel's `struct ext4_super_block` (fs/ext4/ext4.h), little-endian.

use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{QuotaError, Result};
use crate::image::FsInfo;

/// ext4's magic number (`s_magic`).
const EXT4_MAGIC: u16 = 0xEF53;
/// `INCOMPAT_64BIT`: the block counts have high halves.
const INCOMPAT_64BIT: u32 = 0x80;
/// `RO_COMPAT_QUOTA`, `RO_COMPAT_PROJECT`.
const RO_COMPAT_QUOTA: u32 = 0x100;
const RO_COMPAT_PROJECT: u32 = 0x2000;

/// Reads the superblock of the ext4 image (or device) `image`.
///
/// # Errors
/// [`QuotaError::Io`] when it cannot be read or holds no ext4 superblock.
pub(crate) fn read(image: &Path) -> Result<FsInfo> {
    let file = std::fs::File::open(image).map_err(|e| QuotaError::io("open image", image, e))?;
    let mut block = [0_u8; 1024];
    file.read_exact_at(&mut block, 1024)
        .map_err(|e| QuotaError::io("read superblock", image, e))?;
    parse(&block).ok_or_else(|| {
        let e = std::io::Error::new(std::io::ErrorKind::InvalidData, "no ext4 superblock");
        QuotaError::io("read superblock", image, e)
    })
}

/// The fields of a 1 KiB superblock; `None` without ext4's magic.
pub(crate) fn parse(sb: &[u8; 1024]) -> Option<FsInfo> {
    let u16_at = |off: usize| u16::from_le_bytes([sb[off], sb[off + 1]]);
    let u32_at = |off: usize| u32::from_le_bytes([sb[off], sb[off + 1], sb[off + 2], sb[off + 3]]);
    if u16_at(0x38) != EXT4_MAGIC {
        return None;
    }
    let incompat = u32_at(0x60);
    let ro_compat = u32_at(0x64);
    let wide = |lo: usize, hi: usize| {
        let high = if incompat & INCOMPAT_64BIT != 0 { u64::from(u32_at(hi)) } else { 0 };
        high << 32 | u64::from(u32_at(lo))
    };
    // Revision 0 file systems have 128-byte inodes and no s_inode_size.
    let inode_size = if u32_at(0x4C) == 0 { 128 } else { u64::from(u16_at(0x58)) };
    Some(FsInfo {
        block_size: 1024_u64 << u32_at(0x18).min(16),
        block_count: wide(0x04, 0x150),
        free_blocks: wide(0x0C, 0x158),
        inode_count: u64::from(u32_at(0x00)),
        free_inodes: u64::from(u32_at(0x10)),
        blocks_per_group: u64::from(u32_at(0x20)),
        inodes_per_group: u64::from(u32_at(0x28)),
        inode_size,
        quota_feature: ro_compat & RO_COMPAT_QUOTA != 0,
        project_feature: ro_compat & RO_COMPAT_PROJECT != 0,
        user_quota: u32_at(0x240) != 0,
        group_quota: u32_at(0x244) != 0,
        project_quota: u32_at(0x26C) != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn garbage_is_no_superblock() {
        assert_eq!(parse(&[0; 1024]), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("zero.img");
        std::fs::write(&file, vec![0_u8; 4096]).unwrap();
        let err = read(&file).unwrap_err().to_string();
        assert!(err.contains("zero.img"), "{err}");
        assert!(read(&dir.path().join("missing.img")).is_err());
    }

    /// The direct read agrees with `dumpe2fs -h` (e2fsprogs, from scripts/install-deps) on
    /// images made with and without the quota features.
    #[test]
    fn the_superblock_reads_as_dumpe2fs_prints_it() {
        let dir = tempfile::tempdir().unwrap();
        for (name, size, options) in [
            ("plain.img", "64M", &["-O", "^quota"][..]),
            ("quota.img", "96M", &["-O", "quota,project", "-I", "256"][..]),
            ("small.img", "8M", &["-b", "1024", "-I", "128"][..]),
        ] {
            let image = dir.path().join(name);
            let out = Command::new("mkfs.ext4")
                .args(["-q", "-F"])
                .args(options)
                .arg(&image)
                .arg(size)
                .output()
                .expect("run mkfs.ext4");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let direct = read(&image).unwrap();
            let tool = crate::image::info_by_dumpe2fs(&image).unwrap();
            assert_eq!(direct, tool, "{name}");
            assert!(direct.block_count > 0 && direct.inode_size >= 128, "{name}: {direct:?}");
        }
    }
}
