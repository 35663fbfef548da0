//! The channel between the parent and the children that become a VE process: a CLOEXEC
//! `SOCK_SEQPACKET` socket pair carrying one small framed message per packet (tag byte,
//! little-endian u32 length, payload), and with [`Msg::Listener`] an fd. A successful exec
//! closes the child's end, so end of file after "ready" means the program runs.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};

use crate::error::{NsError, Result};
use crate::sys;

/// The largest payload a message carries (longer texts are cut).
const MAX_PAYLOAD: usize = 3000;

/// A message from a child.
#[derive(Debug)]
pub(crate) enum Msg {
    /// The host pid of the VE's init (sent by the intermediate child).
    Pid(i32),
    /// Namespaces and mounts are set up; the child waits for "go".
    Ready,
    /// A setup step failed; the text names it.
    SetupError(String),
    /// exec failed; `"<program>: <reason>"`.
    ExecError(String),
    /// The listener of the child's seccomp filter ([`crate::SyscallListener`]).
    Listener(OwnedFd),
    /// The master of a pty the child opened from the VE's own devpts.
    Terminal(OwnedFd),
    /// A detached mount (the VE's proc, made by its pid 1 for the intermediate).
    Mount(OwnedFd),
    /// A mount namespace (the VE's, made by the intermediate for its pid 1).
    MountNamespace(OwnedFd),
}

/// A connected pair: the parent's receiving end and the children's sending end.
pub(crate) fn channel() -> Result<(OwnedFd, OwnedFd)> {
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| NsError::sys("socketpair for the child's status", e))
}

/// Sends `msg` on `fd` from a child. Errors are ignored: if the parent is gone there is no
/// one to tell.
pub(crate) fn send(fd: impl AsFd, msg: &Msg) {
    let (tag, payload): (u8, Vec<u8>) = match msg {
        Msg::Pid(pid) => (b'P', pid.to_le_bytes().to_vec()),
        Msg::Ready => (b'R', Vec::new()),
        Msg::SetupError(text) => (b'E', text.as_bytes().to_vec()),
        Msg::ExecError(text) => (b'X', text.as_bytes().to_vec()),
        Msg::Listener(_) => (b'L', Vec::new()),
        Msg::Terminal(_) => (b'T', Vec::new()),
        Msg::Mount(_) => (b'M', Vec::new()),
        Msg::MountNamespace(_) => (b'N', Vec::new()),
    };
    let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
    let len = u32::try_from(payload.len()).unwrap_or(0);
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(tag);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(payload);
    let fds: Vec<RawFd> = match msg {
        Msg::Listener(fd) | Msg::Terminal(fd) | Msg::Mount(fd) | Msg::MountNamespace(fd) => {
            vec![fd.as_raw_fd()]
        }
        _ => Vec::new(),
    };
    let rights = [ControlMessage::ScmRights(&fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    let _ = sendmsg::<()>(
        fd.as_fd().as_raw_fd(),
        &[IoSlice::new(&frame)],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    );
}

/// The parent's end of the channel.
#[derive(Debug)]
pub(crate) struct Receiver {
    socket: OwnedFd,
}

impl Receiver {
    /// Wraps the parent's end of [`channel`].
    pub(crate) fn new(socket: OwnedFd) -> Self {
        Receiver { socket }
    }

    /// The next message, or `None` at end of file (every sender closed or exec'd).
    pub(crate) fn recv(&mut self) -> Result<Option<Msg>> {
        let mut frame = [0_u8; 5 + MAX_PAYLOAD];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let (len, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut frame)];
            match recvmsg::<()>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let fd = received_fd(&msg)
                        .map_err(|e| NsError::sys("read the child's status", e))?;
                    break (msg.bytes, fd);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(NsError::sys("read the child's status", e)),
            }
        };
        if len == 0 {
            return Ok(None);
        }
        let frame = &frame[..len];
        let (header, payload) = frame.split_at_checked(5).ok_or_else(truncated)?;
        let announced = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
        if usize::try_from(announced).ok() != Some(payload.len()) {
            return Err(truncated());
        }
        let text = || String::from_utf8_lossy(payload).into_owned();
        Ok(Some(match (header[0], fd) {
            (b'P', None) => {
                let bytes: [u8; 4] = payload.try_into().map_err(|_| truncated())?;
                Msg::Pid(i32::from_le_bytes(bytes))
            }
            (b'R', None) => Msg::Ready,
            (b'E', None) => Msg::SetupError(text()),
            (b'X', None) => Msg::ExecError(text()),
            (b'L', Some(fd)) => Msg::Listener(fd),
            (b'T', Some(fd)) => Msg::Terminal(fd),
            (b'M', Some(fd)) => Msg::Mount(fd),
            (b'N', Some(fd)) => Msg::MountNamespace(fd),
            _ => return Err(truncated()),
        }))
    }
}

/// The fd a received message carried, if any (owned from here on; a second one is closed).
pub(crate) fn received_fd(
    msg: &nix::sys::socket::RecvMsg<'_, '_, ()>,
) -> nix::Result<Option<OwnedFd>> {
    let mut found = None;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for raw in fds {
                found = found.or(Some(sys::adopt_received_fd(raw)));
            }
        }
    }
    Ok(found)
}

fn truncated() -> NsError {
    NsError::io(
        "read from",
        "the child's status channel",
        std::io::Error::new(std::io::ErrorKind::InvalidData, "truncated or garbled message"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_eof_is_none() {
        let (r, w) = channel().expect("channel");
        let msgs = [
            Msg::Pid(4242),
            Msg::Ready,
            Msg::SetupError("mount proc on /proc: EPERM".into()),
            Msg::ExecError("/sbin/init: No such file or directory".into()),
        ];
        for m in &msgs {
            send(&w, m);
        }
        drop(w);
        let mut rx = Receiver::new(r);
        for m in msgs {
            let got = rx.recv().expect("read").expect("a message");
            assert_eq!(format!("{got:?}"), format!("{m:?}"));
        }
        assert!(rx.recv().expect("eof").is_none());
    }

    #[test]
    fn a_listener_message_carries_its_fd() {
        let (r, w) = channel().expect("channel");
        let (probe_r, probe_w) = channel().expect("probe");
        send(&w, &Msg::Listener(probe_w));
        let mut rx = Receiver::new(r);
        let Some(Msg::Listener(fd)) = rx.recv().expect("read") else { panic!("no listener") };
        // The received fd is the same socket: what goes in arrives at the probe's other end.
        send(&fd, &Msg::Ready);
        drop(fd);
        let mut probe = Receiver::new(probe_r);
        assert!(matches!(probe.recv().expect("read"), Some(Msg::Ready)));
    }
}
