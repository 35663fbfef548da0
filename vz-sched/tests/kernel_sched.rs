//! Kernel tests of vz-sched through its public API, on this machine's cgroup hierarchy
//! (v1 on the host, pure v2 in the kernel lab): exact knob values, errors from the kernel,
//! and CPU contention with tolerances a noisy machine always meets.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use common::TestTree;
use vz_sched::{CpuLimit, CpuSettings, CpuUnits, Cpus, SchedError};
use vz_tests::{Need, require};

/// Contention tests measure CPU time: one at a time, or they would share the CPUs.
static CPU_BOUND: Mutex<()> = Mutex::new(());

fn units(n: u32) -> Option<CpuUnits> {
    Some(CpuUnits::new(n).expect("units in range"))
}

/// Fails the test with the whole error chain.
fn outcome(result: Result<()>) {
    if let Err(err) = result {
        panic!("{err:#}");
    }
}

fn ncpus() -> usize {
    vz_sched::online_cpus() as usize
}

#[test]
fn written_values_are_the_kernels_values() {
    require!(Need::Root, Need::CgroupController("cpu"));
    outcome(written_values_are_the_kernels_values_body());
}

fn written_values_are_the_kernels_values_body() -> Result<()> {
    let tree = TestTree::new("sched-knobs", &["a"])?;
    let dirs = tree.dirs("a");
    let v2 = tree.hierarchy.is_v2();
    let cpuset = tree.hierarchy.has_cpuset();
    let mask = cpuset.then(|| "0".parse().expect("a valid mask"));
    let settings = CpuSettings {
        units: units(3000),
        limit: Some(CpuLimit::percent(50)),
        cpus: Some(Cpus::new(1)),
        mask,
    };
    vz_sched::apply(&dirs, &settings)?;
    if v2 {
        assert_eq!(tree.knob("a", "cpu.weight")?, "300");
        assert_eq!(tree.knob("a", "cpu.max")?, "50000 100000");
    } else {
        assert_eq!(tree.knob("a", "cpu.shares")?, "3000");
        assert_eq!(tree.knob("a", "cpu.cfs_quota_us")?, "50000");
        assert_eq!(tree.knob("a", "cpu.cfs_period_us")?, "100000");
    }
    if cpuset {
        assert_eq!(tree.knob("a", "cpuset.cpus")?, "0");
        if !v2 {
            assert_eq!(
                tree.knob("a", "cpuset.mems")?,
                tree.parent_knob("cpuset.mems")?,
                "mems copied from the parent"
            );
        }
    }
    let read = vz_sched::read(&dirs)?;
    assert_eq!(read.units, units(3000));
    assert_eq!((read.quota_us, read.period_us, read.limit_percent()), (Some(50_000), 100_000, 50));
    if cpuset {
        assert_eq!(read.cpus.map(|c| c.to_string()).as_deref(), Some("0"));
    }

    // CPUS tighter than CPULIMIT; the largest units clamp to the kernel's maximum.
    vz_sched::apply(
        &dirs,
        &CpuSettings {
            units: units(500_000),
            limit: Some(CpuLimit::percent(300)),
            cpus: Some(Cpus::new(2)),
            mask: None,
        },
    )?;
    if v2 {
        assert_eq!(tree.knob("a", "cpu.weight")?, "10000");
        assert_eq!(tree.knob("a", "cpu.max")?, "200000 100000");
    } else {
        assert_eq!(tree.knob("a", "cpu.shares")?, "262144");
        assert_eq!(tree.knob("a", "cpu.cfs_quota_us")?, "200000");
    }
    // No limit at all; the smallest units; the mask back to every CPU of the parent.
    let all = cpuset.then(|| "all".parse().expect("a valid mask"));
    vz_sched::apply(
        &dirs,
        &CpuSettings {
            units: units(8),
            limit: Some(CpuLimit::UNLIMITED),
            cpus: Some(Cpus::ALL),
            mask: all,
        },
    )?;
    if v2 {
        assert_eq!(tree.knob("a", "cpu.weight")?, "1");
        assert_eq!(tree.knob("a", "cpu.max")?, "max 100000");
        if cpuset {
            assert_eq!(tree.knob("a", "cpuset.cpus")?, "");
        }
    } else {
        assert_eq!(tree.knob("a", "cpu.shares")?, "8");
        assert_eq!(tree.knob("a", "cpu.cfs_quota_us")?, "-1");
        if cpuset {
            assert_eq!(tree.knob("a", "cpuset.cpus")?, tree.parent_knob("cpuset.cpus")?);
        }
    }
    let read = vz_sched::read(&dirs)?;
    // v2's weight 1 reads back as 10 units: the /10 conversion is lossy below 10.
    let least = if v2 { units(10) } else { units(8) };
    assert_eq!((read.units, read.quota_us, read.limit_percent()), (least, None, 0));
    Ok(())
}

#[test]
fn the_kernel_refusing_a_value_names_the_knob() {
    require!(Need::Root, Need::CgroupController("cpu"), Need::CgroupController("cpuset"));
    outcome(the_kernel_refusing_a_value_names_the_knob_body());
}

fn the_kernel_refusing_a_value_names_the_knob_body() -> Result<()> {
    let tree = TestTree::new("sched-refuse", &["a"])?;
    // A CPU this machine does not have.
    let absent = vz_sched::MAX_CPU.to_string();
    let err = vz_sched::apply(
        &tree.dirs("a"),
        &CpuSettings { mask: Some(absent.parse()?), ..Default::default() },
    )
    .expect_err("the kernel refuses an absent CPU");
    match &err {
        SchedError::Cgroup(vz_cgroup::CgroupError::Write { path, value, .. }) => {
            assert!(path.ends_with("cpuset.cpus"), "{err}");
            assert_eq!(value, &absent);
        }
        other => panic!("unexpected error {other}"),
    }
    Ok(())
}

#[test]
fn host_units_go_to_the_hosts_group_and_never_to_a_root() {
    require!(Need::Root, Need::CgroupController("cpu"));
    outcome(host_units_go_to_the_hosts_group_and_never_to_a_root_body());
}

fn host_units_go_to_the_hosts_group_and_never_to_a_root_body() -> Result<()> {
    let tree = TestTree::new("sched-host", &["host"])?;
    vz_sched::set_host_units(&tree.dirs("host"), CpuUnits::new(2000)?)?;
    let expected =
        if tree.hierarchy.is_v2() { ("cpu.weight", "200") } else { ("cpu.shares", "2000") };
    assert_eq!(tree.knob("host", expected.0)?, expected.1);
    let root = match &tree.hierarchy {
        common::Hierarchy::V1 { cpu, .. } => {
            vz_sched::CgroupDirs::V1 { cpu: cpu.clone(), cpuacct: None, cpuset: None }
        }
        common::Hierarchy::V2 { .. } => vz_sched::CgroupDirs::V2 { dir: "/sys/fs/cgroup".into() },
    };
    let err =
        vz_sched::set_host_units(&root, CpuUnits::new(2000)?).expect_err("a root has no weight");
    assert!(matches!(err, SchedError::NoWeightKnob { .. }), "{err}");
    Ok(())
}

#[test]
fn three_times_the_units_get_two_to_four_times_the_cpu() {
    require!(Need::Root, Need::CgroupController("cpu"));
    outcome(three_times_the_units_get_two_to_four_times_the_cpu_body());
}

fn three_times_the_units_get_two_to_four_times_the_cpu_body() -> Result<()> {
    let _serial = CPU_BOUND.lock().unwrap_or_else(|e| e.into_inner());
    let mut tree = TestTree::new("sched-share", &["a", "b"])?;
    vz_sched::apply(&tree.dirs("a"), &CpuSettings { units: units(1000), ..Default::default() })?;
    vz_sched::apply(&tree.dirs("b"), &CpuSettings { units: units(3000), ..Default::default() })?;
    tree.burn("a", 2 * ncpus())?;
    tree.burn("b", 2 * ncpus())?;
    std::thread::sleep(Duration::from_millis(300));
    let rates = tree.measure(&["a", "b"], Duration::from_secs(3))?;
    let ratio = rates[1] / rates[0];
    assert!(
        (2.0..=4.0).contains(&ratio),
        "b/a = {ratio:.2} (a {:.2}, b {:.2} CPUs)",
        rates[0],
        rates[1]
    );
    Ok(())
}

#[test]
fn cpulimit_50_stays_under_60_percent_of_a_cpu() {
    require!(Need::Root, Need::CgroupController("cpu"));
    outcome(cpulimit_50_stays_under_60_percent_of_a_cpu_body());
}

fn cpulimit_50_stays_under_60_percent_of_a_cpu_body() -> Result<()> {
    let _serial = CPU_BOUND.lock().unwrap_or_else(|e| e.into_inner());
    let mut tree = TestTree::new("sched-limit", &["a"])?;
    vz_sched::apply(
        &tree.dirs("a"),
        &CpuSettings { limit: Some("50".parse()?), ..Default::default() },
    )?;
    tree.burn("a", 2 * ncpus())?;
    std::thread::sleep(Duration::from_millis(300));
    let rate = tree.measure(&["a"], Duration::from_secs(3))?[0];
    assert!(rate < 0.6, "cpulimit 50 used {rate:.3} CPUs");
    assert!(rate > 0.2, "the loops barely ran ({rate:.3} CPUs): the measurement proves nothing");
    let read = vz_sched::read(&tree.dirs("a"))?;
    assert!(read.nr_throttled > 0 && read.throttled_ns > 0, "never throttled: {read:?}");
    Ok(())
}

#[test]
fn a_runtime_change_takes_effect() {
    require!(Need::Root, Need::CgroupController("cpu"));
    outcome(a_runtime_change_takes_effect_body());
}

fn a_runtime_change_takes_effect_body() -> Result<()> {
    let _serial = CPU_BOUND.lock().unwrap_or_else(|e| e.into_inner());
    let mut tree = TestTree::new("sched-change", &["a"])?;
    let dirs = tree.dirs("a");
    vz_sched::apply(
        &dirs,
        &CpuSettings { limit: Some(CpuLimit::percent(20)), cpus: None, ..Default::default() },
    )?;
    tree.burn("a", 2 * ncpus())?;
    std::thread::sleep(Duration::from_millis(300));
    let before = tree.measure(&["a"], Duration::from_secs(2))?[0];
    vz_sched::apply(
        &dirs,
        &CpuSettings {
            limit: Some(CpuLimit::UNLIMITED),
            cpus: Some(Cpus::ALL),
            ..Default::default()
        },
    )?;
    std::thread::sleep(Duration::from_millis(200));
    let after = tree.measure(&["a"], Duration::from_secs(2))?[0];
    assert!(before < 0.3, "cpulimit 20 used {before:.3} CPUs");
    assert!(
        after > 2.0 * before && after > 0.5,
        "lifting the limit: {before:.3} -> {after:.3} CPUs"
    );
    Ok(())
}

#[test]
fn nice_works_among_the_processes_of_one_ve() {
    require!(Need::Root, Need::CgroupController("cpu"), Need::CgroupController("cpuset"));
    outcome(nice_works_among_the_processes_of_one_ve_body());
}

/// The second level: inside one VE's cgroup, on one CPU, nice 0 against nice 10 (kernel
/// weights 1024 and 110, about 9:1) as on any server.
fn nice_works_among_the_processes_of_one_ve_body() -> Result<()> {
    let _serial = CPU_BOUND.lock().unwrap_or_else(|e| e.into_inner());
    let mut tree = TestTree::new("sched-nice", &["a"])?;
    vz_sched::apply(
        &tree.dirs("a"),
        &CpuSettings { mask: Some("0".parse()?), ..Default::default() },
    )?;
    let normal = tree.burn_nice("a", 1, 0)?[0];
    let niced = tree.burn_nice("a", 1, 10)?[0];
    std::thread::sleep(Duration::from_millis(300));
    let before = (TestTree::proc_ticks(normal)?, TestTree::proc_ticks(niced)?);
    std::thread::sleep(Duration::from_secs(3));
    let after = (TestTree::proc_ticks(normal)?, TestTree::proc_ticks(niced)?);
    let (n, m) = (after.0 - before.0, after.1 - before.1);
    assert!(n + m > 50, "the loops barely ran ({n} + {m} ticks)");
    let ratio = n as f64 / m.max(1) as f64;
    assert!((4.0..=20.0).contains(&ratio), "nice 0 / nice 10 = {ratio:.2} ({n} vs {m} ticks)");
    Ok(())
}
