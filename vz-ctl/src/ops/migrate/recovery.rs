//! A killed `vzmigrate` repaired by the next locking `vzctl` command on either side: the
//! VE is left running on exactly one side. This is the source's half; the destination's
//! (its lock holder and record) is [`super::incoming`].
//!
//! vzmigrate keeps its own intent record, `<LOCKDIR>/<CTID>.migrate`, beside the VE's lock
//! (which it holds for the whole migration). It is apart from `<CTID>.intent` because each
//! step of a migration is a `vzctl --skiplock` command with a record of its own (stop,
//! umount, destroy). [`crate::intent::recover`] repairs that inner record first, then this
//! one. The record names the destination (host, ssh options, its paths), the mode (online or
//! offline, `-r`, `--keep-dst`), what the VE was before, and the phase reached:
//!
//! | phase | the VE | repair |
//! | --- | --- | --- |
//! | `copying` | runs (or is stopped) here, untouched; the destination has its config and part of its area | the destination's copy removed |
//! | `frozen` (online) | suspended (and maybe dumped, its host links down, its file system frozen) here | file system thawed, VE resumed, images removed, the destination's copy removed |
//! | `stopped` (offline) | stopped here (or being stopped) | started again if it ran, the destination's copy removed |
//! | `restoring` | a restore (start) was asked of the destination: outcome unknown | the destination is asked (below) |
//! | `cleanup` | runs on the destination (vzmigrate saw it) | the source's VE killed, destroyed (`-r no`: config renamed `CTID.conf.migrated`) |
//!
//! # Who took over
//! Only one phase is in doubt: `restoring`, from the moment the destination was asked to
//! restore (start) the VE until vzmigrate recorded there that it owns it. Nothing on the
//! source can answer it: the source's VE is frozen (stopped) either way. So the repair asks
//! the destination, over ssh with the same options: `vzmigrate __state CTID` there, which
//! takes the VE's lock (waiting for vzmigrate's holder to have read its last line) and says
//! whether the VE runs there or its record there is `committed`. Yes: the destination took
//! over, the source finishes its cleanup. No: the source resumes and the destination's copy
//! is removed. No answer (the destination unreachable): the repair fails (exit 3) and the
//! record stays, so the VE stays frozen (stopped) here and the next command asks again;
//! resuming without an answer could make the VE run on both sides with the same addresses.
//! The destination's own repair follows the same rule (it keeps a VE that runs there or is
//! `committed`, and removes any other copy), so the two sides agree whichever repairs first.
//!
//! In every other phase the answer is local, by ordering: the phase is written (durably)
//! before the step that changes the winner, so `frozen`/`stopped`/`copying` mean the
//! destination was never asked to run the VE, and `cleanup` is written only after the
//! destination recorded `committed` (or, if that record could not be written, vzmigrate saw
//! the VE run there). The source's repair also removes the destination's copy and record
//! over ssh when the source keeps the VE (a repair there then finds nothing to do). A
//! killed vzmigrate's `vzctl` steps are not killed with it (a lazy dump serving
//! pages goes on): the record names the lazy dump's pid, which the repair waits for (the
//! destination took over) or kills (the source resumes).
//!
//! Crash points (`VZ_TEST_CRASH_AT`, see [`crate::intent`]): `migrate:copying` (config sent,
//! area being copied), `migrate:frozen` (suspended and dumped), `migrate:stopped` (offline,
//! stopped), `migrate:restoring` (phase written, restore not yet asked), `migrate:restored`
//! (the destination runs it, phase not yet `cleanup`), `migrate:source-killed` (the source's
//! VE killed, not yet destroyed).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::incoming::Incoming;
use super::remote::{Dest, MigrateOptions, announce, finish_source};
use super::{MigrateError, Remote, vzctl};
use crate::config::GlobalConfig;
use crate::ctid::Ctid;
use crate::error::IoContext;
use crate::intent::{Record, flag, pending_at, step_error, tmp_of, write_record};
use crate::output::{say, warn};
use crate::ve::Ve;

/// The phases of a migration, in order (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Config sent, private area being copied; the VE untouched here.
    Copying,
    /// Online: suspended and dumped here.
    Frozen,
    /// Offline: stopped here.
    Stopped,
    /// The destination asked to restore (start) it: the outcome is asked of it.
    Restoring,
    /// The destination runs it: the source is cleaned up.
    Cleanup,
}

impl Phase {
    fn word(self) -> &'static str {
        match self {
            Phase::Copying => "copying",
            Phase::Frozen => "frozen",
            Phase::Stopped => "stopped",
            Phase::Restoring => "restoring",
            Phase::Cleanup => "cleanup",
        }
    }

    fn parse(word: &str) -> Option<Phase> {
        [Phase::Copying, Phase::Frozen, Phase::Stopped, Phase::Restoring, Phase::Cleanup]
            .into_iter()
            .find(|p| p.word() == word)
    }
}

/// The step file of this process's migration (`<CTID>.migrate-step`): the pid of the
/// `vzctl` step running, which a killed vzmigrate leaves running.
static STEP_FILE: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

fn step_file() -> std::sync::MutexGuard<'static, Option<PathBuf>> {
    STEP_FILE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn step_path(record: &Path) -> PathBuf {
    record.with_extension("migrate-step")
}

/// Records that the `vzctl` step `pid` runs (inside a migration; nothing otherwise).
pub(super) fn step_started(pid: u32) {
    if let Some(path) = step_file().as_ref()
        && let Err(e) = write_record(path, &[("step_pid".to_owned(), pid.to_string())])
    {
        tracing::warn!("record the step {pid}: {e}");
    }
}

/// The step ended.
pub(super) fn step_ended() {
    if let Some(path) = step_file().as_ref() {
        let _ = std::fs::remove_file(path);
    }
}

/// Waits (up to 10 min) for the step a killed vzmigrate left running, then removes its file.
fn wait_for_step(path: &Path) {
    let Ok(text) = std::fs::read_to_string(path) else { return };
    let written = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    if let Some(pid) = text.lines().find_map(|l| l.strip_prefix("step_pid=")?.parse::<u32>().ok()) {
        wait_for_pid(pid, written);
    }
    let _ = std::fs::remove_file(path);
}

/// Waits (up to 10 min) for the process `pid` of a migration's step to end, if it is still
/// the one a record written at `written` named (started before it).
pub(super) fn wait_for_pid(pid: u32, written: Option<std::time::SystemTime>) {
    let ours = |pid: u32| {
        crate::lock::started_at(pid)
            .zip(written)
            .is_some_and(|(started, written)| started <= written + Duration::from_secs(2))
    };
    if ours(pid) {
        say(format!("Waiting for the migration's step (pid {pid}) to end"));
        let start = Instant::now();
        while ours(pid) && start.elapsed() < Duration::from_secs(600) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// vzmigrate's open record; dropping it removes the file (the migration ended, done or
/// undone by vzmigrate itself).
#[derive(Debug)]
pub(super) struct MigrationRecord {
    path: PathBuf,
    fields: Vec<(String, String)>,
    /// The destination's holder of its lock and record, once started.
    incoming: Option<Incoming>,
    /// Left for the next command's repair ([`MigrationRecord::keep`]).
    kept: bool,
}

/// `<LOCKDIR>/<CTID>.migrate`, the record of a migration (on either side).
pub(super) fn path_of(global: &GlobalConfig, ctid: Ctid) -> PathBuf {
    global.lock_dir().join(format!("{ctid}.migrate"))
}

impl MigrationRecord {
    /// Writes the record of a migration of `ve` to `dest` in phase `copying`.
    ///
    /// # Errors
    /// [`MigrateError::Other`] when it cannot be written (nothing has changed yet).
    pub(super) fn begin(
        ve: &Ve,
        dest: &Dest,
        opts: &MigrateOptions,
        was_running: bool,
    ) -> super::Result<MigrationRecord> {
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let fields = [
            ("op", "migrate".to_owned()),
            ("phase", Phase::Copying.word().to_owned()),
            ("dest", opts.dest.clone()),
            ("ssh", opts.ssh.clone()),
            ("online", flag(opts.online)),
            ("keep_source", flag(opts.keep_source)),
            ("keep_dst", flag(opts.keep_dst)),
            ("was_running", flag(was_running)),
            ("dest_ctid", dest.ctid.to_string()),
            ("dest_conf_dir", s(&dest.conf_dir)),
            ("dest_private", s(&dest.private)),
            ("dest_root", s(&dest.root)),
            ("dest_dump", s(&dest.dump)),
            ("dest_lock_dir", s(&dest.lock_dir)),
            ("dest_criu", dest.criu.clone()),
            ("dest_host", dest.host.clone()),
            ("source_addr", dest.source_addr.clone()),
        ];
        let record = MigrationRecord {
            path: path_of(&ve.global, ve.ctid),
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            incoming: None,
            kept: false,
        };
        record.write()?;
        *step_file() = Some(step_path(&record.path));
        Ok(record)
    }

    /// Starts the destination's holder (its lock and record, see [`super::incoming`]).
    pub(super) fn hold_destination(&mut self, dest: &Dest) -> super::Result<()> {
        let incoming = Incoming::start(dest).map_err(MigrateError::Connect)?;
        self.incoming = Some(incoming);
        Ok(())
    }

    /// Leaves this record (and the destination's) for the next command's repair: vzmigrate
    /// cannot tell which side has the VE.
    pub(super) fn keep(&mut self) {
        self.kept = true;
    }

    /// Whether [`MigrationRecord::keep`] was called.
    pub(super) fn is_kept(&self) -> bool {
        self.kept
    }

    /// The destination's holder.
    ///
    /// # Errors
    /// [`MigrateError::Other`] before [`MigrationRecord::hold_destination`].
    pub(super) fn holder(&mut self) -> super::Result<&mut Incoming> {
        self.incoming.as_mut().ok_or_else(|| MigrateError::Other("no holder".into()))
    }

    /// The destination, which runs the VE (or holds it, offline), owns it from now on:
    /// recorded there, then here (`cleanup`). If the destination's record cannot be
    /// written but the VE runs there, that is enough (its repair keeps a running VE).
    ///
    /// # Errors
    /// [`MigrateError::DestStart`] when the destination neither recorded it nor runs it.
    pub(super) fn commit(&mut self, dest: &Dest) -> super::Result<()> {
        if let Some(incoming) = &mut self.incoming
            && let Err(e) = incoming.commit()
        {
            if dest.is_running() != Some(true) {
                return Err(MigrateError::DestStart(format!("the destination's record: {e}")));
            }
            warn(format!("the destination's record ({e}), but the container runs there"));
        }
        // Not fatal: a record left at `restoring` makes a repair ask the destination.
        if let Err(e) = self.phase(Phase::Cleanup) {
            warn(format!("recording the migration's last phase: {e}"));
        }
        Ok(())
    }

    /// The migration is over: the destination's record goes (this one on drop).
    pub(super) fn done(&mut self) {
        if let Some(incoming) = self.incoming.take() {
            incoming.finish(true);
        }
    }

    /// Records that the migration enters `phase` (durably, before its first step).
    pub(super) fn phase(&mut self, phase: Phase) -> super::Result<()> {
        self.note("phase", phase.word())
    }

    /// Adds or replaces a field.
    pub(super) fn note(&mut self, key: &str, value: &str) -> super::Result<()> {
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => value.clone_into(v),
            None => self.fields.push((key.to_owned(), value.to_owned())),
        }
        self.write()
    }

    fn write(&self) -> super::Result<()> {
        write_record(&self.path, &self.fields)
            .map_err(|e| MigrateError::Other(crate::error::chain(&e)))
    }
}

impl Drop for MigrationRecord {
    fn drop(&mut self) {
        if self.kept {
            // The holder's connection ends without an end: its record stays too.
            drop(self.incoming.take());
            *step_file() = None;
            return;
        }
        // Undone by vzmigrate (its guard removed the destination's copy first).
        if let Some(incoming) = self.incoming.take() {
            incoming.finish(false);
        }
        step_ended();
        *step_file() = None;
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("remove migration record {}: {e}", self.path.display());
        }
    }
}

/// Repairs what a killed vzmigrate of `ctid` left, if its record is there (the caller holds
/// the VE's lock). Returns `Some("migrate")` when it repaired.
///
/// # Errors
/// [`CtlError::Recover`] naming the failed step; the record then stays (the next command
/// tries again), e.g. while the destination cannot be asked whether it took over.
pub(crate) fn recover(global: &GlobalConfig, ctid: Ctid) -> crate::error::Result<Option<String>> {
    let path = path_of(global, ctid);
    if let Some(tmp) = tmp_of(&path)
        && tmp.exists()
    {
        std::fs::remove_file(&tmp).op("remove half-written migration record", &tmp)?;
    }
    let Some(record) = pending_at(&path, ctid)? else { return Ok(None) };
    say(format!("Recovering from an interrupted migration of CT {ctid}"));
    tracing::info!("CT {ctid}: recovering an interrupted migration: {record:?}");
    let start = Instant::now();
    if record.op() == super::incoming::OP {
        let written = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        super::incoming::repair(&Ve::load(global.clone(), ctid)?, &record, written)?;
    } else {
        wait_for_step(&step_path(&path));
        repair(global, ctid, &record)?;
    }
    std::fs::remove_file(&path).op("remove migration record", &path)?;
    tracing::info!("CT {ctid}: migration repaired in {} ms", start.elapsed().as_millis());
    Ok(Some("migrate".to_owned()))
}

/// The destination as the record names it.
fn dest_of(record: &Record) -> Option<Dest> {
    Some(Dest {
        remote: Remote::new(record.get("dest")?, record.get("ssh").unwrap_or_default()),
        ctid: record.get("dest_ctid")?.parse().ok()?,
        conf_dir: record.path("dest_conf_dir")?,
        private: record.path("dest_private")?,
        root: record.path("dest_root")?,
        dump: record.path("dest_dump")?,
        lock_dir: record.path("dest_lock_dir")?,
        criu: record.get("dest_criu").unwrap_or_default().to_owned(),
        host: record.get("dest_host").unwrap_or_default().to_owned(),
        source_addr: record.get("source_addr").unwrap_or_default().to_owned(),
        reallocate_ids: false,
    })
}

fn repair(global: &GlobalConfig, ctid: Ctid, record: &Record) -> crate::error::Result<()> {
    let ve = Ve::load(global.clone(), ctid)?;
    let phase = record.get("phase").and_then(Phase::parse).unwrap_or(Phase::Copying);
    let mut dest = dest_of(record);
    if let Some(dest) = &mut dest
        && let Err(e) = dest.remote.connect()
    {
        warn(format!("cannot reach the destination {}: {e}", dest.remote.target()));
        dest.remote = Remote::new(record.get("dest").unwrap_or_default(), "");
    }
    let online = record.flag("online", false);
    let taken_over = match phase {
        Phase::Copying | Phase::Frozen | Phase::Stopped => false,
        Phase::Cleanup => true,
        Phase::Restoring => {
            let dest =
                dest.as_ref().ok_or_else(|| step_error("read the record", "no destination"))?;
            dest.took_over().ok_or_else(|| {
                step_error(
                    "ask the destination whether it runs the container",
                    format!(
                        "{} cannot be reached; the container stays as it is",
                        dest.remote.target()
                    ),
                )
            })?
        }
    };
    if let Some(pid) = record.get("dump_pid").and_then(|p| p.parse::<u32>().ok()) {
        let server =
            record.get("source_addr").zip(record.get("lazy_port").and_then(|p| p.parse().ok()));
        end_lazy_dump(pid, taken_over, server);
    }
    if online && let Ok(root) = ve.root() {
        // A copy killed while the file system was frozen (no error if it is not).
        let _ = super::run("fsfreeze", &["-u", &root.to_string_lossy()]);
    }
    let id = ctid.to_string();
    let images = ve.global.dump_dir().join(format!("Dump.{id}.migrate"));
    let has_tasks = ve.cgroup()?.has_tasks();
    if taken_over {
        say(format!("CT {id} runs on the destination: finishing the source's cleanup"));
        if let Some(dest) = &dest
            && phase == Phase::Restoring
        {
            announce(&ve, dest);
        }
        if has_tasks {
            vzctl(&["chkpnt", &id, "--kill"]).map_err(|e| step_error("kill the source's CT", e))?;
        }
        remove_dir(&images);
        let ve = Ve::load(global.clone(), ctid)?;
        if ve.config.is_some() {
            finish_source(&ve, record.flag("keep_source", false))
                .map_err(|e| step_error("clean the source up", e))?;
        }
        return Ok(());
    }
    say(format!("CT {id} stays on the source"));
    if let Some(dest) = &dest {
        if record.flag("keep_dst", false) {
            say(format!("Keeping the destination's copy of CT {} (--keep-dst)", dest.ctid));
        } else if let Err(e) = dest.remove_all() {
            warn(format!("could not remove the destination's copy: {e}"));
        }
    }
    if has_tasks {
        vzctl(&["chkpnt", &id, "--resume"]).map_err(|e| step_error("resume the CT", e))?;
    } else if record.flag("was_running", false) {
        vzctl(&["start", &id]).map_err(|e| step_error("start the CT again", e))?;
    }
    remove_dir(&images);
    let _ = std::fs::remove_dir_all(images.with_extension("migrate.fail"));
    Ok(())
}

/// A lazy dump still serving pages: waited for (up to 120 s) if the destination took over,
/// else ended (a connection to its page server, closed at once, ends its serving; as
/// vzmigrate does); killed with its CRIU if it does not end.
fn end_lazy_dump(pid: u32, taken_over: bool, server: Option<(&str, u16)>) {
    let alive = || Path::new(&format!("/proc/{pid}")).exists();
    let wait = |limit: Duration| {
        let start = Instant::now();
        while alive() && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(50));
        }
        !alive()
    };
    if !alive() {
        return;
    }
    if taken_over && wait(Duration::from_secs(120)) {
        return;
    }
    if !taken_over && let Some((address, port)) = server {
        let _ = std::net::TcpStream::connect((address, port));
        if wait(Duration::from_secs(10)) {
            return;
        }
    }
    warn(format!("the lazy dump (pid {pid}) did not end: killing it"));
    for p in super::lazy::descendants(pid).into_iter().chain([pid]) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(p).unwrap_or(i32::MAX)),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let start = Instant::now();
    while alive() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn(format!("remove {}: {e}", dir.display()));
    }
}
