//! Moving a VE: `vzmigrate` to another server over ssh (reference §8.2) and `vzmlocal`
//! (Virtuozzo's move or clone on one server). Both drive vz's own `vzctl` as a program, on
//! this host and (through ssh) on the destination, so every step takes the paths, locks and
//! recovery of the tree it runs in; this module orders the steps and undoes them on failure,
//! so that a VE always runs on exactly one side.

pub mod announce;
mod frozen;
pub mod image;
pub mod incoming;
mod lazy;
pub mod local;
pub mod page_server;
mod precopy;
pub mod recovery;
pub mod remote;
mod ssh;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub use ssh::Remote;

/// Why a migration failed, with legacy vzmigrate's exit code ([`MigrateError::exit_code`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// A bad command line (1).
    #[error("{0}")]
    Usage(String),
    /// Online migration of a stopped VE (2).
    #[error("CT {0} is not running: online migration is not possible")]
    Stopped(u32),
    /// The destination cannot be reached over ssh (4).
    #[error("Can't connect to destination address using public key authentication: {0}")]
    Connect(String),
    /// Copying the private area, config or dump failed (6).
    #[error("copy failed: {0}")]
    Copy(String),
    /// Starting or restoring the VE on the destination failed (7).
    #[error("Failed to start/restore CT on the destination: {0}")]
    DestStart(String),
    /// Stopping, suspending or dumping the VE on the source failed (8).
    #[error("Failed to stop/checkpoint CT on the source: {0}")]
    SourceStop(String),
    /// The VE (or the new CTID) exists on the destination already (9).
    #[error("CT {0} already exists on the destination")]
    Exists(u32),
    /// The VE does not exist on the source (10).
    #[error("CT {0} does not exist")]
    NotExist(u32),
    /// One of the VE's addresses is in use on the destination (12).
    #[error("IP address {0} is already in use on the destination")]
    IpInUse(String),
    /// A running VE's host id range is another VE's on the destination (12, as an address
    /// in use): its user namespace comes back with the same ids, which two VEs must not share.
    #[error(
        "the host ids {0} of the container are another container's on the destination; migrate it offline (it gets a free range there)"
    )]
    IdsInUse(String),
    /// vz is not installed or not working on the destination (14).
    #[error("vz is not running on the destination: {0}")]
    NoVz(String),
    /// The destination's vz.conf cannot be read (19).
    #[error("can't read the destination's global config: {0}")]
    RemoteConf(String),
    /// The asked way of checkpointing cannot work on this host (17, legacy vzmigrate's
    /// checkpoint-incompatibility code): e.g. `--mode pre-copy` without soft-dirty tracking.
    #[error("{0}")]
    CptUnsupported(String),
    /// The VE is locked by another command (20).
    #[error("CT {0} is locked")]
    Locked(u32),
    /// Anything else on this host (1).
    #[error("{0}")]
    Other(String),
}

impl MigrateError {
    /// Legacy vzmigrate's exit code (reference §8.2).
    pub fn exit_code(&self) -> u8 {
        match self {
            MigrateError::Usage(_) | MigrateError::Other(_) => 1,
            MigrateError::Stopped(_) => 2,
            MigrateError::Connect(_) => 4,
            MigrateError::Copy(_) => 6,
            MigrateError::DestStart(_) => 7,
            MigrateError::SourceStop(_) => 8,
            MigrateError::Exists(_) => 9,
            MigrateError::NotExist(_) => 10,
            MigrateError::IpInUse(_) | MigrateError::IdsInUse(_) => 12,
            MigrateError::NoVz(_) => 14,
            MigrateError::RemoteConf(_) => 19,
            MigrateError::CptUnsupported(_) => 17,
            MigrateError::Locked(_) => 20,
        }
    }
}

impl From<crate::error::CtlError> for MigrateError {
    fn from(e: crate::error::CtlError) -> Self {
        match e {
            crate::error::CtlError::Locked => MigrateError::Locked(0),
            e => MigrateError::Other(crate::error::chain(&e)),
        }
    }
}

/// A migration's result type.
pub type Result<T> = std::result::Result<T, MigrateError>;

/// The `vzctl` beside the running binary (the same build), else `vzctl` from PATH.
pub fn local_vzctl() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("vzctl")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("vzctl"))
}

/// Runs the local `vzctl --skiplock ARGS` (the caller holds the VE's lock) and returns its
/// output, or its stderr as the error text.
///
/// Inside a migration the running step's pid is recorded (a killed vzmigrate's repair waits
/// for it: see [`recovery`]); crash point `migrate:during:<command> [<first option>]`, e.g.
/// `migrate:during:chkpnt --dump`.
pub(crate) fn vzctl(args: &[&str]) -> std::result::Result<Output, String> {
    let child = Command::new(local_vzctl())
        .arg("--skiplock")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("run vzctl: {e}"))?;
    recovery::step_started(child.id());
    let option = args.get(2).filter(|a| a.starts_with("--"));
    let label =
        args.first().map(|c| option.map_or_else(|| (*c).to_owned(), |o| format!("{c} {o}")));
    crate::intent::crash_point(&format!("migrate:during:{}", label.unwrap_or_default()));
    let out = child.wait_with_output();
    recovery::step_ended();
    let out = out.map_err(|e| format!("run vzctl: {e}"))?;
    if out.status.success() { Ok(out) } else { Err(failure_text("vzctl", args, &out)) }
}

/// `program args: stderr (exit N)` of a failed command.
pub(crate) fn failure_text(program: &str, args: &[&str], out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if text.is_empty() {
        text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    format!("{program} {}: {text} ({})", args.join(" "), out.status)
}

/// Runs a local program; its stderr is the error text.
pub(crate) fn run(program: &str, args: &[&str]) -> std::result::Result<Output, String> {
    let out =
        Command::new(program).args(args).output().map_err(|e| format!("run {program}: {e}"))?;
    if out.status.success() { Ok(out) } else { Err(failure_text(program, args, &out)) }
}

/// `fsfreeze -f` of a mounted VE_ROOT for the length of a copy (a consistent image while the
/// VE's tasks are frozen or stopped); thawed on drop.
pub(crate) struct FsFreeze(PathBuf);

impl FsFreeze {
    /// Freezes the file system mounted at `root`.
    pub(crate) fn freeze(root: &Path) -> std::result::Result<FsFreeze, String> {
        run("fsfreeze", &["-f", &root.to_string_lossy()])?;
        Ok(FsFreeze(root.to_owned()))
    }
}

impl Drop for FsFreeze {
    fn drop(&mut self) {
        if let Err(e) = run("fsfreeze", &["-u", &self.0.to_string_lossy()]) {
            tracing::warn!("thaw {}: {e}", self.0.display());
        }
    }
}

/// The phases `-t` reports, in order, with their durations.
#[derive(Debug, Default)]
pub struct Timings {
    phases: Vec<(std::borrow::Cow<'static, str>, Duration)>,
    frozen: Option<Duration>,
}

impl Timings {
    /// Runs `f` as the phase `name`.
    pub(crate) fn phase<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let value = f();
        self.phases.push((name.into(), start.elapsed()));
        value
    }

    /// Records the phase `name`, timed by the caller.
    pub(crate) fn push(&mut self, name: impl Into<std::borrow::Cow<'static, str>>, d: Duration) {
        self.phases.push((name.into(), d));
    }

    /// Records the whole time the VE was frozen or stopped.
    pub(crate) fn set_frozen(&mut self, d: Duration) {
        self.frozen = Some(d);
    }

    /// The frozen (online) or stopped (offline) time, once known.
    pub fn frozen(&self) -> Option<Duration> {
        self.frozen
    }

    /// OpenVZ's timing lines (`-t`): one per phase and the total suspended time.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .phases
            .iter()
            .map(|(name, d)| format!("  {:<28}{:.3} s", format!("{name}:"), d.as_secs_f64()))
            .collect();
        if let Some(d) = self.frozen {
            lines.push(format!("  {:<28}{:.3} s", "Total suspended time:", d.as_secs_f64()));
        }
        lines
    }
}

/// Quotes `word` for a POSIX shell (the remote command line of ssh).
pub(crate) fn sh_quote(word: &str) -> String {
    if !word.is_empty()
        && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@%".contains(&b))
    {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_remote_shell() {
        assert_eq!(sh_quote("/vz/private/101"), "/vz/private/101");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$VEID"), "'$VEID'");
    }

    #[test]
    fn exit_codes_follow_legacy_vzmigrate() {
        assert_eq!(MigrateError::Stopped(1).exit_code(), 2);
        assert_eq!(MigrateError::Connect(String::new()).exit_code(), 4);
        assert_eq!(MigrateError::DestStart(String::new()).exit_code(), 7);
        assert_eq!(MigrateError::Exists(1).exit_code(), 9);
        assert_eq!(MigrateError::NotExist(1).exit_code(), 10);
        assert_eq!(MigrateError::Locked(1).exit_code(), 20);
    }
}
