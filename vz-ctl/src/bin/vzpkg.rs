//! `vzpkg`: template caches from template metadata (OpenVZ reference §7.2).
//!
//! * `vzpkg create cache [-f|--force] <ostemplate>…` builds `$TEMPLATE/cache/<name>.tar.gz`
//!   from the metadata under `$TEMPLATE/<osname>/<osver>/<arch>/config/` (Debian through
//!   debootstrap with the archive's signatures verified), or `busybox` from the host's
//!   busybox-static. A cache built from the same metadata (same hash) is kept: `create` is
//!   then a no-op, which is what lets CI keep a Debian cache between runs.
//! * `vzpkg update cache <ostemplate>…` rebuilds from the archive's current packages.
//! * `vzpkg remove cache <ostemplate>…` removes the cache files.
//! * `vzpkg list` lists caches and metadata, with sizes and dates.
//!
//! Progress (download, install, pack) is shown when stderr is a terminal. Exit codes: 0
//! success, 1 failure, 2 usage.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

#[path = "vzpkg/pkg.rs"]
mod pkg;

use std::process::ExitCode;

use vz_ctl::config::GlobalConfig;

const USAGE: &str = "Usage: vzpkg create cache [-f|--force] <ostemplate>...\n\
                     \x20      vzpkg update cache <ostemplate>...\n\
                     \x20      vzpkg remove cache <ostemplate>...\n\
                     \x20      vzpkg list";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    if matches!(words.as_slice(), ["-h" | "--help" | "help", ..]) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let global = match GlobalConfig::load() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("vzpkg: {e}");
            return ExitCode::from(10);
        }
    };
    vz_ctl::logging::init("vzpkg", 0, false, None, None);
    let Some(template_dir) = global.template_dir() else {
        eprintln!("vzpkg: TEMPLATE is not set in {}", global.path().display());
        return ExitCode::from(24);
    };
    let pkg = pkg::Vzpkg::new(&template_dir);
    let outcome = match words.as_slice() {
        ["create", "cache", rest @ ..] => {
            let force = rest.iter().any(|w| matches!(*w, "-f" | "--force"));
            let names: Vec<&str> =
                rest.iter().copied().filter(|w| !matches!(*w, "-f" | "--force")).collect();
            if names.is_empty() || names.iter().any(|n| n.starts_with('-')) {
                return usage();
            }
            names.iter().try_for_each(|n| pkg.create(n, force))
        }
        ["update", "cache", names @ ..] if !names.is_empty() => {
            names.iter().try_for_each(|n| pkg.create(n, true))
        }
        ["remove", "cache", names @ ..] if !names.is_empty() => {
            names.iter().try_for_each(|n| pkg.remove(n))
        }
        ["list"] => pkg.list(),
        _ => return usage(),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vzpkg: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}
