//! `vzmlocal [-C] CTID:NEWID[:private[:root]] ...`: moves (or with `-C` clones) VEs on this
//! server, as Virtuozzo's tool of that name.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::process::ExitCode;

use vz_ctl::cli::tool::{self, ToolArg, VZMLOCAL};
use vz_ctl::config::GlobalConfig;
use vz_ctl::ops::migrate::MigrateError;
use vz_ctl::ops::migrate::local::{LocalSpec, clone_ve, move_ve};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (clone, specs) = match parse(&args) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            print!("{}", VZMLOCAL.usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            eprint!("{}", VZMLOCAL.usage());
            return ExitCode::from(e.exit_code());
        }
    };
    vz_ctl::logging::init("vzmlocal", 0, false, None, None);
    let global = match GlobalConfig::load() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("Error: {}", vz_ctl::error::chain(&e));
            return ExitCode::from(1);
        }
    };
    for spec in &specs {
        let outcome = if clone { clone_ve(&global, spec) } else { move_ve(&global, spec) };
        if let Err(e) = outcome {
            eprintln!("Error: {e}");
            return ExitCode::from(e.exit_code());
        }
    }
    ExitCode::SUCCESS
}

/// `-C` and the items; `None` for `--help`.
fn parse(args: &[String]) -> Result<Option<(bool, Vec<LocalSpec>)>, MigrateError> {
    let parsed = tool::parse(&VZMLOCAL, args).map_err(|e| MigrateError::Usage(e.to_string()))?;
    let (mut clone, mut specs) = (false, Vec::new());
    for arg in parsed {
        match arg {
            ToolArg::Opt(key, _) if key == "copy" => clone = true,
            ToolArg::Opt(..) => return Ok(None),
            ToolArg::Word(w) => specs.push(LocalSpec::parse(&w)?),
        }
    }
    if specs.is_empty() {
        return Err(MigrateError::Usage("Expected CTID:NEWID[:private[:root]]".into()));
    }
    Ok(Some((clone, specs)))
}
