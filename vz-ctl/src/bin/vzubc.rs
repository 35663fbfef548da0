//! `vzubc [CTID ...]`: the beancounters of the running VEs (all, or the ones given) in the
//! exact `/proc/user_beancounters` format (`Version: 2.5`, reference §3.3), measured from
//! their cgroups by vz-ubc. Stock kernels have no `/proc/user_beancounters`; this is its view.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::io::Write;
use std::process::ExitCode;

use vz_ctl::config::GlobalConfig;
use vz_ctl::ctid::Ctid;
use vz_ctl::list;
use vz_ctl::resources;
use vz_ctl::ve::Ve;

const USAGE: &str = "Usage: vzubc [CTID ...]\n\
    Shows the beancounters of running containers (all, or the CTIDs/names given)\n\
    in the format of /proc/user_beancounters.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if let Some(bad) = args.iter().find(|a| a.starts_with('-')) {
        eprintln!("Invalid option {bad}\n{USAGE}");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(text) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &[String]) -> Result<String, String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("This program can only be run under root.".to_owned());
    }
    let global = GlobalConfig::load().map_err(|e| e.to_string())?;
    let given = !args.is_empty();
    let ctids = if given {
        args.iter()
            .map(|a| {
                Ctid::resolve(a, &global.names_dir()).map_err(|_| format!("CT ID {a} is invalid."))
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        list::all_ctids(&global.conf_dir()).map_err(|e| e.to_string())?
    };
    let mut rows = Vec::new();
    for ctid in ctids {
        let ve = Ve::load(global.clone(), ctid).map_err(|e| e.to_string())?;
        let cgroup = ve.cgroup().map_err(|e| e.to_string())?;
        if ve.config.is_none() || !cgroup.has_tasks() {
            if given {
                return Err(format!("Container {ctid} is not running"));
            }
            continue;
        }
        let config = resources::ubc_in_force(|k| ve.get(k)).map_err(|e| e.to_string())?;
        let usage = resources::ubc_usage(ctid.get(), &cgroup, config)
            .map_err(|e| vz_ctl::error::chain(&e))?
            .ok_or_else(|| format!("Container {ctid}: no memory cgroup to read"))?;
        rows.push((ctid.get(), usage));
    }
    Ok(vz_ubc::render_proc_view(&rows))
}
