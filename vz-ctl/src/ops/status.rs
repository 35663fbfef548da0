//! `vzctl status`: one line, `CTID <id> <exist|deleted> <mounted|unmounted> <running|down>`.

use crate::error::Result;
use crate::ve::{Ve, VeStatus};

/// The status line of a VE (reference §1.3), e.g. `CTID 101 exist mounted running`.
pub fn line(ve: &Ve, status: VeStatus) -> String {
    let mut line = format!(
        "CTID {} {} {} {}",
        ve.ctid,
        if status.exists { "exist" } else { "deleted" },
        if status.mounted { "mounted" } else { "unmounted" },
        if status.running { "running" } else { "down" },
    );
    if status.suspended {
        line.push_str(" suspended");
    }
    line
}

/// Reads the VE's status and renders its line.
///
/// # Errors
/// When the cgroup hierarchy or mount table cannot be read.
pub fn status(ve: &Ve) -> Result<String> {
    Ok(line(ve, ve.status()?))
}
