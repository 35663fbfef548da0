//! Iterative pre-copy (`--mode pre-copy`, OpenVZ 7's P.Haul pre-dumps, reference §8.3):
//! while the VE runs, CRIU pre-dumps its memory to a page server on the destination, again
//! and again for what it wrote since, until few pages are left, the dirty pages grow by more
//! than 10 %, or after 8 iterations ([`vz_cpt::stop_after`]); then the final dump (the VE
//! frozen, as in the page-server mode) sends only what changed since the last pre-dump.
//!
//! The layout is the same on both sides: iteration N in `pre/N` of the dump's directory
//! (here `Dump.<CTID>.migrate`, there `Dump.<CTID>`), each the parent (`../N-1`) of the
//! next, and the last one (`pre/N`) the parent of the final dump; the destination's page
//! servers make the `parent` links its restore follows. Here the `pre` directories keep
//! only what CRIU needs of a parent (its inventory); they and the final dump's `parent`
//! link are removed before the images go ([`dumped`]).
//!
//! Soft-dirty tracking is needed on the source ([`vz_cpt::tracks_memory`]): `auto` picks
//! this mode only where it exists (after post-copy), and an explicit `--mode pre-copy`
//! without it fails before anything is copied or frozen ([`check`], exit 17). A pre-dump
//! that fails leaves the VE running here (CRIU thaws it; the destination's copy is removed
//! by the caller's guard).

use std::path::Path;
use std::time::Instant;

use super::remote::{Dest, MigrateOptions, Mode};
use super::{MigrateError, Result, Timings, sh_quote as q};
use crate::output::{say, warn};
use crate::ve::Ve;

/// The source's CRIU (`CRIU` of vz.conf).
fn criu(ve: &Ve) -> vz_cpt::Criu {
    vz_cpt::Criu::at(super::remote::criu_path(&ve.global))
}

/// Whether the source's kernel and CRIU can track the pages the VE writes (asked once per
/// command).
pub(super) fn available(ve: &Ve) -> bool {
    vz_cpt::tracks_memory(&criu(ve))
}

/// Refuses an explicit `--mode pre-copy` where the source cannot track dirty pages, before
/// anything is sent or frozen.
///
/// # Errors
/// [`MigrateError::CptUnsupported`] (17).
pub(super) fn check(ve: &Ve, opts: &MigrateOptions) -> Result<()> {
    if !opts.online || opts.mode != Mode::PreCopy || available(ve) {
        return Ok(());
    }
    Err(MigrateError::CptUnsupported(format!(
        "iterative pre-copy (--mode pre-copy) is not possible: this kernel does not track \
         dirty memory (soft-dirty, CONFIG_MEM_SOFT_DIRTY; `{} check --feature \
         mem_dirty_track` fails); use --mode auto, page-server, lazy or plain",
        criu(ve).path().display()
    )))
}

/// Starts a page server of this migration on the destination (`vzmigrate __page-server`,
/// [`super::page_server`]), receiving into `dir` of its dump directory (`None`: that
/// directory; `pre/N`: an iteration's) with `parent` as its `--prev-images-dir`, on the
/// first of [`PORT_TRIES`] ports of iteration `n` it can bind (a port another program holds
/// there, a listener or an outgoing connection's local end, fails the bind); the port, which
/// listens when this returns. It accepts one connection and ends after that dump's session,
/// or by itself if none comes.
pub(super) fn start_page_server(
    dest: &Dest,
    dir: Option<&str>,
    parent: Option<&str>,
    n: u32,
) -> std::result::Result<u16, String> {
    let mut failed = String::new();
    for attempt in 0..PORT_TRIES {
        let request = super::page_server::PageServerRequest {
            ctid: dest.ctid,
            address: dest.host.clone(),
            port: port(n, attempt),
            dir: dir.map(str::to_owned),
            parent: parent.map(str::to_owned),
            wait: super::page_server::ACCEPT_WAIT,
        };
        let words: Vec<String> = request.words().iter().map(|w| q(w)).collect();
        match dest.remote.run(&format!("vzmigrate {}", words.join(" "))) {
            Ok(_) => return Ok(request.port),
            Err((_, e)) => {
                if attempt + 1 < PORT_TRIES {
                    let why = e.lines().last().unwrap_or_default();
                    say(format!(
                        "The page server cannot listen on port {} on the destination ({why}): \
                         trying port {}",
                        request.port,
                        port(n, attempt + 1)
                    ));
                }
                failed = e;
            }
        }
    }
    Err(failed)
}

/// Ends a page server of this migration that is still there (its session never came).
fn stop_page_server(dest: &Dest) {
    let p = dest.daemon_pidfile();
    let _ = dest.remote.run(&format!("[ -f {p} ] && kill $(cat {p}) 2>/dev/null; rm -f {p}"));
}

/// How many ports a page server start tries.
const PORT_TRIES: u32 = 3;

/// The port of try `attempt` for the page server of iteration `n` (0: the final dump's),
/// in 20000..40000: apart per iteration, per try and per migrating process.
fn port(n: u32, attempt: u32) -> u16 {
    let base = std::process::id()
        .wrapping_add(n)
        .wrapping_add(7_919)
        .wrapping_add(attempt.wrapping_mul(4_001))
        % 20_000;
    20_000 + u16::try_from(base).unwrap_or(0)
}

/// Runs the pre-dumps of the running VE into the destination's page servers (each
/// iteration a phase of `t`, its pages said), then starts the final dump's page server.
/// Returns the final dump's `vzctl chkpnt` arguments (`--page-server`, `--prev-images-dir`);
/// none when `fallback` (auto chose this mode) and the first page server cannot start: a
/// plain dump, copy and restore then.
///
/// # Errors
/// [`MigrateError::DestStart`] when a page server cannot start, [`MigrateError::SourceStop`]
/// when a pre-dump fails; the VE runs on here, untouched, and what was made here is removed.
pub(super) fn iterate(
    ve: &Ve,
    dest: &Dest,
    images: &Path,
    fallback: bool,
    t: &mut Timings,
) -> Result<Vec<String>> {
    let criu = criu(ve);
    let init_pid = ve.init_pid()?;
    let freezer = ve.cgroup()?.freezer();
    let fail = |e: MigrateError| {
        stop_page_server(dest);
        let _ = std::fs::remove_dir_all(images);
        e
    };
    let mut previous: Option<u64> = None;
    let mut last = 0;
    let start = Instant::now();
    for n in 1..=vz_cpt::rules::MAX_ITERS {
        let dir = format!("pre/{n}");
        let parent = (n > 1).then(|| format!("../{}", n - 1));
        let port = match start_page_server(dest, Some(&dir), parent.as_deref(), n) {
            Ok(port) => port,
            Err(e) => {
                if n == 1 && fallback {
                    let why = e.lines().last().unwrap_or_default().to_owned();
                    say(format!(
                        "The page server cannot start on the destination ({why}): falling back \
                     to a plain dump, copy and restore"
                    ));
                    return Ok(Vec::new());
                }
                return Err(fail(MigrateError::DestStart(format!("the page server: {e}"))));
            }
        };
        let spec = vz_cpt::PreDumpSpec {
            init_pid,
            images_dir: images.join(&dir),
            parent,
            freezer: freezer.clone(),
            options: vz_cpt::CriuOptions {
                page_server: Some(vz_cpt::PageServer { address: dest.host.clone(), port }),
                ..vz_cpt::CriuOptions::default()
            },
        };
        let report = vz_cpt::pre_dump(&criu, &spec).map_err(|e| {
            fail(MigrateError::SourceStop(format!("pre-dump {n}: {}", vz_cpt_chain(&e))))
        })?;
        let written = report.stats.map(|s| s.pages_written);
        let pages = written.map_or_else(|| "?".to_owned(), |w| w.to_string());
        t.push(format!("Pre-dump {n} ({pages} pages)"), report.elapsed);
        let frozen = report.stats.map_or(0, |s| s.frozen.as_millis());
        say(format!(
            "Pre-dump {n}: {pages} pages in {} ms (frozen {frozen} ms)",
            report.elapsed.as_millis()
        ));
        last = n;
        if let Some(reason) = vz_cpt::stop_after(n, written, previous) {
            say(format!(
                "Pre-copy: {n} iteration(s) in {} ms, {reason}",
                start.elapsed().as_millis()
            ));
            break;
        }
        previous = written;
    }
    let parent = format!("pre/{last}");
    let port = start_page_server(dest, None, Some(&parent), 0)
        .map_err(|e| fail(MigrateError::DestStart(format!("the page server: {e}"))))?;
    Ok(vec![
        "--page-server".into(),
        format!("{}:{port}", dest.host),
        "--prev-images-dir".into(),
        parent,
    ])
}

/// After the final dump: the `parent` link CRIU made and the pre-dumps' directories go,
/// so that only the final images are sent (the destination has its own of both).
pub(super) fn dumped(images: &Path) {
    let link = images.join("parent");
    if link.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink())
        && let Err(e) = std::fs::remove_file(&link)
    {
        warn(format!("remove {}: {e}", link.display()));
    }
    let pre = images.join("pre");
    if pre.is_dir()
        && let Err(e) = std::fs::remove_dir_all(&pre)
    {
        warn(format!("remove {}: {e}", pre.display()));
    }
}

/// An error of vz-cpt with its causes.
fn vz_cpt_chain(e: &vz_cpt::CptError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_differ_per_iteration_and_stay_in_range() {
        let ports: Vec<u16> = (0..=vz_cpt::rules::MAX_ITERS)
            .flat_map(|n| (0..PORT_TRIES).map(move |a| port(n, a)))
            .collect();
        assert!(ports.iter().all(|p| (20_000..40_000).contains(p)));
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
    }

    #[test]
    fn timing_lines_name_each_iteration_with_its_pages() {
        let mut t = Timings::default();
        t.push(format!("Pre-dump {} ({} pages)", 1, 61_415), std::time::Duration::from_millis(637));
        t.push("Suspend + Dump", std::time::Duration::from_millis(90));
        t.set_frozen(std::time::Duration::from_millis(250));
        let lines = t.lines();
        assert_eq!(lines[0], "  Pre-dump 1 (61415 pages):   0.637 s");
        assert_eq!(lines[1], "  Suspend + Dump:".to_owned() + &" ".repeat(13) + "0.090 s");
        assert_eq!(lines[2], "  Total suspended time:       0.250 s");
    }

    #[test]
    fn dumped_leaves_only_the_final_images() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path();
        std::fs::create_dir_all(images.join("pre/1")).unwrap();
        std::fs::write(images.join("pre/1/inventory.img"), b"x").unwrap();
        std::os::unix::fs::symlink("pre/1", images.join("parent")).unwrap();
        std::fs::write(images.join("core-1.img"), b"x").unwrap();
        dumped(images);
        let left: Vec<_> =
            std::fs::read_dir(images).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("core-1.img")]);
        // Nothing to remove: nothing happens.
        dumped(images);
    }
}
