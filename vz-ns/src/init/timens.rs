//! The VE's own time namespace (Linux 5.6+, time_namespaces(7)): CLOCK_MONOTONIC and
//! CLOCK_BOOTTIME of its processes start near zero when the VE starts, so `uptime`,
//! sysinfo(2)'s uptime and /proc/uptime inside show the VE's own, as OpenVZ's did, and
//! /proc/PID/stat start times agree with them. CLOCK_REALTIME has no offset: the VE keeps
//! the host's wall clock.
//!
//! The process that forks the VE's init unshares the namespace (only its children enter it)
//! and writes the offsets into `/proc/self/timens_offsets` before that fork: the kernel
//! freezes them once the first process is in the namespace, and refuses an offset that makes
//! a clock negative (kernel/time/namespace.c), so each offset is "the clock's value now, as
//! the host counts it", negated. CRIU dumps the VE's clock values and restores the namespace
//! with offsets that make them continue (vz-cpt), also on another host.

use nix::errno::Errno;
use nix::sched::{CloneFlags, unshare};

use crate::rootfs::StepResult;
use crate::sys;

/// `CLONE_NEWTIME`.
pub(crate) const CLONE_NEWTIME: CloneFlags = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);

/// The caller's file of its children's time namespace offsets.
const OFFSETS: &str = "/proc/self/timens_offsets";

const NSEC_PER_SEC: i128 = 1_000_000_000;

/// Unshares a time namespace for the caller's children and sets its offsets so that their
/// monotonic and boottime clocks read zero now. A kernel without time namespaces (EINVAL:
/// before 5.6 or without CONFIG_TIME_NS) leaves the VE the host's clocks.
///
/// Call in a single-threaded child, before forking the VE's init, with CAP_SYS_ADMIN and
/// CAP_SYS_TIME in the caller's user namespace (which then owns the time namespace).
pub(crate) fn clocks_from_zero() -> StepResult {
    match unshare(CLONE_NEWTIME) {
        Ok(()) => {}
        Err(Errno::EINVAL) => return Ok(()),
        Err(e) => return Err(format!("unshare the time namespace: {e}")),
    }
    let current = std::fs::read_to_string(OFFSETS).map_err(|e| format!("read {OFFSETS}: {e}"))?;
    let now = |clock: libc::clockid_t, name: &str| {
        sys::clock_now(clock).map_err(|e| format!("clock_gettime({name}): {e}"))
    };
    let monotonic = now(libc::CLOCK_MONOTONIC, "CLOCK_MONOTONIC")?;
    let boottime = now(libc::CLOCK_BOOTTIME, "CLOCK_BOOTTIME")?;
    let text = zeroing_offsets(&current, monotonic, boottime)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(OFFSETS)
        .map_err(|e| format!("open {OFFSETS}: {e}"))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .map_err(|e| format!("write {text:?} to {OFFSETS}: {e}"))
}

/// The text for `timens_offsets` that makes both clocks read zero, given the offsets the new
/// namespace inherited (`current`, as the file shows them: the caller may itself be in a
/// time namespace) and the clocks' values now in the caller's namespace: each new offset is
/// the inherited one minus the value now, as seconds and nanoseconds in `[0, 10^9)`.
fn zeroing_offsets(
    current: &str,
    monotonic: (i64, i64),
    boottime: (i64, i64),
) -> StepResult<String> {
    let inherited = |name: &str| -> StepResult<i128> {
        let line = current
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .ok_or_else(|| format!("no {name} offset in {current:?}"))?;
        let mut fields = line.split_whitespace().skip(1).map(str::parse::<i128>);
        match (fields.next(), fields.next()) {
            (Some(Ok(sec)), Some(Ok(nsec))) => Ok(sec * NSEC_PER_SEC + nsec),
            _ => Err(format!("unreadable {name} offset {line:?}")),
        }
    };
    let line = |name: &str, (sec, nsec): (i64, i64)| -> StepResult<String> {
        let now = i128::from(sec) * NSEC_PER_SEC + i128::from(nsec);
        let offset = inherited(name)? - now;
        let (sec, nsec) = (offset.div_euclid(NSEC_PER_SEC), offset.rem_euclid(NSEC_PER_SEC));
        Ok(format!("{name} {sec} {nsec}\n"))
    };
    Ok(line("monotonic", monotonic)? + &line("boottime", boottime)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRESH: &str = "monotonic           0         0\nboottime            0         0\n";

    #[test]
    fn offsets_are_the_clocks_negated_with_nanoseconds_in_range() {
        let text = zeroing_offsets(FRESH, (1234, 500), (2000, 0)).expect("offsets");
        assert_eq!(text, "monotonic -1235 999999500\nboottime -2000 0\n");
    }

    #[test]
    fn an_inherited_offset_is_kept_in_the_sum() {
        // A caller already in a time namespace shifted by -100 s reads clocks 100 s behind
        // the host's: the new offset is relative to the host's clock.
        let current = "monotonic -100 0\nboottime -100 250\n";
        let text = zeroing_offsets(current, (50, 0), (60, 0)).expect("offsets");
        assert_eq!(text, "monotonic -150 0\nboottime -160 250\n");
    }

    #[test]
    fn an_unreadable_file_is_an_error() {
        assert!(zeroing_offsets("monotonic 0 0\n", (1, 0), (1, 0)).is_err());
        assert!(zeroing_offsets("monotonic x 0\nboottime 0 0\n", (1, 0), (1, 0)).is_err());
    }
}
