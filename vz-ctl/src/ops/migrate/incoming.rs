//! The destination's side of a migration: a holder that keeps the VE's lock there for the
//! whole migration with a record of its own, takes the copies and runs the restore itself;
//! the question the source's repair asks; and the repair a killed migration's record gets
//! from the next locking `vzctl` command on the destination.
//!
//! vzmigrate runs `vzmigrate __incoming CTID` on the destination (over its ssh connection,
//! for the whole migration). It takes the VE's lock there (so no other command touches the
//! half-made VE: `Container already locked`, as while the source's lock is held; vzmigrate's
//! own commands there use `--skiplock`), writes `<LOCKDIR>/<CTID>.migrate` (`op=migrate-in`,
//! `phase=incoming`, its own pid), says `ready` and answers vzmigrate's requests on its
//! stdin, in order, each with `ok` or `fail TEXT` (vzmigrate may send several before
//! reading their answers):
//! - `receive` and a stream of [`super::image`] records (the area, the dump's images);
//! - `lazy-pages ADDRESS PORT`: starts `criu lazy-pages` (its child; pid file
//!   `<DUMPDIR>/Dump.<CTID>.criu-pid`), not waited for;
//! - `restore [--lazy-pages]`: `vzctl --skiplock restore` (after the lazy-pages daemon
//!   listens), bounded, under the lock, its pid in the record (`restore_pid`): a vzmigrate
//!   that dies meanwhile leaves a restore that ends before anyone may look at the VE;
//! - `post-copy`: waits for the lazy-pages daemon to end; `fail` if it did not get every page,
//!   after freezing and killing the VE here at once (its tasks must not run on memory with
//!   holes; its network goes first);
//! - `commit` (the destination owns the VE now: `phase=committed`, written before vzmigrate
//!   starts the source's cleanup), `done` or `abort` (record removed, the holder ends).
//!
//! When its stdin ends without them (vzmigrate killed, ssh gone) it leaves the record and
//! releases the lock, after a restore it runs has ended. The next locking command there then
//! repairs (after waiting for a restore a killed holder left): a VE that runs there, or
//! whose record is `committed`, stays (the source's repair learns it, below); any other is
//! removed (tasks, cgroup, mount, private area, root, dump, CRIU daemon, config, action
//! scripts, names).
//!
//! `vzmigrate __state CTID` is the source's question: it takes the lock (so it waits for a
//! holder that is still restoring or reading its last lines), and prints `running`,
//! `committed` or `none`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::Duration;

use super::local::ACTION_SCRIPTS;
use super::remote::Dest;
use super::{MigrateError, Result, sh_quote as q};
use crate::config::GlobalConfig;
use crate::ctid::{Ctid, remove_names};
use crate::intent::{Record, step_error, write_record};
use crate::lock::Lock;
use crate::output::{say, warn};
use crate::ve::Ve;

/// The hidden command of the holder.
pub const INCOMING_COMMAND: &str = "__incoming";
/// The hidden command of the source's question.
pub const STATE_COMMAND: &str = "__state";

/// The holder's record op.
pub(super) const OP: &str = "migrate-in";

fn lock(global: &GlobalConfig, ctid: u32) -> Result<(Ctid, Lock)> {
    let id = Ctid::resolve(&ctid.to_string(), &global.names_dir())?;
    let lock = super::local::lock(global, ctid)?;
    Ok((id, lock))
}

/// `vzmigrate __incoming CTID`: the destination's holder (see the module doc), talking on
/// `input`/`output`.
///
/// # Errors
/// [`MigrateError::Locked`] if the VE is locked; [`MigrateError::Other`] for its I/O, an
/// unknown request, or a stream it could not take (the migration cannot go on).
pub fn serve_incoming(ctid: u32, mut input: impl BufRead, mut output: impl Write) -> Result<()> {
    let global = GlobalConfig::load().map_err(|e| MigrateError::Other(crate::error::chain(&e)))?;
    let (id, _lock) = lock(&global, ctid)?;
    // CRIU's kernel cache made now, not in the restore (in the VE's frozen time).
    vz_cpt::warm_kernel_cache(&vz_cpt::Criu::at(super::remote::criu_path(&global)));
    // What an earlier killed migration left goes first.
    crate::intent::recover(&global, id)?;
    let path = super::recovery::path_of(&global, id);
    let mut fields = vec![("op".to_owned(), OP.to_owned()), ("phase".into(), "incoming".into())];
    let write = |fields: &[(String, String)]| {
        write_record(&path, fields).map_err(|e| MigrateError::Other(crate::error::chain(&e)))
    };
    write(&fields)?;
    let io = |e: std::io::Error| MigrateError::Other(format!("talk to vzmigrate: {e}"));
    writeln!(output, "ready").and_then(|()| output.flush()).map_err(io)?;
    let mut reply = |answer: std::result::Result<(), String>| {
        let line = match answer {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("fail {}", e.replace('\n', " | ")),
        };
        writeln!(output, "{line}").and_then(|()| output.flush()).map_err(io)
    };
    let mut lazy_pages = None;
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line).map_err(io)? == 0 {
            break;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let start = std::time::Instant::now();
        let answer = match words.as_slice() {
            ["commit"] => {
                fields[1].1 = "committed".into();
                write(&fields)?;
                Ok(())
            }
            ["done" | "abort"] => {
                remove_file(&path)?;
                return reply(Ok(()));
            }
            ["receive"] => {
                crate::intent::crash_point("migrate:incoming:receive");
                if let Err(e) = super::image::receive(&mut input) {
                    // The rest of the stream cannot be told from requests: the holder ends.
                    let _ = reply(Err(format!("receive: {e}")));
                    return Err(MigrateError::Copy(format!("receive: {e}")));
                }
                Ok(())
            }
            ["lazy-pages", address, port] => {
                crate::intent::crash_point("migrate:incoming:lazy-pages");
                LazyPages::start(&global, id, address, port).map(|l| lazy_pages = Some(l))
            }
            ["post-copy"] => match lazy_pages.take() {
                Some(daemon) => daemon.finish().inspect_err(|_| kill_restored(&global, id)),
                None => Err("no post-copy".into()),
            },
            ["restore", options @ ..] => {
                crate::intent::crash_point("migrate:incoming:restore");
                let images = global.dump_dir().join(format!("Dump.{id}"));
                let restored = restore(&path, &fields, ctid, options, lazy_pages.as_mut(), &images);
                write(&fields)?;
                restored
            }
            _ => return Err(MigrateError::Other(format!("unknown request {:?}", line.trim()))),
        };
        tracing::info!(ms = start.elapsed().as_millis(), ok = answer.is_ok(), "{}", line.trim());
        reply(answer)?;
    }
    // vzmigrate is gone: the record stays for the next command's repair.
    tracing::info!("CT {ctid}: the migration's connection ended without its end");
    Ok(())
}

/// How long a restore may take here before it is taken for hung and killed (its VE then
/// removed by vzmigrate, or by the repair).
const RESTORE_LIMIT: Duration = Duration::from_secs(120);

/// The destination's `criu lazy-pages` of a post-copy: the holder's child (its exit status
/// says whether every page arrived), its pid in `<DUMPDIR>/Dump.<CTID>.criu-pid` for the
/// repair and the guard that remove a half-made VE.
#[derive(Debug)]
pub(super) struct LazyPages {
    child: Child,
    pidfile: PathBuf,
}

impl LazyPages {
    /// Starts `criu lazy-pages` on the VE's images, its pages from the source's lazy dump
    /// at `address`:`port`; it tells on its status fd when it listens for the restore (not
    /// waited for here: see [`LazyPages::listening`]).
    fn start(
        global: &GlobalConfig,
        id: Ctid,
        address: &str,
        port: &str,
    ) -> std::result::Result<LazyPages, String> {
        let dump = global.dump_dir().join(format!("Dump.{id}"));
        let criu = super::remote::criu_path(global);
        let pidfile = daemon_pidfile(&dump);
        let child = std::process::Command::new(criu)
            .args(["lazy-pages", "--page-server", "--address", address, "--port", port])
            .args(["-o", "lazy-pages.log", "-v2", "--status-fd", "1", "-D"])
            .arg(&dump)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("run {criu}: {e}"))?;
        let pid = child.id().to_string();
        std::fs::write(&pidfile, pid).map_err(|e| format!("write {}: {e}", pidfile.display()))?;
        Ok(LazyPages { child, pidfile })
    }

    /// Waits until it listens for the restore (its status fd); its failure if it ended.
    fn listening(&mut self) -> std::result::Result<(), String> {
        let mut byte = [0u8; 1];
        let status =
            self.child.stdout.take().map(|mut out| std::io::Read::read(&mut out, &mut byte));
        if let Some(Ok(1)) = status {
            return Ok(());
        }
        let status = self.child.wait().map_err(|e| e.to_string())?;
        Err(format!("criu lazy-pages ended before it listened ({status})"))
    }

    /// Its exit status if it has ended.
    fn ended(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until it has every page (it exits 0) or fails.
    fn finish(mut self) -> std::result::Result<(), String> {
        let status = self.child.wait().map_err(|e| e.to_string());
        let _ = std::fs::remove_file(&self.pidfile);
        match status? {
            s if s.success() => Ok(()),
            s => Err(format!("criu lazy-pages failed before the VE had every page ({s})")),
        }
    }
}

/// A VE restored here whose post-copy failed: frozen at once (with pages missing its tasks
/// would run on zero-filled memory, and a crash would close connections the source's VE
/// holds), then killed with its network first (`vzctl chkpnt --kill`).
fn kill_restored(global: &GlobalConfig, id: Ctid) {
    match Ve::load(global.clone(), id).and_then(|ve| ve.cgroup()) {
        Ok(cgroup) => {
            if let Some(Err(e)) = cgroup.freezer().map(|f| f.freeze()) {
                warn(format!("freeze CT {id}: {e}"));
            }
        }
        Err(e) => warn(format!("CT {id}: {e}")),
    }
    let killed = std::process::Command::new(super::local_vzctl())
        .args(["--skiplock", "--quiet", "chkpnt", &id.to_string(), "--kill"])
        .stdin(Stdio::null())
        .output();
    match killed {
        Ok(out) if out.status.success() => {
            say(format!("CT {id} killed here: its post-copy failed"))
        }
        Ok(out) => warn(super::failure_text("vzctl", &["chkpnt", "--kill"], &out)),
        Err(e) => warn(format!("run vzctl: {e}")),
    }
}

/// `vzctl --skiplock restore CTID OPTIONS` here, under the holder's lock (a vzmigrate that
/// dies meanwhile leaves a restore that ends before anyone else may touch the VE), after
/// the lazy-pages daemon listens; bounded by [`RESTORE_LIMIT`]. The restore's pid is in the
/// record while it runs (`restore_pid`; a repair after a killed holder waits for it).
fn restore(
    record: &Path,
    fields: &[(String, String)],
    ctid: u32,
    options: &[&str],
    lazy_pages: Option<&mut LazyPages>,
    images: &Path,
) -> std::result::Result<(), String> {
    let mut lazy_pages = lazy_pages;
    // The restore starts while the daemon does; CRIU waits at the gate until it listens.
    let gate = match lazy_pages {
        Some(_) => Some(LazyGate::make(images)?),
        None => None,
    };
    let id = ctid.to_string();
    let mut args = vec!["restore", id.as_str()];
    args.extend(options.iter().copied().filter(|o| *o == "--lazy-pages"));
    let child = std::process::Command::new(super::local_vzctl())
        .arg("--skiplock")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run vzctl: {e}"))?;
    let pid = child.id();
    let mut with_pid = fields.to_vec();
    with_pid.push(("restore_pid".into(), pid.to_string()));
    if let Err(e) = write_record(record, &with_pid) {
        tracing::warn!("record the restore's pid: {e}");
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    if let (Some(daemon), Some(gate)) = (lazy_pages.as_deref_mut(), gate) {
        let listening = daemon.listening();
        gate.open(listening.is_ok());
        if let Err(e) = listening {
            // (The restore ends at the gate, its undo done.)
            let _ = rx.recv_timeout(Duration::from_secs(10));
            return Err(e);
        }
    }
    let start = std::time::Instant::now();
    let why = loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(out) => {
                let out = out.map_err(|e| format!("run vzctl: {e}"))?;
                if out.status.success() {
                    return Ok(());
                }
                return Err(super::failure_text("vzctl", &args, &out));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err("the restore's waiter is gone".into());
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        // A lazy restore whose daemon ended cannot end: its tasks wait on pages nobody sends
        // (the source's lazy dump gone, say).
        if let Some(status) = lazy_pages.as_deref_mut().and_then(LazyPages::ended) {
            break format!("criu lazy-pages ended during the restore ({status})");
        }
        if start.elapsed() > RESTORE_LIMIT {
            break format!("the restore did not end within {} s", RESTORE_LIMIT.as_secs());
        }
    };
    // CRIU and what it restored, not vzctl: its undo (mount, cgroup, /dev) runs when its
    // CRIU fails; vzctl itself only if it does not end then.
    let kill = |pids: Vec<u32>| {
        for p in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(p).unwrap_or(i32::MAX)),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    };
    kill(super::lazy::descendants(pid));
    if rx.recv_timeout(Duration::from_secs(10)).is_err() {
        kill(super::lazy::descendants(pid).into_iter().chain([pid]).collect());
        let _ = rx.recv_timeout(Duration::from_secs(5));
    }
    // A killed CRIU leaves its cgroup yard mounted in the images directory.
    for entry in std::fs::read_dir(images).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(".criu.cgyard.") {
            let yard = entry.path();
            if let Err(e) = nix::mount::umount2(&yard, nix::mount::MntFlags::MNT_DETACH) {
                warn(format!("unmount {}: {e}", yard.display()));
            }
        }
    }
    Err(format!("{why}: the restore was killed"))
}

/// The holder's end of [`crate::ops::cpt::LAZY_GATE`].
struct LazyGate {
    path: PathBuf,
    fifo: std::fs::File,
}

impl LazyGate {
    /// Makes the FIFO in the images directory and holds it open.
    fn make(images: &Path) -> std::result::Result<LazyGate, String> {
        let path = images.join(crate::ops::cpt::LAZY_GATE);
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR)
            .map_err(|e| format!("mkfifo {}: {e}", path.display()))?;
        // Read and write: the open does not wait for a reader.
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        Ok(LazyGate { path, fifo })
    }

    /// Lets the restore go on (`ready`), or fail: removed first, so a restore that has not
    /// opened it yet finds none (and the daemon listening, or gone).
    fn open(mut self, ready: bool) {
        use std::io::Write;
        let _ = std::fs::remove_file(&self.path);
        if ready && let Err(e) = self.fifo.write_all(b"1") {
            warn(format!("{}: {e}", self.path.display()));
        }
    }
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(MigrateError::Other(format!("remove {}: {e}", path.display())))
        }
        _ => Ok(()),
    }
}

/// The pid file of a CRIU daemon (page server, lazy-pages) of the migration whose images
/// go into `dump` (`<DUMPDIR>/Dump.<CTID>`): `<DUMPDIR>/Dump.<CTID>.criu-pid`.
pub(super) fn daemon_pidfile(dump: &Path) -> PathBuf {
    let mut name = dump.as_os_str().to_owned();
    name.push(".criu-pid");
    PathBuf::from(name)
}

/// `vzmigrate __state CTID`: `running`, `committed` or `none` (see the module doc).
///
/// # Errors
/// [`MigrateError::Locked`] while a live command holds the lock.
pub fn state(ctid: u32) -> Result<&'static str> {
    let global = GlobalConfig::load().map_err(|e| MigrateError::Other(crate::error::chain(&e)))?;
    let (id, _lock) = lock(&global, ctid)?;
    let ve = Ve::load(global.clone(), id)?;
    if ve.config.is_some() && ve.cgroup()?.has_tasks() {
        return Ok("running");
    }
    let path = super::recovery::path_of(&global, id);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    Ok(if text.lines().any(|l| l == "phase=committed") { "committed" } else { "none" })
}

/// Repairs a holder's record left by a killed migration (see the module doc).
pub(super) fn repair(
    ve: &Ve,
    record: &Record,
    written: Option<std::time::SystemTime>,
) -> crate::error::Result<()> {
    let id = ve.ctid;
    if let Some(pid) = record.get("restore_pid").and_then(|p| p.parse().ok()) {
        // A holder killed while its restore ran: the restore decides.
        super::recovery::wait_for_pid(pid, written);
    }
    if record.get("phase") == Some("committed") || ve.cgroup()?.has_tasks() {
        say(format!("CT {id} was migrated here: kept"));
        return Ok(());
    }
    say(format!("CT {id} was not migrated here: removing its copy"));
    let dump = ve.global.dump_dir().join(format!("Dump.{id}"));
    let pidfile = daemon_pidfile(&dump);
    if let Some(pid) = std::fs::read_to_string(&pidfile).ok().and_then(|p| p.trim().parse().ok()) {
        // A page server or lazy-pages daemon of the migration.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = std::fs::remove_file(&pidfile);
    if ve.config.is_some() {
        crate::ops::recover::tear_down(ve, true)?;
        if let Ok(private) = ve.private() {
            crate::ops::recover::remove_private(&private)?;
        }
        if let Ok(root) = ve.root() {
            crate::ops::recover::remove_empty_dir(&root);
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&dump)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(step_error(&format!("remove {}", dump.display()), e));
    }
    let conf = ve.config_path();
    let conf_dir = ve.global.conf_dir();
    for file in
        ACTION_SCRIPTS.iter().map(|a| conf_dir.join(format!("{id}.{a}"))).chain([conf.clone()])
    {
        if let Err(e) = std::fs::remove_file(&file)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(step_error(&format!("remove {}", file.display()), e));
        }
    }
    remove_names(&ve.global.names_dir(), &conf)
}

/// vzmigrate's end of the holder.
#[derive(Debug)]
pub(super) struct Incoming {
    /// The connection to the holder was lost (its stream ended or broke).
    lost: bool,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Incoming {
    /// Starts the holder on the destination; it holds the lock when this returns.
    pub(super) fn start(dest: &Dest) -> std::result::Result<Incoming, String> {
        let script = format!("vzmigrate {INCOMING_COMMAND} {}", q(&dest.ctid.to_string()));
        let mut child = dest
            .remote
            .command(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("run ssh: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        let Some(stdout) = stdout else { return Err("no stdout".into()) };
        let mut incoming = Incoming { lost: false, child, stdin, stdout };
        let mut line = String::new();
        while incoming.stdout.read_line(&mut line).map_err(|e| e.to_string())? > 0 {
            if line.trim() == "ready" {
                return Ok(incoming);
            }
            tracing::info!("destination: {}", line.trim());
            line.clear();
        }
        let status = incoming.child.wait().map_err(|e| e.to_string())?;
        Err(format!("the destination's {INCOMING_COMMAND} ended ({status})"))
    }

    /// Reads up to the answer `ok` (lines before it are the holder's messages); `fail TEXT`
    /// is the error `TEXT`.
    pub(super) fn answer(&mut self) -> std::result::Result<(), String> {
        let mut line = String::new();
        while self.stdout.read_line(&mut line).map_err(|e| self.lose(&e))? > 0 {
            match line.trim() {
                "ok" => return Ok(()),
                l if l.starts_with("fail ") => return Err(l["fail ".len()..].to_owned()),
                l => tracing::info!("destination: {l}"),
            }
            line.clear();
        }
        self.lost = true;
        let _ = self.child.kill();
        let status = self.child.wait().map_err(|e| e.to_string())?;
        Err(format!("the destination's {INCOMING_COMMAND} ended ({status})"))
    }

    /// Whether an answer (or the end of the connection) can be read, waiting up to `wait`.
    pub(super) fn has_answer(&mut self, wait: Duration) -> bool {
        use std::os::fd::AsFd;
        if !self.stdout.buffer().is_empty() {
            return true;
        }
        let millis = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        let mut fds =
            [nix::poll::PollFd::new(self.stdout.get_ref().as_fd(), nix::poll::PollFlags::POLLIN)];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(millis)).is_ok_and(|n| n > 0)
    }

    /// Whether the connection to the holder was lost (what it did last is its to tell).
    pub(super) fn is_lost(&self) -> bool {
        self.lost
    }

    fn lose(&mut self, e: &std::io::Error) -> String {
        self.lost = true;
        format!("the connection to the destination: {e}")
    }

    /// Sends the request `line` without waiting for its answer.
    pub(super) fn request(&mut self, line: &str) -> std::result::Result<(), String> {
        let Some(stdin) = self.stdin.as_mut() else { return Err("the holder is gone".into()) };
        let sent = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
        sent.map_err(|e| self.lose(&e))
    }

    /// Sends a `receive` request with the stream `feed` writes ([`super::image`]), without
    /// waiting for its answer.
    pub(super) fn stream<T>(
        &mut self,
        feed: impl FnOnce(&mut dyn Write) -> std::io::Result<T>,
    ) -> std::result::Result<T, String> {
        let Some(stdin) = self.stdin.as_mut() else { return Err("the holder is gone".into()) };
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdin);
        let fed = writeln!(out, "receive")
            .and_then(|()| feed(&mut out))
            .and_then(|v| super::image::end(&mut out).map(|()| v));
        drop(out);
        fed.map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                self.lost = true;
            }
            format!("send to the destination: {e}")
        })
    }

    fn say(&mut self, request: &str) -> std::result::Result<(), String> {
        self.request(request)?;
        self.answer()
    }

    /// The destination owns the VE now (recorded there before this returns).
    pub(super) fn commit(&mut self) -> std::result::Result<(), String> {
        self.say("commit")
    }

    /// The migration ended (done, or undone by vzmigrate): the holder's record goes.
    pub(super) fn finish(mut self, done: bool) {
        if let Err(e) = self.say(if done { "done" } else { "abort" }) {
            warn(format!("ending the destination's record: {e}"));
        }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
