//! Unique names and CTIDs so that tests running in parallel never share a kernel object.

use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process and call: `vz-test-<pid>-<n>-<tag>`.
///
/// The `vz-test-` prefix is what the leak check looks for in cgroups, mounts and devices.
pub fn unique_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("vz-test-{}-{n}-{tag}", std::process::id())
}

/// A CTID unique to this test process and call, in the test range 1_000_000…1_999_999.
pub fn unique_ctid() -> u32 {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    1_000_000 + (std::process::id() % 9_000) * 100 + n % 100
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
