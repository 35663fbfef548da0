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
/// `quota`: make the image with 256-byte inodes, the `project` feature and user, group and
/// project quota (needs kernel quota support to mount read-write).
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
    let mut args = mkfs_args(inodes_arg.as_deref(), quota);
    args.push(&path);
    run_tool("mkfs.ext4", &args, &[0])?;
    Ok(())
}

/// mkfs.ext4's arguments, less the image path.
fn mkfs_args(inodes: Option<&str>, quota: bool) -> Vec<&str> {
    let mut args = vec!["-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0"];
    if quota {
        // A project id lives in the inode's extra space: 128-byte inodes have none.
        args.extend(["-I", "256", "-O", "quota,project"]);
        args.extend([
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,nodiscard,quotatype=usrquota:grpquota:prjquota",
        ]);
    } else {
        args.extend(["-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"]);
    }
    if let Some(n) = inodes {
        args.extend(["-N", n]);
    }
    args
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
    /// Bytes per inode (128 leaves no room for a project id).
    pub(crate) inode_size: u64,
    pub(crate) quota_feature: bool,
    pub(crate) project_feature: bool,
    /// Which quota types have a hidden quota inode: user, group, project.
    pub(crate) user_quota: bool,
    pub(crate) group_quota: bool,
    pub(crate) project_quota: bool,
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

/// Reads the superblock of `image` (directly: no program runs at every mount).
pub(crate) fn info(image: &Path) -> Result<FsInfo> {
    crate::superblock::read(image)
}

/// Reads the superblock of `image` with `dumpe2fs -h` (the reference the direct read is
/// tested against).
#[cfg(test)]
pub(crate) fn info_by_dumpe2fs(image: &Path) -> Result<FsInfo> {
    let out = run_tool("dumpe2fs", &["-h", &image.to_string_lossy()], &[0])?;
    Ok(parse_dumpe2fs(&out))
}

#[cfg(test)]
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
            "Inode size" => info.inode_size = number,
            "User quota inode" => info.user_quota = number != 0,
            "Group quota inode" => info.group_quota = number != 0,
            "Project quota inode" => info.project_quota = number != 0,
            "Filesystem features" => {
                info.quota_feature = value.split_whitespace().any(|f| f == "quota");
                info.project_feature = value.split_whitespace().any(|f| f == "project");
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

/// tune2fs arguments (less the image) that add what `info` lacks of the wanted quota: user and
/// group quota (`user_group`), the `project` feature and project quota (`project`). Empty when
/// nothing is missing.
pub(crate) fn quota_tune_args(info: &FsInfo, user_group: bool, project: bool) -> Vec<String> {
    let mut args = Vec::new();
    if project && !info.project_feature {
        args.extend(["-O".to_owned(), "project".to_owned()]);
    }
    let types: Vec<&str> = [
        (user_group && !info.user_quota, "usrquota"),
        (user_group && !info.group_quota, "grpquota"),
        (project && !info.project_quota, "prjquota"),
    ]
    .into_iter()
    .filter_map(|(missing, name)| missing.then_some(name))
    .collect();
    if !types.is_empty() {
        args.extend(["-Q".to_owned(), types.join(",")]);
    }
    args
}

/// Runs tune2fs with `args` on the unmounted `image`.
pub(crate) fn tune(image: &Path, args: &[impl AsRef<str>]) -> Result<()> {
    let path = image.to_string_lossy();
    let mut all: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    all.push(&path);
    run_tool("tune2fs", &all, &[0]).map(drop)
}

/// Removes every quota feature (`quota`, `project`) from the unmounted `image`, for a kernel
/// that refuses to mount them read-write.
pub(crate) fn clear_quota_features(image: &Path) -> Result<()> {
    tune(image, &["-O", "^quota,^project"])
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
    fn quota_inodes_and_features_are_parsed() {
        let text = "Filesystem features:      has_journal quota metadata_csum project\n\
                    Inode size:\t          256\nUser quota inode:         3\n\
                    Project quota inode:      12\n";
        let info = parse_dumpe2fs(text);
        assert_eq!(info.inode_size, 256);
        assert!(info.quota_feature && info.project_feature);
        assert!(info.user_quota && !info.group_quota && info.project_quota);
    }

    #[test]
    fn tune2fs_adds_only_what_is_missing() {
        let bare = FsInfo { inode_size: 256, ..FsInfo::default() };
        assert!(quota_tune_args(&bare, false, false).is_empty());
        assert_eq!(quota_tune_args(&bare, true, false), ["-Q", "usrquota,grpquota"]);
        assert_eq!(quota_tune_args(&bare, false, true), ["-O", "project", "-Q", "prjquota"]);
        assert_eq!(
            quota_tune_args(&bare, true, true),
            ["-O", "project", "-Q", "usrquota,grpquota,prjquota"]
        );
        let full = FsInfo {
            project_feature: true,
            user_quota: true,
            group_quota: true,
            project_quota: true,
            ..bare
        };
        assert!(quota_tune_args(&full, true, true).is_empty());
        let project_only = FsInfo { user_quota: false, group_quota: false, ..full };
        assert_eq!(quota_tune_args(&project_only, true, true), ["-Q", "usrquota,grpquota"]);
    }

    #[test]
    fn images_for_quota_kernels_get_room_for_project_ids() {
        let args = mkfs_args(Some("1000"), true);
        let text = args.join(" ");
        assert!(text.contains("-I 256 -O quota,project"), "{text}");
        assert!(text.contains("quotatype=usrquota:grpquota:prjquota"), "{text}");
        assert!(text.ends_with("-N 1000"), "{text}");
        let plain = mkfs_args(None, false).join(" ");
        assert!(!plain.contains("quota") && !plain.contains("-I "), "{plain}");
    }

    #[test]
    fn failing_tools_report_program_and_stderr() {
        let err = run_tool("dumpe2fs", &["-h", "/nonexistent/vz-quota.img"], &[0]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("dumpe2fs") && text.contains("/nonexistent/vz-quota.img"), "{text}");
    }
}
