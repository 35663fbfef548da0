//! Kernel test of the device allowlist on a cgroup v1 `devices` controller, seen from a VE.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

mod common;

use common::TestVe;
use vz_ns::{DeviceRule, apply_device_rules_v1, default_device_rules};
use vz_tests::{Need, TestCgroup};

#[test]
fn default_allowlist_v1_allows_the_minimal_dev_only() -> anyhow::Result<()> {
    vz_tests::require!(
        Need::Root,
        Need::CgroupController("pids"),
        Need::CgroupController("devices"),
        Need::Program("/bin/busybox"),
    );
    let devices = TestCgroup::new("devices", "ns")?;
    apply_device_rules_v1(devices.dir(), &default_device_rules())?;
    let list = std::fs::read_to_string(devices.dir().join("devices.list"))?;
    for want in ["c 1:3 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:1 m", "c 5:2 rwm", "c 136:* rwm"] {
        assert!(list.lines().any(|l| l == want), "{want} in {list}");
    }
    assert!(!list.contains("a *:*"), "everything else is denied: {list}");

    let extra = vec![devices.procs()];
    let ve = TestVe::start_with("vz-test-dev", TestCgroup::new("pids", "ns")?, extra)?;
    ve.sh_ok("echo x > /dev/null && head -c 4 /dev/urandom | wc -c && ls -l /dev/console")?;
    let (code, out) = ve.sh(": < /dev/console")?;
    assert_ne!(code, 0, "the console is not usable: {out}");
    assert!(out.contains("not permitted"), "refused by the allowlist: {out}");
    drop(ve);

    // A rule the kernel refuses is reported with the rule and the file.
    let parent = TestCgroup::new("devices", "ns")?;
    apply_device_rules_v1(parent.dir(), &["c:1:3:rw".parse::<DeviceRule>()?])?;
    let inner = parent.child("inner")?;
    let err = apply_device_rules_v1(&inner, &["c:1:5:rw".parse::<DeviceRule>()?])
        .expect_err("the parent does not allow 1:5");
    let text = err.to_string();
    assert!(text.contains("c 1:5 rw") && text.contains("devices.allow"), "{text}");
    Ok(())
}

#[test]
fn default_allowlist_v2_is_enforced_by_the_bpf_program() -> anyhow::Result<()> {
    vz_tests::require!(Need::Root, Need::Program("/bin/busybox"));
    // The cgroup2 tree wherever it is mounted: /sys/fs/cgroup/unified on a hybrid host.
    let cgroup = TestCgroup::on_cgroup2("bpf")?;
    vz_ns::apply_device_rules_v2(cgroup.dir(), &default_device_rules())?;
    // Applying again replaces the program.
    vz_ns::apply_device_rules_v2(cgroup.dir(), &default_device_rules())?;
    // A shell that moves itself into the cgroup, then opens allowed and denied devices.
    // /dev/kmsg (1:11) and /dev/console (5:1, mknod only) are not in the allowlist.
    let script = format!(
        "echo $$ > {procs} || exit 90; \
         (: < /dev/null) || exit 91; head -c 1 /dev/zero > /dev/null || exit 92; \
         if (: < /dev/kmsg); then exit 93; fi; \
         if (: < /dev/console); then exit 94; fi; \
         if echo x > /dev/full; then exit 95; fi; exit 0",
        procs = cgroup.procs().display()
    );
    let out = std::process::Command::new("/bin/busybox").args(["sh", "-c", &script]).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("kmsg") && stderr.contains("not permitted"), "{stderr}");
    assert!(cgroup.wait_empty(std::time::Duration::from_secs(5)));
    Ok(())
}
