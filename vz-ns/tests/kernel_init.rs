//! Kernel tests of the VE's init and of entering a VE, through the public API: a busybox VE
//! is started with `spawn_init`, inspected from inside with `enter`, and removed.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

mod common;

use std::time::Duration;

use common::{TestVe, test_env};
use vz_ns::{InitSpec, NsError};
use vz_tests::{Need, TestCgroup};

/// What every test of this file needs from the machine (the kit's gate).
macro_rules! needs {
    () => {
        vz_tests::require!(
            Need::Root,
            Need::CgroupController("pids"),
            Need::Program("/bin/busybox")
        )
    };
}

#[test]
fn init_is_pid_1_session_leader_and_sees_only_its_processes() -> anyhow::Result<()> {
    needs!();
    let ve = TestVe::start("vz-test-ve")?;
    let ps = ve.sh_ok("ps -o pid,args")?;
    let pids: Vec<i32> =
        ps.lines().skip(1).filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect();
    assert!(pids.contains(&1), "init is pid 1: {ps}");
    assert!(pids.iter().all(|p| *p < 20), "only the VE's processes: {ps}");
    assert!(pids.len() <= 5, "init, its sleep, sh and ps at most: {ps}");
    let init_line =
        ps.lines().find(|l| l.split_whitespace().next() == Some("1")).unwrap_or_default();
    assert!(init_line.contains("sleep 1000"), "pid 1 is the given init: {ps}");
    // /proc/1/stat: field 6 is the session id; init called setsid(), so it is 1.
    let stat = ve.sh_ok("cat /proc/1/stat")?;
    let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let sid = after_comm.split_whitespace().nth(3);
    assert_eq!(sid, Some("1"), "init is a session leader: {stat}");
    Ok(())
}

#[test]
fn hostname_is_the_ves_and_only_namespaced_sysctls_are_writable() -> anyhow::Result<()> {
    needs!();
    let host_before = nix::unistd::gethostname()?;
    let ve = TestVe::start("vz-test-host")?;
    assert_eq!(ve.sh_ok("hostname")?.trim(), "vz-test-host");
    let renamed = ve.sh_ok("echo vz-test-renamed > /proc/sys/kernel/hostname && hostname")?;
    assert_eq!(renamed.trim(), "vz-test-renamed");
    ve.sh_ok("echo 100 > /proc/sys/kernel/msgmni && echo 1 > /proc/sys/net/ipv4/ip_forward")?;
    let (code, out) = ve.sh("echo 1 > /proc/sys/kernel/panic")?;
    assert_ne!(code, 0, "kernel.panic must not be writable: {out}");
    assert!(out.contains("Read-only"), "{out}");
    let (code, out) = ve.sh("echo 1 > /proc/sys/vm/overcommit_memory")?;
    assert_ne!(code, 0, "vm sysctls must not be writable: {out}");
    assert_eq!(nix::unistd::gethostname()?, host_before, "the host's name is untouched");
    Ok(())
}

#[test]
fn mount_table_shows_no_host_path() -> anyhow::Result<()> {
    needs!();
    let ve = TestVe::start("vz-test-mnt")?;
    let mountinfo = ve.sh_ok("cat /proc/self/mountinfo")?;
    let host_root = ve.root.path().to_string_lossy().into_owned();
    let allowed_points = ["/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm"];
    // The minimal /dev's nodes are binds of the host's device nodes (their fs root is the
    // node's name on the host's devtmpfs).
    let nodes = ["null", "zero", "full", "random", "urandom", "tty", "console"];
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (fs_root, point) = (fields[3], fields[4]);
        assert!(!line.contains(&host_root), "host path in {line}");
        assert!(!line.contains("/tmp/vz-test") && !line.contains("/work"), "host path in {line}");
        let known = allowed_points.contains(&point)
            || point.starts_with("/proc/")
            || point == "/sys/firmware"
            || point == "/sys/devices/virtual/block"
            || point.strip_prefix("/dev/").is_some_and(|n| nodes.contains(&n));
        assert!(known, "unexpected mount point {point} in {line}");
        assert!(
            ["/", "/sys", "/null", "/sysrq-trigger"].contains(&fs_root)
                || fs_root.starts_with("/sys/")
                || fs_root.strip_prefix('/').is_some_and(|n| nodes.contains(&n)),
            "fs root {fs_root} in {line}"
        );
    }
    assert!(
        mountinfo.lines().any(|l| l.contains(" /dev/pts ") && l.contains("devpts")),
        "{mountinfo}"
    );
    let root_line =
        mountinfo.lines().find(|l| l.split_whitespace().nth(4) == Some("/")).unwrap_or_default();
    assert!(root_line.contains("nodev"), "the root is nodev: {root_line}");
    let sys_line =
        mountinfo.lines().find(|l| l.split_whitespace().nth(4) == Some("/sys")).unwrap_or_default();
    assert!(
        sys_line.split_whitespace().nth(5).is_some_and(|o| o.starts_with("ro")),
        "/sys is ro: {sys_line}"
    );
    // The old root is gone: nothing of the host tree resolves.
    let (code, _) = ve.sh("ls /work || ls /home || ls /usr/lib/x86_64-linux-gnu")?;
    assert_ne!(code, 0, "no host directory is reachable");
    Ok(())
}

#[test]
fn privileged_operations_fail_in_the_ve() -> anyhow::Result<()> {
    needs!();
    let ve = TestVe::start("vz-test-priv")?;
    let (code, out) = ve.sh("mknod /tmp/x c 1 3")?;
    assert_ne!(code, 0, "mknod must fail: {out}");
    // A device node among the VE's own files (as a template could ship) is dead: the root is
    // nodev; only the VE's /dev tmpfs has working nodes.
    let shipped = ve.root.path().join("tmp/null-node");
    nix::sys::stat::mknod(
        &shipped,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )?;
    let (code, out) = ve.sh("echo x > /tmp/null-node")?;
    assert_ne!(code, 0, "a node on the nodev root must not open: {out}");
    assert!(out.contains("denied"), "{out}");
    ve.sh_ok("echo x > /dev/null")?;
    // 'h' only prints sysrq help, should the mask ever be missing.
    let (code, out) = ve.sh("echo h > /proc/sysrq-trigger")?;
    assert_ne!(code, 0, "sysrq-trigger must not be writable: {out}");
    ve.sh_ok("echo garbage > /tmp/x.ko")?;
    let (code, out) = ve.sh("insmod /tmp/x.ko")?;
    assert_ne!(code, 0, "insmod must fail: {out}");
    if std::path::Path::new("/proc/modules").exists() {
        assert!(out.contains("not permitted"), "init_module gives EPERM: {out}");
    } // else the kernel has no module support (ENOSYS); SYS_MODULE's absence is checked below.
    assert!(!ve.caps.contains("SYS_MODULE"));
    // Masked files that this kernel has read as the VE's /dev/null (empty).
    let sizes = ve.sh_ok(
        "for f in sysrq-trigger kcore keys timer_list sched_debug; do \
         [ -e /proc/$f ] && echo $f $(head -c 64 /proc/$f 2>/dev/null | wc -c); done; true",
    )?;
    for name in ["sysrq-trigger", "kcore", "keys", "timer_list", "sched_debug"] {
        let on_host = std::path::Path::new("/proc").join(name).exists();
        assert_eq!(sizes.lines().any(|l| l.starts_with(name)), on_host, "{name}: {sizes}");
    }
    for line in sizes.lines() {
        assert!(line.ends_with(" 0"), "masked file has content: {line}");
    }
    let (code, out) = ve.sh("find /proc/acpi /sys/firmware -mindepth 1 | wc -l")?;
    assert_eq!((code, out.trim()), (0, "0"), "acpi and firmware are empty");
    let status = ve.sh_ok("grep Cap /proc/self/status")?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
    };
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")?.trim().parse()?;
    let all = if last_cap >= 63 { u64::MAX } else { (1_u64 << (last_cap + 1)) - 1 };
    // A capability the host itself lacks (here SYS_RESOURCE) cannot be kept.
    let own = std::fs::read_to_string("/proc/self/status")?;
    let host = |name: &str| -> anyhow::Result<u64> {
        let line = own.lines().find(|l| l.starts_with(name)).unwrap_or_default();
        Ok(u64::from_str_radix(line.split_whitespace().nth(1).unwrap_or("0"), 16)?)
    };
    let want = ve.caps.bits() & all & host("CapBnd")?;
    assert_eq!(field("CapBnd"), Some(want), "{status}");
    assert_eq!(field("CapEff"), Some(want & host("CapEff")?), "{status}");
    assert_eq!(field("CapInh"), Some(0), "{status}");
    assert_eq!(field("CapAmb"), Some(0), "{status}");
    Ok(())
}

#[test]
fn network_has_only_loopback() -> anyhow::Result<()> {
    needs!();
    let ve = TestVe::start("vz-test-net")?;
    assert_eq!(ve.sh_ok("ls /sys/class/net")?.split_whitespace().collect::<Vec<_>>(), ["lo"]);
    Ok(())
}

#[test]
fn init_has_no_inherited_fds_a_clean_env_and_null_stdio() -> anyhow::Result<()> {
    needs!();
    // An fd of ours without CLOEXEC must not reach the VE.
    let leak = std::fs::File::open("/proc/self/status")?;
    let leak_fd = std::os::fd::AsRawFd::as_raw_fd(&leak);
    nix::fcntl::fcntl(&leak, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))?;
    let ve = TestVe::start("vz-test-fds")?;
    let fds = ve.sh_ok("ls /proc/1/fd")?;
    assert_eq!(fds.split_whitespace().collect::<Vec<_>>(), ["0", "1", "2"], "leaked fd {leak_fd}?");
    let targets = ve.sh_ok("for f in 0 1 2; do readlink /proc/1/fd/$f; done")?;
    assert_eq!(targets.lines().collect::<Vec<_>>(), ["/dev/null"; 3]);
    let environ = ve.sh_ok("cat /proc/1/environ")?;
    let mut env: Vec<&str> = environ.split('\0').filter(|e| !e.is_empty()).collect();
    env.sort_unstable();
    let mut want: Vec<String> = test_env().iter().map(|(k, v)| format!("{k}={v}")).collect();
    want.sort_unstable();
    assert_eq!(env, want);
    drop(leak);
    Ok(())
}

#[test]
fn failed_exec_is_an_error_and_leaves_no_process() -> anyhow::Result<()> {
    needs!();
    let root = common::BusyboxRoot::new()?;
    let cgroup = TestCgroup::new("pids", "ns")?;
    let spec = common::init_spec(root.path(), vec![cgroup.procs()], &["/nonexistent"]);
    let pending = vz_ns::spawn_init(&spec)?;
    assert!(pending.pid() > 1);
    let err = pending.release().expect_err("exec of /nonexistent fails");
    assert!(matches!(err, NsError::Exec { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent: No such file or directory"), "{err}");
    assert!(cgroup.wait_empty(Duration::from_secs(5)), "left in the cgroup: {:?}", cgroup.pids());
    Ok(())
}

#[test]
fn bad_specs_fail_before_anything_runs() -> anyhow::Result<()> {
    needs!();
    let cgroup = TestCgroup::new("pids", "ns")?;
    let mut spec = InitSpec {
        env: Vec::new(),
        devices: Vec::new(),
        ..common::init_spec(
            "/nonexistent/vz-test-root".as_ref(),
            vec![cgroup.procs()],
            &["/bin/sh"],
        )
    };
    let err = vz_ns::spawn_init(&spec).expect_err("missing root");
    assert!(err.to_string().contains("/nonexistent/vz-test-root"), "{err}");
    let root = common::BusyboxRoot::new()?;
    spec.root = root.path().to_owned();
    spec.cgroup_procs = vec!["/sys/fs/cgroup/pids/vz-test-missing/cgroup.procs".into()];
    let err = vz_ns::spawn_init(&spec).expect_err("missing cgroup");
    assert!(matches!(err, NsError::Setup { .. }), "{err:?}");
    assert!(err.to_string().contains("vz-test-missing"), "{err}");
    spec.cgroup_procs = vec![cgroup.procs()];
    spec.argv.clear();
    let err = vz_ns::spawn_init(&spec).expect_err("no argv");
    assert!(err.to_string().contains("argv"), "{err}");
    assert!(cgroup.pids().is_empty());
    Ok(())
}

#[test]
fn an_unreleased_init_is_killed_on_drop() -> anyhow::Result<()> {
    needs!();
    let root = common::BusyboxRoot::new()?;
    let cgroup = TestCgroup::new("pids", "ns")?;
    let spec = InitSpec {
        hostname: Some("vz-test-drop".into()),
        ..common::init_spec(root.path(), vec![cgroup.procs()], &["/bin/sleep", "1000"])
    };
    let pending = vz_ns::spawn_init(&spec)?;
    assert_eq!(cgroup.pids(), [u32::try_from(pending.pid())?], "init waits in the cgroup");
    drop(pending);
    assert!(cgroup.wait_empty(Duration::from_secs(5)), "left: {:?}", cgroup.pids());
    Ok(())
}

#[test]
fn enter_returns_exit_codes_and_exec_errors() -> anyhow::Result<()> {
    needs!();
    let ve = TestVe::start("vz-test-codes")?;
    assert_eq!(vz_ns::enter(&ve.enter_spec(&["sh", "-c", "exit 3"]))?, 3);
    assert_eq!(vz_ns::enter(&ve.enter_spec(&["sh", "-c", "kill -9 $$"]))?, 137);
    assert_eq!(vz_ns::enter(&ve.enter_spec(&["true"]))?, 0);
    let err = vz_ns::enter(&ve.enter_spec(&["no-such-program"])).expect_err("not found");
    assert!(err.to_string().contains("no-such-program: No such file or directory"), "{err}");
    // The entered process is in the VE's cgroup and pid namespace.
    let out = ve.sh_ok("cat /proc/self/cgroup; echo pid=$$")?;
    assert!(
        out.lines().any(|l| l.starts_with("pid=") && l[4..].parse::<i32>().is_ok_and(|p| p < 20)),
        "{out}"
    );
    Ok(())
}
