//! The destination over OpenSSH: `ssh -o BatchMode=yes [--ssh options] root@DEST -- CMD`
//! (key authentication only; a password prompt would hang a migration), commands quoted for
//! the remote shell, and streams piped from a local program into a remote one.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use super::failure_text;

/// The destination server.
#[derive(Debug, Clone)]
pub struct Remote {
    /// `user@host` (`root@` unless the user gave one).
    target: String,
    /// The words of `--ssh=...`.
    options: Vec<String>,
}

impl Remote {
    /// The destination `dest` (`host` or `user@host`) with the extra ssh options `ssh_opts`
    /// (split at white space, as legacy vzmigrate did).
    pub fn new(dest: &str, ssh_opts: &str) -> Remote {
        let target = if dest.contains('@') { dest.to_owned() } else { format!("root@{dest}") };
        Remote { target, options: ssh_opts.split_whitespace().map(str::to_owned).collect() }
    }

    /// `ssh ... target -- script`.
    pub fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-o", "BatchMode=yes"]).args(&self.options).arg(&self.target).arg("--");
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

    /// The `-e` command of rsync: ssh with the same options.
    pub fn rsync_shell(&self) -> String {
        let mut words = vec!["ssh".to_owned(), "-o".to_owned(), "BatchMode=yes".to_owned()];
        words.extend(self.options.iter().cloned());
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
