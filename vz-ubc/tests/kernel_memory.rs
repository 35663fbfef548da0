//! physpages/swappages on a real memory cgroup: a memory hog is killed inside the VE only, the
//! kernel counts the failures, and a raised limit lets the same hog finish.

#![allow(clippy::unwrap_used, reason = "test helpers panic on failure")]

mod common;

use common::VeCgroup;
use vz_ubc::{Beancounter, Enforcement, Resource, UbcSet};

/// Allocates and fills a 200 MiB buffer.
const HOG: &str = "exec dd if=/dev/zero of=/dev/null bs=200M count=1";

fn physpages(bc: &Beancounter) -> vz_ubc::Usage {
    bc.usage().unwrap().into_iter().find(|u| u.resource == Resource::PhysPages).unwrap()
}

fn limits(ram: &str, swap: &str) -> UbcSet {
    UbcSet::from_config_pairs(&[("PHYSPAGES", ram), ("SWAPPAGES", swap)]).unwrap()
}

#[test]
fn memory_hog_is_contained_by_physpages_and_passes_after_raising_it() {
    vz_tests::require!(
        vz_tests::Need::Root,
        vz_tests::Need::CgroupController("memory"),
        vz_tests::Need::CgroupController("pids")
    );
    memory_hog_is_contained_by_physpages_and_passes_after_raising_it_body().unwrap();
}

fn memory_hog_is_contained_by_physpages_and_passes_after_raising_it_body() -> anyhow::Result<()> {
    let mut cg = VeCgroup::new("physpages")?;
    let bc = Beancounter::new(4243, cg.dirs.clone());
    let report = bc.apply(&limits("0:64M", "0:0"))?;
    assert!(
        matches!(report.get(Resource::PhysPages), Some(Enforcement::Enforced { .. })),
        "{report:?}"
    );
    let page = vz_ubc::page_size();
    assert_eq!(physpages(&bc).limit, (64 << 20) / page);

    let status = cg.spawn(HOG)?.wait()?;
    assert!(!status.success(), "the hog must not get 200 MiB under a 64 MiB limit: {status:?}");
    let u = physpages(&bc);
    assert!(u.failcnt > 0, "{u:?}");
    assert!(u.maxheld <= (64 << 20) / page + 1, "{u:?}");

    bc.apply(&limits("0:512M", "0:0"))?;
    let before = physpages(&bc).failcnt;
    let status = cg.spawn(HOG)?.wait()?;
    assert!(status.success(), "{status:?}");
    let u = physpages(&bc);
    assert!(u.maxheld >= (200 << 20) / page, "{u:?}");
    assert_eq!(u.failcnt, before, "{u:?}");
    Ok(())
}

#[test]
fn report_and_usage_cover_every_parameter() {
    vz_tests::require!(
        vz_tests::Need::Root,
        vz_tests::Need::CgroupController("memory"),
        vz_tests::Need::CgroupController("pids")
    );
    report_and_usage_cover_every_parameter_body().unwrap();
}

fn report_and_usage_cover_every_parameter_body() -> anyhow::Result<()> {
    let mut cg = VeCgroup::new("report")?;
    let pairs: Vec<(&str, &str)> = vz_ubc::Resource::ALL
        .iter()
        .map(|r| match r {
            Resource::PhysPages => (r.key(), "0:256M"),
            Resource::SwapPages => (r.key(), "0:128M"),
            Resource::OomGuarPages => (r.key(), "32M:unlimited"),
            Resource::VmGuarPages => (r.key(), "16M:unlimited"),
            Resource::TcpSndBuf | Resource::TcpRcvBuf => (r.key(), "1M:2M"),
            Resource::KmemSize => (r.key(), "64M"),
            _ => (r.key(), "1000"),
        })
        .collect();
    let set = UbcSet::from_config_pairs(&pairs)?;
    let bc = Beancounter::new(4244, cg.dirs.clone()).with_config(set.clone());
    let report = bc.apply(&set)?;
    assert_eq!(report.entries.len(), Resource::ALL.len(), "{report:?}");
    for r in [Resource::PhysPages, Resource::NumProc, Resource::OomGuarPages] {
        assert!(report.enforced().contains(&r), "{r}: {report:?}");
    }
    assert!(report.accounted().contains(&Resource::NumIptent), "{report:?}");
    if vz_tests::is_cgroup_v2() {
        assert!(report.accounted().contains(&Resource::KmemSize), "{report:?}");
        // vmguarpages is memory.min on v2, and reads back as the barrier.
        assert!(report.enforced().contains(&Resource::VmGuarPages), "{report:?}");
        let vz_ubc::CgroupDirs::V2 { dir } = &cg.dirs else { unreachable!("v2 dirs") };
        let min = std::fs::read_to_string(dir.join("memory.min"))?;
        assert_eq!(min.trim(), (16u64 << 20).to_string());
    } else {
        assert!(report.unsupported().contains(&Resource::VmGuarPages), "{report:?}");
    }
    // A process with 3 more descriptors and a file lock shows up in the accounted rows.
    cg.spawn("exec 7</dev/null 8</dev/null 9</dev/null; exec flock /dev/null sleep 60")?;
    let usage = common::wait_for(5, || {
        let u = bc.usage().ok()?;
        let get = |r: Resource| u.iter().find(|x| x.resource == r).copied();
        (get(Resource::NumFlock)?.held >= 1).then_some(u)
    })
    .expect("the lock was not seen");
    let get = |r: Resource| usage.iter().find(|x| x.resource == r).copied().unwrap();
    assert!(get(Resource::NumFile).held >= 4, "{usage:?}");
    assert_eq!(get(Resource::NumFile).limit, 1000, "config overlay: {usage:?}");
    assert!(get(Resource::NumProc).held >= 1 && get(Resource::NumProc).limit == 1000);
    assert!(get(Resource::PhysPages).held > 0, "{usage:?}");
    assert_eq!(get(Resource::PhysPages).limit, (256 << 20) / vz_ubc::page_size());
    if vz_tests::is_cgroup_v2() {
        assert_eq!(get(Resource::VmGuarPages).barrier, (16 << 20) / vz_ubc::page_size());
    }
    assert_eq!(usage.len(), 21, "every kernel parameter has a row");
    Ok(())
}
