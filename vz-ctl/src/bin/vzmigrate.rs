//! `vzmigrate`: moves a VE to another server running vz, over ssh (reference §8.2), offline
//! or `--online` (checkpoint, copy, restore: its TCP connections kept).
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::process::ExitCode;

use vz_ctl::cli::tool::{self, ToolArg, VZMIGRATE};
use vz_ctl::config::GlobalConfig;
use vz_ctl::ops::migrate::remote::{MigrateOptions, Mode, migrate};
use vz_ctl::ops::migrate::{MigrateError, announce, incoming, page_server};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some((command, rest)) = args.split_first()
        && command.starts_with("__")
    {
        // The destination's end of a migration (run by vzmigrate over ssh).
        return match hidden(command, rest) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::from(e.exit_code())
            }
        };
    }
    let (opts, times, verbose) = match parse(&args) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            print!("{}", VZMIGRATE.usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            eprint!("{}", VZMIGRATE.usage());
            return ExitCode::from(e.exit_code());
        }
    };
    vz_ctl::logging::init("vzmigrate", verbose, false, None, Some(opts.ctid));
    let outcome = GlobalConfig::load()
        .map_err(|e| MigrateError::Other(vz_ctl::error::chain(&e)))
        .and_then(|global| migrate(&global, &opts));
    match outcome {
        Ok(timings) => {
            if times && !opts.check_only {
                println!("Timings:");
                for line in timings.lines() {
                    println!("{line}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// A hidden command of the destination's end: the holder, the source's question and the
/// address announcement take a CTID; the page server its own words.
fn hidden(command: &str, args: &[String]) -> Result<(), MigrateError> {
    if command == page_server::PAGE_SERVER_COMMAND {
        return page_server::page_server(args);
    }
    let [ctid] = args else {
        return Err(MigrateError::Usage(format!("{command}: expected a CTID")));
    };
    let ctid = ctid.parse().map_err(|_| MigrateError::Usage(format!("Bad CTID {ctid}")))?;
    match command {
        incoming::INCOMING_COMMAND => {
            incoming::serve_incoming(ctid, std::io::stdin().lock(), std::io::stdout())
        }
        incoming::STATE_COMMAND => incoming::state(ctid).map(|state| println!("{state}")),
        announce::ANNOUNCE_COMMAND => announce::announce(ctid).map(|n| println!("{n}")),
        _ => Err(MigrateError::Usage(format!("unknown command {command}"))),
    }
}

/// The options, `-t`, the verbosity; `None` for `--help`.
fn parse(args: &[String]) -> Result<Option<(MigrateOptions, bool, u8)>, MigrateError> {
    let parsed = tool::parse(&VZMIGRATE, args).map_err(|e| MigrateError::Usage(e.to_string()))?;
    let mut opts = MigrateOptions::default();
    let (mut times, mut verbose) = (false, 0u8);
    let mut words = Vec::new();
    for arg in parsed {
        match arg {
            ToolArg::Word(w) => words.push(w),
            ToolArg::Opt(key, value) => match key.as_str() {
                "online" | "live" => opts.online = true,
                "remove-area" => {
                    opts.keep_source = match value.as_deref() {
                        Some("yes") => false,
                        Some("no") => true,
                        other => {
                            return Err(MigrateError::Usage(format!(
                                "Bad value for -r: {} (yes or no)",
                                other.unwrap_or_default()
                            )));
                        }
                    };
                }
                "keep-dst" => opts.keep_dst = true,
                "check-only" | "dry-run" => opts.check_only = true,
                "times" => times = true,
                "ssh" => opts.ssh = value.unwrap_or_default(),
                "mode" => {
                    let word = value.unwrap_or_default();
                    opts.mode = Mode::parse(&word).ok_or_else(|| {
                        MigrateError::Usage(format!(
                            "Bad --mode {word}: auto, plain, page-server, lazy or pre-copy"
                        ))
                    })?;
                }
                "verbose" => verbose = verbose.saturating_add(1),
                _ => return Ok(None),
            },
        }
    }
    let [dest, ctid] = words.as_slice() else {
        return Err(MigrateError::Usage("Expected <dest> <CTID>".into()));
    };
    opts.dest.clone_from(dest);
    opts.ctid = ctid
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| MigrateError::Usage(format!("Bad CTID {ctid}")))?;
    Ok(Some((opts, times, verbose)))
}
