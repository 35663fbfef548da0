//! A VE's console: the host side of the pty its init opened in the VE's own devpts (vz-ns,
//! `InitSpec::console`; /dev/console in the VE links to it and it is the init's stdio).
//!
//! `vzctl start` (and `restore`) hands the pty's master to the tree's console server
//! ([`crate::consoled`], `vzctl __consoled`, one host process for every running VE), which
//! * reads the console all the time, so writes in the VE never block on it, and keeps the
//!   last [`LOG_KEEP`] bytes in `<VZ_RUN_DIR>/<CTID>.console.log` (root's, 0600; at most twice
//!   that on disk, trimmed by writing a new file and renaming it over the old one: `log.rs`);
//! * serves `vzctl console CTID` clients ([`attach`]) on the socket
//!   `<VZ_RUN_DIR>/<CTID>.console` (root's, 0600): what the console prints goes to every
//!   client, what a client sends goes to the console;
//! * answers the `sysinfo(2)` calls of the VE's processes and keeps the VE's load average
//!   ([`crate::sysinfo::Service`], on `<VZ_RUN_DIR>/<CTID>.sysinfo`);
//! * ends the VE's service when its init is gone, after reading what was left.
//!
//! What the VE makes the server do (read its console, answer its sysinfo calls) is held to
//! the VE's CPU budget ([`crate::budget`]: 5% of a CPU, bursts of 200 ms): beyond it the
//! server stops reading that VE's console and listeners until its budget is back, so the
//! VE's console writes block on the full pty as on a slow serial line and its sysinfo
//! callers wait in the kernel. What the host asks (clients' input, load average questions)
//! is served at once.
//!
//! A start whose init dies prints the log's last lines ([`ConsoleServer::last_lines`]).
//! A VE whose server is gone runs on: its console's slave then fails writes with EIO.

mod attach;
pub(crate) mod log;

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use attach::attach;

use crate::error::Result;
use crate::ve::Ve;

/// How much of the console's latest output the log keeps (the file holds at most twice as
/// much).
pub const LOG_KEEP: usize = 64 * 1024;

/// The console server's socket for the VE's `vzctl console` clients.
pub fn socket_path(ve: &Ve) -> PathBuf {
    ve.global.run_dir().join(format!("{}.console", ve.ctid))
}

/// The console log of the VE.
pub fn log_path(ve: &Ve) -> PathBuf {
    ve.global.run_dir().join(format!("{}.console.log", ve.ctid))
}

/// A VE's console as `vzctl start` holds it once the console server serves it.
#[derive(Debug)]
pub struct ConsoleServer {
    log: PathBuf,
    socket: PathBuf,
    bound: Option<u64>,
}

impl ConsoleServer {
    /// Hands the console pty `master` of the init `init_pid` to the tree's console server
    /// (started if none runs, or the one `starting` begun, [`crate::consoled::register`]);
    /// returns once it serves it.
    ///
    /// # Errors
    /// [`crate::CtlError::Start`] when the server cannot be had or refuses the VE.
    pub fn start(
        ve: &Ve,
        master: OwnedFd,
        init_pid: i32,
        starting: Option<crate::consoled::Starting>,
    ) -> Result<ConsoleServer> {
        crate::consoled::register(ve, init_pid, Some(master), starting)?;
        let socket = socket_path(ve);
        let bound =
            std::fs::metadata(&socket).ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        Ok(ConsoleServer { log: log_path(ve), socket, bound })
    }

    /// The last `count` lines the console printed, once the server has read all of it (it
    /// ends the VE's service when the init is gone, removing its socket; waited for up to
    /// `wait`).
    pub fn last_lines(self, count: usize, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let now = std::fs::metadata(&self.socket)
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
            if now != self.bound || self.bound.is_none() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let text = std::fs::read(&self.log).unwrap_or_default();
        tail_lines(&text, count)
    }
}

/// The last `count` non-empty lines of `text`, printable: carriage returns and other
/// control characters (escape sequences of the VE) are dropped.
fn tail_lines(text: &[u8], count: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(text);
    let mut lines: Vec<String> = text
        .split('\n')
        .map(|l| l.chars().filter(|c| !c.is_control() || *c == '\t').collect::<String>())
        .filter(|l| !l.trim().is_empty())
        .collect();
    let skip = lines.len().saturating_sub(count);
    lines.drain(..skip);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_printable_lines() {
        let text = b"one\r\ntwo\r\n\r\n\x1b[1mthree\x1b[0m\r\nfour";
        assert_eq!(tail_lines(text, 2), ["[1mthree[0m", "four"]);
        assert_eq!(tail_lines(text, 9), ["one", "two", "[1mthree[0m", "four"]);
        assert!(tail_lines(b"", 3).is_empty());
    }
}
