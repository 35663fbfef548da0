//! The helpers of a post-copy (lazy pages) online migration on the source: the lazy dump's
//! page server (a port, whether it listens), ending it, waiting for both sides to have
//! moved every page, the pipe size it needs, and CRIU's network lock that a killed dump
//! leaves.

use std::process::Child;
use std::time::{Duration, Instant};

use super::incoming::Incoming;
use crate::output::warn;
use crate::ve::Ve;

/// A free TCP port of this host for a listener made later (CRIU's).
pub(super) fn free_port() -> std::result::Result<u16, String> {
    let listener = std::net::TcpListener::bind(("0.0.0.0", 0)).map_err(|e| e.to_string())?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Whether something of this network namespace listens on TCP `port`.
pub(super) fn listening(port: u16) -> bool {
    let wanted = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f).unwrap_or_default().lines().any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.get(3) == Some(&"0A")
                && fields.get(1).is_some_and(|a| format!("{a} ").ends_with(&wanted))
        })
    })
}

/// Ends a lazy dump that serves no one: one connection to its page server, closed at once,
/// ends its serving, and the dump returns (the VE stays suspended, as `--dump` leaves it). If
/// it does not end within 30 s, vzctl and its CRIU are killed (CRIU's tasks then let go of
/// the VE's, which the freezer holds).
pub(super) fn abort_lazy_dump(mut child: std::process::Child, address: &str, port: u16) {
    let _ = std::net::TcpStream::connect((address, port));
    let start = Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(30) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    warn("the lazy dump did not end: killing it");
    let pid = child.id();
    for descendant in descendants(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(descendant).unwrap_or(i32::MAX)),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for the post-copy to end on both sides, each of which must succeed: the source's
/// lazy dump `child` (it exits once it has served its pages, and exits well also when the
/// destination's daemon died midway), and the destination's `criu lazy-pages` (the holder's
/// answer to `post-copy`: it exits 0 only with every page). A daemon that fails ends the
/// dump ([`abort_lazy_dump`]); a dump that fails ends the daemon (its page server is gone),
/// whose answer is then awaited for up to 30 s. When the holder cannot be asked any more
/// (its connection lost), the dump alone decides.
pub(super) fn wait_post_copy(
    child: Child,
    holder: &mut Incoming,
    dump_args: &[&str],
    address: &str,
    port: u16,
) -> std::result::Result<(), String> {
    let mut child = Some(child);
    let mut dump: Option<std::result::Result<(), String>> = None;
    let mut daemon = match holder.request("post-copy") {
        Ok(()) => None,
        Err(e) => Some(Err(e)),
    };
    let mut dump_ended: Option<Instant> = None;
    loop {
        if let Some(running) = child.as_mut()
            && let Ok(Some(_)) = running.try_wait()
            && let Some(ended) = child.take()
        {
            let out = ended.wait_with_output().map_err(|e| e.to_string())?;
            dump = Some(if out.status.success() {
                Ok(())
            } else {
                Err(super::failure_text("vzctl", dump_args, &out))
            });
            dump_ended = Some(Instant::now());
        }
        if daemon.is_none() && holder.has_answer(Duration::from_millis(20)) {
            daemon = Some(holder.answer());
        } else if daemon.is_some() {
            std::thread::sleep(Duration::from_millis(20));
        }
        match (&dump, &daemon) {
            (Some(_), Some(_)) => break,
            (None, Some(Err(_))) if holder.is_lost() => {
                // Nobody to tell how the daemon did: the dump's end decides.
                warn("the connection to the destination was lost during the post-copy");
                daemon = Some(Ok(()));
            }
            (None, Some(Err(_))) => {
                if let Some(running) = child.take() {
                    abort_lazy_dump(running, address, port);
                }
                dump = Some(Err("ended: the destination failed".into()));
            }
            (Some(_), None) if dump_ended.is_some_and(|t| t.elapsed() > LAZY_END) => {
                daemon = Some(Err("the destination's lazy-pages daemon did not end".into()));
            }
            _ => {}
        }
    }
    match (dump, daemon) {
        (_, Some(Err(e))) => Err(e),
        (Some(Err(e)), _) => Err(e),
        _ => Ok(()),
    }
}

/// How long the destination's lazy-pages daemon may go on after the source's dump ended.
const LAZY_END: Duration = Duration::from_secs(30);

/// CRIU's network lock (iptables chains `CRIU` in the VE's network namespace, jumped to from
/// INPUT and OUTPUT) that a CRIU killed during a dump leaves (reference §9.3): removed, as
/// CRIU's own unlock does, so that the resumed VE is reachable again. Whether there was one.
///
/// # Errors
/// The failing command's text.
pub(super) fn unlock_network(ve: &Ve) -> std::result::Result<bool, String> {
    let pid = ve.init_pid().map_err(|e| e.to_string())?;
    crate::ops::cpt::unlock_network(pid)
}

/// Every descendant of `pid` (from /proc/PID/task/*/children), deepest first.
pub(super) fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten();
    for task in tasks {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            found.extend(descendants(child));
            found.push(child);
        }
    }
    found
}

/// `fs.pipe-max-size` raised to 4 MiB for a lazy dump (its page pipes; root without
/// CAP_SYS_RESOURCE cannot pass the limit), set back on drop.
pub(super) struct PipeMax(Option<String>);

impl PipeMax {
    const PATH: &str = "/proc/sys/fs/pipe-max-size";

    pub(super) fn raise() -> PipeMax {
        let old = std::fs::read_to_string(Self::PATH).unwrap_or_default().trim().to_owned();
        if old.parse::<u64>().is_ok_and(|v| v < 4 << 20)
            && std::fs::write(Self::PATH, "4194304").is_ok()
        {
            return PipeMax(Some(old));
        }
        PipeMax(None)
    }
}

impl Drop for PipeMax {
    fn drop(&mut self) {
        if let Some(old) = &self.0
            && let Err(e) = std::fs::write(Self::PATH, old)
        {
            warn(format!("set {} back to {old}: {e}", Self::PATH));
        }
    }
}
