//! The dump's connection to a page server, made by vz-cpt instead of CRIU (RPC `ps.fd`), so
//! that it can be tuned and un-corked.
//!
//! CRIU corks its page-server socket when it connects (`TCP_CORK`, pushing each command with
//! `TCP_NODELAY` once) and never un-corks it. Its last command, the close that the page
//! server must answer before the dump goes on, is 32 bytes: corked, they leave only when the
//! kernel's zero-window probe timer fires (`TCP_RTO_MIN`, 200 ms) — measured on this host:
//! every page-server dump waited 196–215 ms for the page server's answer, with the whole
//! image already received (bare CRIU, 256 MiB: dump 947/760 ms corked, 657/464 ms
//! un-corked). vz-cpt connects, hands CRIU a copy of the socket, and un-corks it at CRIU's
//! first notification after the connect (`network-lock`, before any page is sent); from then
//! on every send is pushed at once (CRIU has set `TCP_NODELAY`).
//!
//! The send buffer is raised (`SO_SNDBUFFORCE`) so that the dump can hand over the pages and
//! go on with the rest of its work (namespaces, network tools) while the page server still
//! drains them; the pages themselves are spliced, not copied, so the buffer holds references.

use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};

use crate::error::{CptError, Result};
use crate::options::PageServer;

/// The send buffer asked for the page-server connection (bytes).
const SEND_BUFFER: usize = 64 << 20;

/// How long connecting to the page server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to a page server: vz-cpt's end, and the copy (without close-on-exec) that
/// CRIU's swrk child inherits by number.
#[derive(Debug)]
pub(crate) struct PageLink {
    stream: TcpStream,
    copy: OwnedFd,
}

impl PageLink {
    /// Connects to `server` (every address its name has, in turn).
    pub(crate) fn connect(server: &PageServer) -> Result<Self> {
        let name = format!("{}:{}", server.address, server.port);
        let fail = |source| CptError::PageServer { address: name.clone(), source };
        let addresses = (server.address.as_str(), server.port).to_socket_addrs().map_err(fail)?;
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        let stream = addresses
            .into_iter()
            .find_map(|a| {
                TcpStream::connect_timeout(&a, CONNECT_TIMEOUT).map_err(|e| last = e).ok()
            })
            .ok_or_else(|| fail(last))?;
        if let Err(e) = setsockopt(&stream, sockopt::SndBufForce, &SEND_BUFFER) {
            tracing::debug!(error = %e, "page-server socket: SO_SNDBUFFORCE");
        }
        let copy = nix::unistd::dup(stream.as_fd())
            .map_err(|e| CptError::sys("dup the page-server socket for CRIU", e))?;
        Ok(PageLink { stream, copy })
    }

    /// The descriptor CRIU gets (its number in CRIU's table too).
    pub(crate) fn criu_fd(&self) -> &OwnedFd {
        &self.copy
    }

    /// Lifts CRIU's cork (see the module doc); harmless before CRIU corks and repeated.
    pub(crate) fn uncork(&self) {
        if let Err(e) = socket2::SockRef::from(&self.stream).set_tcp_cork(false) {
            tracing::debug!(error = %e, "page-server socket: TCP_CORK off");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn uncork_lifts_a_cork_set_through_criu_s_copy() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = listener.local_addr().expect("address").port();
        let link =
            PageLink::connect(&PageServer { address: "127.0.0.1".into(), port }).expect("connect");
        let _peer = listener.accept().expect("accept");
        // CRIU corks its socket (the copy: the same socket).
        let criu = socket2::SockRef::from(link.criu_fd());
        criu.set_tcp_cork(true).expect("cork");
        assert!(socket2::SockRef::from(&link.stream).tcp_cork().expect("read cork"));
        link.uncork();
        assert!(!criu.tcp_cork().expect("read cork"));
        // The copy is CRIU's to inherit: no close-on-exec.
        let flags =
            nix::fcntl::fcntl(link.criu_fd(), nix::fcntl::FcntlArg::F_GETFD).expect("flags");
        assert_eq!(flags & nix::libc::FD_CLOEXEC, 0);
    }

    #[test]
    fn a_page_server_that_does_not_listen_is_named() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = listener.local_addr().expect("address").port();
        drop(listener);
        let err = PageLink::connect(&PageServer { address: "127.0.0.1".into(), port })
            .expect_err("nothing listens");
        assert!(matches!(err, CptError::PageServer { .. }), "{err}");
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    }
}
