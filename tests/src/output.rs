//! Reading what a binary printed, for black-box tests.

use std::process::Output;

/// Its stdout then its stderr, as text: what a failure message should show.
pub fn output_text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Its stdout, after asserting that it exited 0.
///
/// # Panics
/// When it did not, with its exit code and output.
pub fn ok(out: Output) -> String {
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), output_text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
