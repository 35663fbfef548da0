//! Dump and restore times through vz-cpt beside bare `criu dump`/`criu restore` (the CLI
//! with the same options) of the same tree, alternating, for a minimal VE and for one with
//! 256 MiB of touched memory. Times are reported, not asserted (no timing assertion on a
//! shared machine); what is asserted is that every cycle works and that the 256 MiB are in
//! the images.
#![allow(clippy::print_stderr, reason = "the test reports the times it measured")]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Load, TestVe, run};
use vz_tests::{Need, require};

const CRIU: &str = vz_cpt::DEFAULT_CRIU;
/// Rounds per measurement; `VZ_CPT_ROUNDS` sets more for a quieter median.
fn rounds() -> usize {
    std::env::var("VZ_CPT_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5)
}

fn bare_dump(ve: &TestVe) -> anyhow::Result<Duration> {
    let dir = ve.images();
    std::fs::create_dir_all(&dir)?;
    let start = Instant::now();
    run(Command::new(CRIU)
        .args(["dump", "-t", &ve.init_pid.to_string(), "-D"])
        .arg(&dir)
        .args(["-o", "dump.log", "-v4", "--manage-cgroups", "--tcp-established", "--file-locks"])
        .args(["--ghost-limit", "64M", "--external", "mnt[]"]))?;
    Ok(start.elapsed())
}

fn bare_restore(ve: &mut TestVe) -> anyhow::Result<Duration> {
    let dir = ve.images();
    let pidfile = ve.dumps.path().join("bare.pid");
    let _ = std::fs::remove_file(&pidfile); // CRIU opens its pidfile O_EXCL
    let start = Instant::now();
    let out = run(Command::new(CRIU)
        .args(["restore", "-D"])
        .arg(&dir)
        .args(["-o", "restore.log", "-v4", "--restore-detached", "--root"])
        .arg(ve.root.path())
        .args(["--manage-cgroups", "--tcp-established", "--file-locks", "--ghost-limit", "64M"])
        .args(["--external", "mnt[]"])
        .arg("--pidfile")
        .arg(&pidfile));
    if let Err(e) = out {
        let log = std::fs::read_to_string(dir.join("restore.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().filter(|l| l.contains("Error")).collect();
        anyhow::bail!("{e}\n{}", tail.join("\n"));
    }
    let elapsed = start.elapsed();
    ve.init_pid = std::fs::read_to_string(&pidfile)?.trim().parse()?;
    Ok(elapsed)
}

fn bare_cycle(
    ve: &mut TestVe,
    bd: &mut Vec<Duration>,
    br: &mut Vec<Duration>,
) -> anyhow::Result<()> {
    bd.push(bare_dump(ve)?);
    let at = ve.counts()?.last().copied().unwrap_or(0);
    br.push(bare_restore(ve)?);
    ve.wait_count(at + 2)?;
    std::fs::remove_dir_all(ve.images())?;
    Ok(())
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn measure(load: Load) -> anyhow::Result<()> {
    let mut ve = TestVe::start(load)?;
    ve.wait_count(if load == Load::Hog { 20 } else { 5 })?;
    let (mut vd, mut vr, mut bd, mut br) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds() {
        // Alternate which goes first: this VM's memory makes the first of a pair slower.
        if round % 2 == 1 {
            bare_cycle(&mut ve, &mut bd, &mut br)?;
        }
        let report = ve.dump(&ve.dump_spec())?;
        if load == Load::Hog {
            assert!(report.image_bytes >= 256 << 20, "images of {} bytes", report.image_bytes);
        }
        vd.push(report.elapsed);
        let at = ve.counts()?.last().copied().unwrap_or(0);
        vr.push(ve.restore(&ve.restore_spec())?.elapsed);
        ve.wait_count(at + 2)?;
        std::fs::remove_dir_all(ve.images())?;
        if round % 2 == 0 {
            bare_cycle(&mut ve, &mut bd, &mut br)?;
        }
    }
    ve.assert_no_gap()?;
    let (vd, vr, bd, br) = (median(vd), median(vr), median(bd), median(br));
    eprintln!(
        "TIMING {load:?} (median of {}, ms): vz-cpt dump {vd:.0}, \
         restore {vr:.0}; bare criu dump {bd:.0}, restore {br:.0}; overhead dump {:+.1}%, \
         restore {:+.1}%",
        rounds(),
        (vd / bd - 1.0) * 100.0,
        (vr / br - 1.0) * 100.0
    );
    Ok(())
}

#[test]
fn minimal_ve_times_beside_bare_criu() -> anyhow::Result<()> {
    require!(Need::Root, Need::Program(CRIU), Need::Program("/bin/busybox"));
    measure(Load::Plain)
}

#[test]
fn ve_with_256_mib_times_beside_bare_criu() -> anyhow::Result<()> {
    require!(Need::Root, Need::Program(CRIU), Need::Program("/bin/busybox"));
    measure(Load::Hog)
}
