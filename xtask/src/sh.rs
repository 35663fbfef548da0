//! Running the programs xtask drives: echoed before they run, their failures naming the
//! command line, and output streamed line by line when xtask needs to read it too.

use anyhow::{Context, Result, bail};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The repository root (the parent of xtask's manifest directory).
pub(crate) fn project_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// `cargo`, as the cargo that runs xtask (`$CARGO`), in the repository root.
pub(crate) fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

/// The workspace's target directory, as cargo sees it (`CARGO_TARGET_DIR`, config files).
pub(crate) fn target_dir(root: &Path) -> Result<PathBuf> {
    let json = output(cargo(root).args(["metadata", "--format-version", "1", "--no-deps"]))?;
    json_string(&json, "target_directory")
        .map(PathBuf::from)
        .context("`cargo metadata` printed no target_directory")
}

/// The string value of the first `"key":"…"` in a JSON text (enough for cargo metadata's
/// top-level keys, whose values are plain paths).
pub(crate) fn json_string(json: &str, key: &str) -> Option<String> {
    let pattern = format!("\"{key}\":\"");
    let start = json.find(&pattern)? + pattern.len();
    let mut value = String::new();
    let mut chars = json[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

/// A command line as a person would type it (for echoing and error messages).
pub(crate) fn display(cmd: &Command) -> String {
    let mut line = String::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            line.push_str(&format!("{}={} ", key.to_string_lossy(), quote(value)));
        }
    }
    line.push_str(&quote(cmd.get_program()));
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    line
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with inherited stdio after echoing it; fails on a non-zero exit.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let line = display(cmd);
    println!("$ {line}");
    let status = cmd.status().with_context(|| format!("cannot run `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` and returns its standard output; fails on a non-zero exit, with its stderr.
pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    let line = display(cmd);
    let out =
        cmd.stderr(Stdio::piped()).output().with_context(|| format!("cannot run `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{line}` printed non-UTF-8 output"))
}

/// How a streamed command ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// It exited by itself.
    Exited(ExitStatus),
    /// It ran past the deadline and was killed (by its PID) with SIGKILL.
    TimedOut,
}

/// Runs `cmd` (echoed) with stdout and stderr piped; every output line is echoed to our
/// stdout and handed to `on_line` with the time since start. With a `deadline`, the child is
/// killed (by its PID, never by name) when it runs longer.
pub(crate) fn stream(
    cmd: &mut Command,
    deadline: Option<Duration>,
    mut on_line: impl FnMut(&str, Duration),
) -> Result<Ended> {
    let line = display(cmd);
    println!("$ {line}");
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{line}`"))?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(spawn_reader(out, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(spawn_reader(err, tx.clone()));
    }
    drop(tx);
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(text) => {
                println!("{text}");
                on_line(&text, start.elapsed());
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(limit) = deadline.filter(|d| !timed_out && start.elapsed() > *d) {
            timed_out = true;
            eprintln!("xtask: watchdog: `{line}` ran past {limit:?}; killing PID {}", child.id());
            child.kill().with_context(|| format!("cannot kill PID {}", child.id()))?;
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child.wait().with_context(|| format!("cannot wait for `{line}`"))?;
    Ok(if timed_out { Ended::TimedOut } else { Ended::Exited(status) })
}

fn spawn_reader(
    stream: impl Read + Send + 'static,
    tx: mpsc::Sender<String>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&buf);
            let text = text.trim_end_matches(['\n', '\r']).replace('\r', "");
            if tx.send(text).is_err() {
                return;
            }
            buf.clear();
        }
    })
}

/// `text` without ANSI colour escapes (`ESC [ … letter`).
pub(crate) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `line` is nextest's closing summary (`Summary [ 1.2s] 3 tests run: …`).
pub(crate) fn is_nextest_summary(line: &str) -> bool {
    let line = strip_ansi(line);
    let line = line.trim_start();
    line.starts_with("Summary [") && line.contains("run:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_string_reads_a_key() {
        let json = r#"{"packages":[],"target_directory":"/work/t \"x\"","version":1}"#;
        assert_eq!(json_string(json, "target_directory").as_deref(), Some("/work/t \"x\""));
        assert_eq!(json_string(json, "missing"), None);
    }

    #[test]
    fn display_quotes_what_needs_it() {
        let mut cmd = Command::new("cargo");
        cmd.args(["nextest", "-E", "kind(test)"]).env("A", "b c");
        assert_eq!(display(&cmd), "A='b c' cargo nextest -E 'kind(test)'");
    }

    #[test]
    fn stream_reports_lines_and_kills_on_deadline() {
        let mut seen = Vec::new();
        let ended =
            stream(Command::new("sh").args(["-c", "echo one; echo two >&2"]), None, |l, _| {
                seen.push(l.to_owned())
            })
            .unwrap();
        assert!(matches!(ended, Ended::Exited(s) if s.success()));
        seen.sort();
        assert_eq!(seen, ["one", "two"]);
        let start = Instant::now();
        let ended =
            stream(Command::new("sleep").arg("30"), Some(Duration::from_millis(300)), |_, _| {})
                .unwrap();
        assert!(matches!(ended, Ended::TimedOut));
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn nextest_summary_is_recognised() {
        assert!(is_nextest_summary(
            "\u{1b}[32;1m     Summary\u{1b}[0m [   0.012s] 3 tests run: 3 passed, 0 skipped"
        ));
        assert!(!is_nextest_summary("        PASS [   0.004s] vz-tests names::tests::x"));
    }
}
