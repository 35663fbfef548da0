//! Iterative pre-copy with the real CRIU and kernel. Where the kernel tracks soft-dirty
//! pages (the kernel lab's 6.1): a running VE holding 256 MiB is pre-dumped twice while its
//! counter writes, dumped with the last pre-dump as parent (fewer pages than the first
//! pre-dump), restored, and its counter goes on without a gap. Where it does not (this
//! host's kernel): vz's detection says no as the kernel does, and a pre-dump fails while the
//! VE runs on untouched.

#![allow(
    clippy::print_stderr,
    reason = "the test reports which kernel it ran on and the pages it counted"
)]

mod common;

use std::time::Duration;

use common::{Load, TestVe};
use vz_cpt::{CriuOptions, Freezer, FreezerState, PreDumpSpec};
use vz_tests::{Need, require};

const CRIU: &str = vz_cpt::DEFAULT_CRIU;

fn needs() -> [Need; 3] {
    [Need::Root, Need::Program(CRIU), Need::Program("/bin/busybox")]
}

fn pre_spec(ve: &TestVe, n: u32, freezer: &Freezer) -> PreDumpSpec {
    PreDumpSpec {
        init_pid: ve.init_pid,
        images_dir: ve.images().join(format!("pre/{n}")),
        parent: (n > 1).then(|| format!("../{}", n - 1)),
        freezer: Some(freezer.clone()),
        options: CriuOptions::default(),
    }
}

/// Waits until the hog's dd holds its 256 MiB (it fills its buffer after the VE starts; under
/// load that takes a while).
fn wait_hog(ve: &TestVe) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    loop {
        let rss_kib = |pid: u32| -> Option<u64> {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        };
        if ve.cgroup.pids().into_iter().filter_map(rss_kib).any(|kib| kib >= 250 << 10) {
            return Ok(());
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(60), "the hog never held 256 MiB");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn detection_agrees_with_the_kernel() -> anyhow::Result<()> {
    require!(needs()[0], needs()[1]);
    let criu = vz_cpt::Criu::default();
    let kernel = vz_cpt::kernel_soft_dirty()?;
    eprintln!("soft-dirty tracking: kernel {kernel}, CRIU {}", vz_cpt::tracks_memory(&criu));
    assert_eq!(vz_cpt::tracks_memory(&criu), kernel);
    // Cached: the same answer again.
    assert_eq!(vz_cpt::tracks_memory(&criu), kernel);
    assert!(!vz_cpt::tracks_memory(&vz_cpt::Criu::at("/nonexistent/criu")));
    Ok(())
}

#[test]
fn pre_dumps_then_a_final_dump_on_them_restore_the_ve() -> anyhow::Result<()> {
    require!(needs()[0], needs()[1], needs()[2], common::freezer_need());
    let criu = vz_cpt::Criu::default();
    let mut ve = TestVe::start(Load::Hog)?;
    ve.wait_count(3)?;
    wait_hog(&ve)?;
    let freezer = ve.freezer();
    if !vz_cpt::tracks_memory(&criu) {
        eprintln!("no soft-dirty tracking here: checking that a pre-dump fails harmlessly");
        let before = ve.wait_count(1)?;
        let err = vz_cpt::pre_dump(&criu, &pre_spec(&ve, 1, &freezer)).unwrap_err();
        eprintln!("pre-dump refused: {err}");
        assert!(ve.is_running());
        assert_eq!(freezer.state()?, FreezerState::Thawed, "the failed pre-dump froze the VE");
        ve.wait_count(before + 3)?;
        // The statistics a dump leaves read back (a snapshot: the VE runs on).
        let mut spec = ve.dump_spec();
        spec.leave_running = true;
        ve.dump(&spec)?;
        let stats = vz_cpt::dump_stats(&ve.images())?.expect("statistics of the dump");
        eprintln!("dump: {stats:?}");
        assert!(stats.pages_written > 60_000, "256 MiB touched: {stats:?}");
        assert!(stats.pages_scanned >= stats.pages_written, "{stats:?}");
        assert_eq!(stats.pages_skipped_parent, 0);
        assert!(ve.is_running());
        let at = ve.counts()?.last().copied().unwrap_or(0);
        ve.wait_count(at + 2)?;
        ve.assert_no_gap()?;
        return Ok(());
    }
    let first = vz_cpt::pre_dump(&criu, &pre_spec(&ve, 1, &freezer))?;
    let first = first.stats.expect("statistics of the first pre-dump");
    eprintln!("pre-dump 1: {first:?}");
    assert!(first.pages_written > 60_000, "256 MiB touched, {} pages written", first.pages_written);
    assert_eq!(freezer.state()?, FreezerState::Thawed);
    // The counter writes on between the iterations.
    let at = ve.counts()?.last().copied().unwrap_or(0);
    ve.wait_count(at + 3)?;
    let second = vz_cpt::pre_dump(&criu, &pre_spec(&ve, 2, &freezer))?;
    let second = second.stats.expect("statistics of the second pre-dump");
    eprintln!("pre-dump 2: {second:?}");
    assert!(second.pages_written < first.pages_written / 4, "{second:?} after {first:?}");
    assert!(second.pages_skipped_parent > 60_000, "{second:?}");
    assert_eq!(freezer.state()?, FreezerState::Thawed);
    let at = ve.counts()?.last().copied().unwrap_or(0);
    ve.wait_count(at + 2)?;
    let mut spec = ve.dump_spec();
    spec.options.parent_images = Some("pre/2".to_owned());
    ve.dump(&spec)?;
    assert!(!ve.is_running());
    let last = vz_cpt::dump_stats(&ve.images())?.expect("statistics of the final dump");
    eprintln!("final dump: {last:?}");
    assert!(last.pages_written < first.pages_written / 4, "{last:?} after {first:?}");
    assert!(last.pages_skipped_parent > 0, "{last:?}");
    assert!(
        std::fs::read_link(ve.images().join("parent"))?.ends_with("pre/2"),
        "CRIU's parent link"
    );
    let at_dump = ve.counts()?.last().copied().unwrap_or(0);
    std::thread::sleep(Duration::from_millis(200));
    ve.restore(&ve.restore_spec())?;
    assert!(ve.is_running());
    ve.wait_count(at_dump + 5)?;
    ve.assert_no_gap()?;
    vz_cpt::kill(ve.init_pid, &[ve.cgroup.procs()], None)?;
    assert!(!ve.is_running());
    Ok(())
}
