//! `vzcfgvalidate [-r] [-i] [-v yes|no] <configfile>`: checks the beancounters of a CT config
//! against OpenVZ's consistency rules (reference §3.4) with vz-ubc's rules; `-r` (and `-i`,
//! which asks before each repair) writes the repaired values back. Exit 0 valid, 1 program
//! error, 2 validation failed.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use vz_ctl::config::{ConfigFile, GlobalConfig};
use vz_ctl::resources;
use vz_ubc::{Severity, ValidateMode};

const USAGE: &str = "Usage: vzcfgvalidate [-r|-i] [-v yes|no] <configfile>\n\
    \t-r\trepair mode\n\t-i\tinteractive repair mode\n\
    \t-v yes|no\tforce VSwap (yes) or non-VSwap (no) mode";

struct Args {
    repair: bool,
    interactive: bool,
    mode: ValidateMode,
    file: PathBuf,
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let (mut repair, mut interactive, mut mode, mut file) =
        (false, false, ValidateMode::Auto, None);
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-r" => repair = true,
            "-i" => interactive = true,
            "-v" => {
                mode = match it.next().map(String::as_str) {
                    Some("yes") => ValidateMode::VSwap,
                    Some("no") => ValidateMode::NonVSwap,
                    other => return Err(format!("Invalid value for -v: {}", other.unwrap_or(""))),
                }
            }
            other if other.starts_with('-') => return Err(format!("Invalid option {other}")),
            other if file.is_none() => file = Some(PathBuf::from(other)),
            _ => return Err("Invalid extra arguments".to_owned()),
        }
    }
    let file = file.ok_or_else(|| "No config file given".to_owned())?;
    Ok(Args { repair, interactive, mode, file })
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(1);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

/// Validates (and repairs); `Ok(true)` when the config passes.
fn run(args: &Args) -> Result<bool, String> {
    if GlobalConfig::load().is_err() {
        eprintln!("Warning: global configuration file not read");
    }
    let mut file = ConfigFile::load(&args.file).map_err(|e| format!("{e}"))?;
    let set = resources::ubc_config(|k| file.get(k)).map_err(|e| vz_ctl::error::chain(&e))?;
    let host = vz_ubc::HostMemory::read().ok();
    let findings = vz_ubc::validate_with_host(&set, args.mode, host);
    for f in &findings {
        println!("{f}");
    }
    if !(args.repair || args.interactive) {
        return Ok(finish(&findings));
    }
    let (mut repaired, _) = vz_ubc::repair(&set, args.mode, host);
    let mut changed = false;
    let stdin = std::io::stdin();
    for (resource, value) in repaired.clone().iter() {
        if set.get(resource) == Some(value) {
            continue;
        }
        if args.interactive && !args.repair {
            print!("Repair {} to {value}? [y/n] ", resource.key());
            let _ = std::io::Write::flush(&mut std::io::stdout());
            let mut answer = String::new();
            let _ = stdin.lock().read_line(&mut answer);
            if !answer.trim().eq_ignore_ascii_case("y") {
                match set.get(resource) {
                    Some(old) => repaired.set(resource, old),
                    None => {
                        repaired.remove(resource);
                    }
                }
                continue;
            }
        }
        file.set(resource.key(), &value.to_string());
        changed = true;
    }
    let remaining = vz_ubc::validate_with_host(&repaired, args.mode, host);
    if changed {
        file.write_atomic(&args.file).map_err(|e| format!("{e}"))?;
        println!("Repaired values saved to {}", args.file.display());
        for f in &remaining {
            println!("{f}");
        }
    }
    Ok(finish(&remaining))
}

fn finish(findings: &[vz_ubc::Finding]) -> bool {
    let ok = findings.iter().all(|f| f.severity == Severity::Recommendation);
    if ok {
        println!("Validation completed: success");
    }
    ok
}
