//! A TCP client that holds one connection to a VE's line server (a shell that answers each
//! line `L` with `N L`, N counting from 1), for the tests that keep a connection across a
//! checkpoint or a migration.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// One connection (busybox `nc` in the namespace the caller's command enters), killed by pid
/// on drop.
#[derive(Debug)]
pub struct LineClient {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    sent: u64,
}

impl LineClient {
    /// Connects with the command `nc` builds (e.g. `busybox nc IP PORT` in a test netns),
    /// retrying for up to 20 s until the server answers a first ping.
    ///
    /// # Panics
    /// When no server answers within 20 s.
    pub fn connect(nc: impl Fn() -> Command) -> LineClient {
        let start = Instant::now();
        loop {
            let mut child = nc()
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nc");
            let stdin = child.stdin.take().expect("nc's stdin");
            let stdout = BufReader::new(child.stdout.take().expect("nc's stdout"));
            let mut client = LineClient { child, stdin, stdout, sent: 0 };
            if client.try_ping().is_ok() {
                return client;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no TCP server in the VE");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends the next ping and checks the answer on the same connection.
    ///
    /// # Errors
    /// The write or read error, or the unexpected answer.
    pub fn try_ping(&mut self) -> Result<(), String> {
        let k = self.sent + 1;
        writeln!(self.stdin, "ping {k}").map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        if line.trim() != format!("{k} ping {k}") {
            return Err(format!("answer {line:?} to ping {k}"));
        }
        self.sent = k;
        Ok(())
    }
}

impl Drop for LineClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
