//! What a kernel test can need, how each need is probed, and the fail-or-skip decision.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

/// Something a privileged test needs from the machine it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Effective uid 0.
    Root,
    /// A cgroup controller, on a v1 hierarchy or enabled in the v2 root (`"pids"`, `"memory"`…).
    CgroupController(&'static str),
    /// A pure cgroup v2 host (cgroup2 mounted at `/sys/fs/cgroup`).
    CgroupV2,
    /// `/dev/loop-control`.
    Loop,
    /// An executable file at this path (a tool the test drives, e.g. `/bin/busybox`).
    Program(&'static str),
}

impl Need {
    /// Whether this machine meets the need.
    pub fn is_met(self) -> bool {
        match self {
            Need::Root => is_root(),
            Need::CgroupController(name) => has_controller(name),
            Need::CgroupV2 => is_cgroup2_root(),
            Need::Loop => Path::new("/dev/loop-control").exists(),
            Need::Program(path) => is_executable(Path::new(path)),
        }
    }

    /// A v1-only controller asked for on a pure cgroup v2 host: reported as a skip, never
    /// a failure, since no v2 host can have it.
    fn is_not_applicable(self) -> bool {
        matches!(self, Need::CgroupController(name) if V1_ONLY_CONTROLLERS.contains(&name))
            && is_cgroup2_root()
    }

    fn describe(self) -> String {
        match self {
            Need::Root => "root (run the tests as uid 0)".to_owned(),
            Need::CgroupController(name) => format!("the cgroup controller {name}"),
            Need::CgroupV2 => "a pure cgroup v2 host (run `cargo xtask vmtest`)".to_owned(),
            Need::Loop => "loop devices (/dev/loop-control)".to_owned(),
            Need::Program(path) => format!("the program {path} (run .ci/run's install step)"),
        }
    }
}

/// Whether the run declares that this machine offers `feature` (`VZ_TEST_REQUIRE`, a comma
/// list such as `cgroup-v2,quota` set by the kernel lab): a test then asserts the feature's
/// behaviour instead of its absence.
pub fn required(feature: &str) -> bool {
    std::env::var("VZ_TEST_REQUIRE").is_ok_and(|v| v.split(',').any(|f| f.trim() == feature))
}

/// Checks `needs` for the test `test`; returns `true` when the test may run.
///
/// # Panics
/// When a need is missing and `VZ_SKIP_PRIVILEGED=1` is not set: the test fails, naming it.
pub fn check_needs(test: &str, needs: &[Need]) -> bool {
    if let Some(need) = needs.iter().find(|need| need.is_not_applicable()) {
        report_skip(&format!(
            "SKIP {test}: {} does not exist on cgroup v2 (not applicable)",
            need.describe()
        ));
        return false;
    }
    let missing: Vec<String> =
        needs.iter().filter(|need| !need.is_met()).map(|need| need.describe()).collect();
    if missing.is_empty() {
        return true;
    }
    let what = missing.join(", ");
    if std::env::var("VZ_SKIP_PRIVILEGED").as_deref() != Ok("1") {
        panic!(
            "{test} needs {what}; run the tests as root on a machine that has it, \
             or set VZ_SKIP_PRIVILEGED=1 to skip privileged tests explicitly"
        );
    }
    report_skip(&format!("SKIP {test}: needs {what}"));
    false
}

/// Prints a skip and appends it to `VZ_TEST_SKIP_LOG`, so the run's summary shows it.
fn report_skip(line: &str) {
    eprintln!("{line}");
    if let Ok(log) = std::env::var("VZ_TEST_SKIP_LOG")
        && let Ok(mut file) = OpenOptions::new().create(true).append(true).open(log)
    {
        let _ = writeln!(file, "{line}");
    }
}

/// Controllers that exist only in cgroup v1: on a pure v2 host their behaviour is done by
/// other means (device BPF programs, cgroup.freeze, cpu.stat), so a test of them does not apply.
const V1_ONLY_CONTROLLERS: &[&str] =
    &["devices", "freezer", "cpuacct", "blkio", "net_cls", "net_prio"];

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn is_cgroup2_root() -> bool {
    crate::cgroup::is_cgroup_v2()
}

fn has_controller(name: &str) -> bool {
    if is_cgroup2_root() {
        return std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .map(|list| list.split_whitespace().any(|c| c == name))
            .unwrap_or(false);
    }
    crate::cgroup::cgroup_v1_mount(name).is_some()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn met_needs_let_the_test_run() {
        assert!(check_needs("t", &[]));
        assert!(check_needs("t", &[Need::Program("/bin/sh")]));
    }

    #[test]
    fn a_missing_need_fails_the_test_by_default() {
        if std::env::var("VZ_SKIP_PRIVILEGED").as_deref() == Ok("1") {
            return;
        }
        let result = std::panic::catch_unwind(|| {
            check_needs("t", &[Need::Program("/nonexistent/vz-test-tool")])
        });
        let message = *result.expect_err("must fail").downcast::<String>().expect("a message");
        assert!(message.contains("/nonexistent/vz-test-tool"), "{message}");
    }
}
