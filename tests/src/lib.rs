//! Test kit shared by every vz crate: the privilege gate, unique names for kernel objects,
//! a cgroup fixture ([`TestCgroup`]) for kernel tests, and helpers for the black-box tests of
//! the binaries.
//!
//! # The gate
//! A test that needs the kernel names what it needs with [`require!`]. When a need is missing
//! the test **fails** with a message naming it, unless the person running the tests opted out
//! explicitly with `VZ_SKIP_PRIVILEGED=1`; then the test returns early, prints
//! `SKIP <test>: needs …` and appends that line to the file named by `VZ_TEST_SKIP_LOG`, so a
//! run that skipped tests says so at the end. CI never sets `VZ_SKIP_PRIVILEGED`.
#![forbid(unsafe_code)]
#![allow(clippy::print_stderr, reason = "the kit reports skips to the person running tests")]

mod cgroup;
mod client;
mod lxcfs;
mod names;
mod need;
mod output;
mod tree;
mod work;

pub use cgroup::{TestCgroup, cgroup_v1_mount, is_cgroup_v2};
pub use client::LineClient;
pub use lxcfs::TreeLxcfs;
pub use names::{unique_ctid, unique_name};
pub use need::{Need, check_needs, required};
pub use output::{ok, output_text};
pub use tree::{TEST_RANGES, VzTree, bin_dir, kill_and_remove_cgroups, unmount_under, workspace};
pub use work::{assert_no_gap, counts, last_count, start_working_ve, wait_count};

/// Fails (or, with `VZ_SKIP_PRIVILEGED=1`, skips) the calling test unless every listed
/// [`Need`] is met. Use at the top of a test function returning `()` or `anyhow::Result<()>`.
///
/// ```no_run
/// # fn t() -> anyhow::Result<()> {
/// vz_tests::require!(vz_tests::Need::Root, vz_tests::Need::CgroupController("pids"));
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! require {
    ($($need:expr),+ $(,)?) => {
        if !$crate::check_needs(module_path!(), &[$($need),+]) {
            return $crate::Skipped::skipped();
        }
    };
}

/// What a skipped test returns: `()` or `Ok(())`, so [`require!`] works in both kinds of test.
pub trait Skipped {
    /// The value a skipped test returns.
    fn skipped() -> Self;
}

impl Skipped for () {
    fn skipped() -> Self {}
}

impl<E> Skipped for Result<(), E> {
    fn skipped() -> Self {
        Ok(())
    }
}
