//! The channel between the parent and the children that become a VE process: small framed
//! messages over a CLOEXEC pipe (tag byte, little-endian u32 length, payload). A successful
//! exec closes the child's write end, so EOF after "ready" means the program runs.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

use crate::error::{NsError, Result};

/// A message from a child.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Msg {
    /// The host pid of the VE's init (sent by the intermediate child).
    Pid(i32),
    /// Namespaces and mounts are set up; the child waits for "go".
    Ready,
    /// A setup step failed; the text names it.
    SetupError(String),
    /// exec failed; `"<program>: <reason>"`.
    ExecError(String),
}

/// Sends `msg` on `fd` from a child. Errors are ignored: if the parent is gone there is no
/// one to tell.
pub(crate) fn send(fd: impl AsFd, msg: &Msg) {
    let (tag, payload): (u8, Vec<u8>) = match msg {
        Msg::Pid(pid) => (b'P', pid.to_le_bytes().to_vec()),
        Msg::Ready => (b'R', Vec::new()),
        Msg::SetupError(text) => (b'E', text.as_bytes().to_vec()),
        Msg::ExecError(text) => (b'X', text.as_bytes().to_vec()),
    };
    // Keep a message under PIPE_BUF so that one write is atomic.
    let payload = &payload[..payload.len().min(3000)];
    let len = u32::try_from(payload.len()).unwrap_or(0);
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(tag);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(payload);
    let _ = nix::unistd::write(fd, &frame);
}

/// The parent's end of the channel.
#[derive(Debug)]
pub(crate) struct Receiver {
    file: File,
}

impl Receiver {
    /// Wraps the read end of the pipe.
    pub(crate) fn new(fd: OwnedFd) -> Self {
        Receiver { file: File::from(fd) }
    }

    /// The next message, or `None` at EOF (every writer closed or exec'd).
    pub(crate) fn recv(&mut self) -> Result<Option<Msg>> {
        let mut header = [0_u8; 5];
        let mut got = 0;
        while got < header.len() {
            match self.file.read(&mut header[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(truncated()),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(NsError::io("read from", "the child's status pipe", e)),
            }
        }
        let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut payload = vec![0_u8; len];
        self.file.read_exact(&mut payload).map_err(|_| truncated())?;
        let text = || String::from_utf8_lossy(&payload).into_owned();
        Ok(Some(match header[0] {
            b'P' => {
                let bytes: [u8; 4] = payload.as_slice().try_into().map_err(|_| truncated())?;
                Msg::Pid(i32::from_le_bytes(bytes))
            }
            b'R' => Msg::Ready,
            b'E' => Msg::SetupError(text()),
            b'X' => Msg::ExecError(text()),
            _ => return Err(truncated()),
        }))
    }
}

fn truncated() -> NsError {
    NsError::io(
        "read from",
        "the child's status pipe",
        std::io::Error::new(std::io::ErrorKind::InvalidData, "truncated or garbled message"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_eof_is_none() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
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
            assert_eq!(rx.recv().expect("read"), Some(m));
        }
        assert_eq!(rx.recv().expect("eof"), None);
    }
}
