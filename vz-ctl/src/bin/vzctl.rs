//! `vzctl`: create, start, stop, enter and configure VEs, with OpenVZ's syntax and exit codes.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::io::Write;
use std::process::ExitCode;

use vz_ctl::cli::{self, Action};
use vz_ctl::config::GlobalConfig;

fn main() -> ExitCode {
    let mut args: Vec<String> = Vec::new();
    for (n, arg) in std::env::args_os().skip(1).enumerate() {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(arg) => {
                eprintln!("Bad parameter: argument {} is not valid UTF-8: {arg:?}", n + 1);
                return ExitCode::from(21);
            }
        }
    }
    if let [command, ctid, device] = args.as_slice()
        && command == vz_ctl::quotactl::SERVER_COMMAND
    {
        return quotactl_server(ctid, std::path::Path::new(device));
    }
    if let [command] = args.as_slice()
        && command == vz_ctl::consoled::SERVER_COMMAND
    {
        return console_server();
    }
    let inv = match cli::parse(&args) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("{e}");
            if e.exit_code() == 20 && args.is_empty() {
                eprint!("{}", cli::usage());
            }
            return ExitCode::from(e.exit_code());
        }
    };
    match inv.action {
        Action::Help => {
            print!("{}", cli::usage());
            return ExitCode::SUCCESS;
        }
        Action::CommandHelp(cmd) => {
            print!("{}", cli::command_usage(cmd));
            return ExitCode::SUCCESS;
        }
        Action::Version => {
            println!("vzctl version {}", vz_ctl::VERSION);
            return ExitCode::SUCCESS;
        }
        Action::Run { .. } => {}
    }
    vz_ctl::output::set_quiet(inv.quiet);
    let global = GlobalConfig::load().ok();
    let verbose =
        inv.verbose.max(global.as_ref().map_or(0, |g| u8::try_from(g.verbose()).unwrap_or(0)));
    let logfile = global.as_ref().filter(|g| g.logging()).map(|g| (g.logfile(), g.log_level()));
    let ctid = match &inv.action {
        Action::Run { ctid, .. } => ctid.parse().ok(),
        _ => None,
    };
    vz_ctl::logging::init(
        "vzctl",
        verbose,
        inv.quiet,
        logfile.as_ref().map(|(path, level)| (path.as_path(), *level)),
        ctid,
    );
    match cli::run(inv) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let message = vz_ctl::error::chain(&e);
            eprintln!("{message}");
            tracing::info!("{message}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `vzctl __consoled`, the tree's console server (vz_ctl::consoled), started by the first
/// `vzctl start` or `restore` that finds none; ends when no VE of the tree runs.
fn console_server() -> ExitCode {
    helper("console server", None, vz_ctl::consoled::serve)
}

/// `vzctl __quotactl-server CTID DEVICE`, started by `vzctl start` (vz_ctl::quotactl).
fn quotactl_server(ctid: &str, device: &std::path::Path) -> ExitCode {
    let ctid = ctid.parse::<vz_ctl::Ctid>().map_err(|_| ctid.to_owned());
    helper("quotactl server", ctid.as_ref().ok().copied(), |global| {
        let ctid = ctid.map_err(vz_ctl::CtlError::BadCtid)?;
        vz_ctl::quotactl::serve(&vz_ctl::Ve::load(global, ctid)?, device)
    })
}

/// Runs one of vz's helper processes (of the VE `ctid`, or of the tree): logs to the log
/// file only; an error goes to stdout too, which the starting vzctl reads until the helper
/// says "ready".
fn helper(
    name: &str,
    ctid: Option<vz_ctl::Ctid>,
    serve: impl FnOnce(GlobalConfig) -> vz_ctl::Result<()>,
) -> ExitCode {
    let run = || -> vz_ctl::Result<()> {
        let global = GlobalConfig::load().map_err(vz_ctl::CtlError::GlobalConfig)?;
        let logfile = global.logging().then(|| (global.logfile(), global.log_level()));
        vz_ctl::logging::init(
            "vzctl",
            0,
            true,
            logfile.as_ref().map(|(path, level)| (path.as_path(), *level)),
            ctid.map(vz_ctl::Ctid::get),
        );
        serve(global)
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = vz_ctl::error::chain(&e);
            let _ = writeln!(std::io::stdout(), "{message}");
            tracing::warn!("{name}: {message}");
            ExitCode::from(e.exit_code())
        }
    }
}
