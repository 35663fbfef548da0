//! `vzcpucheck [-v]`: the CPU units promised to the host (`VE0CPUUNITS`) and the running VEs
//! against the node's power (Σ bogomips × 25), reference §6. OpenVZ read the units from
//! `/proc/fairsched`; here they are read back from each VE's cgroup (`cpu.shares` /
//! `cpu.weight`), falling back to its config.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::process::ExitCode;

use vz_ctl::cli::tool::{self, ToolArg, VZCPUCHECK};
use vz_ctl::config::GlobalConfig;
use vz_ctl::error::{CtlError, Tool, ToolError};
use vz_ctl::list;
use vz_ctl::resources;
use vz_ctl::ve::Ve;
use vz_sched::CpuUnits;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = tool::parse(&VZCPUCHECK, &args).and_then(|parsed| {
        let mut verbose = false;
        for arg in parsed {
            match arg {
                ToolArg::Opt(key, _) if key == "v" => verbose = true,
                ToolArg::Opt(..) => return Ok(VZCPUCHECK.usage()),
                ToolArg::Word(word) => {
                    return Err(ToolError::Usage(format!("Invalid argument {word}")));
                }
            }
        }
        run(verbose)
    });
    tool::exit(Tool::Vzcpucheck, &VZCPUCHECK, outcome)
}

fn run(verbose: bool) -> Result<String, ToolError> {
    let global = GlobalConfig::load().map_err(CtlError::GlobalConfig)?;
    let host = match global.get("VE0CPUUNITS").filter(|v| !v.trim().is_empty()) {
        Some(v) => v.trim().parse()?,
        None => CpuUnits::new(resources::DEFAULT_CPUUNITS)?,
    };
    let mut ves = vec![(0, host)];
    for ctid in list::all_ctids(&global.conf_dir())? {
        let ve = Ve::load(global.clone(), ctid)?;
        let cgroup = ve.cgroup()?;
        if ve.config.is_none() || !cgroup.has_tasks() {
            continue;
        }
        let kernel = resources::sched_dirs(&cgroup)
            .and_then(|dirs| vz_sched::read(&dirs).ok())
            .and_then(|usage| usage.units);
        let units = match kernel {
            Some(u) => u,
            None => resources::cpu_config(|k| ve.get(k))?.units.unwrap_or_default(),
        };
        ves.push((ctid.get(), units));
    }
    Ok(vz_sched::vzcpucheck(&ves)?.render(verbose))
}
