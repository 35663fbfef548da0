//! The leak check: kernel objects a test left behind. A `vz-test-` name (what
//! `vz_tests::unique_name` gives) on a cgroup in any hierarchy, a mount, a loop device's
//! backing file, a network interface (or its alias) or a named netns, or a mount or loop
//! device backed by a file under one of the run's temporary directories, is a leak.
//!
//! Removal can lag (this host's PID 1 reaps orphans only every few seconds, and a zombie
//! keeps its cgroup busy), so the check polls for a few seconds before it reports.

use anyhow::{Result, bail};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MARK: &str = "vz-test-";

/// How long leaks may take to disappear before they count.
const GRACE: Duration = Duration::from_secs(8);

/// Leaks found before a run (not this run's; reported, not counted).
#[derive(Debug, Default, Clone)]
pub(crate) struct Snapshot(BTreeSet<String>);

impl Snapshot {
    /// What exists now.
    pub(crate) fn take(tmp: &[PathBuf]) -> Snapshot {
        Snapshot(scan(tmp))
    }
}

/// Fails, listing them, if kernel objects of the tests exist that were not in `before`.
pub(crate) fn check(tmp: &[PathBuf], before: &Snapshot) -> Result<()> {
    let deadline = Instant::now() + GRACE;
    let mut found;
    loop {
        found = scan(tmp);
        found.retain(|leak| !before.0.contains(leak));
        if found.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if !before.0.is_empty() {
        println!("leak check: {} object(s) existed before this run (not counted):", before.0.len());
        for leak in &before.0 {
            println!("  {leak}");
        }
    }
    if found.is_empty() {
        println!("leak check: no vz-test-* cgroup, mount, loop device, interface or netns left");
        return Ok(());
    }
    println!("leak check: {} object(s) left behind by the tests:", found.len());
    for leak in &found {
        println!("  {leak}");
    }
    bail!("the tests leaked {} kernel object(s) (listed above)", found.len())
}

/// Every leak visible now, as `kind: what` lines.
fn scan(tmp: &[PathBuf]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let marked = |s: &str| s.contains(MARK) || tmp.iter().any(|t| Path::new(s).starts_with(t));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for mount in parse_mountinfo(&mountinfo) {
        if mount.fstype == "cgroup" || mount.fstype == "cgroup2" {
            cgroups(Path::new(&mount.point), &mut found);
        }
        if marked(&mount.point) || marked(&mount.root) || marked(&mount.source) {
            found.insert(format!(
                "mount: {} ({} {} root {})",
                mount.point, mount.fstype, mount.source, mount.root
            ));
        }
    }
    for entry in read_dir("/sys/block") {
        let backing = entry.join("loop/backing_file");
        if let Ok(file) = std::fs::read_to_string(&backing) {
            let file = file.trim().trim_end_matches(" (deleted)");
            if marked(file) {
                found.insert(format!("loop device: {} -> {file}", name(&entry)));
            }
        }
    }
    for entry in read_dir("/sys/class/net") {
        let alias = std::fs::read_to_string(entry.join("ifalias")).unwrap_or_default();
        if name(&entry).contains(MARK) || alias.contains(MARK) {
            found.insert(format!("network interface: {} (alias {:?})", name(&entry), alias.trim()));
        }
    }
    for entry in read_dir("/run/netns") {
        if name(&entry).contains(MARK) {
            found.insert(format!("netns: {}", entry.display()));
        }
    }
    found
}

/// Walks a cgroup hierarchy; a directory named with the mark is reported, not entered.
fn cgroups(dir: &Path, found: &mut BTreeSet<String>) {
    for entry in read_dir(dir) {
        let Ok(meta) = entry.symlink_metadata() else { continue };
        if !meta.is_dir() {
            continue;
        }
        if name(&entry).contains(MARK) {
            found.insert(format!("cgroup: {}", entry.display()));
        } else {
            cgroups(&entry, found);
        }
    }
}

fn read_dir(dir: impl AsRef<Path>) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|it| it.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

fn name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// One line of `/proc/self/mountinfo`, the fields the check needs.
#[derive(Debug, PartialEq, Eq)]
struct MountInfo {
    root: String,
    point: String,
    fstype: String,
    source: String,
}

/// Parses mountinfo (proc(5)): `id parent maj:min root point opts [optional…] - type source superopts`.
fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            Some(MountInfo {
                root: unescape(left.get(3)?),
                point: unescape(left.get(4)?),
                fstype: right.next()?.to_owned(),
                source: unescape(right.next()?),
            })
        })
        .collect()
}

/// Undoes the kernel's octal escapes in mountinfo (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn mountinfo_lines_parse() {
        let text = "36 25 0:32 / /sys/fs/cgroup/memory rw,relatime shared:1 - cgroup cgroup rw,memory\n\
                    90 27 254:0 /tmp/a\\040b /mnt/x rw - ext4 /dev/vda rw\n";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts[0].point, "/sys/fs/cgroup/memory");
        assert_eq!(mounts[0].fstype, "cgroup");
        assert_eq!(mounts[1].root, "/tmp/a b");
        assert_eq!(mounts[1].source, "/dev/vda");
    }

    #[test]
    fn a_left_over_tmpfs_mount_is_found_and_its_removal_seen() {
        // A real mount under a directory given as the run's temp dir: the check must see it,
        // then see it gone. Needs root, as the whole suite does.
        let tmp = std::env::temp_dir().join(format!("xtask-leak-{}", std::process::id()));
        let point = tmp.join("m");
        std::fs::create_dir_all(&point).unwrap();
        let status =
            Command::new("mount").args(["-t", "tmpfs", "none"]).arg(&point).status().unwrap();
        assert!(status.success(), "mount failed (the tests run as root)");
        let found = scan(std::slice::from_ref(&tmp));
        let umount = Command::new("umount").arg(&point).status().unwrap();
        assert!(umount.success());
        assert!(found.iter().any(|l| l.contains(&*point.to_string_lossy())), "{found:?}");
        assert!(
            !scan(std::slice::from_ref(&tmp)).iter().any(|l| l.contains(&*tmp.to_string_lossy()))
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_marked_cgroup_is_found() {
        // A real v1 or v2 cgroup named like a test's, in the first hierarchy found.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let hierarchy = parse_mountinfo(&mountinfo)
            .into_iter()
            .find(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
            .expect("a cgroup hierarchy is mounted");
        let dir = Path::new(&hierarchy.point).join(format!("{MARK}xtask-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let found = scan(&[]);
        std::fs::remove_dir(&dir).unwrap();
        assert!(found.contains(&format!("cgroup: {}", dir.display())), "{found:?}");
    }
}
