//! Unit tests of what the backends write and how they read, on directories of plain files
//! laid out like the kernel's (the kernel tests in `tests/kernel_sched.rs` check the real ones).

use std::fs;
use std::path::Path;

use super::*;

fn knobs(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    for (name, value) in files {
        fs::write(dir.join(name), value).unwrap();
    }
}

fn content(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path).unwrap()
}

fn v1_tree(root: &Path) -> CgroupDirs {
    let cpu = root.join("cpu/ve");
    knobs(
        &cpu,
        &[
            ("cpu.shares", "1024\n"),
            ("cpu.cfs_period_us", "100000\n"),
            ("cpu.cfs_quota_us", "-1\n"),
            ("cpu.stat", "nr_periods 7\nnr_throttled 3\nthrottled_time 12345\n"),
        ],
    );
    knobs(&root.join("cpuacct/ve"), &[("cpuacct.usage", "987654321\n")]);
    knobs(&root.join("cpuset"), &[("cpuset.cpus", "0-3\n"), ("cpuset.mems", "0\n")]);
    // As vz_cgroup::tree::make_path left it: the parent's sets.
    knobs(&root.join("cpuset/ve"), &[("cpuset.cpus", "0-3\n"), ("cpuset.mems", "0\n")]);
    CgroupDirs::V1 {
        cpu,
        cpuacct: Some(root.join("cpuacct/ve")),
        cpuset: Some(root.join("cpuset/ve")),
    }
}

#[test]
fn v1_writes_shares_quota_and_the_mask_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = v1_tree(tmp.path());
    let settings = CpuSettings {
        units: Some(CpuUnits::new(3000).unwrap()),
        limit: Some(CpuLimit::percent(150)),
        cpus: Some(Cpus::new(1)),
        mask: None,
    };
    apply(&dirs, &settings).unwrap();
    assert_eq!(content(tmp.path().join("cpu/ve/cpu.shares")), "3000");
    assert_eq!(content(tmp.path().join("cpu/ve/cpu.cfs_quota_us")), "100000");
    assert_eq!(content(tmp.path().join("cpuset/ve/cpuset.cpus")), "0-3\n", "no mask: untouched");
    assert_eq!(content(tmp.path().join("cpuset/ve/cpuset.mems")), "0\n");

    apply(&dirs, &CpuSettings { mask: Some("1,3".parse().unwrap()), ..Default::default() })
        .unwrap();
    assert_eq!(content(tmp.path().join("cpuset/ve/cpuset.cpus")), "1,3");
    assert_eq!(content(tmp.path().join("cpu/ve/cpu.shares")), "3000", "None leaves a knob alone");
    assert_eq!(content(tmp.path().join("cpu/ve/cpu.cfs_quota_us")), "100000");

    apply(&dirs, &CpuSettings { limit: Some(CpuLimit::UNLIMITED), ..Default::default() }).unwrap();
    assert_eq!(content(tmp.path().join("cpu/ve/cpu.cfs_quota_us")), "-1");

    apply(&dirs, &CpuSettings { mask: Some("all".parse().unwrap()), ..Default::default() })
        .unwrap();
    assert_eq!(content(tmp.path().join("cpuset/ve/cpuset.cpus")), "0-3", "all: the parent's");
}

#[test]
fn v1_reads_usage_and_knobs() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = v1_tree(tmp.path());
    fs::write(tmp.path().join("cpu/ve/cpu.cfs_quota_us"), "25000\n").unwrap();
    fs::write(tmp.path().join("cpuset/ve/cpuset.cpus"), "0-1\n").unwrap();
    let usage = read(&dirs).unwrap();
    assert_eq!(usage.usage_ns, 987_654_321);
    assert_eq!(usage.raw_weight, Some(1024));
    assert_eq!(usage.units, Some(CpuUnits::new(1024).unwrap()));
    assert_eq!(usage.quota_us, Some(25_000));
    assert_eq!(usage.limit_percent(), 25);
    assert_eq!(usage.cpus.unwrap().to_string(), "0-1");
    assert_eq!((usage.nr_periods, usage.nr_throttled, usage.throttled_ns), (7, 3, 12345));
}

#[test]
fn v1_cpumask_without_cpuset_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let CgroupDirs::V1 { cpu, cpuacct, .. } = v1_tree(tmp.path()) else { unreachable!() };
    let dirs = CgroupDirs::V1 { cpu, cpuacct, cpuset: None };
    let err = apply(&dirs, &CpuSettings { mask: Some("0".parse().unwrap()), ..Default::default() })
        .unwrap_err();
    assert!(err.to_string().starts_with("CPUMASK needs the cpuset controller"), "{err}");
}

#[test]
fn v2_writes_weight_max_and_cpus() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ve");
    knobs(
        &dir,
        &[
            ("cpu.weight", "100\n"),
            ("cpu.max", "max 100000\n"),
            ("cpuset.cpus", "\n"),
            (
                "cpu.stat",
                "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 2\nthrottled_usec 9\n",
            ),
        ],
    );
    let dirs = CgroupDirs::V2 { dir: dir.clone() };
    let settings = CpuSettings {
        units: Some(CpuUnits::new(3000).unwrap()),
        limit: Some(CpuLimit::percent(50)),
        cpus: None,
        mask: Some("0-1".parse().unwrap()),
    };
    apply(&dirs, &settings).unwrap();
    assert_eq!(content(dir.join("cpu.weight")), "300");
    assert_eq!(content(dir.join("cpu.max")), "50000 100000");
    assert_eq!(content(dir.join("cpuset.cpus")), "0-1");
    apply(
        &dirs,
        &CpuSettings { cpus: Some(Cpus::ALL), mask: Some(CpuMask::All), ..Default::default() },
    )
    .unwrap();
    assert_eq!(content(dir.join("cpu.max")), "max 100000");
    assert_eq!(content(dir.join("cpuset.cpus")), "\n");

    fs::write(dir.join("cpu.max"), "150000 100000\n").unwrap();
    let usage = read(&dirs).unwrap();
    assert_eq!(usage.usage_ns, 1_500_000);
    assert_eq!(usage.units, Some(CpuUnits::new(3000).unwrap()));
    assert_eq!(usage.limit_percent(), 150);
    assert_eq!(usage.cpus.unwrap().to_string(), "");
    assert_eq!((usage.nr_periods, usage.nr_throttled, usage.throttled_ns), (4, 2, 9000));
}

#[test]
fn v2_without_the_cpu_controller_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ve");
    knobs(&dir, &[("cpu.stat", "usage_usec 10\n")]);
    let dirs = CgroupDirs::V2 { dir: dir.clone() };
    let err = apply(&dirs, &CpuSettings { units: Some(CpuUnits::DEFAULT), ..Default::default() })
        .unwrap_err();
    assert!(err.to_string().starts_with("CPUUNITS needs the cpu controller"), "{err}");
    let err = set_host_units(&dirs, CpuUnits::DEFAULT).unwrap_err();
    assert!(matches!(err, SchedError::NoWeightKnob { .. }), "{err}");
    let usage = read(&dirs).unwrap();
    assert_eq!((usage.usage_ns, usage.units, usage.quota_us), (10_000, None, None));
}

#[test]
fn host_units_write_the_weight_of_the_hosts_group() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = v1_tree(tmp.path());
    set_host_units(&dirs, CpuUnits::new(500_000).unwrap()).unwrap();
    assert_eq!(content(tmp.path().join("cpu/ve/cpu.shares")), "262144");
}

#[test]
fn garbage_in_a_knob_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = v1_tree(tmp.path());
    fs::write(tmp.path().join("cpu/ve/cpu.shares"), "lots\n").unwrap();
    let err = read(&dirs).unwrap_err().to_string();
    assert!(err.contains("cpu/ve/cpu.shares") && err.contains("lots"), "{err}");
}
