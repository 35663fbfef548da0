//! Intent records: what makes every multi-step operation crash-consistent.
//!
//! Before the first step that changes anything, an operation (create, start, stop, mount,
//! umount, set, destroy) writes `<LOCKDIR>/<CTID>.intent` atomically: the operation's name,
//! the pid of the vzctl doing it, and what recovery needs to know (paths, whether the VE was
//! mounted or running before). The record is removed when the operation ends — successfully
//! or after its in-process undo ran. A record still there when the next vzctl takes the VE's
//! lock therefore means its writer was killed mid-way (SIGKILL, power loss), and
//! [`recover`] finishes or undoes that operation before anything else reads the VE:
//!
//! | interrupted | recovery |
//! | --- | --- |
//! | create | undone: unmount, private area, VE_ROOT, CTID.conf (if create made it), names |
//! | start | undone: tasks killed, network, cgroup, the mount start made |
//! | stop | finished: tasks killed, network, cgroup, unmount unless `--skip-umount` |
//! | mount | undone: unmounted (unless the VE runs) |
//! | umount | finished: unmounted (unless the VE runs) |
//! | set | half-written config removed, name links made to match NAME, a pending init that set started in a stopped VE (for `--userpasswd`) killed with its cgroup and mount |
//! | destroy | finished: everything the VE has is removed |
//! | snapshot, snapshot-delete | file system thawed, a VE the snapshot suspended resumed, half-made or half-deleted snapshots removed ([`crate::ops::snapshot::repair`]) |
//! | snapshot-switch | VE stopped; before the image copy was complete: its own image kept; after: the switch finished (config, current) |
//! | compact | unmounted again if compact mounted it |
//! | convert | before the copy was complete: the new area removed; after: the swap finished |
//! | migrate (own record, `<CTID>.migrate`, on both sides) | the VE left running on exactly one side: see [`crate::ops::migrate::recovery`] |
//!
//! # Fault injection
//! A test can make vzctl kill itself with SIGKILL at a named step: `VZ_TEST_CRASH_AT=<step>`.
//! This is only a SIGKILL at a point the code names ([`crash_point`]); nothing else changes.
//! `VZ_TEST_PAUSE_AT=<step>` makes it sleep 500 ms there instead (a race made certain).
//! The steps (`tests/tests/crash.rs` kills at each):
//!
//! - `<op>:begin` right after the record is written, for create, start, stop, mount,
//!   umount, set, destroy (also when nested: `mount:begin` inside a start);
//! - create: `create:private-made`, `create:mounted` (image layout), `create:unpacked`,
//!   `create:config-written`;
//! - start: `mount:mounted`, `start:console-begun` (a console server started, the init not
//!   yet made), `start:released` (init runs, record not yet settled),
//!   `start:settled`;
//! - stop: `stop:killed`, `stop:cgroup-removed`;
//! - set: `set:name-linked`, `set:saved`;
//! - destroy: `destroy:private-removed`, `destroy:config-renamed`;
//! - snapshot: `snapshot:suspended`, `snapshot:fs-frozen`, `snapshot:made`,
//!   `snapshot-switch:copied`, `snapshot-switch:image-replaced`, `snapshot-delete:renamed`;
//!   compact: `compact:trimmed`; convert: `convert:copied`, `convert:old-aside`;
//! - vzmigrate: `migrate:copying`, `migrate:frozen`, `migrate:stopped`, `migrate:restoring`,
//!   `migrate:restored`, `migrate:source-killed` (see [`crate::ops::migrate::recovery`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::config::GlobalConfig;
use crate::ctid::Ctid;
use crate::error::{CtlError, IoContext, Result};

/// The environment variable naming the step at which vzctl SIGKILLs itself (tests only).
pub const CRASH_AT_ENV: &str = "VZ_TEST_CRASH_AT";

/// The environment variable naming the step at which vzctl sleeps 500 ms (tests only).
pub const PAUSE_AT_ENV: &str = "VZ_TEST_PAUSE_AT";

/// How long vzctl sleeps at the step [`PAUSE_AT_ENV`] names.
const PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// The intent record this process has open, if any (nested operations, e.g. the mount done
/// by start, are covered by the outer record).
static ACTIVE: Mutex<Option<PathBuf>> = Mutex::new(None);

fn active() -> std::sync::MutexGuard<'static, Option<PathBuf>> {
    ACTIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An open intent record; dropping it removes the record (the operation ended, in success
/// or after undoing itself).
#[derive(Debug)]
pub struct Intent {
    /// `None` for a nested operation (the outer record covers it).
    path: Option<PathBuf>,
    fields: Vec<(String, String)>,
    /// Whether the record must survive a power loss (see [`RUNTIME_OPS`]).
    durable: bool,
}

/// Operations whose every effect ends with the machine (mounts, cgroups, processes,
/// interfaces): their records need to survive a killed vzctl, which the page cache gives,
/// but not a power loss, after which there is nothing left to repair. They are written
/// without fsync (two fsyncs cost 1–14 ms per start and stop on this host's disk); the
/// records of operations that change files (create, set, destroy) are fsynced.
const RUNTIME_OPS: [&str; 4] = ["start", "stop", "mount", "umount"];

impl Intent {
    /// Writes the record of `op` on `ctid` with `fields`, atomically, before the first step.
    /// Inside an operation that already has a record, returns a guard that records nothing.
    ///
    /// # Errors
    /// [`CtlError::Io`] when the record cannot be written (the operation must not start).
    pub fn begin(
        global: &GlobalConfig,
        ctid: Ctid,
        op: &str,
        fields: &[(&str, String)],
    ) -> Result<Intent> {
        if active().is_some() {
            crash_point(&format!("{op}:begin"));
            return Ok(Intent { path: None, fields: Vec::new(), durable: false });
        }
        let path = path_of(global, ctid);
        *active() = Some(path.clone());
        let mut intent = Intent {
            path: Some(path),
            fields: vec![("op".to_owned(), op.to_owned()), ("pid".to_owned(), pid())],
            durable: !RUNTIME_OPS.contains(&op),
        };
        intent.fields.extend(fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        if let Err(e) = intent.write() {
            intent.path = None;
            *active() = None;
            return Err(e);
        }
        crash_point(&format!("{op}:begin"));
        Ok(intent)
    }

    /// Adds or replaces a field and writes the record again (atomically).
    ///
    /// # Errors
    /// [`CtlError::Io`] when the record cannot be written.
    pub fn note(&mut self, key: &str, value: &str) -> Result<()> {
        if self.path.is_none() {
            return Ok(());
        }
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value.to_owned(),
            None => self.fields.push((key.to_owned(), value.to_owned())),
        }
        self.write()
    }

    fn write(&self) -> Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let text: String =
            self.fields.iter().map(|(k, v)| format!("{k}={}\n", escape(v))).collect();
        write_atomic(path, text.as_bytes(), self.durable)
    }
}

impl Drop for Intent {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            if active().as_ref() != Some(&path) {
                return; // settled
            }
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!("remove intent record {}: {e}", path.display());
            }
            *active() = None;
        }
    }
}

/// Ends this process's open record early: the operation reached a state that needs no
/// repair (a start whose init runs), though the command goes on (`start --wait`).
pub fn settle() {
    let mut active = active();
    if let Some(path) = active.as_ref()
        && let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("remove intent record {}: {e}", path.display());
    }
    *active = None;
}

/// An intent record found on disk: the interrupted operation and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    fields: Vec<(String, String)>,
}

impl Record {
    /// The interrupted operation (`create`, `start`…).
    pub fn op(&self) -> &str {
        self.get("op").unwrap_or_default()
    }

    /// A field's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A field that is a path.
    pub fn path(&self, key: &str) -> Option<PathBuf> {
        self.get(key).filter(|v| !v.is_empty()).map(PathBuf::from)
    }

    /// A yes/no field (`1`/`0`); `default` when absent.
    pub fn flag(&self, key: &str, default: bool) -> bool {
        self.get(key).map_or(default, |v| v == "1")
    }

    fn parse(text: &str) -> Record {
        let fields = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), unescape(v)))
            .collect();
        Record { fields }
    }
}

/// `1` or `0`, the way flags are recorded.
pub fn flag(value: bool) -> String {
    if value { "1" } else { "0" }.to_owned()
}

/// The record of `ctid` left by a process that is gone, if any.
///
/// # Errors
/// [`CtlError::Io`] when it exists but cannot be read.
pub fn pending(global: &GlobalConfig, ctid: Ctid) -> Result<Option<Record>> {
    pending_at(&path_of(global, ctid), ctid)
}

/// The record at `path` if its writer is gone (a record of a live writer is `None`).
pub(crate) fn pending_at(path: &Path, ctid: Ctid) -> Result<Option<Record>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).op("read intent record", path),
    };
    let record = Record::parse(&text);
    // The writer is alive if its pid runs a process that started before the record was
    // written (a later one only reuses the pid).
    let written = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let alive = record
        .get("pid")
        .filter(|p| *p != pid())
        .and_then(|p| p.parse::<u32>().ok())
        .and_then(crate::lock::started_at)
        .zip(written)
        .is_some_and(|(started, written)| started <= written + std::time::Duration::from_secs(2));
    if alive {
        // Only with --skiplock can a live process hold a record while we hold the lock.
        tracing::warn!(
            "CT {ctid}: {} by pid {} still in progress",
            record.op(),
            record.get("pid").unwrap_or("?")
        );
        return Ok(None);
    }
    Ok(Some(record))
}

/// Writes a record of `fields` at `path` (atomically, durably), with this process's pid:
/// for records kept apart from `<CTID>.intent` (vzmigrate's, whose steps run vzctl
/// commands with records of their own).
///
/// # Errors
/// [`CtlError::Io`] when it cannot be written.
pub(crate) fn write_record(path: &Path, fields: &[(String, String)]) -> Result<()> {
    let mut text = format!("pid={}\n", pid());
    for (k, v) in fields.iter().filter(|(k, _)| k != "pid") {
        text.push_str(&format!("{k}={}\n", escape(v)));
    }
    write_atomic(path, text.as_bytes(), true)
}

/// Finishes or undoes what an interrupted operation on `ctid` left (see the module doc), then
/// removes its record. The caller holds the VE's lock.
///
/// Returns the operation it repaired, if any.
///
/// # Errors
/// Those of the repair; the record is then kept, so the next command tries again.
pub fn recover(global: &GlobalConfig, ctid: Ctid) -> Result<Option<String>> {
    if let Some(conf_tmp) = tmp_of(&crate::config::VeConfig::path_for(global, ctid.get()))
        && conf_tmp.exists()
    {
        // A config write that never reached its rename.
        std::fs::remove_file(&conf_tmp).op("remove half-written config", &conf_tmp)?;
    }
    if let Some(tmp) = tmp_of(&path_of(global, ctid))
        && tmp.exists()
    {
        // A record write that never reached its rename: the operation had not begun.
        std::fs::remove_file(&tmp).op("remove half-written intent record", &tmp)?;
    }
    let Some(record) = pending(global, ctid)? else {
        return crate::ops::migrate::recovery::recover(global, ctid);
    };
    crate::output::say(format!("Recovering from an interrupted {} of CT {ctid}", record.op()));
    tracing::info!("CT {ctid}: recovering an interrupted {}: {record:?}", record.op());
    crate::ops::recover::repair(global, ctid, &record)?;
    let path = path_of(global, ctid);
    std::fs::remove_file(&path).op("remove intent record", &path)?;
    // A migration whose step (a vzctl command of its own) was interrupted with it.
    crate::ops::migrate::recovery::recover(global, ctid)?;
    Ok(Some(record.op().to_owned()))
}

/// Makes this process SIGKILL itself if `VZ_TEST_CRASH_AT` names `step`, or sleep if
/// `VZ_TEST_PAUSE_AT` does (fault injection for the crash and race tests; see the module doc).
pub fn crash_point(step: &str) {
    if std::env::var_os(PAUSE_AT_ENV).is_some_and(|at| at == step) {
        tracing::info!("{PAUSE_AT_ENV}={step}: sleeping {PAUSE:?}");
        std::thread::sleep(PAUSE);
    }
    if std::env::var_os(CRASH_AT_ENV).is_some_and(|at| at == step) {
        tracing::info!("{CRASH_AT_ENV}={step}: killing myself");
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
        // SIGKILL to oneself is delivered before kill() returns; never continue past it.
        loop {
            std::thread::park();
        }
    }
}

fn path_of(global: &GlobalConfig, ctid: Ctid) -> PathBuf {
    global.lock_dir().join(format!("{ctid}.intent"))
}

fn pid() -> String {
    std::process::id().to_string()
}

/// `<file>.tmp`, the temporary name config writes use.
pub(crate) fn tmp_of(file: &Path) -> Option<PathBuf> {
    let mut name = file.file_name()?.to_owned();
    name.push(".tmp");
    Some(file.with_file_name(name))
}

/// Values are single lines: `\` and line breaks are escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

/// Writes `path` atomically: a temporary beside it, rename; `durable`: the temporary and the
/// directory fsynced too.
fn write_atomic(path: &Path, contents: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).op("create lock directory", dir)?;
    let tmp = tmp_of(path).unwrap_or_else(|| path.with_extension("tmp"));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents)?;
        if durable {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if durable { std::fs::File::open(dir)?.sync_all() } else { Ok(()) }
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.op("write intent record", path)
}

/// The error of a repair step, as one line for the log.
pub(crate) fn step_error(what: &str, e: impl std::fmt::Display) -> CtlError {
    CtlError::Recover(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_odd_values() {
        let text = format!("op=create\nprivate={}\n", escape("/a b\\c\nd"));
        let record = Record::parse(&text);
        assert_eq!(record.op(), "create");
        assert_eq!(record.get("private"), Some("/a b\\c\nd"));
        assert!(record.flag("missing", true) && !record.flag("missing", false));
    }

    #[test]
    fn a_record_is_removed_when_its_operation_ends_and_nested_ones_record_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("vz.conf");
        std::fs::write(&conf, format!("LOCKDIR={}\n", dir.path().display())).unwrap();
        let global = GlobalConfig::load_from(&conf).unwrap();
        let ctid: Ctid = "101".parse().unwrap();
        {
            let mut outer =
                Intent::begin(&global, ctid, "start", &[("was_mounted", flag(false))]).unwrap();
            outer.note("step", "x").unwrap();
            let inner = Intent::begin(&global, ctid, "mount", &[]).unwrap();
            drop(inner);
            // Our own record is not "pending": its writer (we) is alive... and it is ours.
            let text = std::fs::read_to_string(dir.path().join("101.intent")).unwrap();
            let record = Record::parse(&text);
            assert_eq!((record.op(), record.get("step")), ("start", Some("x")));
        }
        assert!(!dir.path().join("101.intent").exists());
        assert!(pending(&global, ctid).unwrap().is_none());
    }
}
