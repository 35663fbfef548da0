//! Kernel test of `enter` with `TtyMode::Pty`: the test binary runs itself as the "vzctl"
//! whose stdin and stdout are pipes, so the relay is observed from outside in both ways.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestVe, test_env};
use vz_ns::{CapSet, EnterSpec, SeccompPolicy, TtyMode};
use vz_tests::Need;

const CHILD_INIT: &str = "VZ_NS_TEST_PTY_INIT_PID";
const CHILD_PROCS: &str = "VZ_NS_TEST_PTY_CGROUP_PROCS";
const TEST_NAME: &str = "pty_mode_relays_both_ways_with_a_pty_of_the_ve";

/// The child role: enter the VE given by the parent with a pty, from a process whose stdin
/// and stdout are pipes.
fn child_role(init_pid: &str) -> anyhow::Result<()> {
    let spec = EnterSpec {
        init_pid: init_pid.parse()?,
        cgroup_procs: vec![std::env::var(CHILD_PROCS)?.into()],
        argv: ["sh", "-c", "read x; echo got-$x; tty; exit 5"].map(String::from).to_vec(),
        env: test_env(),
        caps: CapSet::openvz_default(),
        tty: TtyMode::Pty,
        rlimits: Vec::new(),
        quotactl_server: None,
        seccomp: SeccompPolicy::default(),
    };
    let code = vz_ns::enter(&spec)?;
    std::io::stdout().write_all(format!("\nexit-code={code}\n").as_bytes())?;
    Ok(())
}

#[test]
fn pty_mode_relays_both_ways_with_a_pty_of_the_ve() -> anyhow::Result<()> {
    if let Ok(init_pid) = std::env::var(CHILD_INIT) {
        return child_role(&init_pid);
    }
    if !vz_tests::check_needs(
        module_path!(),
        &[Need::Root, Need::CgroupController("pids"), Need::Program("/bin/busybox")],
    ) {
        return Ok(());
    }
    let ve = TestVe::start("vz-test-pty")?;
    let mut child = Command::new(std::env::current_exe()?)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_INIT, ve.init_pid.to_string())
        .env(CHILD_PROCS, ve.cgroup.procs())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let guard = KillOnDrop(child.id());
    child.stdin.take().map(|mut s| s.write_all(b"hello\n")).transpose()?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(20), "the pty relay hangs");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::mem::forget(guard);
    let mut out = String::new();
    child.stdout.take().map(|mut s| s.read_to_string(&mut out)).transpose()?;
    let mut err = String::new();
    child.stderr.take().map(|mut s| s.read_to_string(&mut err)).transpose()?;
    assert!(status.success(), "child failed: {out}\n{err}");
    assert!(out.contains("got-hello"), "stdin reached the program, its output came back: {out}");
    assert!(out.contains("/dev/pts/0"), "the program's tty is the VE's first pty: {out}");
    assert!(out.contains("exit-code=5"), "{out}");
    Ok(())
}

/// Kills the child (by the pid we started) if the test fails before it exits.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
