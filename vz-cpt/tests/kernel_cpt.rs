//! Checkpoint and restore of a VE-like tree with the real CRIU and kernel: the counter goes
//! on without a gap, pids inside stay, a TCP connection survives, restore after restore,
//! suspend/resume, the staged dump, and every refusal made before anything is frozen.

mod common;

use std::time::Duration;

use common::{Client, Load, TestVe};
use vz_cpt::{CptError, Criu, Freezer, FreezerState, Refusal};
use vz_tests::{Need, require};

const CRIU: &str = vz_cpt::DEFAULT_CRIU;

fn needs() -> [Need; 4] {
    [
        Need::Root,
        Need::Program(CRIU),
        Need::Program("/bin/busybox"),
        Need::Program("/usr/bin/nsenter"),
    ]
}

/// Dumps `ve` (it stops), checks it stays stopped, restores it and checks the counter ran on
/// from where it was, with the same pids inside.
fn cycle(ve: &mut TestVe) -> anyhow::Result<()> {
    let pids = ve.inner_pids();
    anyhow::ensure!(pids.iter().any(|(p, _)| *p == 1), "no init among {pids:?}");
    let report = ve.dump(&ve.dump_spec())?;
    assert!(report.image_bytes > 0);
    assert!(!ve.is_running(), "the init still runs after the dump");
    let at_dump = ve.counts()?.last().copied().unwrap_or(0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ve.counts()?.last().copied().unwrap_or(0), at_dump, "the counter ran while dumped");
    let restored = ve.restore(&ve.restore_spec())?;
    let pidfile = std::fs::read_to_string(ve.dumps.path().join("restored.pid"))?;
    assert_eq!(pidfile.trim(), restored.init_pid.to_string());
    assert!(ve.is_running());
    ve.wait_count(at_dump + 5)?;
    ve.assert_no_gap()?;
    assert_eq!(ve.inner_pids(), pids, "pids inside changed across the restore");
    std::fs::remove_dir_all(ve.images())?;
    Ok(())
}

#[test]
fn counter_and_pids_survive_dump_and_restore_twice() -> anyhow::Result<()> {
    require!(needs()[0], needs()[1], needs()[2], needs()[3], common::freezer_need());
    let mut ve = TestVe::start(Load::Plain)?;
    ve.wait_count(5)?;
    cycle(&mut ve)?;
    // Restore after restore: the restored VE (now in a time namespace of CRIU's) dumps again.
    cycle(&mut ve)?;
    vz_cpt::kill(ve.init_pid, &[ve.cgroup.procs()], None)?;
    assert!(!ve.is_running());
    Ok(())
}

#[test]
fn tcp_connection_from_a_test_netns_survives() -> anyhow::Result<()> {
    require!(needs()[0], needs()[1], needs()[2], needs()[3], Need::Program("/usr/sbin/ip"));
    let mut ve = TestVe::start(Load::Net)?;
    let netns = ve.netns.as_ref().expect("a net VE has a netns");
    let mut client = Client::connect(netns)?;
    for _ in 0..3 {
        client.ping()?;
    }
    cycle(&mut ve)?;
    for _ in 0..3 {
        client.ping()?;
    }
    cycle(&mut ve)?;
    client.ping()?;
    assert_eq!(client.sent, 7);
    Ok(())
}

#[test]
fn suspend_resume_then_staged_dump_kill_and_restore() -> anyhow::Result<()> {
    require!(needs()[0], needs()[1], needs()[2], needs()[3], common::freezer_need());
    let mut ve = TestVe::start(Load::Plain)?;
    ve.wait_count(3)?;
    let freezer = ve.freezer();
    freezer.freeze()?;
    assert_eq!(freezer.state()?, FreezerState::Frozen);
    let frozen_at = ve.counts()?.last().copied().unwrap_or(0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ve.counts()?.last().copied().unwrap_or(0), frozen_at, "a frozen VE counted");
    freezer.thaw()?;
    ve.wait_count(frozen_at + 3)?;

    // OpenVZ's stages: --suspend, --dump (the VE stays suspended), --kill.
    let pids = ve.inner_pids();
    freezer.freeze()?;
    let spec =
        vz_cpt::DumpSpec { freezer: Some(freezer.clone()), leave_running: true, ..ve.dump_spec() };
    ve.dump(&spec)?;
    assert!(ve.is_running(), "a leave-running dump stopped the VE");
    assert_eq!(freezer.state()?, FreezerState::Frozen, "the suspended VE was thawed by the dump");
    let at_dump = ve.counts()?.last().copied().unwrap_or(0);
    vz_cpt::kill(ve.init_pid, &[ve.cgroup.procs()], Some(&freezer))?;
    assert!(!ve.is_running());
    assert_eq!(freezer.state()?, FreezerState::Thawed);

    ve.restore(&ve.restore_spec())?;
    // The images of a VE dumped frozen restore running.
    assert_eq!(freezer.state()?, FreezerState::Thawed, "restored frozen");
    ve.wait_count(at_dump + 5)?;
    ve.assert_no_gap()?;
    assert_eq!(ve.inner_pids(), pids);
    Ok(())
}

fn refusal(e: CptError) -> Refusal {
    match e {
        CptError::Refused(r) => r,
        other => panic!("expected a refusal, got {other}"),
    }
}

#[test]
fn refusals_come_before_anything_is_frozen() -> anyhow::Result<()> {
    require!(needs()[0], needs()[1], needs()[2], needs()[3], Need::Program("/usr/sbin/ip"));
    let ve = TestVe::start(Load::Net)?;
    ve.wait_count(2)?;
    let freezer = ve.freezer();

    // A process in the VE's cgroup that is not in the init's tree.
    let mut foreign = std::process::Command::new("sleep").arg("1000").spawn()?;
    ve.cgroup.add(foreign.id())?;
    let r = refusal(ve.dump(&ve.dump_spec()).expect_err("foreign process"));
    let fpid = i32::try_from(foreign.id())?;
    assert!(matches!(r, Refusal::ForeignProcess { pid, .. } if pid == fpid), "{r}");
    assert!(r.to_string().contains("not a descendant"), "{r}");
    foreign.kill()?;
    foreign.wait()?;

    // The host end down: the routes would be dumped linkdown.
    let netns = ve.netns.as_ref().expect("netns");
    netns.sh(&format!("ip link set {} down", common::HOST_IF))?;
    let r = refusal(ve.dump(&ve.dump_spec()).expect_err("host end down"));
    assert_eq!(r, Refusal::HostInterfaceDown { name: common::HOST_IF.into() });
    netns.sh(&format!("ip link set {} up", common::HOST_IF))?;

    // A VE whose system calls a host listener serves.
    let spec = vz_cpt::DumpSpec { syscall_listener_outside: true, ..ve.dump_spec() };
    assert_eq!(refusal(ve.dump(&spec).expect_err("listener")), Refusal::SeccompListenerOutside);

    // No such init.
    let mut gone = std::process::Command::new("true").spawn()?;
    let gone_pid = i32::try_from(gone.id())?;
    gone.wait()?;
    let spec = vz_cpt::DumpSpec { init_pid: gone_pid, ..ve.dump_spec() };
    assert_eq!(refusal(ve.dump(&spec).expect_err("no init")), Refusal::NoInit { pid: gone_pid });

    // Nothing was frozen or written, and the VE counts on.
    assert_eq!(freezer.state()?, FreezerState::Thawed);
    assert!(!ve.images().exists(), "a refused dump left {}", ve.images().display());
    let now = ve.counts()?.last().copied().unwrap_or(0);
    ve.wait_count(now + 3)?;

    // A snapshot (leave running), then a second dump into the same directory is refused.
    let spec = vz_cpt::DumpSpec { leave_running: true, ..ve.dump_spec() };
    ve.dump(&spec)?;
    assert!(ve.is_running());
    let r = refusal(ve.dump(&spec).expect_err("dump exists"));
    assert_eq!(r, Refusal::DumpExists { dir: ve.images() });
    let now = ve.counts()?.last().copied().unwrap_or(0);
    ve.wait_count(now + 3)?;
    ve.assert_no_gap()?;
    Ok(())
}

#[test]
fn a_failed_restore_leaves_the_dump_to_restore_later() -> anyhow::Result<()> {
    require!(needs()[0], needs()[1], needs()[2], needs()[3], common::freezer_need());
    let criu = Criu::default();
    let mut ve = TestVe::start(Load::Plain)?;
    ve.wait_count(3)?;
    ve.dump(&ve.dump_spec())?;
    let at_dump = ve.counts()?.last().copied().unwrap_or(0);

    let empty = tempfile::tempdir()?;
    let bad = vz_cpt::RestoreSpec { root: empty.path().to_owned(), ..ve.restore_spec() };
    match vz_cpt::restore(&criu, &bad, &mut |_| Ok(())) {
        Err(CptError::CriuFailed { what: "restore", log, .. }) => {
            assert!(log.is_file(), "the error names {} but it is missing", log.display());
        }
        other => panic!("a restore onto an empty root: {other:?}"),
    }
    assert!(ve.images().join("inventory.img").is_file(), "the failed restore spoiled the dump");
    assert!(!ve.is_running());

    let missing =
        vz_cpt::RestoreSpec { images_dir: empty.path().join("none"), ..ve.restore_spec() };
    let e = vz_cpt::restore(&criu, &missing, &mut |_| Ok(())).expect_err("no images");
    assert!(matches!(e, CptError::BadSpec { field: "images_dir", .. }), "{e}");

    // The hook can abort a restore; the dump stays usable.
    let e = vz_cpt::restore(&criu, &ve.restore_spec(), &mut |ev| {
        if ev.stage == vz_cpt::RestoreStage::PostSetupNamespaces {
            Err("no".into())
        } else {
            Ok(())
        }
    })
    .expect_err("hook refused");
    assert!(matches!(&e, CptError::Hook { stage, .. } if stage == "post-setup-namespaces"), "{e}");

    let spec = vz_cpt::RestoreSpec { child_of_caller: true, ..ve.restore_spec() };
    let restored = ve.restore(&spec)?;
    let parent = std::fs::read_to_string(format!("/proc/{}/stat", restored.init_pid))?;
    let ppid: u32 = parent.rsplit_once(") ").unwrap().1.split(' ').nth(1).unwrap().parse()?;
    assert_eq!(ppid, std::process::id(), "child_of_caller: the init is not our child");
    ve.wait_count(at_dump + 3)?;
    ve.assert_no_gap()?;
    vz_cpt::kill(
        ve.init_pid,
        &[ve.cgroup.procs()],
        Some(&Freezer::V1(ve.cgroup.dir().to_owned())).filter(|_| !vz_tests::is_cgroup_v2()),
    )?;
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(restored.init_pid), None);
    Ok(())
}

#[test]
fn criu_reports_its_version() {
    require!(Need::Root, Need::Program(CRIU));
    let v = Criu::default().version().expect("criu version over RPC");
    assert!(
        v >= vz_cpt::CriuVersion { major: 4, minor: 2, sublevel: 0 },
        "CRIU {v} is older than 4.2"
    );
}

#[test]
fn a_failed_dump_lets_the_ve_run_on_and_sets_the_images_aside() -> anyhow::Result<()> {
    require!(needs()[0], needs()[1], needs()[2], needs()[3], common::freezer_need());
    let mut ve = TestVe::start(Load::Ghost)?;
    ve.wait_count(3)?;
    // A deleted 2 MiB file open in the VE is over a 1 MiB ghost limit: CRIU fails the dump.
    let mut spec = ve.dump_spec();
    spec.options.ghost_limit = 1 << 20;
    match ve.dump(&spec) {
        Err(CptError::CriuFailed { what: "dump", log, .. }) => {
            let text = std::fs::read_to_string(&log)?;
            assert!(text.contains("ghost"), "the log {} does not say why", log.display());
            assert!(
                log.starts_with(format!("{}.fail", ve.images().display())),
                "{}",
                log.display()
            );
        }
        other => panic!("a dump over the ghost limit: {other:?}"),
    }
    assert!(!ve.images().exists(), "a failed dump left {}", ve.images().display());
    assert!(ve.is_running(), "a failed dump stopped the VE");
    assert_eq!(ve.freezer().state()?, FreezerState::Thawed);
    let now = ve.counts()?.last().copied().unwrap_or(0);
    ve.wait_count(now + 3)?;

    // With the default limit the file comes back open and deleted.
    ve.dump(&ve.dump_spec())?;
    ve.restore(&ve.restore_spec())?;
    let fd = std::fs::read_link(format!("/proc/{}/fd/4", ve.init_pid))?;
    assert!(fd.to_string_lossy().ends_with("/tmp/big (deleted)"), "{}", fd.display());
    let now = ve.counts()?.last().copied().unwrap_or(0);
    ve.wait_count(now + 3)?;
    ve.assert_no_gap()?;
    Ok(())
}
