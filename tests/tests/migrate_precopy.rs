//! Black-box tests of `vzmigrate --mode pre-copy` (iterative pre-dumps, P.Haul's way) between
//! two vz trees of the migration rig (`migrate/rig.rs`). What the kernel offers decides what
//! is checked, and the test says which: without soft-dirty tracking (this host's kernel) an
//! explicit `--mode pre-copy` is refused with exit 17 before anything is copied or frozen
//! (the VE and its client's connection run on, nothing of it on the destination) and `auto`
//! picks the page server; with it (the kernel lab) the VE moves with its work and its TCP
//! client after pre-dumps that `-t` lists, and `auto` picks pre-copy.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]
#![allow(clippy::print_stderr, reason = "the test reports the kernel's answer and the times")]

#[path = "migrate/rig.rs"]
#[allow(dead_code, reason = "the rig serves the migrate tests too")]
mod rig;

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use rig::{Rig, needs};
use vz_tests::{
    LineClient, assert_no_gap, last_count, ok, output_text, require, start_working_ve, unique_ctid,
    wait_count,
};

const VE_IP: &str = "198.51.100.78";

/// Whether the kernel tracks soft-dirty pages, asked of the kernel itself (not of vz or
/// CRIU): this process's bits cleared, a page written, its pagemap entry's bit 55 read.
fn kernel_soft_dirty() -> bool {
    const PAGE: usize = 4096;
    std::fs::write("/proc/self/clear_refs", "4").expect("write clear_refs");
    let mut buf = vec![0u8; 2 * PAGE];
    let addr = (buf.as_ptr() as usize).next_multiple_of(PAGE);
    let at = addr - buf.as_ptr() as usize;
    buf[at] = 1;
    std::hint::black_box(&mut buf);
    let mut map = std::fs::File::open("/proc/self/pagemap").expect("open pagemap");
    let mut entry = [0u8; 8];
    map.seek(SeekFrom::Start((addr / PAGE * 8) as u64)).expect("seek pagemap");
    map.read_exact(&mut entry).expect("read pagemap");
    std::hint::black_box(&buf);
    u64::from_le_bytes(entry) & (1 << 55) != 0
}

fn connect(rig: &Rig) -> LineClient {
    LineClient::connect(|| {
        let mut nc = rig.in_client("/bin/busybox");
        nc.args(["nc", VE_IP, "7000"]);
        nc
    })
}

/// The timing line `name` of `-t` (`  NAME:   0.123 s`), in ms.
fn timing_ms(text: &str, name: &str) -> Option<f64> {
    let line =
        text.lines().find(|l| l.trim_start().starts_with(name) && l.trim_end().ends_with(" s"))?;
    let secs: f64 = line.split_whitespace().rev().nth(1)?.parse().ok()?;
    Some(secs * 1000.0)
}

#[test]
fn pre_copy_where_the_kernel_tracks_dirty_pages_and_a_clean_refusal_where_not() {
    let [a, b, c, d, e, f, g, h] = needs();
    require!(a, b, c, d, e, f, g, h);
    let soft_dirty = kernel_soft_dirty();
    eprintln!("the kernel tracks soft-dirty pages: {soft_dirty}");
    let rig = Rig::new("");
    let ctid = unique_ctid().to_string();
    start_working_ve(&rig.src, &ctid, VE_IP, &[]);
    let mut client = connect(&rig);

    if !soft_dirty {
        for args in
            [&["--online", "--mode=pre-copy"][..], &["--online", "--mode=pre-copy", "--check-only"]]
        {
            let before = last_count(&rig.src, &ctid);
            let out = rig.vzmigrate(args, &ctid);
            let text = output_text(&out);
            assert_eq!(out.status.code(), Some(17), "{args:?}: {text}");
            assert!(text.contains("does not track dirty memory"), "{args:?}: {text}");
            assert!(!text.contains("Suspending"), "{args:?}: {text}");
            client.try_ping().expect("the client's connection after the refusal");
            wait_count(&rig.src, &ctid, before + 3);
            rig::works_only_on(&rig.src, &rig.dst, &ctid);
            assert_no_gap(&rig.src, &ctid);
        }
        // A bad mode is a usage error.
        let out = rig.vzmigrate(&["--online", "--mode=iterative"], &ctid);
        assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
        assert!(output_text(&out).contains("pre-copy"), "{}", output_text(&out));
        // auto does not pick it: the page server (a user-namespace VE, no unprivileged
        // userfaultfd here), and the VE moves.
        let out = rig.vzmigrate(&["--online", "-t"], &ctid);
        let text = output_text(&out);
        assert!(out.status.success(), "auto: {text}");
        assert!(text.contains("memory: PageServer"), "auto: {text}");
        assert!(!text.contains("Pre-dump"), "auto: {text}");
        client.try_ping().expect("the client's connection across the migration");
        rig::works_only_on(&rig.dst, &rig.src, &ctid);
        assert_no_gap(&rig.dst, &ctid);
        ok(rig.dst.run("vzctl", &["stop", &ctid]));
        return;
    }

    let out = rig.vzmigrate(&["--online", "--mode=pre-copy", "-t"], &ctid);
    let text = output_text(&out);
    assert!(out.status.success(), "pre-copy: {text}");
    eprintln!("pre-copy:\n{text}");
    assert!(text.contains("memory: PreCopy"), "{text}");
    assert!(text.contains("Pre-dump 1: "), "each iteration said: {text}");
    assert!(timing_ms(&text, "Pre-dump 1 (").is_some(), "-t lists the iterations: {text}");
    assert!(timing_ms(&text, "Total suspended time:").is_some(), "{text}");
    client.try_ping().expect("the client's connection across the pre-copy migration");
    rig::works_only_on(&rig.dst, &rig.src, &ctid);
    assert_no_gap(&rig.dst, &ctid);
    assert!(!rig.dst.path().join(format!("dump/Dump.{ctid}/pre")).exists());
    // And back, chosen by auto (no post-copy for a user-namespace VE without unprivileged
    // userfaultfd; pre-copy where the kernel tracks dirty pages).
    let uffd = std::fs::read_to_string("/proc/sys/vm/unprivileged_userfaultfd")
        .is_ok_and(|v| v.trim() == "1");
    let out = rig.vzmigrate_from(false, &["--online", "-t"], &ctid);
    let text = output_text(&out);
    assert!(out.status.success(), "auto back: {text}");
    if !uffd {
        assert!(text.contains("memory: PreCopy"), "auto: {text}");
    }
    client.try_ping().expect("the client's connection across the way back");
    rig::works_only_on(&rig.src, &rig.dst, &ctid);
    assert_no_gap(&rig.src, &ctid);
    assert!(!Path::new(&rig.src.path().join(format!("dump/Dump.{ctid}/pre"))).exists());
    ok(rig.src.run("vzctl", &["stop", &ctid]));
}
