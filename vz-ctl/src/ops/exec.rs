//! `vzctl exec`, `exec2`, `enter` and `runscript`: run commands inside a running VE by
//! joining its namespaces and cgroup (no lock, as in OpenVZ).

use std::path::Path;

use crate::error::{CtlError, IoContext, Result};
use crate::scripts::{self, DEFAULT_PATH};
use crate::ve::Ve;

/// Runs `args` (joined with spaces, as OpenVZ does) by the VE's shell; a single `-` reads
/// the commands from stdin. Returns the command's exit code.
///
/// # Errors
/// 31 when the VE is not running; [`CtlError::Exec`] when it cannot be entered.
pub fn exec(ve: &Ve, args: &[String]) -> Result<i32> {
    let pid = running_init(ve)?;
    let shell = shell_of(pid);
    let argv = if args.len() == 1 && args[0] == "-" {
        vec![shell]
    } else {
        vec![shell, "-c".to_owned(), join_args(args)]
    };
    let env = vec![
        ("HOME".to_owned(), "/".to_owned()),
        ("TERM".to_owned(), "linux".to_owned()),
        ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
    ];
    scripts::run_inside(ve, pid, argv, env, vz_ns::TtyMode::Pipes)
}

/// Opens a root login shell in the VE on a pty from the VE's own devpts.
///
/// # Errors
/// 31 when the VE is not running; [`CtlError::Exec`] when it cannot be entered.
pub fn enter(ve: &Ve, command: Option<&[String]>) -> Result<i32> {
    let pid = running_init(ve)?;
    let mut argv = vec![shell_of(pid), "-l".to_owned()];
    if let Some(command) = command {
        argv.extend(["-c".to_owned(), join_args(command)]);
    }
    let mut env = vec![
        ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
        ("HISTFILE".to_owned(), "/dev/null".to_owned()),
        ("USER".to_owned(), "root".to_owned()),
        ("HOME".to_owned(), "/root".to_owned()),
        ("LOGNAME".to_owned(), "root".to_owned()),
    ];
    if let Ok(term) = std::env::var("TERM") {
        env.push(("TERM".to_owned(), term));
    }
    crate::output::say(format!("entered into CT {}", ve.ctid));
    let code = scripts::run_inside(ve, pid, argv, env, vz_ns::TtyMode::Pty)?;
    crate::output::say(format!("exited from CT {}", ve.ctid));
    Ok(code)
}

/// Runs a host script file inside the VE (its text is run by the VE's shell): in the running
/// VE, or in a stopped VE's namespaces without booting it.
///
/// # Errors
/// [`CtlError::Io`] when the script cannot be read; those of mounting a stopped VE.
pub fn runscript(ve: &Ve, script: &Path) -> Result<i32> {
    ve.config()?;
    let text = std::fs::read_to_string(script).op("read script", script)?;
    let run = |pid: i32| {
        let argv = vec![shell_of(pid), "-c".to_owned(), text.clone()];
        let env =
            vec![("PATH".to_owned(), DEFAULT_PATH.to_owned()), ("HOME".to_owned(), "/".to_owned())];
        scripts::run_inside(ve, pid, argv, env, vz_ns::TtyMode::Pipes)
    };
    match ve.init_pid() {
        Ok(pid) => run(pid),
        // A stopped VE: its namespaces without its init (OpenVZ: "enters a namespace without
        // starting init").
        Err(CtlError::NotRunning) => super::stopped::with_pending_init(ve, run),
        Err(e) => Err(e),
    }
}

fn running_init(ve: &Ve) -> Result<i32> {
    ve.config()?;
    ve.init_pid()
}

/// `/bin/bash` if the VE has it (as OpenVZ runs), else `/bin/sh`. Only the name is checked
/// (no link is followed on the host).
fn shell_of(pid: i32) -> String {
    let bash = format!("/proc/{pid}/root/bin/bash");
    if Path::new(&bash).symlink_metadata().is_ok() { "/bin/bash" } else { "/bin/sh" }.to_owned()
}

/// OpenVZ joins exec's arguments with spaces; empty arguments become `''`.
fn join_args(args: &[String]) -> String {
    args.iter().map(|a| if a.is_empty() { "''" } else { a.as_str() }).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_joined_like_openvz() {
        let args: Vec<String> = ["echo", "", "a b"].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(join_args(&args), "echo '' a b");
    }
}
