//! Accounting by walking a tree (the directory layout's usage, and per-uid/gid usage on any
//! layout), and the state of the second level (per-uid/gid quota inside the VE).

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{QuotaError, Result};

/// Usage of one user or group, found by accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct UgidUsage {
    /// 1K blocks.
    pub blocks_kb: u64,
    /// Inodes.
    pub inodes: u64,
}

/// Usage of a tree: totals and per uid and gid.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TreeUsage {
    /// 1K blocks allocated (`st_blocks`, hard links counted once).
    pub blocks_kb: u64,
    /// Inodes (every file, directory, link, device… including the top directory).
    pub inodes: u64,
    /// Per owner uid.
    pub by_uid: BTreeMap<u32, UgidUsage>,
    /// Per owner gid.
    pub by_gid: BTreeMap<u32, UgidUsage>,
}

/// Walks `top` without crossing into other filesystems (as vzquota refuses to), counting each
/// inode once however many hard links it has.
pub(crate) fn walk(top: &Path) -> Result<TreeUsage> {
    let meta = top.symlink_metadata().map_err(|e| QuotaError::io("stat", top, e))?;
    let dev = meta.dev();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut sectors: u64 = 0;
    let mut per_uid: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let mut per_gid: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let mut inodes = 0u64;
    let mut account = |m: &std::fs::Metadata| {
        if m.nlink() > 1 && !m.is_dir() && !seen.insert(m.ino()) {
            return;
        }
        inodes += 1;
        sectors += m.blocks();
        for (map, id) in [(&mut per_uid, m.uid()), (&mut per_gid, m.gid())] {
            let entry = map.entry(id).or_default();
            entry.0 += m.blocks();
            entry.1 += 1;
        }
    };
    account(&meta);
    let mut stack: Vec<PathBuf> = vec![top.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Removed while walking: a live VE changes under us.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(QuotaError::io("read directory", dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| QuotaError::io("read directory", &dir, e))?;
            let path = entry.path();
            let m = match path.symlink_metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(QuotaError::io("stat", path, e)),
            };
            if m.dev() != dev {
                continue;
            }
            account(&m);
            if m.is_dir() {
                stack.push(path);
            }
        }
    }
    let to_usage = |map: BTreeMap<u32, (u64, u64)>| {
        map.into_iter()
            .map(|(id, (s, n))| (id, UgidUsage { blocks_kb: s / 2, inodes: n }))
            .collect()
    };
    Ok(TreeUsage {
        blocks_kb: sectors / 2,
        inodes,
        by_uid: to_usage(per_uid),
        by_gid: to_usage(per_gid),
    })
}

/// State of the second-level quota (per uid/gid inside the VE, QUOTAUGIDLIMIT).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecondLevel {
    /// QUOTAUGIDLIMIT is 0.
    Off,
    /// The VE's filesystem is mounted with user and group quota: the kernel enforces the
    /// limits the host sets ([`crate::PrivateArea::set_ugid_limits`]) and those root in the
    /// VE sets through a quotactl server ([`crate::QuotactlProxy`]).
    Enforced,
    /// Asked for, but the kernel cannot enforce it here; usage per uid/gid is still reported
    /// by accounting ([`crate::PrivateArea::ugid_usage`]).
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// Whether the running kernel can enforce per-uid/gid quota on ext4: quota support
/// (`CONFIG_QUOTA` shows `/proc/sys/fs/quota`) and the v2 quota format (`quota_v2` loaded, or
/// present as a module or built in). Mounting with quota options stays the final test.
pub fn kernel_has_quota() -> bool {
    if !Path::new("/proc/sys/fs/quota").is_dir() {
        return false;
    }
    if Path::new("/sys/module/quota_v2").exists() {
        return true;
    }
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let modules = Path::new("/lib/modules").join(release.trim());
    let as_module = std::fs::read_dir(modules.join("kernel/fs/quota")).is_ok_and(|entries| {
        entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("quota_v2.ko"))
    });
    let built_in = std::fs::read_to_string(modules.join("modules.builtin"))
        .is_ok_and(|list| list.lines().any(|l| l.ends_with("/quota_v2.ko")));
    as_module || built_in
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn walk_counts_hard_links_once_and_sums_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path();
        std::fs::create_dir(top.join("sub")).unwrap();
        std::fs::write(top.join("sub/a"), vec![1u8; 64 * 1024]).unwrap();
        std::fs::hard_link(top.join("sub/a"), top.join("b")).unwrap();
        symlink("sub/a", top.join("c")).unwrap();
        let usage = walk(top).unwrap();
        // top, sub, a (= b), c.
        assert_eq!(usage.inodes, 4);
        let a_kb = std::fs::metadata(top.join("b")).unwrap().blocks() / 2;
        assert!(a_kb >= 64, "{a_kb}");
        assert!(usage.blocks_kb >= a_kb && usage.blocks_kb < a_kb + 64, "{usage:?}");
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(usage.by_uid[&me].inodes, 4);
        assert_eq!(usage.by_uid.values().map(|u| u.blocks_kb).sum::<u64>(), usage.blocks_kb);
    }

    #[test]
    fn walking_a_missing_tree_names_it() {
        let err = walk(Path::new("/nonexistent/vz-quota")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/vz-quota"), "{err}");
    }
}
