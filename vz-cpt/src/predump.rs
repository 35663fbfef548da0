//! Iterative pre-copy: whether this kernel tracks the pages a task writes (soft-dirty, the
//! way CRIU finds what changed since a pre-dump), the pre-dump itself (the VE's memory
//! copied while it runs, frozen only for the moment CRIU needs to read its page tables), and
//! the statistics CRIU leaves beside every dump (how many pages it wrote).
//!
//! A chain: pre-dump 1 into `pre/1`, pre-dump 2 into `pre/2` with parent `../1`, …, then the
//! final [`crate::dump`] with [`CriuOptions::parent_images`] naming the last one: every
//! image holds only the pages written since its parent, and a restore follows the `parent`
//! links CRIU makes.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::dump::criu_message;
use crate::error::{CptError, Result};
use crate::options::CriuOptions;
use crate::rpc::{Criu, Opts, ReqType};
use vz_cgroup::Freezer;

/// CRIU's log of a pre-dump, in its images directory.
pub const PRE_DUMP_LOG: &str = "pre-dump.log";

/// The statistics image CRIU writes into the images directory of every dump and pre-dump.
pub const DUMP_STATS: &str = "stats-dump";

/// Whether `criu` can track the memory a task writes (`criu check --feature
/// mem_dirty_track`: the kernel's soft-dirty bits, `CONFIG_MEM_SOFT_DIRTY`). Asked once per
/// CRIU binary and process; a CRIU that cannot be run counts as no.
pub fn tracks_memory(criu: &Criu) -> bool {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, bool>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut known = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    *known.entry(criu.path().to_owned()).or_insert_with(|| {
        let status = Command::new(criu.path())
            .args(["check", "--feature", "mem_dirty_track"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let yes = status.is_ok_and(|s| s.success());
        tracing::debug!(criu = %criu.path().display(), yes, "soft-dirty tracking");
        yes
    })
}

/// What the kernel itself says, the way CRIU's own check looks (kerndat): the soft-dirty
/// bits of this process cleared (`4` into `/proc/self/clear_refs`), a page written, and its
/// `/proc/self/pagemap` entry's bit 55 read. For tests and diagnostics; [`tracks_memory`]
/// is the answer vz acts on.
///
/// # Errors
/// [`CptError::Io`] when the proc files cannot be written or read.
pub fn kernel_soft_dirty() -> Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    const PAGE: usize = 4096;
    let clear = Path::new("/proc/self/clear_refs");
    std::fs::write(clear, "4").map_err(|e| CptError::io("write", clear, e))?;
    let mut buf = vec![0u8; 2 * PAGE];
    // One byte written in a page of the buffer, after the bits were cleared.
    let addr = (buf.as_ptr() as usize).next_multiple_of(PAGE);
    let at = addr - buf.as_ptr() as usize;
    buf[at] = 1;
    std::hint::black_box(&mut buf);
    let map = Path::new("/proc/self/pagemap");
    let mut file = File::open(map).map_err(|e| CptError::io("open", map, e))?;
    let mut entry = [0u8; 8];
    file.seek(SeekFrom::Start((addr / PAGE * 8) as u64))
        .and_then(|_| file.read_exact(&mut entry))
        .map_err(|e| CptError::io("read", map, e))?;
    std::hint::black_box(&buf);
    Ok(u64::from_le_bytes(entry) & (1 << 55) != 0)
}

/// One pre-dump of a running VE.
#[derive(Debug, Clone)]
pub struct PreDumpSpec {
    /// Host pid of the VE's init.
    pub init_pid: i32,
    /// The directory for this iteration's images (made, mode 0700, parents too); it must
    /// not hold a dump already.
    pub images_dir: PathBuf,
    /// The previous iteration's images directory, relative to `images_dir` (`../1`), or
    /// `None` for the first one.
    pub parent: Option<String>,
    /// The VE's freezer: CRIU freezes the VE through it for the moment it reads the page
    /// tables, and thaws it again. `None`: CRIU stops the tasks with ptrace.
    pub freezer: Option<Freezer>,
    /// CRIU's options; `page_server` sends the pages there (the destination's page server,
    /// which keeps the same directory layout), else they go into `images_dir`.
    pub options: CriuOptions,
}

/// What a pre-dump (or a dump, by [`dump_stats`]) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// How long the VE was frozen for it.
    pub frozen: Duration,
    /// Pages looked at.
    pub pages_scanned: u64,
    /// Pages not written because the parent holds them unchanged.
    pub pages_skipped_parent: u64,
    /// Pages written (into the images or to the page server).
    pub pages_written: u64,
}

/// What a successful [`pre_dump`] did.
#[derive(Debug, Clone)]
pub struct PreDumpReport {
    /// Wall time of the CRIU request.
    pub elapsed: Duration,
    /// CRIU's statistics (`None` if it left none).
    pub stats: Option<DumpStats>,
    /// CRIU's log.
    pub log: PathBuf,
}

/// Pre-dumps the running VE: its memory pages, with soft-dirty tracking started (CRIU's
/// `SINGLE_PRE_DUMP` with `track_mem`), so that the next pre-dump or the final dump, with this one
/// as parent, writes only what changed since. The VE runs on, whatever happens: CRIU thaws
/// it at the end, also when it fails.
///
/// # Errors
/// [`CptError::CriuFailed`] naming CRIU's log (e.g. a kernel without soft-dirty tracking,
/// see [`tracks_memory`]); [`CptError::Io`] on the images directory.
///
/// # Privileges
/// Root in the initial namespaces.
pub fn pre_dump(criu: &Criu, spec: &PreDumpSpec) -> Result<PreDumpReport> {
    let dir = &spec.images_dir;
    if dir.join("inventory.img").exists() || dir.join(DUMP_STATS).exists() {
        return Err(CptError::Refused(crate::Refusal::DumpExists { dir: dir.clone() }));
    }
    make_dir(dir)?;
    let images = File::open(dir).map_err(|e| CptError::io("open", dir, e))?;
    let mut opts = Opts::new();
    opts.set_images_dir_fd(images.as_raw_fd());
    opts.set_pid(spec.init_pid);
    opts.set_log_file(PRE_DUMP_LOG.to_owned());
    spec.options.fill(&mut opts);
    opts.set_track_mem(true);
    if let Some(parent) = &spec.parent {
        opts.set_parent_img(parent.clone());
    }
    let mut was_thawed = false;
    if let Some(freezer) = &spec.freezer {
        opts.set_freeze_cgroup(freezer.dir().to_string_lossy().into_owned());
        was_thawed = freezer.state()? == vz_cgroup::FreezerState::Thawed;
    }
    let start = Instant::now();
    // SINGLE_PRE_DUMP: CRIU answers and ends (after a PRE_DUMP it waits for the next
    // request of P.Haul's loop, and logs an error when the connection closes instead).
    let resp = criu.call(ReqType::SINGLE_PRE_DUMP, Some(opts), &mut |_| Ok(()));
    let elapsed = start.elapsed();
    drop(images);
    let log = dir.join(PRE_DUMP_LOG);
    let failure = match resp {
        Ok(r) if r.success() => None,
        Ok(r) => Some(criu_message(&log, r.cr_errmsg(), r.cr_errno())),
        Err(e) => Some(e.to_string()),
    };
    if let Some(message) = failure {
        // A CRIU that died midway (no soft-dirty: it aborts) may leave the freezer frozen.
        if let Some(freezer) = spec.freezer.as_ref().filter(|_| was_thawed)
            && freezer.state()? != vz_cgroup::FreezerState::Thawed
        {
            tracing::warn!("the failed pre-dump left the VE frozen: thawing it");
            freezer.thaw()?;
        }
        return Err(CptError::CriuFailed { what: "pre-dump", message, log });
    }
    let stats = dump_stats(dir)?;
    tracing::info!(ms = elapsed.as_millis(), ?stats, "pre-dumped");
    Ok(PreDumpReport { elapsed, stats, log })
}

/// The statistics CRIU left in `images_dir` after a dump or pre-dump (its `stats-dump`
/// image); `None` when there are none.
///
/// # Errors
/// [`CptError::Io`] when the file cannot be read; [`CptError::Rpc`] when it does not decode.
pub fn dump_stats(images_dir: &Path) -> Result<Option<DumpStats>> {
    let path = images_dir.join(DUMP_STATS);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CptError::io("read", &path, e)),
    };
    parse_stats(&bytes)
        .map(Some)
        .ok_or_else(|| CptError::Rpc(format!("{}: not a CRIU statistics image", path.display())))
}

/// Decodes a `stats-dump` image: two magic words, the entry's length, then `stats_entry`
/// whose field 1 is `dump_stats_entry` (frozen_time 2 in µs, pages_scanned 5,
/// pages_skipped_parent 6, pages_written 7).
fn parse_stats(bytes: &[u8]) -> Option<DumpStats> {
    let len = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
    let entry = bytes.get(12..12 + len)?;
    let dump = fields(entry)?.into_iter().find_map(|(n, f)| match (n, f) {
        (1, Field::Bytes(b)) => Some(b),
        _ => None,
    })?;
    let mut stats = DumpStats::default();
    for (n, f) in fields(dump)? {
        let Field::Varint(v) = f else { continue };
        match n {
            2 => stats.frozen = Duration::from_micros(v),
            5 => stats.pages_scanned = v,
            6 => stats.pages_skipped_parent = v,
            7 => stats.pages_written = v,
            _ => {}
        }
    }
    Some(stats)
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The fields of a protobuf message (varints and length-delimited ones; 32/64-bit skipped).
fn fields(mut b: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b)?;
        let field = match key & 7 {
            0 => Field::Varint(varint(&mut b)?),
            2 => {
                let n = usize::try_from(varint(&mut b)?).ok()?;
                let (v, rest) = (b.get(..n)?, b.get(n..)?);
                b = rest;
                Field::Bytes(v)
            }
            1 => {
                b = b.get(8..)?;
                continue;
            }
            5 => {
                b = b.get(4..)?;
                continue;
            }
            _ => return None,
        };
        out.push((key >> 3, field));
    }
    Some(out)
}

fn varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn make_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CptError::io("make images directory", dir, e))
}

/// P.Haul's limits on the iterations (`phaul/iters.py`).
pub mod rules {
    /// Stop when an iteration wrote this many pages or fewer (`MIN_ITER_PAGES_COUNT`).
    pub const MIN_ITER_PAGES: u64 = 64;
    /// Stop when an iteration wrote more than this many percent more pages than the one
    /// before (`MAX_ITER_GROW_RATE`).
    pub const MAX_GROW_PERCENT: u64 = 10;
    /// Stop after this many iterations (`MAX_ITERS_COUNT`).
    pub const MAX_ITERS: u32 = 8;
}

/// Why the pre-dumps stopped (the final dump follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The iteration wrote few pages ([`rules::MIN_ITER_PAGES`] or fewer).
    FewPages,
    /// The iteration wrote more than [`rules::MAX_GROW_PERCENT`] % more than the one before:
    /// the VE writes faster than the copy goes.
    Growing,
    /// [`rules::MAX_ITERS`] iterations done.
    MaxIterations,
    /// CRIU left no statistics to judge by.
    NoStats,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::FewPages => "few pages left",
            StopReason::Growing => "the dirty pages grow",
            StopReason::MaxIterations => "the last iteration",
            StopReason::NoStats => "no statistics",
        })
    }
}

/// P.Haul's decision after iteration `index` (1-based) wrote `written` pages, the one
/// before `previous`: `Some(reason)` to stop and dump, `None` for another pre-dump.
pub fn stop_after(index: u32, written: Option<u64>, previous: Option<u64>) -> Option<StopReason> {
    let Some(written) = written else { return Some(StopReason::NoStats) };
    if written <= rules::MIN_ITER_PAGES {
        return Some(StopReason::FewPages);
    }
    if let Some(prev) = previous.filter(|&p| p > 0)
        && written > prev
        && (written - prev) * 100 > rules::MAX_GROW_PERCENT * prev
    {
        return Some(StopReason::Growing);
    }
    (index >= rules::MAX_ITERS).then_some(StopReason::MaxIterations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(u8::try_from(v & 0x7f).unwrap() | 0x80);
            v >>= 7;
        }
        out.push(u8::try_from(v).unwrap());
    }

    #[test]
    fn stats_image_decodes() {
        let mut dump = Vec::new();
        for (n, v) in
            [(1u64, 5u64), (2, 12_345), (3, 7), (4, 8), (5, 70_000), (6, 65_000), (7, 5_000)]
        {
            put_varint(&mut dump, n << 3);
            put_varint(&mut dump, v);
        }
        let mut entry = vec![0x0a];
        put_varint(&mut entry, dump.len() as u64);
        entry.extend(&dump);
        let mut image = vec![0x54, 0x56, 0x16, 0x58, 0x31, 0x56, 0x13, 0x57];
        image.extend(u32::try_from(entry.len()).unwrap().to_le_bytes());
        image.extend(&entry);
        let stats = parse_stats(&image).unwrap();
        assert_eq!(stats.frozen, Duration::from_micros(12_345));
        assert_eq!(stats.pages_scanned, 70_000);
        assert_eq!(stats.pages_skipped_parent, 65_000);
        assert_eq!(stats.pages_written, 5_000);
        assert!(parse_stats(&image[..image.len() - 1]).is_none());
        assert!(parse_stats(&[0; 4]).is_none());
    }

    #[test]
    fn phaul_stop_rules() {
        assert_eq!(stop_after(1, Some(64), None), Some(StopReason::FewPages));
        assert_eq!(stop_after(1, Some(65_000), None), None);
        assert_eq!(stop_after(2, Some(1_000), Some(1_000)), None);
        assert_eq!(stop_after(2, Some(1_100), Some(1_000)), None);
        assert_eq!(stop_after(2, Some(1_101), Some(1_000)), Some(StopReason::Growing));
        assert_eq!(stop_after(7, Some(500), Some(600)), None);
        assert_eq!(stop_after(8, Some(500), Some(600)), Some(StopReason::MaxIterations));
        assert_eq!(stop_after(3, None, Some(600)), Some(StopReason::NoStats));
    }

    #[test]
    fn missing_stats_are_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(dump_stats(dir.path()).unwrap().is_none());
        std::fs::write(dir.path().join(DUMP_STATS), b"junk").unwrap();
        assert!(dump_stats(dir.path()).is_err());
    }
}
