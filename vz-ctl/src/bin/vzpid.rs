//! `vzpid PID ...` (or `vzpid -`, pids on standard input): which VE each process belongs to,
//! as OpenVZ's vzpid (`Pid`, `VEID`, `Name`, tab-separated; VEID 0 for the host). OpenVZ read
//! the `envID:` line of `/proc/<pid>/status`, which a stock kernel does not have; here the VE
//! is the one whose cgroup holds the process (vz-ctl's cgroup module reads them).
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::collections::HashMap;
use std::process::ExitCode;

use vz_ctl::cli::tool::{self, VZPID};
use vz_ctl::config::GlobalConfig;
use vz_ctl::error::{CtlError, Tool, ToolError};
use vz_ctl::list;
use vz_ctl::ve::Ve;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.as_slice() {
        [] => Err(ToolError::Usage("vzpid: no pid given".to_owned())),
        [h] if h == "-h" || h == "--help" => Ok(VZPID.usage()),
        [dash] if dash == "-" => std::io::read_to_string(std::io::stdin())
            .map_err(|e| ToolError::Failed(format!("standard input: {e}")))
            .and_then(|text| run(&text.split_whitespace().map(str::to_owned).collect::<Vec<_>>())),
        pids => run(pids),
    };
    tool::exit(Tool::Vzpid, &VZPID, outcome)
}

fn run(args: &[String]) -> Result<String, ToolError> {
    let pids = args
        .iter()
        .map(|a| a.parse::<i32>().ok().filter(|p| *p > 0).ok_or_else(|| bad_pid(a)))
        .collect::<Result<Vec<i32>, _>>()?;
    if !nix::unistd::Uid::effective().is_root() {
        return Err(ToolError::NotRoot);
    }
    let global = GlobalConfig::load().map_err(CtlError::GlobalConfig)?;
    // Every running VE's tasks, once: a process belongs to the VE whose cgroup holds it.
    let mut owner: HashMap<i32, u32> = HashMap::new();
    for ctid in list::all_ctids(&global.conf_dir())? {
        let ve = Ve::load(global.clone(), ctid)?;
        for pid in ve.cgroup()?.pids() {
            owner.insert(pid, ctid.get());
        }
    }
    let mut out = String::from("Pid\tVEID\tName\n");
    for pid in pids {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let field = |key: &str| {
            status.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).unwrap_or_default()
        };
        let name = field("Name:").split_whitespace().next().unwrap_or_default().to_owned();
        // cgroup.procs lists processes; a thread is found through its thread group.
        let tgid: i32 = field("Tgid:").parse().unwrap_or(pid);
        let veid = owner.get(&tgid).copied().unwrap_or(0);
        out.push_str(&format!("{pid}\t{veid}\t{name}\n"));
    }
    Ok(out)
}

fn bad_pid(arg: &str) -> ToolError {
    ToolError::Failed(format!("Invalid pid: {arg}"))
}
