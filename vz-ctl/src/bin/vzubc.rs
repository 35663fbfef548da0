//! `vzubc [CTID ...]`: the beancounters of the running VEs (all, or the ones given) in the
//! exact `/proc/user_beancounters` format (`Version: 2.5`, reference §3.3), measured from
//! their cgroups by vz-ubc. Stock kernels have no `/proc/user_beancounters`; this is its view.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::process::ExitCode;

use vz_ctl::cli::tool::{self, ToolArg, VZUBC};
use vz_ctl::config::GlobalConfig;
use vz_ctl::ctid::Ctid;
use vz_ctl::error::{CtlError, Tool, ToolError};
use vz_ctl::list;
use vz_ctl::resources;
use vz_ctl::ve::Ve;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = tool::parse(&VZUBC, &args).and_then(|parsed| {
        let mut ctids = Vec::new();
        for arg in parsed {
            match arg {
                ToolArg::Word(ctid) => ctids.push(ctid),
                ToolArg::Opt(..) => return Ok(VZUBC.usage()),
            }
        }
        run(&ctids)
    });
    tool::exit(Tool::Vzubc, &VZUBC, outcome)
}

fn run(args: &[String]) -> Result<String, ToolError> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(ToolError::NotRoot);
    }
    let global = GlobalConfig::load().map_err(CtlError::GlobalConfig)?;
    let given = !args.is_empty();
    let ctids = if given {
        args.iter()
            .map(|a| {
                Ctid::resolve(a, &global.names_dir()).map_err(|_| ToolError::BadCtid(a.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        list::all_ctids(&global.conf_dir())?
    };
    let mut rows = Vec::new();
    for ctid in ctids {
        let ve = Ve::load(global.clone(), ctid)?;
        let cgroup = ve.cgroup()?;
        if ve.config.is_none() || !cgroup.has_tasks() {
            if given {
                return Err(ToolError::Failed(format!("Container {ctid} is not running")));
            }
            continue;
        }
        let config = resources::ubc_in_force(|k| ve.get(k))?;
        let usage = resources::ubc_usage(ctid.get(), &cgroup, config)?.ok_or_else(|| {
            ToolError::Failed(format!("Container {ctid}: no memory cgroup to read"))
        })?;
        rows.push((ctid.get(), usage));
    }
    Ok(vz_ubc::render_proc_view(&rows))
}
