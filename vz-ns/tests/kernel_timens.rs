//! Kernel tests of the VE's own time namespace: its init is in a time namespace of its own
//! whose monotonic and boot clocks started at zero when the VE was made, an entered program
//! joins it (its /proc/uptime and sysinfo count from the VE's start and go on between two
//! entries), and the wall clock stays the host's. Privileged and user-namespace VEs alike.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

mod common;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::TestVe;
use vz_ns::IdMap;

/// The host ids of this file's user-namespace VE (a range no other test uses).
const BASE: u32 = 3_100_000;

macro_rules! needs {
    () => {
        if !vz_tests::check_needs(module_path!(), &common::IDMAPPED_VE_NEEDS) {
            return Ok(());
        }
    };
}

/// The first field of a /proc/uptime text.
fn seconds(uptime: &str) -> f64 {
    let first = uptime.split_whitespace().next().unwrap_or_default();
    first.parse().unwrap_or_else(|_| panic!("not an uptime: {uptime:?}"))
}

/// An offset line of /proc/PID/timens_offsets as nanoseconds.
fn offset_ns(offsets: &str, clock: &str) -> i128 {
    let line = offsets.lines().find(|l| l.starts_with(clock)).expect("clock line");
    let fields: Vec<i128> =
        line.split_whitespace().skip(1).map(|f| f.parse().expect("number")).collect();
    fields[0] * 1_000_000_000 + fields[1]
}

/// The host's CLOCK_BOOTTIME in nanoseconds, from its /proc/uptime (centiseconds).
fn host_boottime_ns() -> i128 {
    let text = std::fs::read_to_string("/proc/uptime").expect("read /proc/uptime");
    let first = text.split_whitespace().next().unwrap_or_default();
    let (sec, cs) = first.split_once('.').expect("seconds.centiseconds");
    let sec: i128 = sec.parse().expect("seconds");
    let cs: i128 = cs.parse().expect("centiseconds");
    sec * 1_000_000_000 + cs * 10_000_000
}

fn check_own_clocks(ve: &TestVe, started: Instant) -> anyhow::Result<()> {
    let ours = std::fs::read_link("/proc/self/ns/time")?;
    let theirs = std::fs::read_link(format!("/proc/{}/ns/time", ve.init_pid))?;
    assert_ne!(ours, theirs, "the VE's init is in a time namespace of its own");
    // The offset makes the VE's boot clock the time since it was made: the host's clock now
    // plus the offset is at most the time since the start began (and not negative).
    let offsets = std::fs::read_to_string(format!("/proc/{}/timens_offsets", ve.init_pid))?;
    let since = i128::try_from(started.elapsed().as_nanos())?;
    let ve_boottime = host_boottime_ns() + offset_ns(&offsets, "boottime");
    let slack = 20_000_000; // /proc/uptime's centiseconds
    assert!((-slack..=since + slack).contains(&ve_boottime), "{offsets}: {ve_boottime} ns");
    assert!(offset_ns(&offsets, "monotonic") < 0, "{offsets}");

    // An entered program joins it: /proc/uptime (and sysinfo, the same clock) count from the
    // VE's start, not the host's boot; a second entry later shows more; the wall clock is the
    // host's.
    let first = seconds(&ve.sh_ok("cat /proc/uptime")?);
    let since = started.elapsed().as_secs_f64();
    assert!(first <= since + 0.02, "VE uptime {first} s, made {since} s ago");
    let host = seconds(&std::fs::read_to_string("/proc/uptime")?);
    assert!(first < host, "VE uptime {first} s, host's {host} s");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = seconds(&ve.sh_ok("cat /proc/uptime")?);
    assert!(second >= first + 1.0, "{first} s, then {second} s");
    let wall = ve.sh_ok("date +%s")?;
    let wall: u64 = wall.trim().parse()?;
    let host_wall = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    assert!(wall.abs_diff(host_wall) <= 2, "VE date {wall}, host {host_wall}");
    // busybox uptime asks sysinfo(2): up 0 minutes.
    let uptime = ve.sh_ok("uptime")?;
    assert!(uptime.contains("up 0 min"), "{uptime}");
    Ok(())
}

#[test]
fn a_ves_clocks_start_at_its_start_and_entered_programs_share_them() -> anyhow::Result<()> {
    needs!();
    let started = Instant::now();
    let ve = TestVe::start("vz-test-timens")?;
    check_own_clocks(&ve, started)
}

#[test]
fn a_user_namespace_ves_clocks_are_its_own_too() -> anyhow::Result<()> {
    needs!();
    let started = Instant::now();
    let ve = TestVe::start_userns("vz-test-timens-userns", IdMap::new(BASE, BASE + 1)?)?;
    check_own_clocks(&ve, started)
}
