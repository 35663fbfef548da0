//! The destination over OpenSSH: `ssh -o BatchMode=yes [--ssh options] root@DEST -- CMD`
//! (key authentication only; a password prompt would hang a migration), commands quoted for
//! the remote shell, and streams piped from a local program into a remote one. One master
//! connection ([`Remote::connect`]) carries every command of a migration (a new connection's
//! handshake would cost each step of the frozen window tens of milliseconds); it ends with
//! the [`Remote`], or 60 s after its last use if vzmigrate is killed.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use super::failure_text;

/// The destination server.
#[derive(Debug)]
pub struct Remote {
    /// `user@host` (`root@` unless the user gave one).
    target: String,
    /// The words of `--ssh=...`.
    options: Vec<String>,
    /// The directory of the master connection's socket, once connected.
    control: Option<tempfile::TempDir>,
}

impl Remote {
    /// The destination `dest` (`host` or `user@host`) with the extra ssh options `ssh_opts`
    /// (split at white space, as legacy vzmigrate did).
    pub fn new(dest: &str, ssh_opts: &str) -> Remote {
        let target = if dest.contains('@') { dest.to_owned() } else { format!("root@{dest}") };
        let options = ssh_opts.split_whitespace().map(str::to_owned).collect();
        Remote { target, options, control: None }
    }

    /// Opens the master connection the later commands share.
    ///
    /// # Errors
    /// ssh's message when the destination cannot be reached or refuses the key.
    pub fn connect(&mut self) -> Result<(), String> {
        let dir = tempfile::Builder::new()
            .prefix("vzmigrate-ssh-")
            .tempdir()
            .map_err(|e| format!("make a directory for ssh's control socket: {e}"))?;
        let socket = dir.path().join("master");
        let out = Command::new("ssh")
            .args(self.base_options())
            .args(["-o", "ControlMaster=yes", "-o", "ControlPersist=60"])
            .arg("-o")
            .arg(format!("ControlPath={}", socket.display()))
            .args(["-N", "-f"])
            .arg(&self.target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|child| child.wait_with_output())
            .map_err(|e| format!("run ssh: {e}"))?;
        if !out.status.success() {
            return Err(failure_text("ssh", &[&self.target], &out));
        }
        self.control = Some(dir);
        Ok(())
    }

    /// `-o BatchMode=yes` and the user's options.
    fn base_options(&self) -> Vec<String> {
        let mut words = vec!["-o".to_owned(), "BatchMode=yes".to_owned()];
        words.extend(self.options.iter().cloned());
        words
    }

    /// The options of one command: the master's socket if there is one (a command finds it
    /// gone if the connection died, and connects on its own).
    fn command_options(&self) -> Vec<String> {
        let mut words = self.base_options();
        if let Some(dir) = &self.control {
            words.extend(["-o".to_owned(), "ControlMaster=no".to_owned(), "-o".to_owned()]);
            words.push(format!("ControlPath={}", dir.path().join("master").display()));
        }
        words
    }

    /// `ssh ... target -- script`.
    pub fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.command_options()).arg(&self.target).arg("--");
        cmd.arg(script);
        cmd
    }

    /// Runs `script` on the destination; a failure (ssh's or the script's) is the text of its
    /// stderr. `Err((None, _))` when ssh itself failed (exit 255).
    pub fn run(&self, script: &str) -> Result<Output, (Option<i32>, String)> {
        let out = self.command(script).stdin(Stdio::null()).output();
        Self::check(script, out)
    }

    /// Runs `script` on the destination with `data` on its stdin.
    pub fn run_with_input(
        &self,
        script: &str,
        data: &[u8],
    ) -> Result<Output, (Option<i32>, String)> {
        let child = self
            .command(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = child.map_err(|e| (None, format!("run ssh: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(data);
        }
        Self::check(script, child.wait_with_output())
    }

    /// Pipes the stdout of the local `source` into `script` on the destination (a `tar`
    /// stream). Both must succeed.
    pub fn pipe(&self, mut source: Command, script: &str) -> Result<(), String> {
        let mut producer = source
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("run {:?}: {e}", source.get_program()))?;
        let stdout = producer.stdout.take().ok_or("no stdout")?;
        let consumer = self.command(script).stdin(stdout).output();
        let produced = producer.wait_with_output().map_err(|e| e.to_string())?;
        let consumed = Self::check(script, consumer).map_err(|(_, e)| e);
        if !produced.status.success() {
            return Err(failure_text(&source.get_program().to_string_lossy(), &[], &produced));
        }
        consumed.map(|_| ())
    }

    /// Runs `script` on the destination with what `feed` writes on its stdin (buffered).
    ///
    /// # Errors
    /// The feed's I/O error or the script's failure, as text.
    pub fn stream<T>(
        &self,
        script: &str,
        feed: impl FnOnce(&mut dyn Write) -> std::io::Result<T>,
    ) -> Result<T, String> {
        let mut child = self
            .command(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("run ssh: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, stdin);
        let fed = feed(&mut writer).and_then(|v| writer.flush().map(|()| v));
        drop(writer);
        let checked = Self::check(script, child.wait_with_output()).map_err(|(_, e)| e);
        match (fed, checked) {
            (Ok(v), Ok(_)) => Ok(v),
            (Err(e), Err(r)) => Err(format!("{e}: {r}")),
            (Err(e), Ok(_)) => Err(e.to_string()),
            (Ok(_), Err(r)) => Err(r),
        }
    }

    /// The `-e` command of rsync: ssh with the same options.
    pub fn rsync_shell(&self) -> String {
        let mut words = vec!["ssh".to_owned()];
        words.extend(self.command_options());
        words.join(" ")
    }

    /// `user@host`.
    pub fn target(&self) -> &str {
        &self.target
    }

    fn check(script: &str, out: std::io::Result<Output>) -> Result<Output, (Option<i32>, String)> {
        let out = out.map_err(|e| (None, format!("run ssh: {e}")))?;
        match out.status.code() {
            Some(0) => Ok(out),
            Some(255) | None => Err((None, failure_text("ssh", &[script], &out))),
            code => Err((code, failure_text("ssh", &[script], &out))),
        }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(dir) = &self.control {
            let _ = Command::new("ssh")
                .arg("-o")
                .arg(format!("ControlPath={}", dir.path().join("master").display()))
                .args(["-O", "exit"])
                .arg(&self.target)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_is_root_unless_given_and_options_are_words() {
        let r = Remote::new("dst", "-p 2222 -i /k");
        assert_eq!(r.target(), "root@dst");
        assert_eq!(r.rsync_shell(), "ssh -o BatchMode=yes -p 2222 -i /k");
        let args: Vec<String> = r
            .command("vzctl status 101")
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            ["-o", "BatchMode=yes", "-p", "2222", "-i", "/k", "root@dst", "--", "vzctl status 101"]
        );
        assert_eq!(Remote::new("admin@dst", "").target(), "admin@dst");
    }
}
