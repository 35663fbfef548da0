//! Kernel tests of the beancounter limits only the VE's own namespaces enforce: the devpts
//! instance's `max=` (numpty) and the resource limits of init, its children and entered
//! processes (lockedpages, numsiginfo, numfile), seen from inside a busybox VE.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

mod common;

use anyhow::Context;
use common::{BusyboxRoot, TestVe};
use vz_ns::{InitSpec, Rlimit, RlimitResource};
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

/// Starts a busybox VE (init `sleep 1000` under sh) with the given devpts bound and limits.
fn start(hostname: &str, pty_max: Option<u64>, rlimits: Vec<Rlimit>) -> anyhow::Result<TestVe> {
    let root = BusyboxRoot::new()?;
    let cgroup = TestCgroup::new("pids", "limits")?;
    let spec = InitSpec {
        hostname: Some(hostname.to_owned()),
        pty_max,
        rlimits,
        ..common::init_spec(root.path(), vec![cgroup.procs()], &common::SLEEPING_INIT)
    };
    let pending = vz_ns::spawn_init(&spec)?;
    let init_pid = pending.pid();
    // From here the guard owns the VE: a failed release is cleaned up like a failed test.
    let ve = TestVe { init_pid, caps: spec.caps, cgroup_procs: spec.cgroup_procs, cgroup, root };
    pending.release()?;
    Ok(ve)
}

/// Runs `script` in the VE as an entered process with `rlimits`; returns exit code and output.
fn sh_with(ve: &TestVe, rlimits: Vec<Rlimit>, script: &str) -> anyhow::Result<(i32, String)> {
    let out = ve.root.path().join("tmp/.limits-out");
    let _ = std::fs::remove_file(&out);
    let wrapped = format!("exec >/tmp/.limits-out 2>&1; {script}");
    let mut spec = ve.enter_spec(&["timeout", "-s", "KILL", "60", "sh", "-c", &wrapped]);
    spec.rlimits = rlimits;
    let code = vz_ns::enter(&spec)?;
    let text = std::fs::read_to_string(&out).with_context(|| format!("read {}", out.display()))?;
    Ok((code, text))
}

/// Soft and hard value of the `/proc/<pid>/limits` row named `row` (`u64::MAX` for
/// "unlimited").
fn limit_row(limits: &str, row: &str) -> anyhow::Result<(u64, u64)> {
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix(row))
        .with_context(|| format!("no {row:?} row in {limits}"))?;
    let mut values = rest.split_whitespace().map(|v| match v {
        "unlimited" => Ok(u64::MAX),
        v => v.parse::<u64>().with_context(|| format!("{row}: {v:?}")),
    });
    let soft = values.next().context("no soft value")??;
    let hard = values.next().context("no hard value")??;
    Ok((soft, hard))
}

fn lim(resource: RlimitResource, soft: u64, hard: u64) -> Rlimit {
    Rlimit { resource, soft, hard }
}

const ROWS: [(RlimitResource, &str); 3] = [
    (RlimitResource::MemLock, "Max locked memory"),
    (RlimitResource::SigPending, "Max pending signals"),
    (RlimitResource::NoFile, "Max open files"),
];

/// Checks every limit of `want` in a `/proc/<pid>/limits` text.
fn assert_limits(limits: &str, want: &[Rlimit], whose: &str) -> anyhow::Result<()> {
    for limit in want {
        let row = ROWS.iter().find(|(r, _)| *r == limit.resource).context("row")?.1;
        let got = limit_row(limits, row)?;
        assert_eq!(got, (limit.soft, limit.hard), "{row} of {whose}: {limits}");
    }
    Ok(())
}

/// Opens four ptys of the VE's devpts and keeps them, then tries a fifth (in a subshell: a
/// failed `exec` redirection ends a non-interactive shell).
const FIVE_PTYS: &str = "exec 3<>/dev/ptmx 4<>/dev/ptmx 5<>/dev/ptmx 6<>/dev/ptmx && echo four-open; \
     if ( exec 7<>/dev/ptmx ); then echo fifth-open; else echo fifth-refused; fi; \
     echo pts: $(ls /dev/pts)";

#[test]
fn numpty_bounds_the_ves_devpts_instance() -> anyhow::Result<()> {
    needs!();
    let ve = start("vz-test-numpty", Some(4), Vec::new())?;
    let mounts = ve.sh_ok("grep devpts /proc/mounts")?;
    assert!(mounts.contains("max=4"), "devpts is mounted with max=4: {mounts}");
    let (code, out) = sh_with(&ve, Vec::new(), FIVE_PTYS)?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("four-open"), "four ptys within the limit open: {out}");
    assert!(out.contains("fifth-refused") && !out.contains("fifth-open"), "{out}");
    assert!(out.contains("No space left on device"), "the kernel's refusal (ENOSPC): {out}");
    // The ptys were the VE's own: the host's devpts did not hand them out.
    assert!(out.lines().any(|l| l == "pts: 0 1 2 3 ptmx"), "ptys 0-3 of the VE's own: {out}");
    drop(ve);

    // Without a bound the same workload passes: the refusal above is the limit's.
    let ve = start("vz-test-numpty-free", None, Vec::new())?;
    let mounts = ve.sh_ok("grep devpts /proc/mounts")?;
    assert!(!mounts.contains("max="), "no max= without pty_max: {mounts}");
    let out = sh_with(&ve, Vec::new(), FIVE_PTYS)?.1;
    assert!(out.contains("four-open") && out.contains("fifth-open"), "{out}");
    Ok(())
}

#[test]
fn rlimits_hold_for_init_its_children_and_entered_processes() -> anyhow::Result<()> {
    needs!();
    let want = vec![
        lim(RlimitResource::MemLock, 64 * 1024, 128 * 1024),
        lim(RlimitResource::SigPending, 100, 200),
        lim(RlimitResource::NoFile, 300, 400),
    ];
    let ve = start("vz-test-rlimits", None, want.clone())?;
    // Init itself and its child (the `sleep` it started), read by an entered process that
    // has no limits of its own.
    let init = ve.sh_ok("cat /proc/1/limits")?;
    assert_limits(&init, &want, "init")?;
    let child = ve.sh_ok("cat /proc/$(pidof sleep)/limits")?;
    assert_limits(&child, &want, "init's child")?;
    let own = ve.sh_ok("cat /proc/self/limits")?;
    assert_ne!(limit_row(&own, "Max open files")?, (300, 400), "entered without limits: {own}");

    // An entered process with the VE's limits.
    let (code, entered) = sh_with(&ve, want.clone(), "cat /proc/self/limits")?;
    assert_eq!(code, 0, "{entered}");
    assert_limits(&entered, &want, "an entered process")?;
    // The limits are enforced, not only shown: fd 299 is the highest below the soft limit;
    // the soft limit can be raised to the hard one, not past it.
    let script = "exec 299</dev/null && echo fd299-open; \
                  if ( exec 300</dev/null ); then echo fd300-open; else echo fd300-refused; fi; \
                  ulimit -n 400 && ( exec 300</dev/null ) && echo raised-fd300-open; \
                  if ulimit -n 401; then echo past-hard; else echo past-hard-refused; fi";
    let (code, out) = sh_with(&ve, want, script)?;
    assert_eq!(code, 0, "{out}");
    // Raising the hard limit needs CAP_SYS_RESOURCE, which a VE does not keep by default.
    for word in ["fd299-open", "fd300-refused", "raised-fd300-open", "past-hard-refused"] {
        assert!(out.lines().any(|l| l == word), "{word} in {out}");
    }
    Ok(())
}

#[test]
fn a_hard_limit_above_the_hosts_is_lowered_not_an_error() -> anyhow::Result<()> {
    needs!();
    let (_, host_hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")?.trim().parse()?;
    let asked = host_hard.saturating_add(1000);
    let expect = if cap_sys_resource_in(&std::fs::read_to_string("/proc/self/status")?)? {
        asked.min(nr_open)
    } else {
        host_hard
    };
    let limits = vec![lim(RlimitResource::NoFile, 256, asked)];
    let ve = start("vz-test-rlimit-cap", None, limits.clone())?;
    let init = ve.sh_ok("cat /proc/1/limits")?;
    assert_eq!(limit_row(&init, "Max open files")?, (256, expect), "{init}");
    let (code, entered) = sh_with(&ve, limits, "cat /proc/self/limits")?;
    assert_eq!(code, 0, "{entered}");
    assert_eq!(limit_row(&entered, "Max open files")?, (256, expect), "{entered}");
    Ok(())
}

#[test]
fn bad_limits_are_refused_before_anything_runs() -> anyhow::Result<()> {
    needs!();
    let root = BusyboxRoot::new()?;
    let cgroup = TestCgroup::new("pids", "limits")?;
    let spec = InitSpec {
        rlimits: vec![lim(RlimitResource::SigPending, 10, 5)],
        ..common::init_spec(root.path(), vec![cgroup.procs()], &["/bin/sh"])
    };
    let err = vz_ns::spawn_init(&spec).expect_err("soft above hard");
    let text = err.to_string();
    assert!(text.contains("rlimits") && text.contains("RLIMIT_SIGPENDING"), "{text}");
    assert!(cgroup.pids().is_empty(), "nothing was started: {:?}", cgroup.pids());
    Ok(())
}

/// Whether the `CapEff:` line of a `/proc/<pid>/status` text has CAP_SYS_RESOURCE (then a
/// hard limit may be raised).
fn cap_sys_resource_in(status: &str) -> anyhow::Result<bool> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:")).context("no CapEff")?;
    Ok(u64::from_str_radix(hex.trim(), 16)? & (1 << 24) != 0)
}
