//! The destination's side of a migration's crash consistency: a holder that keeps the VE's
//! lock there for the whole migration with a record of its own, the question the source's
//! repair asks, and the repair a killed migration's record gets from the next locking
//! `vzctl` command on the destination.
//!
//! vzmigrate runs `vzmigrate __incoming CTID` on the destination (over its ssh connection,
//! for the whole migration). It takes the VE's lock there (so no other command touches the
//! half-made VE: `Container already locked`, as while the source's lock is held; vzmigrate's
//! own commands there use `--skiplock`), writes `<LOCKDIR>/<CTID>.migrate` (`op=migrate-in`,
//! `phase=incoming`, its own pid) and answers vzmigrate's lines on its stdin: `commit` (the
//! destination owns the VE now: `phase=committed`, written before vzmigrate starts the
//! source's cleanup), `done` or `abort` (record removed). When its stdin ends without them
//! (vzmigrate killed, ssh gone) it leaves the record and releases the lock. The next locking
//! command there then repairs: a VE that runs there, or whose record is `committed`, stays
//! (the source's repair learns it, below); any other is removed (tasks, cgroup, mount,
//! private area, root, dump, CRIU daemon, config, action scripts, names).
//!
//! `vzmigrate __state CTID` is the source's question: it takes the lock (so it waits for a
//! holder that is still reading its last lines), and prints `running`, `committed` or
//! `none`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

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
/// [`MigrateError::Locked`] if the VE is locked; [`MigrateError::Other`] for its I/O.
pub fn serve_incoming(ctid: u32, input: impl BufRead, mut output: impl Write) -> Result<()> {
    let global = GlobalConfig::load().map_err(|e| MigrateError::Other(crate::error::chain(&e)))?;
    let (id, _lock) = lock(&global, ctid)?;
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
    for line in input.lines() {
        match line.map_err(io)?.trim() {
            "commit" => {
                fields[1].1 = "committed".into();
                write(&fields)?;
            }
            "done" | "abort" => {
                remove_file(&path)?;
                writeln!(output, "ok").and_then(|()| output.flush()).map_err(io)?;
                return Ok(());
            }
            other => return Err(MigrateError::Other(format!("unknown request {other:?}"))),
        }
        writeln!(output, "ok").and_then(|()| output.flush()).map_err(io)?;
    }
    // vzmigrate is gone: the record stays for the next command's repair.
    tracing::info!("CT {ctid}: the migration's connection ended without its end");
    Ok(())
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(MigrateError::Other(format!("remove {}: {e}", path.display())))
        }
        _ => Ok(()),
    }
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
pub(super) fn repair(ve: &Ve, record: &Record) -> crate::error::Result<()> {
    let id = ve.ctid;
    if record.get("phase") == Some("committed") || ve.cgroup()?.has_tasks() {
        say(format!("CT {id} was migrated here: kept"));
        return Ok(());
    }
    say(format!("CT {id} was not migrated here: removing its copy"));
    let dump = ve.global.dump_dir().join(format!("Dump.{id}"));
    let pidfile = dump.with_extension("criu-pid");
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
        let mut incoming = Incoming { child, stdin, stdout };
        incoming.expect("ready")?;
        Ok(incoming)
    }

    /// Reads up to the line `word` (lines before it are the holder's messages).
    fn expect(&mut self, word: &str) -> std::result::Result<(), String> {
        let mut line = String::new();
        while self.stdout.read_line(&mut line).map_err(|e| e.to_string())? > 0 {
            if line.trim() == word {
                return Ok(());
            }
            tracing::info!("destination: {}", line.trim());
            line.clear();
        }
        let _ = self.child.kill();
        let status = self.child.wait().map_err(|e| e.to_string())?;
        Err(format!("the destination's {INCOMING_COMMAND} ended ({status})"))
    }

    fn say(&mut self, request: &str) -> std::result::Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("the holder is gone")?;
        writeln!(stdin, "{request}").and_then(|()| stdin.flush()).map_err(|e| e.to_string())?;
        self.expect("ok")
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
