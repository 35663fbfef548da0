//! numproc on a real pids cgroup: a bounded fork bomb stops at the limit, the kernel counts the
//! refusals, the host keeps forking, and raising the limit at runtime lets the same workload run.

#![allow(clippy::unwrap_used, reason = "test helpers panic on failure")]

mod common;

use common::{VeCgroup, wait_for};
use vz_ubc::{BarrierLimit, Beancounter, Enforcement, Resource, UbcSet, render_proc_view};

/// Starts 40 sleeps in the background, as fast as the kernel lets it.
const BOMB: &str = "i=0; while [ $i -lt 40 ]; do sleep 60 & i=$((i+1)); done; wait";

fn numproc(bc: &Beancounter) -> vz_ubc::Usage {
    bc.usage().unwrap().into_iter().find(|u| u.resource == Resource::NumProc).unwrap()
}

#[test]
fn fork_bomb_stops_at_numproc_and_a_raised_limit_lets_it_run() {
    vz_tests::require!(
        vz_tests::Need::Root,
        vz_tests::Need::CgroupController("pids"),
        vz_tests::Need::CgroupController("memory")
    );
    fork_bomb_stops_at_numproc_and_a_raised_limit_lets_it_run_body().unwrap();
}

fn fork_bomb_stops_at_numproc_and_a_raised_limit_lets_it_run_body() -> anyhow::Result<()> {
    let mut cg = VeCgroup::new("numproc")?;
    let bc = Beancounter::new(4242, cg.dirs.clone());
    let mut set = UbcSet::new();
    set.set(Resource::NumProc, BarrierLimit::both(10));
    let report = bc.apply(&set)?;
    assert!(
        matches!(report.get(Resource::NumProc), Some(Enforcement::Enforced { .. })),
        "{report:?}"
    );

    cg.spawn(BOMB)?;
    // The shell stops forking when refused; wait until the kernel has refused at least once.
    let u =
        wait_for(10, || Some(numproc(&bc)).filter(|u| u.failcnt > 0)).expect("no fork was refused");
    assert!(u.held <= 10 && u.limit == 10 && u.barrier == 10, "{u:?}");
    assert!(cg.pids().len() <= 10, "{:?}", cg.pids());
    // The host is unaffected: this process can still start processes.
    assert!(std::process::Command::new("/bin/true").status()?.success());
    let text = render_proc_view(&[(4242, bc.usage()?)]);
    let line = text.lines().find(|l| l.contains(" numproc ")).unwrap().to_owned();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3..5], ["10", "10"], "{line}");
    assert_ne!(fields[5], "0", "{line}");

    cg.kill_all();
    let refused = numproc(&bc).failcnt;
    set.set(Resource::NumProc, BarrierLimit::both(100));
    bc.apply(&set)?;
    cg.spawn(BOMB)?;
    // All 40 sleeps and the shell run, and nothing more is refused.
    let u = wait_for(10, || Some(numproc(&bc)).filter(|u| u.held >= 41))
        .expect("workload did not start");
    assert_eq!(u.failcnt, refused, "{u:?}");
    assert!(u.maxheld >= 41 && u.limit == 100, "{u:?}");
    Ok(())
}
