//! The helpers of a post-copy (lazy pages) online migration on the source: the lazy dump's
//! page server (a port, whether it listens), ending it, waiting for it to have served every
//! page, and the pipe size it needs.

use std::time::Instant;

use super::remote::Dest;
use crate::output::warn;

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

/// Waits for the lazy dump to have served every page. The destination's `criu lazy-pages`
/// ends when it has them all; if it is gone (or cannot be asked) and the dump still serves
/// 10 s later, nobody takes the pages any more: the dump is ended and this fails.
pub(super) fn wait_post_copy(
    mut child: std::process::Child,
    dest: &Dest,
    port: u16,
) -> std::result::Result<std::process::Output, String> {
    let alive = format!("p={}; [ -f $p ] && kill -0 $(cat $p)", dest.daemon_pidfile());
    let mut gone_since: Option<Instant> = None;
    loop {
        for _ in 0..40 {
            if let Ok(Some(_)) = child.try_wait() {
                return child.wait_with_output().map_err(|e| e.to_string());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if gone_since.is_none() && dest.remote.run(&alive).is_err() {
            gone_since = Some(Instant::now());
        }
        if gone_since.is_some_and(|t| t.elapsed() > std::time::Duration::from_secs(10)) {
            abort_lazy_dump(child, &dest.source_addr, port);
            return Err("the destination's lazy-pages daemon ended before it had every page".into());
        }
    }
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
