//! The page-server mode's frozen time, measured over several migrations of a VE with
//! 256 MiB touched between the two vz trees of the migration rig (`migrate/rig.rs`), there
//! and back in turn: each must keep the VE's work going and leave nothing of the migration
//! on either side. The times are reported (the machine is shared), with their median.
//! `VZ_TEST_ROUNDS` sets the number of migrations (2 unless given); `VZ_TEST_DUMP_TMPFS=1`
//! puts both trees' dump directories on a tmpfs of their own (to compare with the disk).
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]
#![allow(clippy::print_stderr, reason = "the test reports the frozen times")]

#[path = "migrate/rig.rs"]
#[allow(dead_code, reason = "the rig serves the migrate tests too")]
mod rig;

#[path = "migrate/memhog.rs"]
#[allow(dead_code, reason = "the memory load serves the migrate tests too")]
mod memhog;

use memhog::{memhog_count, memhog_ve, wait_memhog};
use rig::{Rig, needs, suspended_ms};
use vz_tests::{Need, output_text, require, unique_ctid};

#[test]
fn page_server_frozen_time_256m() {
    let [a, b, c, d, e, f, g, h] = needs();
    require!(a, b, c, d, e, f, g, h, Need::Program("/usr/bin/gcc"));
    let rounds: usize =
        std::env::var("VZ_TEST_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(2);
    let rig = Rig::new("LOCAL_UID=0\nLOCAL_GID=0\n");
    // Dropped before the rig (whose trees' removal needs the directories unmounted).
    let _tmpfs: Vec<Tmpfs> = if std::env::var_os("VZ_TEST_DUMP_TMPFS").is_some() {
        [&rig.src, &rig.dst].iter().map(|t| Tmpfs::mount(&t.path().join("dump"))).collect()
    } else {
        Vec::new()
    };
    let ctid = unique_ctid().to_string();
    memhog_ve(&rig.src, &ctid);
    let mut frozen = Vec::new();
    for round in 0..rounds {
        let forward = round % 2 == 0;
        let (from, to) = if forward { (&rig.src, &rig.dst) } else { (&rig.dst, &rig.src) };
        let before = memhog_count(from, &ctid);
        let out = rig.vzmigrate_from(forward, &["--online", "--mode=page-server", "-t"], &ctid);
        let text = output_text(&out);
        assert!(out.status.success(), "round {round}: {text}");
        let ms = suspended_ms(&text).expect("-t prints the suspended time");
        eprintln!("TIMING page-server 256 MiB round {round}: frozen {ms:.0} ms\n{text}");
        frozen.push(ms);
        wait_memhog(to, &ctid, before + 3);
        // Nothing of the migration stays: the source's images, the destination's daemon.
        for tree in [from, to] {
            let dump = tree.path().join("dump");
            let left: Vec<_> = std::fs::read_dir(&dump)
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "round {round}: left in {}: {left:?}", dump.display());
        }
    }
    frozen.sort_by(f64::total_cmp);
    eprintln!(
        "TIMING page-server 256 MiB: frozen {frozen:.0?} ms, median {:.0}",
        frozen[rounds / 2]
    );
}

/// A tmpfs mounted over a directory until dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path) -> Tmpfs {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=0755", "vz-test-dump"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(out.status.success(), "mount a tmpfs on {}: {}", dir.display(), output_text(&out));
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).output();
    }
}
