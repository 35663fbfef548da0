//! Running a long build program (debootstrap, dnf) with its output streamed line by line to
//! the progress callback, and running the metadata's hooks.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use crate::build::{BuildEvent, BuildStep};
use crate::error::{IoContext, Result, TemplateError};

/// Lines of output kept for an error message.
const TAIL: usize = 40;

/// Runs `cmd` with stdout and stderr merged into one pipe, reporting each line (and the step
/// `step_of` gives a line, when it changes) to `progress`. Returns the exit status and the last
/// lines printed.
pub(crate) fn stream(
    mut cmd: Command,
    program: &Path,
    first: BuildStep,
    step_of: fn(&str) -> Option<BuildStep>,
    progress: &mut dyn FnMut(BuildEvent<'_>),
) -> Result<(ExitStatus, Vec<String>)> {
    let (reader, writer) = std::io::pipe().op("make a pipe for", program)?;
    let writer2 = writer.try_clone().op("make a pipe for", program)?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .env("LC_ALL", "C.UTF-8")
        .spawn()
        .op("run", program)?;
    // The Command holds the pipe's write ends: drop it so the pipe ends with the child.
    drop(cmd);
    let mut tail: Vec<String> = Vec::new();
    let mut step = first;
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { break };
        let now = step_of(&line).unwrap_or(step);
        if now != step {
            step = now;
            progress(BuildEvent::Step(step));
        }
        progress(BuildEvent::Output(&line));
        tail.push(line);
        if tail.len() > TAIL {
            tail.remove(0);
        }
    }
    let status = child.wait().op("wait for", program)?;
    Ok((status, tail))
}

/// The last `n` lines of `lines`, joined.
pub(crate) fn last_lines(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs a metadata hook (`install-pre`, `install-post`) with `env`, cwd `/`.
pub(crate) fn hook(hook: &Path, env: &[(&str, &str)]) -> Result<()> {
    let mut cmd = Command::new(hook);
    cmd.current_dir("/").stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().op("run", hook)?;
    if !out.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return Err(TemplateError::Command {
            program: hook.display().to_string(),
            status: out.status,
            stderr: text.trim().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_steps_are_streamed() {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo a; echo 'I: Unpacking x' >&2; echo b; exit 3"]);
        let mut seen = Vec::new();
        let step_of = |l: &str| l.starts_with("I: ").then_some(BuildStep::Install);
        let (status, tail) =
            stream(cmd, Path::new("/bin/sh"), BuildStep::Download, step_of, &mut |e| {
                seen.push(format!("{e:?}"));
            })
            .unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(tail, ["a", "I: Unpacking x", "b"]);
        assert_eq!(seen[1], "Step(Install)");
        assert_eq!(last_lines(&tail, 2), "I: Unpacking x\nb");
    }

    #[test]
    fn a_failing_hook_is_an_error_with_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("install-post");
        std::fs::write(&path, "#!/bin/sh\necho \"no $VE_ROOT\" >&2\nexit 1\n").unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let err = hook(&path, &[("VE_ROOT", "/x")]).unwrap_err();
        assert!(err.to_string().ends_with("no /x"), "{err}");
    }
}
