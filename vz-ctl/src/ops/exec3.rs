//! `vzctl exec3` (OpenVZ's undocumented third exec): runs argv in the running VE directly,
//! without a shell, with exec2's exit-code rules (the program's own status; 31 when the VE
//! is not running). No lock, as for exec.

use crate::error::Result;
use crate::scripts::{self, DEFAULT_PATH};
use crate::ve::Ve;

/// Runs `argv` in the VE; returns its exit status.
///
/// # Errors
/// 31 when the VE is not running; [`crate::CtlError::Exec`] when it cannot be entered.
pub fn exec3(ve: &Ve, argv: &[String]) -> Result<i32> {
    ve.config()?;
    let pid = ve.init_pid()?;
    let env = vec![
        ("HOME".to_owned(), "/".to_owned()),
        ("TERM".to_owned(), "linux".to_owned()),
        ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
    ];
    scripts::run_inside(ve, pid, argv.to_vec(), env, vz_ns::TtyMode::Pipes)
}
