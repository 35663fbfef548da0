//! What vzctl tells its user: progress messages and results, on stdout, silenced by
//! `--quiet`. This is not logging (which goes through `tracing`).
#![allow(clippy::print_stdout, reason = "this module is vzctl's user-facing output")]

use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Silences (or re-enables) progress messages for this process (`vzctl --quiet`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Prints a progress message unless `--quiet` was given.
pub fn say(message: impl std::fmt::Display) {
    if !QUIET.load(Ordering::Relaxed) {
        println!("{message}");
    }
}

/// Prints a warning on stderr, even with `--quiet`.
#[allow(clippy::print_stderr, reason = "warnings go to the user's stderr")]
pub fn warn(message: impl std::fmt::Display) {
    eprintln!("{message}");
}

/// Prints a result the user asked for (e.g. `vzctl status`), even with `--quiet`.
pub fn result(message: impl std::fmt::Display) {
    println!("{message}");
}
