//! `vzquota stat|show <CTID>`: the disk quota of a VE in vzquota's format (reference §5).
//! The limits themselves are set by `vzctl create/set --diskspace --diskinodes`; this tool
//! only reports, as on an OpenVZ host where vzctl drives quota.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::process::ExitCode;

use vz_ctl::Ve;
use vz_ctl::config::GlobalConfig;
use vz_ctl::ctid::Ctid;

const USAGE: &str = "Usage: vzquota [-b] stat|show <CTID>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let batch = args.iter().any(|a| a == "-b");
    let words: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a != "-b").collect();
    let (["stat", id] | ["show", id]) = words.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match run(id, batch) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err((code, message)) => {
            eprintln!("vzquota: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(id: &str, batch: bool) -> Result<String, (u8, String)> {
    let global = GlobalConfig::load().map_err(|e| (1, e.to_string()))?;
    let ctid = Ctid::resolve(id, &global.names_dir()).map_err(|e| (2, e.to_string()))?;
    let ve = Ve::load(global, ctid).map_err(|e| (1, e.to_string()))?;
    let private = ve.private().map_err(|e| (1, e.to_string()))?;
    let root = ve.root().map_err(|e| (1, e.to_string()))?;
    let area = vz_quota::PrivateArea::open(&private).map_err(|e| (11, e.to_string()))?;
    let stat = area.stat(&root).map_err(|e| (1, e.to_string()))?;
    Ok(if batch { stat.batch() } else { stat.to_string() })
}
