//! The destination's page server, started by vzmigrate over ssh for the page-server and
//! pre-copy modes: `vzmigrate __page-server CTID ADDRESS PORT [--dir SUB] [--prev-images-dir
//! P] [--wait SECS]`.
//!
//! vz accepts the dump's connection itself and hands it to `criu page-server --ps-socket FD`,
//! so that the socket can be tuned before CRIU sees it: the receive buffer is raised
//! ([`RECEIVE_BUFFER`], `SO_RCVBUFFORCE`) on the listening socket, before `listen`, so that the
//! connection's window scale is negotiated for it. CRIU's own page server keeps the kernel's
//! autotuned buffer, and the dump (whose tasks are frozen) waited on a full socket while the
//! page server drained it 64 KiB at a time (its splice pipe, a CRIU default vz cannot
//! change). Measured (256 MiB touched, release, interleaved with the build before in
//! batches of 5, load 4–40): dump phase median 324 → 247 and 432 → 378 ms, frozen 664 →
//! 586 and 808 → 738 ms. Other sizes, in one noisier batch (load 7–23, 5 runs each): no
//! raised buffer 1841, 8 MiB 898, 32 MiB 892, 64 MiB 695 (64 MiB not clearly better: 32
//! kept). A tmpfs for both trees' dump directories did not pay (frozen median 716 ms, 10 runs).
//!
//! The command binds and listens (SO_REUSEADDR; a port in use fails here, so the caller tries
//! the next), then starts its own daemon half (a new session, stdio on /dev/null, the
//! listening socket its stdin), writes the daemon's pid to `<DUMPDIR>/Dump.<CTID>.criu-pid`
//! (the file the migration's cleanup and the destination's repair kill by) and exits: the
//! ssh caller knows the port listens when the command returns, so the dump's connect cannot
//! race the bind. The daemon accepts ONE connection, waiting at most `--wait` seconds
//! ([`ACCEPT_WAIT`] by default: a source that died never leaves it for ever; it then removes
//! its pid file and the images directories it made, and ends), and execs CRIU with the
//! connection under the same pid, writing into `<DUMPDIR>/Dump.<CTID>/SUB` (SUB: `pre/N` of
//! a pre-copy iteration; absent: the final dump's). CRIU ends after that one dump's session.

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage, sockopt};

use super::{MigrateError, Result};
use crate::config::GlobalConfig;

/// The hidden command.
pub const PAGE_SERVER_COMMAND: &str = "__page-server";

/// The daemon half's marker option (its stdin is the listening socket).
const DAEMON_OPTION: &str = "--daemon-half";

/// The receive buffer of the page server's connection (bytes; `SO_RCVBUFFORCE`, the kernel
/// doubles it for its bookkeeping).
pub const RECEIVE_BUFFER: usize = 32 << 20;

/// How long the page server waits for the dump's connection by default.
pub const ACCEPT_WAIT: Duration = Duration::from_secs(60);

/// What `vzmigrate __page-server` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageServerRequest {
    /// The VE (its dump directory there is `<DUMPDIR>/Dump.<CTID>`).
    pub ctid: u32,
    /// The address to listen on (a name is resolved there).
    pub address: String,
    /// The port.
    pub port: u16,
    /// The images directory, relative to the VE's dump directory (`None`: that directory).
    pub dir: Option<String>,
    /// CRIU's `--prev-images-dir` (relative to the images directory).
    pub parent: Option<String>,
    /// How long to wait for the connection.
    pub wait: Duration,
}

impl PageServerRequest {
    /// The request of the words after the command name.
    ///
    /// # Errors
    /// [`MigrateError::Usage`] for a missing or bad word, or a `--dir` that leaves the dump
    /// directory.
    pub fn parse(args: &[String]) -> Result<PageServerRequest> {
        let usage = |what: &str| {
            MigrateError::Usage(format!(
                "{PAGE_SERVER_COMMAND}: {what} (CTID ADDRESS PORT [--dir SUB] \
                 [--prev-images-dir P] [--wait SECS])"
            ))
        };
        let [ctid, address, port, rest @ ..] = args else {
            return Err(usage("missing arguments"));
        };
        let mut request = PageServerRequest {
            ctid: ctid.parse().map_err(|_| usage(&format!("bad CTID {ctid}")))?,
            address: address.clone(),
            port: port.parse().map_err(|_| usage(&format!("bad port {port}")))?,
            dir: None,
            parent: None,
            wait: ACCEPT_WAIT,
        };
        let mut words = rest.iter();
        while let Some(option) = words.next() {
            if option == DAEMON_OPTION {
                continue;
            }
            let value = words.next().ok_or_else(|| usage(&format!("{option} needs a value")))?;
            match option.as_str() {
                "--dir" => {
                    let inside =
                        Path::new(value).components().all(|c| matches!(c, Component::Normal(_)));
                    if !inside {
                        return Err(usage(&format!(
                            "--dir {value} is not below the dump directory"
                        )));
                    }
                    request.dir = Some(value.clone());
                }
                "--prev-images-dir" => request.parent = Some(value.clone()),
                "--wait" => {
                    // At least a second: the pid file is written after the daemon starts.
                    let secs: u64 = value
                        .parse()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| usage(&format!("bad --wait {value}")))?;
                    request.wait = Duration::from_secs(secs);
                }
                _ => return Err(usage(&format!("unknown option {option}"))),
            }
        }
        Ok(request)
    }

    /// The command's words (after `vzmigrate`), as [`PageServerRequest::parse`] reads them.
    pub fn words(&self) -> Vec<String> {
        let mut words = vec![
            PAGE_SERVER_COMMAND.to_owned(),
            self.ctid.to_string(),
            self.address.clone(),
            self.port.to_string(),
        ];
        if let Some(dir) = &self.dir {
            words.extend(["--dir".to_owned(), dir.clone()]);
        }
        if let Some(parent) = &self.parent {
            words.extend(["--prev-images-dir".to_owned(), parent.clone()]);
        }
        if self.wait != ACCEPT_WAIT {
            words.extend(["--wait".to_owned(), self.wait.as_secs().to_string()]);
        }
        words
    }
}

/// Where the request's files are on this host.
struct Places {
    /// `<DUMPDIR>/Dump.<CTID>`.
    dump: PathBuf,
    /// The images directory.
    images: PathBuf,
    /// `<DUMPDIR>/Dump.<CTID>.criu-pid`.
    pidfile: PathBuf,
    /// The CRIU of this tree.
    criu: PathBuf,
}

impl Places {
    fn of(request: &PageServerRequest) -> Result<Places> {
        let global =
            GlobalConfig::load().map_err(|e| MigrateError::Other(crate::error::chain(&e)))?;
        let dump = global.dump_dir().join(format!("Dump.{}", request.ctid));
        let images = request.dir.as_ref().map_or_else(|| dump.clone(), |d| dump.join(d));
        Ok(Places {
            pidfile: super::incoming::daemon_pidfile(&dump),
            images,
            criu: PathBuf::from(super::remote::criu_path(&global)),
            dump,
        })
    }
}

/// `vzmigrate __page-server ...` (see the module doc): `args` are the words after the
/// command name. Returns once the port listens and the daemon half runs (the first call),
/// or never in the daemon half once it has a connection (CRIU replaces it).
///
/// # Errors
/// [`MigrateError::Usage`] for bad words; [`MigrateError::DestStart`] when the port cannot
/// be bound or listened on (the caller tries another), CRIU does not run (`--version`), the
/// images directory cannot be made or the daemon cannot start.
pub fn page_server(args: &[String]) -> Result<()> {
    let request = PageServerRequest::parse(args)?;
    let places = Places::of(&request)?;
    if args.iter().any(|a| a == DAEMON_OPTION) {
        daemon_half(&request, &places);
        return Ok(());
    }
    let fail = |what: String| MigrateError::DestStart(format!("the page server: {what}"));
    // The CRIU it will become must run (a CRIU that cannot fails here, not in the dump).
    super::run(&places.criu.to_string_lossy(), &["--version"]).map_err(fail)?;
    let listener = listen(&request.address, request.port).map_err(fail)?;
    std::fs::create_dir_all(&places.images)
        .map_err(|e| fail(format!("make {}: {e}", places.images.display())))?;
    match std::fs::remove_file(&places.pidfile) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(fail(format!("remove {}: {e}", places.pidfile.display())));
        }
        _ => {}
    }
    let exe = std::env::current_exe().map_err(|e| fail(format!("find vzmigrate: {e}")))?;
    let child = Command::new(exe)
        .args(request.words())
        .arg(DAEMON_OPTION)
        .stdin(Stdio::from(OwnedFd::from(listener)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("start its daemon: {e}")))?;
    let pid = child.id();
    let written =
        crate::config::write_atomic(&places.pidfile, format!("{pid}\n").as_bytes(), 0o644);
    if let Err(e) = written {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
            nix::sys::signal::Signal::SIGKILL,
        );
        return Err(fail(format!("write {}: {e}", places.pidfile.display())));
    }
    Ok(())
}

/// A socket listening on `address:port` (the first of the name's addresses that binds),
/// its receive buffer raised before `listen`.
fn listen(address: &str, port: u16) -> std::result::Result<TcpListener, String> {
    let addresses = (address, port).to_socket_addrs().map_err(|e| format!("{address}: {e}"))?;
    let mut last = format!("{address}: no address");
    for a in addresses {
        match listen_on(a) {
            Ok(l) => return Ok(l),
            Err(e) => last = format!("listen on {a}: {e}"),
        }
    }
    Err(last)
}

fn listen_on(address: SocketAddr) -> nix::Result<TcpListener> {
    let family = if address.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if let Err(e) = socket::setsockopt(&fd, sockopt::RcvBufForce, &RECEIVE_BUFFER) {
        tracing::debug!(error = %e, "page server: SO_RCVBUFFORCE");
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(address))?;
    socket::listen(&fd, socket::Backlog::new(1)?)?;
    Ok(TcpListener::from(fd))
}

/// The daemon: a session of its own, one connection accepted (or none within the wait:
/// then its pid file and the directories it made go), CRIU exec'd with it.
fn daemon_half(request: &PageServerRequest, places: &Places) {
    let _ = nix::unistd::setsid();
    let listener = std::io::stdin().as_fd().try_clone_to_owned().map(TcpListener::from);
    // Stdin is /dev/null again: CRIU must not hold the listening socket.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(null);
    }
    let stream = listener.ok().and_then(|l| accept_within(&l, request.wait));
    let Some(stream) = stream else {
        give_up(places);
        return;
    };
    // CRIU's copy of the connection, inherited by its number (no close-on-exec).
    let Ok(socket) = nix::unistd::dup(stream.as_fd()) else {
        give_up(places);
        return;
    };
    drop(stream);
    let mut criu = Command::new(&places.criu);
    criu.arg("page-server").arg("--ps-socket").arg(socket.as_raw_fd().to_string());
    criu.arg("-D").arg(&places.images);
    if let Some(parent) = &request.parent {
        criu.args(["--prev-images-dir", parent]);
    }
    criu.args(["-v2", "-o", "page-server.log"]);
    let _error = criu.exec();
    give_up(places);
}

/// The connection of the dump, if one comes within `wait`.
fn accept_within(listener: &TcpListener, wait: Duration) -> Option<TcpStream> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = std::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) if left.is_zero() => return None,
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => return listener.accept().ok().map(|(s, _)| s),
            Err(_) => return None,
        }
    }
}

/// No connection: the pid file (if still this process's) and the empty images directories
/// up to the VE's dump directory go.
fn give_up(places: &Places) {
    let own = std::fs::read_to_string(&places.pidfile)
        .is_ok_and(|p| p.trim() == std::process::id().to_string());
    if own {
        let _ = std::fs::remove_file(&places.pidfile);
    }
    let mut dir = Some(places.images.as_path());
    while let Some(d) = dir.filter(|d| d.starts_with(&places.dump)) {
        if std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn requests_read_back_what_they_write() {
        let r = PageServerRequest::parse(&words("101 10.0.0.2 20001")).unwrap();
        assert_eq!(r.dir, None);
        assert_eq!(r.wait, ACCEPT_WAIT);
        assert_eq!(r.words()[1..], words("101 10.0.0.2 20001")[..]);
        let r = PageServerRequest::parse(&words(
            "7 h 30000 --dir pre/2 --prev-images-dir ../1 --wait 3",
        ))
        .unwrap();
        assert_eq!(r.dir.as_deref(), Some("pre/2"));
        assert_eq!(r.parent.as_deref(), Some("../1"));
        assert_eq!(r.wait, Duration::from_secs(3));
        assert_eq!(PageServerRequest::parse(&r.words()[1..]).unwrap(), r);
    }

    #[test]
    fn bad_requests_are_refused() {
        for bad in [
            "101 h",
            "x h 1",
            "101 h 70000",
            "101 h 1 --dir ../x",
            "101 h 1 --dir /tmp",
            "101 h 1 --wait",
            "101 h 1 --wait 0",
            "101 h 1 --bogus 1",
        ] {
            let err = PageServerRequest::parse(&words(bad)).expect_err(bad);
            assert_eq!(err.exit_code(), 1, "{bad}: {err}");
        }
    }

    #[test]
    fn a_port_in_use_fails_the_listen_and_the_buffer_is_raised() {
        let first = listen("127.0.0.1", 0).expect("listen");
        let port = first.local_addr().unwrap().port();
        let err = listen("127.0.0.1", port).expect_err("the port is taken");
        assert!(err.contains("in use"), "{err}");
        let buffer = socket::getsockopt(&first, sockopt::RcvBuf).expect("SO_RCVBUF");
        assert!(buffer >= RECEIVE_BUFFER, "{buffer}");
    }
}
