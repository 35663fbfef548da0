//! Dumping a running (or suspended) VE into an images directory.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::check::{Subject, precheck};
use crate::error::{CptError, Refusal, Result};
use crate::options::{CriuOptions, ExternalMount};
use crate::page_link::PageLink;
use crate::rpc::{Criu, Opts, ReqType};
use vz_cgroup::Freezer;

/// CRIU's log of a dump, in the images directory.
pub const DUMP_LOG: &str = "dump.log";

/// Everything [`dump`] needs to know about the VE; the caller (vz-ctl) knows it.
#[derive(Debug, Clone)]
pub struct DumpSpec {
    /// Host pid of the VE's init (pid 1 inside).
    pub init_pid: i32,
    /// The directory for CRIU's images (`DUMPDIR/Dump.<CTID>`); made (mode 0700, parents
    /// too) when missing; it must not hold a dump already.
    pub images_dir: PathBuf,
    /// The `cgroup.procs` file of every hierarchy the VE's cgroup is in: every process
    /// listed there (or in a sub-cgroup) must belong to the init's tree.
    pub cgroup_procs: Vec<PathBuf>,
    /// The VE's freezer. Given to CRIU (`--freeze-cgroup`) so it can dump a VE that is
    /// suspended ([`Freezer::freeze`] before): a frozen VE is dumped frozen and, with
    /// `leave_running`, left frozen. `None`: CRIU stops the tree with ptrace.
    pub freezer: Option<Freezer>,
    /// Host ends of the VE's network, which must be up in the caller's network namespace.
    pub host_interfaces: Vec<String>,
    /// Host bind mounts inside the VE.
    pub external_mounts: Vec<ExternalMount>,
    /// More `--external` entries, in CRIU's syntax (e.g. `mnt[]` for every external mount
    /// of a user-namespace VE's /dev binds).
    pub external: Vec<String>,
    /// Whether the VE's system calls are served by a seccomp listener outside it (the
    /// quotactl server): refused, since CRIU restores the filter without its listener.
    pub syscall_listener_outside: bool,
    /// Keep the VE running (or frozen, when it was) after the dump: a snapshot.
    pub leave_running: bool,
    /// CRIU's options.
    pub options: CriuOptions,
}

/// What a successful [`dump`] did.
#[derive(Debug, Clone)]
pub struct DumpReport {
    /// Wall time of the CRIU request.
    pub elapsed: Duration,
    /// Total size of the images.
    pub image_bytes: u64,
    /// CRIU's log of the dump.
    pub log: PathBuf,
}

/// Checks the VE (nothing is frozen when a check fails), then dumps it with CRIU into
/// `spec.images_dir`. Unless `leave_running`, the VE's processes are gone afterwards; its
/// cgroups, mounts and root stay for the caller to release.
///
/// On a failed dump CRIU lets the VE run on (a suspended VE stays frozen), and the images
/// directory is renamed to `<dir>.fail` (an older one is replaced) with CRIU's log in it.
///
/// # Errors
/// [`CptError::Refused`] with the [`Refusal`] found before anything was frozen;
/// [`CptError::CriuFailed`] naming CRIU's log; [`CptError::Io`] on the images directory.
///
/// # Privileges
/// Root in the initial namespaces (CRIU ptraces and enters the VE).
pub fn dump(criu: &Criu, spec: &DumpSpec) -> Result<DumpReport> {
    dump_with_hook(criu, spec, &mut |_| Ok(()))
}

/// [`dump`], with `hook` told each stage of CRIU's action scripts (`pre-dump` before anything
/// is frozen or read, `post-dump`, ...); an `Err` makes CRIU abort the dump.
///
/// # Errors
/// As [`dump`]; [`CptError::Hook`] when the hook failed.
pub fn dump_with_hook(
    criu: &Criu,
    spec: &DumpSpec,
    hook: &mut dyn FnMut(&str) -> std::result::Result<(), String>,
) -> Result<DumpReport> {
    let dir = &spec.images_dir;
    if dir.join("inventory.img").exists() {
        return Err(CptError::Refused(Refusal::DumpExists { dir: dir.clone() }));
    }
    let subject = Subject {
        init_pid: spec.init_pid,
        cgroup_procs: &spec.cgroup_procs,
        host_interfaces: &spec.host_interfaces,
        syscall_listener_outside: spec.syscall_listener_outside,
    };
    if let Err(refusal) = precheck(&subject)? {
        tracing::info!(%refusal, "checkpoint refused");
        return Err(CptError::Refused(refusal));
    }
    // A page server of a pre-copy (not a lazy dump's own): vz-cpt's connection (page_link).
    let link = match &spec.options.page_server {
        Some(server) if !spec.options.lazy_pages => Some(PageLink::connect(server)?),
        _ => None,
    };
    make_dir(dir)?;
    let images = File::open(dir).map_err(|e| CptError::io("open", dir, e))?;
    let mut opts = Opts::new();
    opts.set_images_dir_fd(images.as_raw_fd());
    opts.set_pid(spec.init_pid);
    opts.set_leave_running(spec.leave_running);
    opts.set_log_file(DUMP_LOG.to_owned());
    opts.set_notify_scripts(true);
    spec.options.fill(&mut opts);
    opts.external.extend(spec.external_mounts.iter().map(ExternalMount::dump_entry));
    opts.external.extend(spec.external.iter().cloned());
    if let Some(freezer) = &spec.freezer {
        opts.set_freeze_cgroup(freezer.dir().to_string_lossy().into_owned());
        tracing::debug!(state = ?freezer.state()?, "dumping through the freezer");
    }
    if let (Some(link), Some(ps)) = (&link, opts.ps.as_mut()) {
        ps.set_fd(link.criu_fd().as_raw_fd());
    }
    let start = Instant::now();
    let resp = criu.call(ReqType::DUMP, Some(opts), &mut |n| {
        // CRIU connected and corked before its first notification after the pre-dump one.
        if let Some(link) = &link {
            link.uncork();
        }
        hook(&n.script)
    });
    let elapsed = start.elapsed();
    drop(link);
    drop(images);
    let log = dir.join(DUMP_LOG);
    let log = log.as_path();
    let failure = match resp {
        Ok(r) if r.success() => None,
        Ok(r) => Some(criu_message(log, r.cr_errmsg(), r.cr_errno())),
        Err(CptError::Hook { stage, message, .. }) => {
            let failed = set_aside(dir);
            return Err(CptError::Hook { stage, message, log: failed.join(DUMP_LOG) });
        }
        Err(e) => Some(e.to_string()),
    };
    if let Some(message) = failure {
        let failed = set_aside(dir);
        return Err(CptError::CriuFailed { what: "dump", message, log: failed.join(DUMP_LOG) });
    }
    let report = DumpReport { elapsed, image_bytes: dir_size(dir), log: log.to_owned() };
    tracing::info!(ms = elapsed.as_millis(), bytes = report.image_bytes, "dumped");
    Ok(report)
}

/// What went wrong, for a failed request: the first error line of CRIU's log that says
/// why (not the harmless RLIMIT_NOFILE line of a host whose root lacks CAP_SYS_RESOURCE,
/// which the response's `cr_errmsg` often is, nor a helper's exit status or the closing
/// "FAILED"), else the response's message or errno.
pub(crate) fn criu_message(log: &Path, errmsg: &str, errno: i32) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let first = text.lines().find(|l| {
        l.contains("Error (")
            && !l.contains("RLIMIT_NOFILE")
            && !l.contains("exited, status")
            && !l.contains("FAILED")
    });
    if let Some(line) = first {
        return line.split_once(": ").map_or(line, |(_, m)| m).trim().to_owned();
    }
    match (errmsg.is_empty(), errno) {
        (false, _) => errmsg.to_owned(),
        (true, 0) => "unsuccessful".to_owned(),
        (true, n) => std::io::Error::from_raw_os_error(n).to_string(),
    }
}

fn make_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CptError::io("make images directory", dir, e))
}

/// Renames a failed dump's directory to `<dir>.fail`; returns where the log now is.
fn set_aside(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".fail");
    let failed = PathBuf::from(name);
    let _ = std::fs::remove_dir_all(&failed);
    match std::fs::rename(dir, &failed) {
        Ok(()) => failed,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot set the failed dump aside");
            dir.to_owned()
        }
    }
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_messages_fall_back_to_errno() {
        let none = Path::new("/nonexistent/dump.log");
        assert_eq!(criu_message(none, "boom", 2), "boom");
        assert_eq!(criu_message(none, "", 0), "unsuccessful");
        assert!(criu_message(none, "", 2).contains("No such file"));
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("dump.log");
        std::fs::write(
            &log,
            "(00.01) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self\n\
             (00.20) Error (criu/files-reg.c:1790): Can't lookup mount=24 for fd=0\n\
             (00.21) Error (criu/cr-dump.c:2100): Dumping FAILED.\n",
        )
        .unwrap();
        assert_eq!(criu_message(&log, "rlimit", 0), "Can't lookup mount=24 for fd=0");
    }
}
