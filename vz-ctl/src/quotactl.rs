//! The VE's quotactl server: lets root in a VE use the second-level quota tools (setquota,
//! edquota, repquota) on its own file system, which a stock kernel allows only with
//! CAP_SYS_ADMIN in the host's user namespace.
//!
//! `vzctl start` runs it for a VE whose second level the kernel enforces (QUOTAUGIDLIMIT >
//! 0, an image mounted with user and group quota), as `vzctl __quotactl-server CTID
//! DEVICE`, a
//! process of its own beside the VE (like a VE's other kernel objects it has no daemon
//! behind it). The VE's init and every `vzctl exec`/`enter` get a seccomp filter whose
//! listener goes to the server's socket `<VZ_RUN_DIR>/<CTID>.quotactl`; the server answers
//! each quotactl as vz-quota's [`vz_quota::QuotactlProxy`] decides (user and group quota of
//! the VE's own device, for root, else the kernel's own rules). It ends when the last process
//! under its filters has exited, i.e. when the VE stops.
//!
//! Like the console server it holds itself to a CPU budget ([`crate::budget`]): beyond it the
//! VE's quotactl and sysinfo calls wait in the kernel until the budget is back.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::fstat;
use vz_ns::{ListenerInbox, ProcessMemory, SyscallListener, SyscallReply};
use vz_quota::{QuotactlAnswer, QuotactlCaller, QuotactlProxy, SecondLevel};

use crate::error::{CtlError, Result};
use crate::ve::Ve;

/// The hidden vzctl command that runs the server.
pub const SERVER_COMMAND: &str = "__quotactl-server";

/// How long a new server waits for its first listener (the VE's init's) before it gives up.
const FIRST_LISTENER_WAIT: Duration = Duration::from_secs(120);

/// The server's socket for the VE.
pub fn socket_path(ve: &Ve) -> PathBuf {
    ve.global.run_dir().join(format!("{}.quotactl", ve.ctid))
}

/// The socket to give `vz-ns` for a process entering the running VE: the server's, if it
/// has one.
pub fn server_of_running(ve: &Ve) -> Option<PathBuf> {
    let path = socket_path(ve);
    std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()).then_some(path)
}

/// A started server, until the VE's start succeeds.
#[derive(Debug)]
pub struct StartedServer {
    /// Its socket.
    pub socket: PathBuf,
    child: Child,
}

impl StartedServer {
    /// Stops it (a failed start).
    ///
    /// # Errors
    /// When it cannot be killed.
    pub fn kill(mut self) -> std::result::Result<(), String> {
        self.child.kill().map_err(|e| format!("kill the quotactl server: {e}"))?;
        self.child.wait().map(drop).map_err(|e| format!("wait for the quotactl server: {e}"))?;
        let _ = std::fs::remove_file(&self.socket);
        Ok(())
    }
}

/// Starts the server for `ve`, whose `area` is mounted at `root` from the host's block
/// device `device`, if its second level is enforced; waits until its socket is bound.
///
/// # Errors
/// [`CtlError::Start`] when the area cannot be read or the server does not come up.
pub fn start_server(
    ve: &Ve,
    area: &vz_quota::PrivateArea,
    root: &Path,
    device: &Path,
) -> Result<Option<StartedServer>> {
    let fail = |e: Box<dyn std::error::Error + Send + Sync>| CtlError::Start(e);
    if area.second_level(root).map_err(|e| fail(e.into()))? != SecondLevel::Enforced {
        return Ok(None);
    }
    let exe = std::env::current_exe().map_err(|e| fail(format!("find vzctl: {e}").into()))?;
    let mut child = Command::new(exe)
        .arg(SERVER_COMMAND)
        .arg(ve.ctid.to_string())
        .arg(device)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("start the quotactl server: {e}").into()))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let socket = socket_path(ve);
    if line.trim() != "ready" {
        let _ = child.kill();
        let _ = child.wait();
        let why = if line.is_empty() { "it exited (see the log)" } else { line.trim() };
        return Err(fail(format!("the quotactl server did not start: {why}").into()));
    }
    Ok(Some(StartedServer { socket, child }))
}

/// The server's body (`vzctl __quotactl-server CTID DEVICE`, DEVICE the host's node of the
/// VE's image): binds the socket, says "ready" on stdout, then serves until the VE's
/// processes are gone.
///
/// # Errors
/// When the device or the socket cannot be set up, or polling fails.
pub fn serve(ve: &Ve, device: &Path) -> Result<()> {
    let fail = |e: Box<dyn std::error::Error + Send + Sync>| CtlError::Start(e);
    let _ = nix::unistd::setsid();
    let proxy = QuotactlProxy::new(device).map_err(|e| fail(e.into()))?;
    let inbox = ListenerInbox::bind(&socket_path(ve)).map_err(|e| fail(e.into()))?;
    let bound = std::fs::metadata(inbox.path()).map(|m| m.ino()).ok();
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready").and_then(|()| out.flush());
    }
    // The VE's filter holds one listener, ours: we answer its sysinfo too.
    let sysinfo = crate::sysinfo::Answerer::for_ve(ve);
    let result = serve_listeners(&inbox, &proxy, sysinfo.as_ref());
    // A newer server of a restarted VE may have taken the path: remove only our socket.
    if std::fs::metadata(inbox.path()).map(|m| m.ino()).ok() == bound {
        let _ = std::fs::remove_file(inbox.path());
    }
    result
}

fn serve_listeners(
    inbox: &ListenerInbox,
    proxy: &QuotactlProxy,
    sysinfo: Option<&crate::sysinfo::Answerer>,
) -> Result<()> {
    let poll_error = |e: nix::errno::Errno| CtlError::Start(format!("poll: {e}").into());
    let mut listeners: Vec<SyscallListener> = Vec::new();
    let mut had_any = false;
    let mut budget = crate::budget::CpuBudget::helper();
    loop {
        // The VE's calls wait in the kernel while the budget is spent; new listeners do not.
        let serve_ve = budget.check();
        let (inbox_ready, ready) = {
            let mut fds = vec![PollFd::new(inbox.as_fd(), PollFlags::POLLIN)];
            if serve_ve {
                fds.extend(listeners.iter().map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)));
            }
            let timeout = match budget.wait() {
                Some(wait) => PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX),
                None if had_any => PollTimeout::NONE,
                None => PollTimeout::try_from(FIRST_LISTENER_WAIT).unwrap_or(PollTimeout::MAX),
            };
            match poll(&mut fds, timeout) {
                Ok(0) if !serve_ve => continue,
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(poll_error(e)),
            }
            let flags: Vec<PollFlags> =
                fds.iter().map(|f| f.revents().unwrap_or(PollFlags::empty())).collect();
            (flags[0].contains(PollFlags::POLLIN), flags[1..].to_vec())
        };
        // Serve or drop the listeners that spoke, last first so indices stay valid.
        for (index, flags) in ready.iter().enumerate().rev() {
            if flags.contains(PollFlags::POLLIN) {
                serve_one(&listeners[index], proxy, sysinfo);
            } else if flags.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                listeners.swap_remove(index);
            }
        }
        if inbox_ready {
            match inbox.accept() {
                Ok(Some(listener)) => {
                    listeners.push(listener);
                    had_any = true;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "quotactl server: a listener was lost"),
            }
        }
        if had_any && listeners.is_empty() {
            return Ok(());
        }
    }
}

/// Answers one intercepted quotactl (or sysinfo, see [`crate::sysinfo`]).
fn serve_one(
    listener: &SyscallListener,
    proxy: &QuotactlProxy,
    sysinfo: Option<&crate::sysinfo::Answerer>,
) {
    let request = match listener.receive() {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "quotactl server: receive");
            return;
        }
    };
    if request.nr == libc::SYS_sysinfo {
        let reply = sysinfo.map_or(SyscallReply::Continue, |s| s.answer(listener, &request));
        if let Err(e) = listener.reply(request.id, reply) {
            tracing::warn!(error = %e, "quotactl server: reply to sysinfo");
        }
        return;
    }
    let answer = match VeProcess::open(request.pid, proxy.rdev()) {
        Some(caller) if request.nr == libc::SYS_quotactl && listener.is_waiting(request.id) => {
            proxy.answer(request.args, &caller)
        }
        _ => QuotactlAnswer::AsCaller,
    };
    let reply = match answer {
        QuotactlAnswer::Done => SyscallReply::Value(0),
        QuotactlAnswer::Failed(errno) => SyscallReply::Error(errno),
        QuotactlAnswer::AsCaller => SyscallReply::Continue,
    };
    if let Err(e) = listener.reply(request.id, reply) {
        tracing::warn!(error = %e, "quotactl server: reply");
    }
}

/// The id inside a user namespace of the host's `host_id`, by the namespace's map as the
/// host reads it (`inside outside count` per line).
fn inside_id(map: &str, host_id: u32) -> Option<u32> {
    map.lines().find_map(|line| {
        let mut f = line.split_whitespace().map(|n| n.parse::<u32>().ok());
        let (inside, outside, count) = (f.next()??, f.next()??, f.next()??);
        let offset = host_id.checked_sub(outside).filter(|o| *o < count)?;
        inside.checked_add(offset)
    })
}

/// A calling process that lives in the VE: its root is the root of the VE's image.
struct VeProcess {
    pid: i32,
    memory: ProcessMemory,
    root: std::fs::File,
}

impl VeProcess {
    /// The caller `pid` if its root directory is on the device `rdev` (the VE's image).
    fn open(pid: i32, rdev: u64) -> Option<VeProcess> {
        let memory = ProcessMemory::open(pid).ok()?;
        let root = std::fs::File::open(format!("/proc/{pid}/root")).ok()?;
        let on_device = root.metadata().ok()?.dev() == rdev;
        on_device.then_some(VeProcess { pid, memory, root })
    }
}

impl QuotactlCaller for VeProcess {
    fn ids(&self) -> std::io::Result<(u32, u32)> {
        let bad = || std::io::Error::from(std::io::ErrorKind::InvalidData);
        let status = procfs::process::Process::new(self.pid)
            .and_then(|p| p.status())
            .map_err(std::io::Error::other)?;
        let (euid, egid) = (status.euid, status.egid);
        let inside = |file: &str, host_id: u32| -> std::io::Result<u32> {
            let map = std::fs::read_to_string(format!("/proc/{}/{file}", self.pid))?;
            inside_id(&map, host_id).ok_or_else(bad)
        };
        Ok((inside("uid_map", euid)?, inside("gid_map", egid)?))
    }

    fn block_device(&self, path: &[u8]) -> std::io::Result<Option<u64>> {
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(std::ffi::OsStr::from_bytes(path));
        // Resolved as the caller would: absolute paths from its root, relative ones from its
        // working directory, never above its root nor through /proc's magic links.
        let base = if path.is_absolute() {
            self.root.try_clone()?
        } else {
            std::fs::File::open(format!("/proc/{}/cwd", self.pid))?
        };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let fd = openat2(base.as_fd(), path, how)?;
        let stat = fstat(&fd)?;
        Ok((stat.st_mode & libc::S_IFMT == libc::S_IFBLK).then_some(stat.st_rdev))
    }

    fn read_c_string(&self, addr: u64, max: usize) -> std::io::Result<Vec<u8>> {
        self.memory.read_c_string(addr, max)
    }

    fn read(&self, addr: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.memory.read(addr, len)
    }

    fn write(&self, addr: u64, data: &[u8]) -> std::io::Result<()> {
        self.memory.write(addr, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_map_back_into_the_ves_numbers() {
        let ve = "         0     100000      65536\n";
        assert_eq!(inside_id(ve, 100_000), Some(0));
        assert_eq!(inside_id(ve, 165_535), Some(65_535));
        assert_eq!(inside_id(ve, 165_536), None);
        assert_eq!(inside_id(ve, 0), None);
        let host = "         0          0 4294967295\n";
        assert_eq!(inside_id(host, 1000), Some(1000));
    }
}
