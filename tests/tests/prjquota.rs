//! Black-box tests of the directory layout (simfs) with limits: where VE_PRIVATE lives on a
//! file system with project quota (here an ext4 of the test's own, `-O project,quota` on a
//! loop device, mounted `prjquota`), each VE's tree is one project and the kernel enforces
//! DISKSPACE, DISKINODES and QUOTATIME. A kernel without quota formats (this project's build
//! host) cannot mount such a file system read-write: there the same tests put the VEs on a
//! plain ext4 and check the clear "not enforced" state instead (the kernel lab, which sets
//! `VZ_TEST_REQUIRE=quota`, must enforce).
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]
#![allow(clippy::print_stderr, reason = "the measurements are printed for the person running")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use vz_tests::{Need, VzTree, ok, output_text, require, unique_ctid};

/// A test tree whose VE_PRIVATE is on an ext4 of its own (on an auto-clearing loop device,
/// mounted below the tree, so the tree's cleanup unmounts it and frees the device).
struct ProjTree {
    tree: VzTree,
    /// The mount point of the test's file system.
    fs: PathBuf,
    /// Whether that file system enforces project quota.
    enforcing: bool,
}

impl ProjTree {
    /// `quota`: try for project quota (else a plain ext4, as for the "without" case).
    fn new(quota: bool) -> ProjTree {
        let tree = VzTree::new("");
        let image = tree.path().join("fs.img");
        let fs = tree.path().join("fs");
        std::fs::create_dir(&fs).expect("mkdir fs");
        let make = |features: &[&str], options: &str| {
            let _ = std::fs::remove_file(&image);
            ok(Command::new("truncate")
                .arg("-s")
                .arg("1G")
                .arg(&image)
                .output()
                .expect("truncate"));
            ok(Command::new("mkfs.ext4")
                .args(["-q", "-F", "-I", "256"])
                .args(features)
                .arg(&image)
                .output()
                .expect("run mkfs.ext4"));
            Command::new("mount")
                .args(["-t", "ext4", "-o", options])
                .arg(&image)
                .arg(&fs)
                .output()
                .expect("run mount")
        };
        let mut enforcing = false;
        if quota {
            let mounted =
                make(&["-O", "project,quota", "-E", "quotatype=prjquota"], "loop,prjquota");
            enforcing = mounted.status.success();
            assert!(
                enforcing || !vz_tests::required("quota"),
                "this run requires quota, but the prjquota mount failed: {}",
                output_text(&mounted)
            );
        }
        if !enforcing {
            ok(make(&[], "loop"));
        }
        let conf = tree.vz_conf();
        let text = std::fs::read_to_string(&conf).expect("read vz.conf");
        let private = format!("VE_PRIVATE={}/private/$VEID", fs.display());
        let lines: Vec<&str> = text
            .lines()
            .map(|l| if l.starts_with("VE_PRIVATE=") { private.as_str() } else { l })
            .collect();
        std::fs::write(&conf, lines.join("\n") + "\n").expect("write vz.conf");
        tree.build_busybox_cache();
        ProjTree { tree, fs, enforcing }
    }

    fn private(&self, ctid: &str) -> PathBuf {
        self.fs.join("private").join(ctid)
    }

    /// The area's record (kept beside the private directory).
    fn record(&self, ctid: &str) -> String {
        std::fs::read_to_string(self.fs.join("private").join(format!("quota.{ctid}")))
            .unwrap_or_default()
    }

    /// The project id the record keeps.
    fn project_id(&self, ctid: &str) -> Option<u32> {
        self.record(ctid).lines().find_map(|l| {
            l.strip_prefix("PROJECT_ID=").map(|v| v.trim_matches('"').parse().expect("an id"))
        })
    }

    fn create(&self, ctid: &str, extra: &[&str]) -> String {
        let mut args = vec!["create", ctid, "--layout", "simfs"];
        args.extend_from_slice(extra);
        let out = self.tree.run("vzctl", &args);
        let text = output_text(&out);
        assert!(out.status.success(), "{text}");
        assert!(self.private(ctid).join("bin").is_dir(), "the VE is on the test's fs: {text}");
        text
    }

    /// `vzquota stat -t`'s soft-limit line.
    fn soft_state(&self, ctid: &str) -> String {
        let stat = ok(self.tree.run("vzquota", &["stat", "-t", ctid]));
        stat.lines().find(|l| l.starts_with("Soft limits and grace:")).unwrap_or("").to_owned()
    }

    /// (1K blocks, inodes) used, from `vzquota stat`.
    fn usage(&self, ctid: &str) -> (u64, u64) {
        let stat = ok(self.tree.run("vzquota", &["stat", ctid]));
        let used = |n: usize| -> u64 {
            let line = stat.lines().nth(n).unwrap_or_else(|| panic!("{stat}"));
            let field = line.split_whitespace().nth(1).expect("usage");
            field.trim_end_matches('*').parse().expect("a number")
        };
        (used(1), used(2))
    }

    fn exec(&self, ctid: &str, command: &str) -> std::process::Output {
        self.tree.run("vzctl", &["exec2", ctid, command])
    }
}

/// The probe: FS_IOC_FSSETXATTR changes (`projid N`, `inherit`, `nodump`) and quotactl_fd of
/// project quota (`getq ID`, `setq ID`) on a path; prints `ok …` or the errno's name.
const PROBE: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/quota.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifndef SYS_quotactl_fd
#define SYS_quotactl_fd 443
#endif
static int fail(void) { printf("%s\n", errno == EINVAL ? "EINVAL" : errno == EPERM ? "EPERM"
    : errno == EOPNOTSUPP ? "EOPNOTSUPP" : errno == ENOSYS ? "ENOSYS" : strerror(errno)); return 0; }
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) { perror("open"); return 2; }
    const char *op = argv[2];
    if (!strcmp(op, "getq") || !strcmp(op, "setq")) {
        struct if_dqblk q; memset(&q, 0, sizeof q);
        unsigned id = strtoul(argv[3], 0, 10);
        if (!strcmp(op, "setq")) { q.dqb_bhardlimit = 1 << 30; q.dqb_valid = QIF_BLIMITS; }
        int cmd = QCMD(!strcmp(op, "getq") ? Q_GETQUOTA : Q_SETQUOTA, PRJQUOTA);
        if (syscall(SYS_quotactl_fd, fd, cmd, id, &q) < 0) return fail();
        printf("ok %llu %llu %llu %llu %llu\n", (unsigned long long)q.dqb_bsoftlimit,
               (unsigned long long)q.dqb_bhardlimit, (unsigned long long)q.dqb_curspace,
               (unsigned long long)q.dqb_curinodes, (unsigned long long)q.dqb_ihardlimit);
        return 0;
    }
    struct fsxattr a;
    if (ioctl(fd, FS_IOC_FSGETXATTR, &a) < 0) return fail();
    if (!strcmp(op, "projid")) a.fsx_projid = strtoul(argv[3], 0, 10);
    else if (!strcmp(op, "inherit")) a.fsx_xflags ^= FS_XFLAG_PROJINHERIT;
    else if (!strcmp(op, "nodump")) a.fsx_xflags ^= FS_XFLAG_NODUMP;
    else return 2;
    if (ioctl(fd, FS_IOC_FSSETXATTR, &a) < 0) return fail();
    printf("ok %u\n", a.fsx_projid);
    return 0;
}
"#;

fn probe(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().expect("run the probe");
    assert!(out.status.success(), "probe {args:?}: {}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn simfs_diskspace_and_diskinodes_are_held_by_the_host_project_quota() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let pt = ProjTree::new(true);
    let ctid = unique_ctid().to_string();
    let created = pt.create(&ctid, &["--diskspace", "20M:30M", "--diskinodes", "100000:100000"]);
    ok(pt.tree.run("vzctl", &["start", &ctid]));
    let state = pt.soft_state(&ctid);
    let (used_kb, used_inodes) = pt.usage(&ctid);
    let listed = ok(pt.tree.run("vzlist", &["-H", "-o", "diskspace,diskspace.h", &ctid]));
    let dd = pt.exec(&ctid, "dd if=/dev/zero of=/fill bs=1M count=50");
    if !pt.enforcing {
        // No project quota on the host file system: said at create, in stat, and nothing holds.
        assert!(created.contains("DISKSPACE and DISKINODES are not enforced"), "{created}");
        assert!(created.contains("project quota"), "the warning says why: {created}");
        assert!(state.contains("reported only") && state.contains("project quota"), "{state}");
        assert!(pt.project_id(&ctid).is_none(), "{}", pt.record(&ctid));
        assert_eq!(dd.status.code(), Some(0), "{}", output_text(&dd));
        let stat = ok(pt.tree.run("vzquota", &["stat", &ctid]));
        assert!(stat.lines().nth(1).is_some_and(|l| l.contains('*')), "over, marked: {stat}");
        return;
    }
    assert!(!created.contains("not enforced"), "{created}");
    assert_eq!(state, "Soft limits and grace: enforced by the kernel (project quota)");
    assert!(pt.project_id(&ctid).is_some_and(|id| id >= 100_000), "{}", pt.record(&ctid));
    // The unpacked template was counted from the start (its symlinks included).
    assert!(used_kb > 500 && used_inodes > 50, "{used_kb} KB, {used_inodes} inodes");
    // vzlist read the same usage from the kernel; df in the VE shows the project's limit
    // (ext4 answers statvfs of a PROJINHERIT directory with its project's quota).
    let listed: Vec<&str> = listed.split_whitespace().collect();
    let listed_kb: u64 = listed[0].parse().expect("a number");
    // (A running VE's init may write a little in between.)
    assert!(listed_kb.abs_diff(used_kb) <= 64 && listed[1] == "30720", "vzlist: {listed:?}");
    let df = ok(pt.exec(&ctid, "df -k / | tail -1"));
    let df_kb: u64 = df.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("df size");
    assert_eq!(df_kb, 20_480, "df in the VE shows DISKSPACE's soft limit: {df}");
    // QUOTATIME 0 (the sample's): the write that crosses the 20M soft limit is the last.
    assert_ne!(dd.status.code(), Some(0), "{}", output_text(&dd));
    assert!(output_text(&dd).contains("Disk quota exceeded"), "{}", output_text(&dd));
    let (full_kb, _) = pt.usage(&ctid);
    assert!((20_000..=30_720).contains(&full_kb), "stopped at the limits: {full_kb} KB");
    ok(pt.exec(&ctid, "rm /fill"));

    // Limits change live: a larger DISKSPACE lets the same write through.
    ok(pt.tree.run("vzctl", &["set", &ctid, "--diskspace", "100M:120M", "--save"]));
    ok(pt.exec(&ctid, "dd if=/dev/zero of=/fill bs=1M count=50"));
    let (after_kb, _) = pt.usage(&ctid);
    assert!(after_kb >= used_kb + 50 * 1024, "the kernel counts the write: {after_kb} KB");
    ok(pt.exec(&ctid, "rm /fill"));

    // DISKINODES: 20 more inodes than in use, hard.
    let (_, inodes) = pt.usage(&ctid);
    let limit = (inodes + 20).to_string();
    ok(pt.tree.run("vzctl", &["set", &ctid, "--diskinodes", &format!("{limit}:{limit}")]));
    let many = pt.exec(
        &ctid,
        "mkdir /many && cd /many && for i in $(seq 1 40); do touch f$i || exit 1; done",
    );
    assert_ne!(many.status.code(), Some(0), "{}", output_text(&many));
    assert!(output_text(&many).contains("Disk quota exceeded"), "{}", output_text(&many));
    let (_, at_limit) = pt.usage(&ctid);
    assert_eq!(at_limit, inodes + 20, "the project holds exactly DISKINODES' hard limit");
    ok(pt.exec(&ctid, "rm -r /many"));

    // Soft limit with a grace period: over it, writes go on and the grace runs.
    ok(pt.tree.run("vzctl", &["set", &ctid, "--diskinodes", "unlimited", "--quotatime", "3600"]));
    ok(pt.tree.run("vzctl", &["set", &ctid, "--diskspace", "5M:120M"]));
    ok(pt.exec(&ctid, "dd if=/dev/zero of=/fill bs=1M count=10"));
    let stat = ok(pt.tree.run("vzquota", &["stat", &ctid]));
    let blocks = stat.lines().nth(1).expect("blocks line");
    assert!(blocks.contains('*'), "over the soft limit: {stat}");
    let grace = blocks.split_whitespace().last().expect("grace");
    assert!(["01:00", "00:59"].contains(&grace), "the grace runs from the kernel: {stat}");
    ok(pt.tree.run("vzctl", &["stop", &ctid, "--fast"]));
}

#[test]
fn destroy_frees_the_project_id_and_ids_are_never_shared() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let pt = ProjTree::new(true);
    let bin = pt.tree.compile_c("prjprobe", PROBE);
    let (a, b) = (unique_ctid().to_string(), unique_ctid().to_string());
    pt.create(&a, &["--diskspace", "50M:60M"]);
    pt.create(&b, &["--diskspace", "70M:80M"]);
    if !pt.enforcing {
        assert!(pt.project_id(&a).is_none() && pt.project_id(&b).is_none());
        let soft = pt.soft_state(&a);
        assert!(soft.contains("reported only"), "{soft}");
        ok(pt.tree.run("vzctl", &["destroy", &a]));
        assert!(!pt.private(&a).exists());
        return;
    }
    let (ia, ib) = (pt.project_id(&a).expect("an id"), pt.project_id(&b).expect("an id"));
    assert_ne!(ia, ib, "two VEs never share a project id");
    let fs = pt.fs.to_string_lossy().into_owned();
    let quota_of = |id: u32| probe(&bin, &[&fs, "getq", &id.to_string()]);
    let qa = quota_of(ia);
    let fields: Vec<&str> = qa.split_whitespace().collect();
    assert_eq!(&fields[..3], ["ok", "51200", "61440"], "{qa}");
    ok(pt.tree.run("vzctl", &["destroy", &a]));
    assert_eq!(quota_of(ia), "ok 0 0 0 0 0", "the destroyed VE's id holds nothing");
    assert!(quota_of(ib).starts_with("ok 71680 81920 "), "the other VE keeps its own");
    // The freed id is taken again by the next VE.
    let c = unique_ctid().to_string();
    pt.create(&c, &[]);
    assert_eq!(pt.project_id(&c), Some(ia));
}

#[test]
fn root_in_the_ve_cannot_change_project_ids_or_reach_the_quota() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let pt = ProjTree::new(true);
    let bin = pt.tree.compile_c("prjprobe", PROBE);
    let (ctid, other) = (unique_ctid().to_string(), unique_ctid().to_string());
    pt.create(&ctid, &["--diskspace", "50M:60M"]);
    pt.create(&other, &["--diskspace", "50M:60M"]);
    std::fs::copy(&bin, pt.private(&ctid).join("prjprobe")).expect("copy the probe");
    ok(pt.tree.run("vzctl", &["start", &ctid]));
    ok(pt.exec(&ctid, "mkdir /d && touch /d/f"));
    let in_ve = |args: &str| {
        let out = pt.exec(&ctid, &format!("/prjprobe {args}"));
        assert!(out.status.success(), "{args}: {}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // The canary: the same ioctl from the VE changes what a user namespace may change.
    assert!(in_ve("/d nodump").starts_with("ok"), "the probe works in the VE");
    // Neither the project id nor PROJINHERIT (the kernel: EINVAL outside the initial user ns).
    assert_eq!(in_ve("/d/f projid 7"), "EINVAL");
    assert_eq!(in_ve("/d inherit"), "EINVAL");
    let other_id = pt.project_id(&other).map_or(7, |id| id);
    assert_eq!(in_ve(&format!("/d/f projid {other_id}")), "EINVAL");
    // The project's limits are the host's: quotactl of project quota is refused.
    let own = pt.project_id(&ctid).map_or(0, |id| id);
    for args in [format!("/ setq {own}"), format!("/ getq {other_id}")] {
        let answer = in_ve(&args);
        assert!(["EPERM", "ENOSYS"].contains(&answer.as_str()), "{args}: {answer}");
    }
    // The same probe on the host (initial user namespace) may.
    let scratch = pt.fs.join("scratch");
    std::fs::create_dir(&scratch).expect("mkdir scratch");
    let scratch = scratch.to_string_lossy().into_owned();
    assert!(probe(&bin, &[&scratch, "inherit"]).starts_with("ok"), "the host may toggle it");
    let host_projid = probe(&bin, &[&scratch, "projid", "7"]);
    if pt.enforcing {
        assert_eq!(host_projid, "ok 7", "the host may change a project id");
        let file = pt.private(&ctid).join("d/f");
        let lsattr = ok(Command::new("lsattr").arg("-p").arg(&file).output().expect("lsattr"));
        let id: u32 = lsattr.split_whitespace().next().expect("id").parse().expect("a number");
        assert_eq!(Some(id), pt.project_id(&ctid), "the VE's file stayed in its project");
    } else {
        // A file system without the project feature has no ids to change.
        assert_eq!(host_projid, "EOPNOTSUPP");
    }
    ok(pt.tree.run("vzctl", &["stop", &ctid, "--fast"]));
}

/// Names of the kernel threads (kthreadd's children) a block layout brings: loop workers,
/// jbd2 journals, ext4's reserved-conversion rescuers.
fn layout_threads() -> Vec<String> {
    let names = ["loop", "jbd2", "ext4-rsv"];
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| {
            let (head, rest) = stat.rsplit_once(") ")?;
            let comm = head.split_once(" (")?.1.to_owned();
            let kernel = rest.split_whitespace().nth(1) == Some("2");
            (kernel && names.iter().any(|n| comm.starts_with(n))).then_some(comm)
        })
        .collect()
}

/// The source devices of the mounts at or below `root` (`/dev/loop3` → `loop3`).
fn devices_under(root: &Path) -> Vec<String> {
    let root = root.canonicalize().expect("resolve root");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = PathBuf::from(left.split(' ').nth(4)?.replace("\\040", " "));
            let source = right.split(' ').nth(1)?;
            point.starts_with(&root).then(|| source.trim_start_matches("/dev/").to_owned())
        })
        .collect()
}

#[test]
fn a_simfs_ve_costs_no_kernel_thread_with_or_without_enforcement() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    for quota in [true, false] {
        let pt = ProjTree::new(quota);
        let ctid = unique_ctid().to_string();
        pt.create(&ctid, &["--diskspace", "100M:120M"]);
        let before = layout_threads();
        ok(pt.tree.run("vzctl", &["start", &ctid]));
        let running = layout_threads();
        let root = pt.tree.path().join("root").join(&ctid);
        let devices = devices_under(&root);
        ok(pt.tree.run("vzctl", &["stop", &ctid, "--fast"]));
        // The VE's root is its private directory on the test's file system: no device, so
        // no journal of its own (the file system's own journal thread was there before).
        let fs_device = devices_under(&pt.fs);
        assert_eq!(devices, fs_device[..1], "a bind mount of the private directory");
        let journal = format!("jbd2/{}-", fs_device[0]);
        assert!(before.iter().any(|t| t.starts_with(&journal)), "the fs's journal: {before:?}");
        let new: Vec<&String> = running.iter().filter(|t| !before.contains(t)).collect();
        eprintln!(
            "simfs VE, project quota {}: {} layout kernel threads before start, {} running \
             (new: {new:?}; other tests' VEs may come and go)",
            if pt.enforcing { "enforced" } else { "off" },
            before.len(),
            running.len()
        );
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            ok(pt.tree.run("vzctl", &["start", &ctid]));
            ok(pt.tree.run("vzctl", &["stop", &ctid, "--fast"]));
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        eprintln!(
            "simfs start+stop --fast, project quota {}: median {:.1} ms of {times:.1?}",
            if pt.enforcing { "enforced" } else { "off" },
            times[2]
        );
        if !quota {
            // The canary: an image VE on the same host brings its journal thread.
            let image = unique_ctid().to_string();
            let made = pt.tree.run("vzctl", &["create", &image, "--layout", "ploop"]);
            ok(made);
            ok(pt.tree.run("vzctl", &["start", &image]));
            let device = devices_under(&pt.tree.path().join("root").join(&image));
            let threads = layout_threads();
            ok(pt.tree.run("vzctl", &["stop", &image, "--fast"]));
            let journal = format!("jbd2/{}-", device[0]);
            assert!(threads.iter().any(|t| t.starts_with(&journal)), "{device:?} {threads:?}");
        }
    }
}
