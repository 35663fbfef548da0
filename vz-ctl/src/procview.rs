//! The VE's own view of its resources (`free`, `top`, `uptime`, `nproc` inside a VE show its
//! limits, usage and start time): the lxcfs helper's lifecycle and OpenVZ's `MEMINFO`.
//!
//! One lxcfs process serves every VE of the host (Debian's `lxcfs` package; LXC and Incus
//! use it the same way). vz.conf names its mount directory, `LXCFS_MOUNT` (vz's own key;
//! unset: no per-VE view, the VE sees the kernel's host-wide files). `vzctl start` checks
//! that an lxcfs answers there; if none does and `LXCFS_START` is not `no`, it starts one
//! (`lxcfs -l --enable-cfs`, detached, its pid in `LOCKDIR/lxcfs.pid`, its messages in
//! `LOCKDIR/lxcfs.log`) and hands the directory to vz-ns ([`vz_ns::ProcView`]), which binds
//! the files into the VE before its mounts are locked. Without an answering helper the VE
//! starts anyway, with a warning. The helper is never stopped by vzctl: it serves running
//! VEs; a VE whose helper died reads ENOTCONN from these files (nothing hangs) until it is
//! restarted.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::GlobalConfig;
use crate::error::{CtlError, Result};
use crate::output::warn;
use crate::ve::Ve;

/// vz.conf: the directory where lxcfs is (or is to be) mounted.
pub const LXCFS_MOUNT_KEY: &str = "LXCFS_MOUNT";

/// vz.conf: whether `vzctl start` starts lxcfs when none answers (default `yes`).
pub const LXCFS_START_KEY: &str = "LXCFS_START";

/// The helper program, looked up in `PATH`.
const LXCFS: &str = "lxcfs";

/// How long a probe waits for an answer from a running lxcfs.
const HELPER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a start waits for a new lxcfs to mount and answer (it starts in well under a
/// second here; much slower under emulation).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// OpenVZ's `MEMINFO` (`--meminfo`): what /proc/meminfo shows in the VE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meminfo {
    /// `none`: the kernel's /proc/meminfo (the host's).
    None,
    /// `pages:N`: a fixed total of N pages (pre-VSwap kernels).
    Pages(u64),
    /// `privvmpages:N`: the total is N × privvmpages (pre-VSwap kernels; the default,
    /// `privvmpages:1`).
    PrivvmPages(u64),
}

impl Default for Meminfo {
    fn default() -> Self {
        Meminfo::PrivvmPages(1)
    }
}

impl Meminfo {
    /// Parses `none`, `pages:N` or `privvmpages:N` (N > 0), as `--meminfo` and the
    /// `MEMINFO` key take them.
    ///
    /// # Errors
    /// [`CtlError::BadParameter`] (exit 21) for anything else.
    pub fn parse(value: &str) -> Result<Meminfo> {
        let bad = |reason: &str| CtlError::BadParameter {
            option: "meminfo".into(),
            value: value.into(),
            reason: reason.into(),
        };
        if value == "none" {
            return Ok(Meminfo::None);
        }
        let (mode, n) =
            value.split_once(':').ok_or_else(|| bad("expected none, pages:N or privvmpages:N"))?;
        let n: u64 =
            n.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("N must be a positive number"))?;
        match mode {
            "pages" => Ok(Meminfo::Pages(n)),
            "privvmpages" => Ok(Meminfo::PrivvmPages(n)),
            _ => Err(bad("expected none, pages:N or privvmpages:N")),
        }
    }

    /// Whether the VE gets its own /proc/meminfo.
    pub fn virtualised(self) -> bool {
        self != Meminfo::None
    }
}

impl fmt::Display for Meminfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Meminfo::None => f.write_str("none"),
            Meminfo::Pages(n) => write!(f, "pages:{n}"),
            Meminfo::PrivvmPages(n) => write!(f, "privvmpages:{n}"),
        }
    }
}

/// The view the VE `ve` starts with: `None` when vz.conf has no `LXCFS_MOUNT` or no lxcfs
/// answers there (then with a warning); else the directory, with an lxcfs started there
/// first if none ran and `LXCFS_START` allows it. Never fails the start for the helper's
/// sake.
///
/// # Errors
/// None today; a `Result` so that a future hard requirement needs no new signature.
pub fn for_start(ve: &Ve) -> Result<Option<vz_ns::ProcView>> {
    let meminfo = match ve.get("MEMINFO").map(str::trim).filter(|v| !v.is_empty()) {
        None => Meminfo::default(),
        Some(value) => Meminfo::parse(value).unwrap_or_else(|e| {
            warn(format!("Warning: MEMINFO: {e}; using {}", Meminfo::default()));
            Meminfo::default()
        }),
    };
    if matches!(meminfo, Meminfo::Pages(_)) || matches!(meminfo, Meminfo::PrivvmPages(n) if n != 1)
    {
        warn(format!(
            "Warning: MEMINFO={meminfo} is a pre-VSwap setting: /proc/meminfo in the container \
             shows its RAM and swap limits (PHYSPAGES, SWAPPAGES)"
        ));
    }
    let Some(dir) = mount_dir(&ve.global) else {
        tracing::debug!("no {LXCFS_MOUNT_KEY} in vz.conf: the container sees the host's /proc");
        return Ok(None);
    };
    match ensure(&ve.global, &dir) {
        Ok(()) => Ok(Some(vz_ns::ProcView { dir, meminfo: meminfo.virtualised() })),
        Err(why) => {
            warn(format!(
                "Warning: no lxcfs at {}: {why}; CT {} sees the host's /proc/meminfo, \
                 /proc/cpuinfo, /proc/stat and /proc/loadavg",
                dir.display(),
                ve.ctid
            ));
            Ok(None)
        }
    }
}

/// Before a restore: a VE dumped with its view has binds of `LXCFS_MOUNT`'s files, which
/// CRIU binds again from the host (external mounts), so an lxcfs must answer there; started
/// as for a start, a warning when none can be had (the restore then fails in CRIU and
/// `vzctl start` starts the VE afresh).
pub fn for_restore(ve: &Ve) {
    let Some(dir) = mount_dir(&ve.global) else { return };
    if let Err(why) = ensure(&ve.global, &dir) {
        warn(format!(
            "Warning: no lxcfs at {}: {why}; a dump of CT {} made with it cannot be restored",
            dir.display(),
            ve.ctid
        ));
    }
}

/// `LXCFS_MOUNT` of vz.conf, if set.
pub fn mount_dir(global: &GlobalConfig) -> Option<PathBuf> {
    global.get(LXCFS_MOUNT_KEY).map(str::trim).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The pid file of the lxcfs vzctl starts: `LOCKDIR/lxcfs.pid`.
pub fn pid_file(global: &GlobalConfig) -> PathBuf {
    global.lock_dir().join("lxcfs.pid")
}

/// Makes sure an lxcfs answers at `dir`, starting one if allowed; the reason otherwise.
/// Serialised by `LOCKDIR/lxcfs.lck` against other vzctl starts.
fn ensure(global: &GlobalConfig, dir: &Path) -> std::result::Result<(), String> {
    let lock_dir = global.lock_dir();
    std::fs::create_dir_all(&lock_dir).map_err(|e| format!("mkdir {}: {e}", lock_dir.display()))?;
    let lock_path = lock_dir.join("lxcfs.lck");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("open {}: {e}", lock_path.display()))?;
    lock.lock().map_err(|e| format!("lock {}: {e}", lock_path.display()))?;
    if is_lxcfs_mount(global, dir)? {
        match probe(dir) {
            Probe::Answers => return Ok(()),
            Probe::Silent => return Err("it does not answer".to_owned()),
            Probe::Dead(e) => {
                tracing::info!(dir = %dir.display(), error = %e, "removing a dead lxcfs mount");
                nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH)
                    .map_err(|e| format!("detach the dead lxcfs mount {}: {e}", dir.display()))?;
            }
        }
    }
    let start = global.get(LXCFS_START_KEY).map(str::trim).filter(|v| !v.is_empty());
    if start.is_some_and(|v| crate::config::parse_yes_no(LXCFS_START_KEY, v).ok() == Some(false)) {
        return Err(format!("none runs and {LXCFS_START_KEY}=no"));
    }
    start_helper(global, dir)
}

/// Starts `lxcfs` on `dir`, detached (own process group, cwd /, stdio away from the
/// caller's terminal), and waits until its mount answers.
fn start_helper(global: &GlobalConfig, dir: &Path) -> std::result::Result<(), String> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let log_path = global.lock_dir().join("lxcfs.log");
    let log = File::create(&log_path).map_err(|e| format!("create {}: {e}", log_path.display()))?;
    let err = log.try_clone().map_err(|e| format!("dup {}: {e}", log_path.display()))?;
    let pid_file = pid_file(global);
    let mut child = Command::new(LXCFS)
        .args(["--enable-loadavg", "--enable-cfs", "--pidfile"])
        .arg(&pid_file)
        .arg(dir)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("run {LXCFS}: {e}"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last = "not mounted".to_owned();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{LXCFS} exited ({status}): {}", log_tail(&log_path)));
        }
        if is_lxcfs_mount(global, dir)? {
            match probe(dir) {
                Probe::Answers => {
                    tracing::info!(pid = child.id(), dir = %dir.display(), "lxcfs started");
                    crate::output::say(format!(
                        "Started lxcfs (pid {}) on {}",
                        child.id(),
                        dir.display()
                    ));
                    return Ok(());
                }
                Probe::Dead(e) => last = format!("mounted, a read fails: {e}"),
                Probe::Silent => last = "mounted, a read does not return".to_owned(),
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{LXCFS} did not answer within {START_TIMEOUT:?} ({last}): {}",
                log_tail(&log_path)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last lines of the helper's log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("- ")).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    format!("{} says: {tail}", path.display())
}

/// Whether an lxcfs FUSE file system is mounted at `dir` in this mount namespace. The mount
/// table is read only when something is mounted there that is not the mount an earlier read
/// found (its identity is kept in `LOCKDIR/lxcfs.mount`): a start of a VE beside running ones
/// reads it no more.
fn is_lxcfs_mount(global: &GlobalConfig, dir: &Path) -> std::result::Result<bool, String> {
    let identity = vz_quota::mount_identity(dir).ok().flatten();
    let record = global.lock_dir().join("lxcfs.mount");
    let recorded = || -> Option<(u64, u64)> {
        let text = std::fs::read_to_string(&record).ok()?;
        let (id, dev) = text.trim().split_once(' ')?;
        Some((id.parse().ok()?, dev.parse().ok()?))
    };
    if identity.is_some() && identity == recorded() {
        return Ok(true);
    }
    if vz_quota::is_mount_point(dir).ok() == Some(Some(false)) {
        return Ok(false);
    }
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
    let found = mounts_lxcfs_at(&text, dir);
    if let (true, Some((id, dev))) = (found, identity) {
        // Callers hold lxcfs.lck: one writer at a time.
        if let Err(e) = std::fs::write(&record, format!("{id} {dev}\n")) {
            tracing::debug!(path = %record.display(), error = %e, "lxcfs mount not recorded");
        }
    }
    Ok(found)
}

/// Whether `mountinfo` has an lxcfs mount at `dir` (the last mount there wins).
fn mounts_lxcfs_at(mountinfo: &str, dir: &Path) -> bool {
    let mut found = false;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else { continue };
        let (Some(point), Some(fstype)) = (fields.get(4), fields.get(sep + 1)) else { continue };
        if Path::new(&vz_quota::unescape_mountinfo(point)) == dir {
            found = *fstype == "fuse.lxcfs";
        }
    }
    found
}

/// How an lxcfs mount answered a read.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// It rendered /proc/uptime.
    Answers,
    /// The read failed at once (ENOTCONN: the server is gone).
    Dead(String),
    /// The read did not return in time (a stopped server).
    Silent,
}

/// Reads `dir/proc/uptime` in a thread, giving up after [`HELPER_TIMEOUT`] (a stopped FUSE
/// server blocks readers; the thread is left behind then, and vzctl exits soon).
fn probe(dir: &Path) -> Probe {
    let path = dir.join("proc/uptime");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let read = File::open(&path).and_then(|mut f| f.read_to_string(&mut text));
        let _ = tx.send(read.map(drop).map_err(|e| e.to_string()));
    });
    match rx.recv_timeout(HELPER_TIMEOUT) {
        Ok(Ok(())) => Probe::Answers,
        Ok(Err(e)) => Probe::Dead(e),
        Err(_) => Probe::Silent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_values_parse_and_print_as_openvz_writes_them() {
        for text in ["none", "pages:65536", "privvmpages:1", "privvmpages:3"] {
            assert_eq!(Meminfo::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Meminfo::parse("pages:10").unwrap(), Meminfo::Pages(10));
        assert_eq!(Meminfo::default().to_string(), "privvmpages:1");
        assert!(!Meminfo::parse("none").unwrap().virtualised());
        assert!(Meminfo::default().virtualised());
        for bad in ["", "all", "pages", "pages:", "pages:0", "pages:-1", "ram:1", "privvmpages:x"] {
            let err = Meminfo::parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 21, "{bad}: {err}");
        }
    }

    #[test]
    fn an_lxcfs_mount_is_found_by_its_mount_point_and_type() {
        let info = "\
49 27 0:42 / /var/lib/lxcfs rw,nosuid,nodev,relatime - fuse.lxcfs lxcfs rw,allow_other
50 27 0:43 / /tmp/with\\040space rw - fuse.lxcfs lxcfs rw
51 27 0:44 / /mnt/other rw - fuse.sshfs host: rw
";
        assert!(mounts_lxcfs_at(info, Path::new("/var/lib/lxcfs")));
        assert!(mounts_lxcfs_at(info, Path::new("/tmp/with space")));
        assert!(!mounts_lxcfs_at(info, Path::new("/mnt/other")));
        assert!(!mounts_lxcfs_at(info, Path::new("/var/lib")));
        let covered = format!("{info}52 49 0:45 / /var/lib/lxcfs rw - tmpfs tmpfs rw\n");
        assert!(!mounts_lxcfs_at(&covered, Path::new("/var/lib/lxcfs")));
    }
}
