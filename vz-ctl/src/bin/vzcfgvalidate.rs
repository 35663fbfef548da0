//! `vzcfgvalidate [-r] [-i] [-v yes|no] <configfile>`: checks the beancounters of a CT config
//! against OpenVZ's consistency rules (reference §3.4) with vz-ubc's rules; `-r` (and `-i`,
//! which asks before each repair) writes the repaired values back. Exit 0 valid, 1 program
//! error, 2 validation failed.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use vz_ctl::cli::tool::{self, ToolArg, VZCFGVALIDATE};
use vz_ctl::config::{ConfigFile, GlobalConfig};
use vz_ctl::error::{Tool, ToolError};
use vz_ctl::resources;
use vz_ubc::{Severity, ValidateMode};

struct Args {
    repair: bool,
    interactive: bool,
    mode: ValidateMode,
    file: PathBuf,
}

/// The arguments; `None` for `--help`.
fn parse(argv: &[String]) -> Result<Option<Args>, ToolError> {
    let (mut repair, mut interactive, mut mode, mut file) =
        (false, false, ValidateMode::Auto, None);
    for arg in tool::parse(&VZCFGVALIDATE, argv)? {
        match arg {
            ToolArg::Opt(key, value) => match (key.as_str(), value.as_deref()) {
                ("r", _) => repair = true,
                ("i", _) => interactive = true,
                ("v", Some("yes")) => mode = ValidateMode::VSwap,
                ("v", Some("no")) => mode = ValidateMode::NonVSwap,
                ("v", other) => {
                    let other = other.unwrap_or_default();
                    return Err(ToolError::Usage(format!("Invalid value for -v: {other}")));
                }
                _ => return Ok(None),
            },
            ToolArg::Word(word) if file.is_none() => file = Some(PathBuf::from(word)),
            ToolArg::Word(_) => return Err(ToolError::Usage("Invalid extra arguments".into())),
        }
    }
    let file = file.ok_or_else(|| ToolError::Usage("No config file given".into()))?;
    Ok(Some(Args { repair, interactive, mode, file }))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let outcome = parse(&argv).and_then(|args| match args {
        None => {
            print!("{}", VZCFGVALIDATE.usage());
            Ok(())
        }
        Some(args) => run(&args),
    });
    tool::exit(Tool::Vzcfgvalidate, &VZCFGVALIDATE, outcome.map(|()| String::new()))
}

/// Validates (and repairs); [`ToolError::Invalid`] when the config breaks a rule.
fn run(args: &Args) -> Result<(), ToolError> {
    if GlobalConfig::load().is_err() {
        eprintln!("Warning: global configuration file not read");
    }
    let mut file = ConfigFile::load(&args.file)?;
    let set = resources::ubc_config(|k| file.get(k))?;
    let host = vz_ubc::HostMemory::read().ok();
    let findings = vz_ubc::validate_with_host(&set, args.mode, host);
    for f in &findings {
        println!("{f}");
    }
    if !(args.repair || args.interactive) {
        return finish(&findings);
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
        file.write_atomic(&args.file)?;
        println!("Repaired values saved to {}", args.file.display());
        for f in &remaining {
            println!("{f}");
        }
    }
    finish(&remaining)
}

fn finish(findings: &[vz_ubc::Finding]) -> Result<(), ToolError> {
    if !findings.iter().all(|f| f.severity == Severity::Recommendation) {
        return Err(ToolError::Invalid);
    }
    println!("Validation completed: success");
    Ok(())
}
