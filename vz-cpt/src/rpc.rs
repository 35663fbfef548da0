//! CRIU's RPC in swrk mode: [`Criu`] starts `criu swrk <fd>` on one end of a
//! `SOCK_SEQPACKET` pair, sends one `criu_req`, answers the `NOTIFY` messages through the
//! caller's closure, and returns the final `criu_resp`.
//!
//! The messages are the types rust-criu generates from CRIU's `rpc.proto`; the conversation
//! is ours, because rust-criu 0.6.1's own driver cannot serve vz (README: "Why not
//! rust-criu's driver").

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};
use protobuf::{Message, MessageField};
use rust_criu::rust_criu_protobuf::rpc;

use crate::error::{CptError, Result};

pub(crate) use rpc::{Criu_opts as Opts, Criu_req_type as ReqType, Criu_resp as Resp};

/// Where install-criu puts CRIU (>= 4.2); Debian 12's `/usr/sbin/criu` (3.17) fails on
/// current kernels, so the path is never looked up in `PATH`.
pub const DEFAULT_CRIU: &str = "/usr/local/sbin/criu";

/// The CRIU binary vz-cpt drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criu {
    path: PathBuf,
}

impl Default for Criu {
    fn default() -> Self {
        Criu { path: PathBuf::from(DEFAULT_CRIU) }
    }
}

/// CRIU's version, as its RPC reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CriuVersion {
    /// Major number (4).
    pub major: i32,
    /// Minor number (2).
    pub minor: i32,
    /// Sublevel (1), 0 when not reported.
    pub sublevel: i32,
}

impl std::fmt::Display for CriuVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.sublevel)
    }
}

/// A notification CRIU sends during a request (the stages of its action scripts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notify {
    pub(crate) script: String,
    pub(crate) pid: i32,
}

impl Criu {
    /// The CRIU binary at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Criu { path: path.into() }
    }

    /// The binary's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Asks CRIU for its version.
    ///
    /// # Errors
    /// [`CptError::CriuSpawn`] when the binary cannot be run, [`CptError::Rpc`] when it does
    /// not answer the RPC.
    pub fn version(&self) -> Result<CriuVersion> {
        let resp = self.call(ReqType::VERSION, None, &mut |_| Ok(()))?;
        let v = resp
            .version
            .as_ref()
            .ok_or_else(|| CptError::Rpc("no version in the answer".into()))?;
        Ok(CriuVersion { major: v.major_number(), minor: v.minor_number(), sublevel: v.sublevel() })
    }

    /// Runs one request; `notify` answers each notification (an `Err` makes CRIU abort).
    /// Returns CRIU's final answer, successful or not.
    pub(crate) fn call(
        &self,
        kind: ReqType,
        opts: Option<Opts>,
        notify: &mut dyn FnMut(&Notify) -> std::result::Result<(), String>,
    ) -> Result<Resp> {
        // CRIU's kernel probe (25-30 ms) loaded from its cache instead (kdat.rs).
        crate::kdat::warm(self);
        let (ours, theirs) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::empty())
                .map_err(|e| CptError::sys("socketpair for criu swrk", e))?;
        fcntl(&ours, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .map_err(|e| CptError::sys("set FD_CLOEXEC", e))?;
        let mut child = Command::new(&self.path)
            .arg("swrk")
            .arg(theirs.as_raw_fd().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| CptError::CriuSpawn { path: self.path.clone(), source })?;
        drop(theirs);
        let result = converse(&ours, kind, opts, notify);
        drop(ours);
        let _ = child.wait();
        result
    }
}

fn converse(
    sock: &OwnedFd,
    kind: ReqType,
    opts: Option<Opts>,
    notify: &mut dyn FnMut(&Notify) -> std::result::Result<(), String>,
) -> Result<Resp> {
    let mut req = rpc::Criu_req::new();
    req.set_type(kind);
    if let Some(opts) = opts {
        req.opts = MessageField::some(opts);
    }
    send_msg(sock, &req)?;
    loop {
        let resp = recv_msg(sock)?;
        if resp.type_() != ReqType::NOTIFY {
            return Ok(resp);
        }
        let n =
            resp.notify.as_ref().map(|n| Notify { script: n.script().to_owned(), pid: n.pid() });
        let n = n.ok_or_else(|| CptError::Rpc("NOTIFY without its message".into()))?;
        tracing::debug!(stage = %n.script, pid = n.pid, "criu notify");
        let outcome = notify(&n);
        let mut ack = rpc::Criu_req::new();
        ack.set_type(ReqType::NOTIFY);
        ack.set_notify_success(outcome.is_ok());
        send_msg(sock, &ack)?;
        if let Err(message) = outcome {
            // The caller names its log in the error.
            return Err(CptError::Hook { stage: n.script, message, log: PathBuf::new() });
        }
    }
}

fn send_msg(sock: &OwnedFd, req: &rpc::Criu_req) -> Result<()> {
    let bytes = req.write_to_bytes().map_err(|e| CptError::Rpc(format!("encode: {e}")))?;
    let n = send(sock.as_fd().as_raw_fd(), &bytes, MsgFlags::empty())
        .map_err(|e| CptError::sys("send to criu swrk", e))?;
    if n != bytes.len() {
        return Err(CptError::Rpc("short write to criu swrk".into()));
    }
    Ok(())
}

fn recv_msg(sock: &OwnedFd) -> Result<Resp> {
    let fd = sock.as_fd().as_raw_fd();
    // MSG_PEEK|MSG_TRUNC with an empty buffer gives the datagram's length without taking it.
    let len = recv(fd, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC)
        .map_err(|e| CptError::sys("recv from criu swrk", e))?;
    if len == 0 {
        return Err(CptError::Rpc("criu swrk closed the connection without an answer".into()));
    }
    let mut buf = vec![0u8; len];
    let n = recv(fd, &mut buf, MsgFlags::empty())
        .map_err(|e| CptError::sys("recv from criu swrk", e))?;
    Resp::parse_from_bytes(&buf[..n]).map_err(|e| CptError::Rpc(format!("decode: {e}")))
}
