//! The values vz-ubc computes for limits that live in the VE's namespaces, applied the way vz-ns
//! applies them (a fresh IPC namespace, a fresh devpts instance), refuse what the beancounter
//! refuses: shmget past shmpages, a pty past numpty.

#![allow(clippy::unwrap_used, reason = "test helpers panic on failure")]

use std::process::Command;

use vz_ubc::{UbcSet, page_size, pty_max, shm_sysctls};

fn run_unshared(flag: &str, script: &str) -> i32 {
    let status =
        Command::new("/usr/bin/unshare").args([flag, "/bin/sh", "-c", script]).status().unwrap();
    status.code().unwrap_or(-1)
}

#[test]
fn shmget_past_shmpages_fails_in_the_ve_ipc_namespace() {
    vz_tests::require!(
        vz_tests::Need::Root,
        vz_tests::Need::Program("/usr/bin/unshare"),
        vz_tests::Need::Program("/usr/bin/ipcmk")
    );
    let set = UbcSet::from_config_pairs(&[("SHMPAGES", "1M")]).unwrap();
    let mut script = String::new();
    for (path, value) in shm_sysctls(&set) {
        script.push_str(&format!("echo {value} > {path} || exit 20; "));
    }
    let page = page_size();
    let limit = 1 << 20;
    // One segment above the limit fails; 60% fits; a second 60% would exceed shmall and fails.
    script.push_str(&format!(
        "ipcmk -M {} >/dev/null 2>&1 && exit 10; \
         ipcmk -M {} >/dev/null || exit 11; \
         ipcmk -M {} >/dev/null 2>&1 && exit 12; exit 0",
        limit + page,
        limit * 6 / 10,
        limit * 6 / 10
    ));
    assert_eq!(run_unshared("--ipc", &script), 0, "{script}");
    // Without the values the same workload passes: the refusals came from shmpages.
    let host = "ipcmk -M 1052672 >/dev/null || exit 10; exit 0";
    assert_eq!(run_unshared("--ipc", host), 0);
}

#[test]
fn a_pty_past_numpty_is_refused_by_the_ve_devpts() {
    vz_tests::require!(vz_tests::Need::Root, vz_tests::Need::Program("/usr/bin/unshare"));
    let set = UbcSet::from_config_pairs(&[("NUMPTY", "4")]).unwrap();
    let max = pty_max(&set).unwrap();
    let dir = tempdir();
    let d = dir.0.display();
    // A private mount namespace: the devpts instance disappears with it.
    let script = format!(
        "mount -t devpts -o newinstance,ptmxmode=0666,max={max} devpts {d} || exit 20; \
         exec 3<>{d}/ptmx 4<>{d}/ptmx 5<>{d}/ptmx 6<>{d}/ptmx; \
         (exec 7<>{d}/ptmx) 2>/dev/null && exit 10; exit 0"
    );
    assert_eq!(run_unshared("--mount", &script), 0, "{script}");
}

struct TempDir(std::path::PathBuf);

fn tempdir() -> TempDir {
    let path = std::env::temp_dir().join(vz_tests::unique_name("pts"));
    std::fs::create_dir(&path).unwrap();
    TempDir(path)
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}
