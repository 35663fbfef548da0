//! The ext4 image of the image layout: making it, reading its geometry, checking and resizing
//! it, through the e2fsprogs tools (mkfs.ext4, e2fsck, resize2fs, dumpe2fs, tune2fs).

use std::fs::OpenOptions;
use std::path::Path;
use std::process::Command;

use crate::error::{QuotaError, Result};

/// Filesystem block size of images: 4 KiB.
pub(crate) const BLOCK_SIZE: u64 = 4096;

/// Runs an e2fsprogs tool; `ok_codes` are the exit codes that mean success.
/// Returns stdout.
pub(crate) fn run_tool(program: &'static str, args: &[&str], ok_codes: &[i32]) -> Result<String> {
    tracing::debug!(program, ?args, "running");
    let failed = |status: String, stderr: String| QuotaError::Tool {
        program,
        args: args.join(" "),
        status,
        stderr,
    };
    let output = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| failed(format!("could not start: {e}"), String::new()))?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    match output.status.code() {
        Some(code) if ok_codes.contains(&code) => {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        _ => {
            let mut text = stderr;
            if text.is_empty() {
                text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            }
            Err(failed(output.status.to_string(), text))
        }
    }
}

/// Makes a sparse file of `size_kb` at `image` (which must not exist) with an ext4 in it.
/// `inodes`: the inode count to ask mkfs for (`-N`), rounded up by ext4 to whole groups.
/// `quota`: make the image with the `quota` feature (second-level quota; needs kernel support).
pub(crate) fn create(image: &Path, size_kb: u64, inodes: Option<u64>, quota: bool) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(image)
        .map_err(|e| QuotaError::io("create image", image, e))?;
    file.set_len(size_kb.saturating_mul(1024))
        .map_err(|e| QuotaError::io("size image", image, e))?;
    drop(file);
    let path = image.to_string_lossy();
    let inodes_arg = inodes.map(|n| n.max(16).to_string());
    let mut args = vec!["-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0"];
    args.extend(["-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"]);
    if let Some(n) = &inodes_arg {
        args.extend(["-N", n.as_str()]);
    }
    if quota {
        args.extend(["-O", "quota"]);
    }
    args.push(&path);
    run_tool("mkfs.ext4", &args, &[0])?;
    Ok(())
}

/// Geometry and counters of an ext4, from its superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct FsInfo {
    pub(crate) block_size: u64,
    pub(crate) block_count: u64,
    pub(crate) free_blocks: u64,
    pub(crate) inode_count: u64,
    pub(crate) free_inodes: u64,
    pub(crate) blocks_per_group: u64,
    pub(crate) inodes_per_group: u64,
    pub(crate) quota_feature: bool,
}

impl FsInfo {
    /// Size of the filesystem in KB.
    pub(crate) fn size_kb(&self) -> u64 {
        self.block_count * self.block_size / 1024
    }

    /// Inodes the filesystem has at `size_kb` (ext4's inodes per group times groups).
    pub(crate) fn inodes_at(&self, size_kb: u64) -> u64 {
        let blocks = size_kb * 1024 / self.block_size.max(1);
        blocks.div_ceil(self.blocks_per_group.max(1)) * self.inodes_per_group
    }
}

/// Reads the superblock of `image` with `dumpe2fs -h`.
pub(crate) fn info(image: &Path) -> Result<FsInfo> {
    let out = run_tool("dumpe2fs", &["-h", &image.to_string_lossy()], &[0])?;
    Ok(parse_dumpe2fs(&out))
}

fn parse_dumpe2fs(text: &str) -> FsInfo {
    let mut info = FsInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        let number = value.parse::<u64>().unwrap_or(0);
        match key.trim() {
            "Block size" => info.block_size = number,
            "Block count" => info.block_count = number,
            "Free blocks" => info.free_blocks = number,
            "Inode count" => info.inode_count = number,
            "Free inodes" => info.free_inodes = number,
            "Blocks per group" => info.blocks_per_group = number,
            "Inodes per group" => info.inodes_per_group = number,
            "Filesystem features" => {
                info.quota_feature = value.split_whitespace().any(|f| f == "quota");
            }
            _ => {}
        }
    }
    info
}

/// Forces a full check of an unmounted image, repairing what is safe (`e2fsck -f -p`).
pub(crate) fn check(image: &Path) -> Result<()> {
    // 0: clean, 1: errors corrected; anything else needs a person.
    run_tool("e2fsck", &["-f", "-p", &image.to_string_lossy()], &[0, 1]).map(drop)
}

/// Resizes the filesystem on `target` (an unmounted image, or the loop device of a mounted
/// one for online growth) to `size_kb`.
pub(crate) fn resize(target: &Path, size_kb: u64) -> Result<()> {
    let size = format!("{size_kb}K");
    run_tool("resize2fs", &[&target.to_string_lossy(), &size], &[0]).map(drop)
}

/// The smallest size in KB that resize2fs will shrink the unmounted `image` to.
pub(crate) fn minimum_kb(image: &Path) -> Result<u64> {
    let out = run_tool("resize2fs", &["-P", &image.to_string_lossy()], &[0])?;
    let blocks = out
        .lines()
        .find_map(|l| l.split_once("minimum size of the filesystem:"))
        .and_then(|(_, n)| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Ok(blocks * BLOCK_SIZE / 1024)
}

/// Turns the `quota` feature on or off on an unmounted image.
pub(crate) fn set_quota_feature(image: &Path, on: bool) -> Result<()> {
    let feature = if on { "quota" } else { "^quota" };
    run_tool("tune2fs", &["-O", feature, &image.to_string_lossy()], &[0]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumpe2fs_header_is_parsed() {
        let text = "Filesystem features:      has_journal ext_attr quota metadata_csum\n\
                    Inode count:              65536\nBlock count:              262144\n\
                    Free blocks:              249189\nFree inodes:              65525\n\
                    Block size:               4096\nBlocks per group:         32768\n\
                    Inodes per group:         8192\n";
        let info = parse_dumpe2fs(text);
        assert_eq!(info.block_count, 262_144);
        assert_eq!(info.size_kb(), 1_048_576);
        assert_eq!(info.free_inodes, 65_525);
        assert!(info.quota_feature);
        assert_eq!(info.inodes_at(1_048_576), 65_536);
        assert_eq!(info.inodes_at(2 * 1_048_576), 131_072);
        assert_eq!(info.inodes_at(1_048_576 + 4), 65_536 + 8192);
    }

    #[test]
    fn failing_tools_report_program_and_stderr() {
        let err = run_tool("dumpe2fs", &["-h", "/nonexistent/vz-quota.img"], &[0]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("dumpe2fs") && text.contains("/nonexistent/vz-quota.img"), "{text}");
    }
}
