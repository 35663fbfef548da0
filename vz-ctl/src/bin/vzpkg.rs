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
//! * `vzpkg install|update|remove <CTID> <package>…` runs the VE's own package manager
//!   (apt-get, dnf or yum) in the running VE, through `vzctl exec2`, whose exit code is
//!   vzpkg's (31: the VE is not running).
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
                     \x20      vzpkg list\n\
                     \x20      vzpkg install <CTID> <package>...\n\
                     \x20      vzpkg update <CTID> [<package>...]\n\
                     \x20      vzpkg remove <CTID> <package>...";

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
        ["install", ctid, packages @ ..] if !packages.is_empty() => {
            return ve_command(ctid, pkg::VeAction::Install, packages);
        }
        ["update", ctid, packages @ ..] if *ctid != "cache" => {
            return ve_command(ctid, pkg::VeAction::Update, packages);
        }
        ["remove", ctid, packages @ ..] if *ctid != "cache" && !packages.is_empty() => {
            return ve_command(ctid, pkg::VeAction::Remove, packages);
        }
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

/// `vzpkg install|update|remove CTID pkg…`: the VE's own package manager, through vzctl.
fn ve_command(ctid: &str, action: pkg::VeAction, packages: &[&str]) -> ExitCode {
    if let Some(bad) = packages.iter().find(|p| !pkg::valid_package(p)) {
        eprintln!("vzpkg: invalid package name {bad:?}");
        return ExitCode::from(2);
    }
    match pkg::in_ve(ctid, action, packages) {
        Ok(code) => ExitCode::from(code),
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
