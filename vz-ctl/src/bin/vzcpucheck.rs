//! `vzcpucheck [-v]`: the CPU units promised to the host (`VE0CPUUNITS`) and the running VEs
//! against the node's power (Σ bogomips × 25), reference §6. OpenVZ read the units from
//! `/proc/fairsched`; here they are read back from each VE's cgroup (`cpu.shares` /
//! `cpu.weight`), falling back to its config.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::process::ExitCode;

use vz_ctl::config::GlobalConfig;
use vz_ctl::list;
use vz_ctl::resources;
use vz_ctl::ve::Ve;
use vz_sched::CpuUnits;

const USAGE: &str = "Usage: vzcpucheck [-v]";

fn main() -> ExitCode {
    let mut verbose = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-v" => verbose = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    match run(verbose) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn run(verbose: bool) -> Result<String, String> {
    let global = GlobalConfig::load().map_err(|e| e.to_string())?;
    let host = match global.get("VE0CPUUNITS").filter(|v| !v.trim().is_empty()) {
        Some(v) => v.trim().parse().map_err(|e: vz_sched::SchedError| e.to_string())?,
        None => CpuUnits::new(resources::DEFAULT_CPUUNITS).map_err(|e| e.to_string())?,
    };
    let mut ves = vec![(0, host)];
    for ctid in list::all_ctids(&global.conf_dir()).map_err(|e| e.to_string())? {
        let ve = Ve::load(global.clone(), ctid).map_err(|e| e.to_string())?;
        let cgroup = ve.cgroup().map_err(|e| e.to_string())?;
        if ve.config.is_none() || !cgroup.has_tasks() {
            continue;
        }
        let kernel = resources::sched_dirs(&cgroup)
            .and_then(|dirs| vz_sched::read(&dirs).ok())
            .and_then(|usage| usage.units);
        let units = match kernel {
            Some(u) => u,
            None => resources::cpu_config(|k| ve.get(k))
                .map_err(|e| e.to_string())?
                .units
                .unwrap_or_default(),
        };
        ves.push((ctid.get(), units));
    }
    Ok(vz_sched::vzcpucheck(&ves).map_err(|e| e.to_string())?.render(verbose))
}
