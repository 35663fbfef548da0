//! Unique names and CTIDs so that tests running in parallel never share a kernel object.

use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);
static CTIDS: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process and call: `vz-test-<pid>-<n>-<tag>`.
///
/// The `vz-test-` prefix is what the leak check looks for in cgroups, mounts and devices.
pub fn unique_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("vz-test-{}-{n}-{tag}", std::process::id())
}

/// A CTID unique to this test process and call: `1_000_000 + pid * 100 + n`, `n` < 100.
///
/// CTIDs name host-wide objects (`venet<CTID>`, `veth<CTID>.0`), so two test processes
/// running at once must never get the same one: the whole pid goes in (a pid modulo
/// anything repeats among the live test processes once pids wrap, 32768 on many hosts).
/// Within `pid_max`'s default ceiling (4194304) the largest is 420_430_399, short enough
/// for every interface name made from it.
///
/// # Panics
/// On the 101st call in one process (the next would repeat the first).
pub fn unique_ctid() -> u32 {
    let n = CTIDS.fetch_add(1, Ordering::Relaxed);
    assert!(n < 100, "a test process made more than 100 CTIDs");
    1_000_000 + std::process::id() * 100 + n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ctids_do_not_repeat() {
        assert_ne!(unique_name("a"), unique_name("a"));
        assert_ne!(unique_ctid(), unique_ctid());
        assert!(unique_name("x").starts_with("vz-test-"));
    }
}
